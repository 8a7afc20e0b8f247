"""Cross-validate the imaging default recipes inside their training parts, then train the shipped weights.

Usage (from the repository root; ~25 min for cxr, ~5 min for ct on 2 shared cores):

    python benchmarks/imaging_recipe_cv.py cxr [--write-weights]
    python benchmarks/imaging_recipe_cv.py ct [--write-weights]

Writes ``benchmarks/results/imaging_cv_<kind>.json`` (every fold x epoch x prompt-style AUROC and the choice).
With ``--write-weights`` it then trains the default with the chosen epochs on the whole training part and writes
``medzs/weights/<model>.pt`` + ``.json`` (the model card, with the held-out AUROC measured once, at the end).
The held-out part (medzs.data.imaging_splits.heldout_part) is never read before the final evaluation.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from dataclasses import replace
from pathlib import Path

from medzs import recipes_imaging as ri
from medzs.registry import WEIGHTS_DIR

VARIANTS = {
    "cxr": {"base": {"epochs": 4}},
    "ct": {"base": {"epochs": 12}},
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("kind", choices=["cxr", "ct"])
    ap.add_argument("--write-weights", action="store_true")
    ap.add_argument("--skip-cv", action="store_true", help="reuse benchmarks/results/imaging_cv_<kind>.json")
    ap.add_argument("--table", action="store_true", help="print the saved CV rows as a Markdown table and exit")
    args = ap.parse_args()
    if args.table:
        print(cv_table(json.loads((Path(__file__).parent / "results" / f"imaging_cv_{args.kind}.json").read_text())))
        return
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    name, recipe, data = ri._recipe(args.kind, None)
    res_file = Path(__file__).parent / "results" / f"imaging_cv_{args.kind}.json"
    if args.skip_cv:
        res = json.loads(res_file.read_text())
    else:
        t0 = time.time()
        rows = ri.cross_validate(data, recipe, VARIANTS[args.kind], k=3, folds=(0, 1))
        choice = {st: ri.choose_from_cv(rows, st) for st in ri.PROMPT_STYLES}
        res = {"model": name, "base_recipe": recipe.to_dict(), "variants": VARIANTS[args.kind], "k": 3,
               "folds": [0, 1], "rows": rows, "choice": choice, "seconds": round(time.time() - t0, 1)}
        res_file.parent.mkdir(parents=True, exist_ok=True)
        res_file.write_text(json.dumps(res, indent=1) + "\n")
    print(json.dumps(res["choice"], indent=1))
    if args.write_weights:
        ch = res["choice"]["kb"]
        kw = dict(VARIANTS[args.kind][ch["variant"]])
        kw["epochs"] = ch["epochs"]
        chosen = replace(recipe, **kw)
        ri_recipe_attr = "CXR_RECIPE" if args.kind == "cxr" else "CT_RECIPE"
        if chosen != getattr(ri, ri_recipe_attr):
            print(f"NOTE: chosen recipe differs from ri.{ri_recipe_attr}: {chosen}")
            setattr(ri, ri_recipe_attr, chosen)
        card = ri.train_default(args.kind, out=WEIGHTS_DIR / f"{name}.pt", cv_rows=None, progress=False)
        card["cross_validation"] = {"file": str(res_file.name), "choice": res["choice"]}
        (WEIGHTS_DIR / f"{name}.json").write_text(json.dumps(card, indent=1, default=str) + "\n")
        print(json.dumps({k: card[k] for k in ("sha256", "bytes", "heldout", "train_seconds")}, indent=1))


def cv_table(res: dict, prompts: str = "kb") -> str:
    """Markdown table: zero-shot AUROC per validation fold and their mean, by epoch (one prompt style)."""
    rows = [r for r in res["rows"] if r["prompts"] == prompts]
    epochs = sorted({r["epoch"] for r in rows})
    folds = sorted({r["fold"] for r in rows})
    best = res["choice"][prompts]["epochs"]
    head = "| epoch | " + " | ".join(f"**{e}**" if e == best else str(e) for e in epochs) + " |"
    lines = [head, "|---" * (len(epochs) + 1) + "|"]
    for f in folds:
        vals = {r["epoch"]: r["auroc"] for r in rows if r["fold"] == f}
        n = next(r for r in rows if r["fold"] == f)
        lines.append(f"| fold {f} (n={n['n_val']}, {n['n_pos']} pos) | "
                     + " | ".join(f"{vals[e]:.3f}" for e in epochs) + " |")
    means = {e: sum(r["auroc"] for r in rows if r["epoch"] == e) / len(folds) for e in epochs}
    lines.append("| mean | " + " | ".join(f"**{means[e]:.3f}**" if e == best else f"{means[e]:.3f}"
                                          for e in epochs) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
