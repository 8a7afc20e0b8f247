"""Choose the embedded ECG model's recipe by cross-validation inside PTB-XL folds 1-8 (never folds 9-10).

``run``: trains each candidate recipe on one half of folds 1-8 and scores the other half zero-shot (2-fold,
patient-disjoint by ``strat_fold``), saving the held-out scores (full 12-lead and 3x4 layout) for the four PTB-XL
tasks and both prompt styles. ``summary``: macro AUROC per variant / epoch / task / prompt style / input, sinus
rhythm AUROC, and the rank-average hybrid with ``ecg-criteria.kb`` at several fusion weights (criteria scores from
the 100 Hz files, cached by ``criteria``).

    python benchmarks/ecg_cv.py criteria                       # criteria scores of folds 1-8 (~5 min)
    python benchmarks/ecg_cv.py run --split 0 & python benchmarks/ecg_cv.py run --split 1
    python benchmarks/ecg_cv.py summary
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from pathlib import Path

import numpy as np

#: Candidate recipes (masking augmentation on in all; they differ in the training text).
VARIANTS = {
    "statements": {"text_mode": "statements"},  # control: SCP statement descriptions only
    "names": {"text_mode": "names"},  # control: KB names only (statements + their sub/superclasses)
    "kb": {"text_mode": "kb"},  # knowledge-grounded: definitions, criteria, synonyms sampled per draw
}
#: 2-fold CV inside folds 1-8 (patient-disjoint PTB-XL folds).
SPLITS = (((1, 2, 3, 4), (5, 6, 7, 8)), ((5, 6, 7, 8), (1, 2, 3, 4)))
FUSION_WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0)


def criteria_cache(root, out: Path, ids) -> Path:
    """Criteria scores (``ecg-criteria.kb``, measured on the 100 Hz files) of the given records for the 4 tasks."""
    from medzs.data.ptbxl import PTBXL
    from medzs.data.tasks import get_task
    from medzs.registry import create_scorer

    ds = PTBXL(root) if root else PTBXL()
    sc = create_scorer("ecg-criteria.kb")
    ms = sc.measure([ds.load(int(i), fs=100) for i in ids])
    arrays = {"ecg_ids": np.asarray(ids)}
    for t in ("super", "sub", "form", "rhythm"):
        arrays[t] = sc.score_measurements(ms, get_task(f"ptbxl-{t}")).scores
    np.savez(out, **arrays)
    return out


def summarize(out_dir: Path, root=None) -> dict:
    import pandas as pd
    from sklearn.metrics import roc_auc_score

    from medzs.criteria import fuse_rank_average
    from medzs.data.ptbxl import PTBXL
    from medzs.data.tasks import get_task

    ds = PTBXL(root) if root else PTBXL()
    crit = np.load(out_dir / "criteria_f1-8.npz")
    cpos = {int(i): k for k, i in enumerate(crit["ecg_ids"])}
    rows = []
    for f in sorted(out_dir.glob("*_s[0-9]_e*.npz")):
        variant, split, epoch = f.stem.rsplit("_", 2)
        z = np.load(f)
        ids = z["ecg_ids"].tolist()
        for t in ("super", "sub", "form", "rhythm"):
            task = get_task(f"ptbxl-{t}")
            y_all = ds.labels(t).loc[ids, list(task.classes)].to_numpy()
            keep = ~np.isnan(y_all).all(axis=1)
            y = y_all[keep]
            c = crit[t][[cpos[i] for i in ids]][keep]
            for style in ("names", "grounded"):
                for inp in ("full", "3x4"):
                    key = f"{t}_{style}_{inp}"
                    if key not in z:
                        continue
                    s = z[key][keep]
                    for w in FUSION_WEIGHTS if inp == "full" else (0.0,):
                        sc = s if w == 0 else fuse_rank_average(s, c, w)
                        aucs = {cl: roc_auc_score(y[:, j], sc[:, j]) for j, cl in enumerate(task.classes)
                                if len(set(y[:, j])) == 2 and np.isfinite(sc[:, j]).all()}
                        rows.append({"variant": variant, "split": int(split[1:]), "epoch": int(epoch[1:]),
                                     "task": t, "prompts": style, "input": inp, "fusion_w": w,
                                     "macro": float(np.mean(list(aucs.values()))),
                                     "SR": aucs.get("SR"), "min_class": float(min(aucs.values())),
                                     **{f"auc_{k}": v for k, v in aucs.items()}})
    df = pd.DataFrame(rows)
    df.to_csv(out_dir / "cv_rows.csv", index=False)
    return {"rows": df}


def main() -> None:
    for k, v in (("HF_HUB_OFFLINE", "1"), ("TRANSFORMERS_OFFLINE", "1"), ("ANONYMIZED_TELEMETRY", "False")):
        os.environ.setdefault(k, v)
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("cmd", choices=["run", "criteria", "summary"])
    ap.add_argument("--variants", nargs="*", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--split", type=int, default=None, help="run only this split (0 or 1)")
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--eval-epochs", type=int, nargs="*", default=[3, 6])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--root", default=None, help="PTB-XL root (default: MEDZS_PTBXL_ROOT or the shared mirror)")
    ap.add_argument("--out", default="runs/cv", help="output folder")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.cmd == "criteria":
        from medzs.data.ptbxl import PTBXL

        ds = PTBXL(args.root) if args.root else PTBXL()
        criteria_cache(args.root, out / "criteria_f1-8.npz", ds.split("train"))
        return
    if args.cmd == "summary":
        df = summarize(out, args.root)["rows"]
        emb = df[df.fusion_w == 0]
        print("Mean macro AUROC over the 2 held-out halves (embedding only):")
        print(emb.groupby(["task", "prompts", "input", "variant", "epoch"])["macro"].mean().unstack("epoch")
              .round(3).to_string())
        sr = emb[(emb.task == "rhythm") & (emb.input == "full")]
        print("\nSinus rhythm AUROC:")
        print(sr.groupby(["prompts", "variant", "epoch"])["SR"].mean().unstack("epoch").round(3).to_string())
        full = df[df.input == "full"]
        print("\nHybrid with ecg-criteria.kb (rank average), macro AUROC by fusion weight:")
        print(full.groupby(["task", "prompts", "variant", "epoch", "fusion_w"])["macro"].mean()
              .unstack("fusion_w").round(3).to_string())
        print("\nSR by fusion weight:")
        print(full[full.task == "rhythm"].groupby(["prompts", "variant", "epoch", "fusion_w"])["SR"].mean()
              .unstack("fusion_w").round(3).to_string())
        return
    from medzs.recipes import cross_validate_ecg

    variants = {v: {**VARIANTS[v], "epochs": args.epochs} for v in args.variants}
    cross_validate_ecg(variants, root=args.root, splits=SPLITS, eval_epochs=tuple(args.eval_epochs), out_dir=out,
                       split_index=args.split, threads=args.threads)
    print(json.dumps({"done": args.variants, "split": args.split}))


if __name__ == "__main__":
    main()
