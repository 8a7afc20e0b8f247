"""Prompt ablation: which class prompts help zero-shot ECG classification, on the reported PTB-XL folds 9-10.

One embedded ECG model, the shared PTB-XL folds 9-10 (tasks ptbxl-super, -sub, -form, -rhythm), and the class
prompts of each variant of :mod:`medzs.prompts.controls` plus the grounded and the LLM (CKEPE) writers:

- ``names``: the class name only;
- ``templates``: the fixed 8-template ensemble around the name;
- ``random-words``: WaffleCLIP control, the grounded prompts' descriptors replaced by random words (seed 0, and
  the mean/min/max over seeds 0..S-1 in an extra row);
- ``grounded``: the deterministic knowledge-grounded writer (every passage of the class's KB entry);
- ``chils``: the class plus its KB descendants, each with its grounded prompts, max over members;
- ``posneg``: "X" vs "no X" pairs ("normal ECG" vs "abnormal ECG"), pairwise softmax;
- ``llm``: LLM-written, validator-checked CKEPE prompts read from ``knowledge/prompts/<task>.llm-*.json`` (one
  row per cache file; "not run" when no cache covers the task's classes).

ECGs are read, preprocessed and embedded once; every variant is scored on the same embeddings and evaluated
with the same bootstrap resamples (1000, seed 0), so the paired difference to ``names`` is reported with its
own percentile CI. Prompt texts are embedded once (deduplicated across variants). Nothing here is tuned on
folds 9-10: the templates, seeds, temperature and mappings are fixed in :mod:`medzs.prompts.controls`.

Passages are taken from the YAML knowledge base directly (:func:`medzs.knowledge.kb.passages_from_entry`:
exactly what ``KnowledgeBase.retrieve(entry_id, k=None)`` returns for a current store), so no Chroma store is
built or changed.

    python benchmarks/prompt_ablation.py                       # embedded default model, writes nothing
    python benchmarks/prompt_ablation.py --doc docs/prompt-ablation.md --json runs/prompt-ablation.json
    python benchmarks/prompt_ablation.py --model ecg-resnet18.random   # the untrained control
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import logging
import os
import re
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
TASKS = ("ptbxl-super", "ptbxl-sub", "ptbxl-form", "ptbxl-rhythm")
BEGIN, END = "<!-- prompt-ablation:begin (written by benchmarks/prompt_ablation.py) -->", "<!-- prompt-ablation:end -->"

logger = logging.getLogger("prompt_ablation")


class TextCache:
    """Embed each distinct prompt text once (in chunks) and serve it to every variant."""

    def __init__(self, model, chunk: int = 256):
        self.model, self.chunk, self.vectors = model, chunk, {}

    def __call__(self, texts):
        import torch

        texts = list(texts)
        todo = [t for t in dict.fromkeys(texts) if t not in self.vectors]
        with torch.no_grad():
            for i in range(0, len(todo), self.chunk):
                part = todo[i:i + self.chunk]
                emb = self.model.encode_text(part).detach().cpu().float().numpy()
                self.vectors.update(zip(part, emb))
        return np.stack([self.vectors[t] for t in texts])


def llm_caches(task_name: str, prompts_dir: Path) -> list[Path]:
    """The LLM prompt caches of a task (``<task>.llm-*.json``), sorted."""
    return sorted(p for p in prompts_dir.glob(f"{task_name}.llm-*.json") if not p.name.endswith(".validator.json"))


def llm_prompts(path: Path, task, retrieve) -> tuple[dict | None, str]:
    """Class prompts of a task from an LLM cache file, preferring the entry written from the current passages.

    Returns:
        ``(prompts or None, note)``; None when a class has no entry in the cache.
    """
    from medzs.prompts.cache import PromptCache
    from medzs.prompts.types import ClassPrompts, passages_hash

    records = PromptCache(path).records()
    out, stale, models = {}, 0, set()
    for c in task.classes:
        eid = task.kb_ids[c]
        cands = [r for r in records if r.get("class_code") == c and r.get("entry_id") == eid and r.get("prompts")]
        if not cands:
            return None, f"not run ({path.name} has no prompts for {c})"
        current = passages_hash(retrieve(eid, task.display_names[c]))
        fresh = [r for r in cands if r.get("passages_hash") == current]
        stale += not fresh
        rec = max(fresh or cands, key=lambda r: (str(r.get("model")), str(r.get("created"))))
        models.add(str(rec.get("model")))
        out[c] = ClassPrompts.from_dict(rec)
    note = f"{path.name}; model {', '.join(sorted(models))}" + (f"; {stale} classes stale vs KB" if stale else "")
    return out, note


def paired_delta(y, s, s_ref, n_boot: int, seed: int) -> tuple[float, float]:
    """Percentile CI of macro(s) - macro(s_ref) over the shared record resamples of :func:`medzs.metrics.evaluate`."""
    from medzs.metrics import _bootstrap

    # _bootstrap draws the same record resamples as evaluate() with the same seed and record count.

    defined = np.array([0 < np.nansum(y[:, j]) < np.sum(~np.isnan(y[:, j])) for j in range(y.shape[1])])
    a = _bootstrap(y, s, n_boot, seed)[:, defined]
    b = _bootstrap(y, s_ref, n_boot, seed)[:, defined]
    ok = ~np.all(np.isnan(a), axis=1)
    d = np.nanmean(a[ok], axis=1) - np.nanmean(b[ok], axis=1)
    lo, hi = np.percentile(d, [2.5, 97.5])
    return float(lo), float(hi)


def main() -> None:
    for k, v in (("HF_HUB_OFFLINE", "1"), ("TRANSFORMERS_OFFLINE", "1"), ("ANONYMIZED_TELEMETRY", "False")):
        os.environ.setdefault(k, v)
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="ecg-resnet18.medzs-ptbxl")
    ap.add_argument("--weights", default=None, help="checkpoint overriding the registry's")
    ap.add_argument("--root", default=None, help="PTB-XL root (default: MEDZS_PTBXL_ROOT or the shared mirror)")
    ap.add_argument("--tasks", nargs="*", default=list(TASKS), choices=list(TASKS))
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    ap.add_argument("--random-seeds", type=int, default=5, help="random-word draws for the mean/min/max row")
    ap.add_argument("--prompts-dir", default=str(REPO / "knowledge" / "prompts"), help="where LLM caches live")
    ap.add_argument("--doc", default=None, help="write the table into this Markdown file (between markers)")
    ap.add_argument("--json", default=None, help="also write all rows to this JSON file")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for noisy in ("httpx", "chromadb", "transformers", "urllib3", "medzs.metrics"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

    from medzs import __version__, registry
    from medzs.data.ptbxl import PTBXL, default_root
    from medzs.data.tasks import get_task
    from medzs.knowledge.kb import passages_from_entry
    from medzs.knowledge.loader import load_entries
    from medzs.metrics import evaluate
    from medzs.pipeline import embed_ptbxl
    from medzs.prompts.cache import build_task_prompts
    from medzs.prompts.controls import (
        RandomWordsWriter,
        chils_task_prompts,
        posneg_task_prompts,
        score_prompts,
        variant_task_prompts,
    )
    from medzs.prompts.grounded import GroundedWriter

    t0 = time.time()
    root = args.root or default_root()
    if root is None:
        sys.exit("no PTB-XL root: set MEDZS_PTBXL_ROOT or pass --root")
    ds = PTBXL(root)
    entries = load_entries()
    by_id = {e.id: e for e in entries}

    def retrieve(entry_id, name):
        return passages_from_entry(by_id[entry_id])

    model = registry.create_model(args.model, weights=args.weights)
    model.eval()
    weights = model.config.weights
    sha = registry.sha256_file(weights) if weights else None
    text = TextCache(model)

    # Read and embed every labelled record of folds 9-10 once.
    task_labels = {}
    for name in args.tasks:
        task = get_task(name)
        lab = ds.labels(task.label_set, drop_empty=True, v1_0_3_only=True)
        ids = [i for i in ds.split("test9-10") if i in lab.index]
        task_labels[name] = lab.loc[ids, list(task.classes)]
    all_ids = sorted({i for lab in task_labels.values() for i in lab.index})
    emb_all = embed_ptbxl(model, ds, all_ids)
    row_of = {i: r for r, i in enumerate(all_ids)}
    logger.info("embedded %d records of folds 9-10 with %s in %.0f s", len(all_ids), args.model, time.time() - t0)

    rows = []
    for name in args.tasks:
        task = get_task(name)
        classes = {c: (task.kb_ids[c], task.display_names[c]) for c in task.classes}
        lab = task_labels[name]
        y = lab.to_numpy(dtype=float)
        emb = emb_all[[row_of[i] for i in lab.index]]
        variants = {
            "names": variant_task_prompts(task, "names"),
            "templates": variant_task_prompts(task, "templates"),
            "random-words": build_task_prompts(classes, retrieve, RandomWordsWriter(seed=0)),
            "grounded": build_task_prompts(classes, retrieve, GroundedWriter()),
            "chils": chils_task_prompts(classes, entries, retrieve, GroundedWriter()),
            "posneg": posneg_task_prompts(classes),
        }
        notes = {"random-words": "seed 0",
                 "chils": f"{sum(len(cp.members) for cp in variants['chils'].values())} members for "
                          f"{len(classes)} classes",
                 "posneg": "pairwise softmax, T = 0.07"}
        caches = llm_caches(name, Path(args.prompts_dir))
        for path in caches:
            ps, note = llm_prompts(path, task, retrieve)
            key = f"LLM CKEPE ({path.name.removeprefix(name + '.').removesuffix('.json')})"
            variants[key], notes[key] = ps, note
        if not caches:
            variants["LLM CKEPE"], notes["LLM CKEPE"] = None, f"not run (no {name}.llm-*.json cache in {args.prompts_dir})"
        scored = {}
        for v, ps in variants.items():
            if ps is None:
                rows.append({"task": name, "variant": v, "auroc": None, "note": notes[v]})
                continue
            s = score_prompts(text, emb, [ps[c] for c in task.classes])
            scored[v] = s
            _, macro = evaluate(y, s, list(task.classes), n_boot=args.n_boot, seed=args.seed)
            n_prompts = np.mean([len(ps[c].prompts) for c in task.classes])
            rows.append({"task": name, "variant": v, "auroc": macro["auroc"], "ci_low": macro["ci_low"],
                         "ci_high": macro["ci_high"], "n_conditions": macro["n_conditions"],
                         "n_conditions_total": macro["n_conditions_total"], "n_records": len(lab),
                         "prompts_per_class": float(n_prompts), "note": notes.get(v, "")})
        base = next(r for r in rows if r["task"] == name and r["variant"] == "names")
        for r in rows:
            if r["task"] == name and r["variant"] in scored and r["variant"] != "names":
                r["delta_names"] = r["auroc"] - base["auroc"]
                r["delta_ci"] = paired_delta(y, scored[r["variant"]], scored["names"], args.n_boot, args.seed)
            if r["task"] == name and r["variant"] in scored and r["variant"] not in ("names", "templates",
                                                                                      "random-words", "posneg"):
                # Knowledge vs its WaffleCLIP control: same prompt count and word counts, random words.
                d = r["auroc"] - next(q["auroc"] for q in rows if q["task"] == name and q["variant"] == "random-words")
                lo, hi = paired_delta(y, scored[r["variant"]], scored["random-words"], args.n_boot, args.seed)
                r["delta_random"] = [d, lo, hi]
                r["note"] = "; ".join(x for x in (r["note"], f"Δ vs random-words {d:+.3f} [{lo:+.3f}, {hi:+.3f}]") if x)
        # Random words over several seeds: mean (min-max) of the macro AUROC.
        macros = []
        for sd in range(args.random_seeds):
            ps = build_task_prompts(classes, retrieve, RandomWordsWriter(seed=sd))
            _, m = evaluate(y, score_prompts(text, emb, [ps[c] for c in task.classes]), list(task.classes), n_boot=0)
            macros.append(m["auroc"])
        if macros:
            rows.append({"task": name, "variant": f"random-words, seeds 0-{args.random_seeds - 1}",
                         "auroc": float(np.mean(macros)), "min": float(np.min(macros)), "max": float(np.max(macros)),
                         "n_conditions": base["n_conditions"], "n_conditions_total": base["n_conditions_total"],
                         "n_records": base["n_records"],
                         "note": "mean (min-max) over seeds; no CI"})
        logger.info("%s done (%.0f s)", name, time.time() - t0)

    table = render(rows)
    print(table)
    command = "python " + " ".join([os.path.relpath(sys.argv[0], REPO), *sys.argv[1:]])
    meta = {"command": command, "date": _dt.date.today().isoformat(), "model": args.model, "weights": weights,
            "sha256": sha, "medzs_version": __version__, "n_boot": args.n_boot, "seed": args.seed,
            "n_records_embedded": len(all_ids), "text_prompts_embedded": len(text.vectors),
            "seconds": round(time.time() - t0)}
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"meta": meta, "rows": rows}, indent=1, default=float) + "\n")
    if args.doc:
        write_doc(Path(args.doc), table, meta)


def _f(x) -> str:
    return "" if x is None else f"{x:.3f}"


def render(rows: list[dict]) -> str:
    """The one Markdown table: task, variant, macro AUROC [95% CI], paired delta vs names, n, notes."""
    lines = ["| task | prompts | macro AUROC [95% CI] | Δ vs names [95% CI] | n cond. | n ECGs | prompts/class | notes |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if r.get("auroc") is None:
            cell, delta = "not run", ""
        elif "min" in r:
            cell, delta = f"{_f(r['auroc'])} ({_f(r['min'])}–{_f(r['max'])})", ""
        else:
            cell = f"{_f(r['auroc'])} [{_f(r['ci_low'])}, {_f(r['ci_high'])}]"
            delta = "" if r.get("delta_names") is None else (
                f"{r['delta_names']:+.3f} [{r['delta_ci'][0]:+.3f}, {r['delta_ci'][1]:+.3f}]")
        n = "" if r.get("n_conditions") is None else f"{r['n_conditions']}"
        if r.get("n_conditions_total") and r["n_conditions_total"] != r.get("n_conditions"):
            n += f" of {r['n_conditions_total']}"
        ppc = "" if r.get("prompts_per_class") is None else f"{r['prompts_per_class']:.1f}"
        lines.append(f"| {r['task']} | {r['variant']} | {cell} | {delta} | {n} | {r.get('n_records', '')} | {ppc} | "
                     f"{r.get('note', '')} |")
    return "\n".join(lines)


def write_doc(path: Path, table: str, meta: dict) -> None:
    """Replace the generated block of ``path`` (between the markers), keeping the hand-written text around it."""
    block = "\n".join([
        BEGIN,
        f"Command: `{meta['command']}`  ",
        f"Date: {meta['date']}; medzs {meta['medzs_version']}; model `{meta['model']}`"
        + (f" (weights sha256 `{meta['sha256'][:16]}…`)" if meta["sha256"] else " (no weights: random init)") + ";  ",
        (f"{meta['n_records_embedded']} ECGs of PTB-XL folds 9-10 embedded once; {meta['text_prompts_embedded']} "
         f"distinct prompt texts; bootstrap {meta['n_boot']} resamples (seed {meta['seed']}); {meta['seconds']} s."),
        "",
        table,
        END,
    ])
    old = path.read_text() if path.is_file() else ""
    if BEGIN in old and END in old:
        new = re.sub(re.escape(BEGIN) + r".*?" + re.escape(END), lambda _: block, old, flags=re.DOTALL)
    else:
        new = (old.rstrip() + "\n\n" if old else "# Prompt ablation\n\n") + block + "\n"
    path.write_text(new)


if __name__ == "__main__":
    main()
