"""Choose the embedded model's recipe by cross-validation inside PTB-XL folds 1-8 (never folds 9-10).

Trains each variant on folds {1..6} and {3..8}, scores the held-out training folds ({7, 8} and {1, 2})
zero-shot on the superclass task with two prompt styles (class names; grounded KB prompts from the committed
cache), and prints the mean macro AUROC per variant, prompt style and evaluation epoch.

    python benchmarks/recipe_cv.py                 # all variants (about 30-40 min on 2 CPU cores)
    python benchmarks/recipe_cv.py --variants default frozen_text
"""

from __future__ import annotations

import argparse
import json
import logging
import os

VARIANTS = {
    "default": {},  # medzs.recipes.DEFAULT_RECIPE: 20 epochs, last text layer trained, shared positives, augment
    "frozen_text": {"trainable_text_layers": 0},
    "text_with_classes": {"text_mode": "statements+classes"},
    "no_augment": {"augment": False},
    "plain_clip_targets": {"shared_positives": False},
}


def main() -> None:
    for k, v in (("HF_HUB_OFFLINE", "1"), ("TRANSFORMERS_OFFLINE", "1"), ("ANONYMIZED_TELEMETRY", "False")):
        os.environ.setdefault(k, v)
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variants", nargs="*", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--root", default=None, help="PTB-XL root (default: MEDZS_PTBXL_ROOT or the shared mirror)")
    ap.add_argument("--json", default=None, help="also write all rows to this JSON file")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    import pandas as pd

    from medzs.recipes import cross_validate_ptbxl

    rows = cross_validate_ptbxl({v: VARIANTS[v] for v in args.variants}, root=args.root)
    df = pd.DataFrame(rows)
    table = df.groupby(["variant", "prompts", "epoch"])["macro_auroc"].mean().unstack("epoch").round(3)
    print("Mean zero-shot macro AUROC (PTB-XL superclasses) on held-out training folds {7,8} and {1,2}:")
    print(table.to_string())
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1, default=list)


if __name__ == "__main__":
    main()
