"""Folds 9-10 report of an ECG-text checkpoint on PTB-XL (read once, after every choice was made on folds 1-8).

Zero-shot AUROC per class and per task (super/sub/form/rhythm) with the committed grounded prompt caches, the
rank-average hybrid with ``ecg-criteria.kb`` at the fusion weight chosen by cross-validation, and the partial-lead
table (full 12-lead, 3x4 printout layout, lead I only, limb leads only, 6 random leads per record).

    python benchmarks/ecg_final_eval.py --weights medzs/weights/ecg-resnet18.medzs-ptbxl.pt \\
        --fusion-weights super=0.5 sub=0.5 form=0.75 rhythm=0.75 --out runs/final
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np

TASKS = ("super", "sub", "form", "rhythm")
LIMB = ("I", "II", "III", "aVR", "aVL", "aVF")


def partial_samples(sample: dict, condition: str, rng: np.random.Generator) -> dict:
    """The record as seen under a partial-lead condition (absent leads removed; 3x4 as NaN outside columns)."""
    from medzs.transforms.ecg import layout_mask, lead_key

    leads = list(sample["leads"])
    sig = sample["signal"]
    if condition == "full":
        return sample
    if condition == "3x4":
        keep = layout_mask(leads, sig.shape[1], "3x4")
        return {**sample, "signal": np.where(keep, sig, np.nan)}
    if condition == "lead I":
        names = {"i"}
    elif condition == "limb leads":
        names = {lead_key(n) for n in LIMB}
    elif condition == "6 random leads":
        names = {lead_key(n) for n in rng.choice(leads, size=6, replace=False)}
    else:
        raise ValueError(condition)
    rows = [k for k, n in enumerate(leads) if lead_key(n) in names]
    return {**sample, "signal": sig[rows], "leads": [leads[k] for k in rows]}


def main() -> None:
    for k, v in (("HF_HUB_OFFLINE", "1"), ("TRANSFORMERS_OFFLINE", "1"), ("ANONYMIZED_TELEMETRY", "False")):
        os.environ.setdefault(k, v)
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", default=None, help="checkpoint (default: the shipped one)")
    ap.add_argument("--root", default=None)
    ap.add_argument("--fusion-weights", nargs="*", default=["super=0.5", "sub=0.5", "form=0.5", "rhythm=0.5"],
                    help="criteria weight of the hybrid per task, TASK=W (the CV choice)")
    ap.add_argument("--criteria", default="runs/cache/criteria_ptbxl2k_100hz.npz",
                    help="criteria scores cache (benchmarks/ecg_cv.py criteria_cache), recomputed when absent")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--out", default="runs/final")
    ap.add_argument("--split", default="test9-10", help="PTB-XL split (smoke runs: train)")
    ap.add_argument("--max-records", type=int, default=None, help="first N records only (smoke runs)")
    args = ap.parse_args()
    fw = {k: float(v) for k, v in (a.split("=") for a in args.fusion_weights)}

    import torch

    from medzs import registry
    from medzs.criteria import fuse_rank_average
    from medzs.data.ptbxl import PTBXL
    from medzs.data.tasks import get_task
    from medzs.metrics import evaluate
    from medzs.recipes import task_prompt_sets, zero_shot_scores
    from medzs.transforms.ecg import preprocess

    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    ds = PTBXL(args.root) if args.root else PTBXL()
    ids = ds.split(args.split)[: args.max_records]
    name = "ecg-resnet18.medzs-ptbxl"
    model = registry.create_model(name, weights=args.weights) if args.weights else registry.create_model(name)
    model.eval()
    spec = registry.get_config(name).input_spec
    crit_file = Path(args.criteria)
    if crit_file.is_file():
        z = np.load(crit_file)
        cpos = {int(i): k for k, i in enumerate(z["ecg_ids"])}
        crit = {t: z[t][[cpos[i] for i in ids]] for t in TASKS}
    else:
        import sys

        sys.path.insert(0, str(Path(__file__).parent))
        from ecg_cv import criteria_cache

        z = np.load(criteria_cache(args.root, out / "criteria_f9-10.npz", ids))
        crit = {t: z[t] for t in TASKS}
    prompt_sets = {t: {"grounded": task_prompt_sets(t)["grounded"]} for t in TASKS}
    conditions = ("full", "3x4", "lead I", "limb leads", "6 random leads")
    rng = np.random.default_rng(0)
    samples = [ds.load(int(i), fs=100) for i in ids]
    scores = {}
    for cond in conditions:
        x = np.stack([preprocess(partial_samples(s, cond, rng), spec) for s in samples])
        scores[cond] = zero_shot_scores(model, x, prompt_sets)
    result = {"n_records": len(ids), "weights": args.weights or registry.get_config(name).weights,
              "fusion_weight": fw, "tasks": {}, "partial": {}}
    for t in TASKS:
        task = get_task(f"ptbxl-{t}")
        lab = ds.labels(t, v1_0_3_only=True).reindex(ids)[list(task.classes)]
        keep = lab.notna().any(axis=1).to_numpy()
        y = lab.to_numpy()[keep]
        for mode in ("embedding", "hybrid", "criteria"):
            s = scores["full"][(t, "grounded")][keep]
            if mode == "hybrid":
                s = fuse_rank_average(s, crit[t][keep], fw[t])
            elif mode == "criteria":
                s = crit[t][keep]
            table, macro = evaluate(y, s, list(task.classes), n_boot=args.n_boot, seed=0)
            result["tasks"][f"{t}/{mode}"] = {
                "n_records": int(keep.sum()), "macro": macro,
                "per_class": table[["condition", "auroc", "ci_low", "ci_high", "n_pos", "n_neg"]]
                .to_dict(orient="records")}
        for cond in conditions:
            s = scores[cond][(t, "grounded")][keep]
            table, macro = evaluate(y, s, list(task.classes), n_boot=200, seed=0)
            result["partial"][f"{t}/{cond}"] = {"macro": macro["auroc"],
                                                "per_class": dict(zip(table["condition"], table["auroc"]))}
    (out / "final_eval.json").write_text(json.dumps(result, indent=1, default=float) + "\n")
    for k, v in result["tasks"].items():
        print(f"{k:22s} n={v['n_records']:4d} macro {v['macro']['auroc']:.3f} "
              f"[{v['macro']['ci_low']:.3f}, {v['macro']['ci_high']:.3f}]")
    for k, v in result["partial"].items():
        print(f"{k:40s} {v['macro']:.3f}")


if __name__ == "__main__":
    main()
