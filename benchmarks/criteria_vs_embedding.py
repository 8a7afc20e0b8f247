"""Knowledge-criteria scorer vs the embedded embedding model vs their hybrid, on the shared PTB-XL records.

Per condition: AUROC with its 95 % percentile-bootstrap CI (:func:`medzs.metrics.evaluate`, 1000 resamples, seed 0)
and the positives count, for

- ``criteria``: ``ecg-criteria.kb`` (:mod:`medzs.criteria`; measurements of the 500 Hz files);
- ``embedding``: the embedded default ``ecg-resnet18.medzs-ptbxl`` with the grounded prompt cache
  (``knowledge/prompts/<task>.grounded.json``), only when its weights file exists in ``medzs/weights/``; otherwise
  the column is skipped with a note. It was trained on folds 1-8 of this mirror, so it is reported on folds 9-10 only;
- ``hybrid``: per-class rank average of the two (:func:`medzs.criteria.fuse_rank_average`, no labels), folds 9-10.

Condition groups: the 12 rhythm and 19 form statements (label sets ``rhythm``/``form``, the MERL/Strodthoff
benchmark) and the statements of PTB-XL's conduction (``CD``) and hypertrophy (``HYP``) diagnostic classes (label
set ``all``). Folds 1-8 and folds 9-10 are reported separately; nothing was tuned on folds 9-10. Conditions without
positives in a fold group have no AUROC; conditions whose KB entry has no structured criteria are "not scorable"
by the criteria scorer (no AUROC, and the hybrid falls back to the embedding ranks).

Also printed: the done-when macro AUROC over the measurement-defined rhythm codes (SR, AFIB, STACH, SBRAD, SARRH),
the NaN rate of every measurement over all 500 records, the measurement runtime, and the validation of the
measurements against PTB-XL's labels and ``heart_axis`` column (docs/criteria.md).

Usage::

    python benchmarks/criteria_vs_embedding.py                  # prints Markdown; cache in runs/criteria_vs_embedding/
    python benchmarks/criteria_vs_embedding.py --out docs/criteria_table.md --remeasure
    python benchmarks/criteria_vs_embedding.py --embedding-model ecg-resnet18.random   # exercise the embedding path
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

RHYTHM_DEFINED = ("SR", "AFIB", "STACH", "SBRAD", "SARRH")
FOLDS = {"1-8": tuple(range(1, 9)), "9-10": (9, 10)}


def _measure_hash() -> str:
    src = (REPO / "medzs" / "measure" / "ecg.py").read_bytes()
    return hashlib.sha256(src).hexdigest()[:16]


def measurements(ds, cache: Path, remeasure: bool) -> tuple[dict, dict]:
    """Measurements of every record (500 Hz), cached as JSON keyed by the measurement module's hash."""
    from medzs.measure.ecg import Measurements, measure_ecg

    key = _measure_hash()
    if cache.is_file() and not remeasure:
        doc = json.loads(cache.read_text())
        if doc.get("measure_hash") == key and len(doc["records"]) == len(ds.ecg_ids):
            return {int(k): Measurements.from_dict(v) for k, v in doc["records"].items()}, doc["timing"]
    out, secs = {}, []
    t0 = time.perf_counter()
    for eid in ds.ecg_ids:
        t = time.perf_counter()
        out[eid] = measure_ecg(ds.load(eid, fs=500))
        secs.append(time.perf_counter() - t)
    timing = {"total_s": round(time.perf_counter() - t0, 1), "per_record_median_s": round(float(np.median(secs)), 3),
              "per_record_p95_s": round(float(np.percentile(secs, 95)), 3),
              "per_record_max_s": round(float(np.max(secs)), 3), "n": len(secs)}
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps({"measure_hash": key, "timing": timing,
                                 "records": {str(k): v.to_dict() for k, v in out.items()}}))
    return out, timing


def groups(ds) -> dict[str, tuple[str, list[str], dict[str, str]]]:
    """Group -> (label set, class codes, class -> KB id)."""
    from medzs.data.ptbxl import FORM_CODES, RHYTHM_CODES
    from medzs.data.tasks import statement_kb_id

    st = ds.statements
    cd = [c for c in st.index if st.loc[c, "diagnostic"] and st.loc[c, "diagnostic_class"] == "CD"]
    hyp = [c for c in st.index if st.loc[c, "diagnostic"] and st.loc[c, "diagnostic_class"] == "HYP"]
    out = {}
    for name, label_set, codes in (("rhythm", "rhythm", list(RHYTHM_CODES)), ("form", "form", list(FORM_CODES)),
                                   ("conduction (CD)", "all", cd), ("hypertrophy (HYP)", "all", hyp)):
        out[name] = (label_set, codes, {c: statement_kb_id(c) for c in codes})
    return out


def embedding_scores(ds, ids, model_name: str, work: Path) -> tuple[dict[str, np.ndarray] | None, str]:
    """``{class: (N,) scores}`` of an embedding model over ``ids`` for all 71 statements, or (None, why)."""
    from medzs import registry

    cfg = registry.get_config(model_name)
    if cfg.weights and not Path(cfg.weights).is_file():
        return None, f"{model_name}: weights file {Path(cfg.weights).relative_to(REPO)} not found - column skipped"
    import torch

    from medzs.data.tasks import get_task
    from medzs.pipeline import embed_ptbxl, task_prompts
    from medzs.scoring import class_embeddings, similarity

    model = registry.create_model(model_name)
    emb = embed_ptbxl(model, ds, ids)
    out: dict[str, np.ndarray] = {}
    for task_name in ("ptbxl-rhythm", "ptbxl-form", "ptbxl-all"):
        task = get_task(task_name)
        cache = REPO / "knowledge" / "prompts" / f"{task_name}.grounded.json"
        if not cache.is_file():  # written from the KB into the benchmark's folder, not into knowledge/
            cache = work / "prompts" / f"{task_name}.grounded.json"
        prompts = task_prompts(task, "grounded", cache)
        with torch.no_grad():
            ce = class_embeddings(lambda t: model.encode_text(list(t)), [prompts[c] for c in task.classes])
        s = similarity(emb, ce)
        for j, c in enumerate(task.classes):
            out.setdefault(c, s[:, j])  # rhythm/form prompts first, the 'all' task fills CD/HYP statements
    return out, f"{model_name} (grounded prompts)"


def _cell(row) -> str:
    if row is None or not np.isfinite(row["auroc"]):
        return "-"
    return f"{row['auroc']:.3f} [{row['ci_low']:.2f}-{row['ci_high']:.2f}]"


def _mcell(macros: dict, key: str) -> str:
    m = macros.get(key)
    if m is None or not np.isfinite(m["auroc"]):
        return "-"
    return f"**{m['auroc']:.3f}** ({m['n_conditions']} codes)"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", default=None, help="PTB-XL root (default: the shared mirror)")
    ap.add_argument("--cache", type=Path, default=REPO / "runs" / "criteria_vs_embedding" / "measurements.json")
    ap.add_argument("--remeasure", action="store_true", help="ignore the measurement cache")
    ap.add_argument("--embedding-model", default="ecg-resnet18.medzs-ptbxl")
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--out", type=Path, default=None, help="also write the Markdown here")
    ap.add_argument("--checks", action="store_true",
                    help="also compare neurokit2's QRS boundaries and 100 Hz vs 500 Hz input (folds 1-8, ~1 min)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    from medzs.criteria import CriteriaScorer, fuse_rank_average
    from medzs.data.ptbxl import PTBXL
    from medzs.measure.ecg import PER_LEAD
    from medzs.metrics import evaluate

    ds = PTBXL(args.root)
    meas, timing = measurements(ds, args.cache, args.remeasure)
    scorer = CriteriaScorer()
    lines: list[str] = []
    say = lines.append
    say(f"Records: {len(ds)} (PTB-XL mirror {ds.root.name}), measured at 500 Hz; "
        f"measurement time per record: median {timing['per_record_median_s']} s, "
        f"95th percentile {timing['per_record_p95_s']} s, max {timing['per_record_max_s']} s "
        f"(total {timing['total_s']} s, 1 process).")
    test_ids = [i for i in ds.ecg_ids if ds.folds[i] in FOLDS["9-10"]]
    emb, emb_note = embedding_scores(ds, test_ids, args.embedding_model, args.cache.parent)
    say(f"Embedding column: {emb_note}.")
    say("")
    done = {}
    for gname, (label_set, codes, kb) in groups(ds).items():
        labels = ds.labels(label_set, drop_empty=True, v1_0_3_only=True)
        say(f"### {gname}")
        say("")
        say("| code | n_pos 1-8 | criteria 1-8 | n_pos 9-10 | criteria 9-10 | embedding 9-10 | hybrid 9-10 |")
        say("|---|---|---|---|---|---|---|")
        rows: dict[str, dict[str, dict]] = {c: {} for c in codes}
        macros = {}
        for fname, folds in FOLDS.items():
            ids = [i for i in labels.index if ds.folds[i] in folds]
            y = labels.loc[ids, codes].to_numpy(dtype=float).copy()
            res = scorer.score_measurements([meas[i] for i in ids], kb)
            y_c = y.copy()
            y_c[:, ~res.scorable] = np.nan
            tab, mac = evaluate(y_c, res.filled(0.5), codes, n_boot=args.n_boot, seed=0)
            macros[f"criteria {fname}"] = mac
            for r in tab.to_dict("records"):
                rows[r["condition"]][f"criteria {fname}"] = r
                rows[r["condition"]][f"n {fname}"] = f"{int(y[:, codes.index(r['condition'])].sum())}"
            if fname == "9-10" and emb is not None:
                e = np.stack([emb[c][[test_ids.index(i) for i in ids]] for c in codes], axis=1)
                for col, s in (("embedding", e), ("hybrid", fuse_rank_average(e, res.scores))):
                    tab, mac = evaluate(y, s, codes, n_boot=args.n_boot, seed=0)
                    macros[f"{col} 9-10"] = mac
                    for r in tab.to_dict("records"):
                        rows[r["condition"]][f"{col} 9-10"] = r
            if gname == "rhythm":
                sel = [codes.index(c) for c in RHYTHM_DEFINED]
                _, mac = evaluate(y[:, sel], res.scores[:, sel], list(RHYTHM_DEFINED), n_boot=args.n_boot, seed=0)
                done[fname] = mac
        ns = scorer.not_scorable(kb)
        for c in codes:
            r = rows[c]
            crit = [_cell(r.get(f"criteria {f}")) if c not in ns else "not scorable" for f in FOLDS]
            say(f"| {c} | {r['n 1-8']} | {crit[0]} | {r['n 9-10']} | {crit[1]} | {_cell(r.get('embedding 9-10'))} | "
                f"{_cell(r.get('hybrid 9-10'))} |")

        say(f"| macro | | {_mcell(macros, 'criteria 1-8')} | | {_mcell(macros, 'criteria 9-10')} | "
            f"{_mcell(macros, 'embedding 9-10')} | {_mcell(macros, 'hybrid 9-10')} |")
        if emb is not None:  # the same codes in all three columns (scorable by the criteria, positives in 9-10)
            common = [c for c in codes if all(np.isfinite(rows[c].get(k, {"auroc": np.nan})["auroc"])
                                              for k in ("criteria 9-10", "embedding 9-10", "hybrid 9-10"))]
            if common:
                mean = {k: np.mean([rows[c][k]["auroc"] for c in common])
                        for k in ("criteria 9-10", "embedding 9-10", "hybrid 9-10")}
                say(f"| macro, same {len(common)} codes | | | | {mean['criteria 9-10']:.3f} | "
                    f"{mean['embedding 9-10']:.3f} | {mean['hybrid 9-10']:.3f} |")
        say("")
    # done-when: measurement-defined rhythm codes, all 500 records too
    labels = ds.labels("rhythm", drop_empty=True, v1_0_3_only=True)
    ids = list(labels.index)
    res = scorer.score_measurements([meas[i] for i in ids], {c: f"ecg.scp.{c}" for c in RHYTHM_DEFINED})
    _, done["all"] = evaluate(labels.loc[ids, list(RHYTHM_DEFINED)].to_numpy(float), res.scores,
                              list(RHYTHM_DEFINED), n_boot=args.n_boot, seed=0)
    say(f"### Done-when: criteria macro AUROC over the measurement-defined rhythm codes {', '.join(RHYTHM_DEFINED)}")
    say("")
    say("| folds | macro AUROC [95% CI] | codes with positives |")
    say("|---|---|---|")
    for k in ("1-8", "9-10", "all"):
        m = done[k]
        say(f"| {k} | {m['auroc']:.3f} [{m['ci_low']:.3f}-{m['ci_high']:.3f}] | {m['n_conditions']} |")
    say("")
    # NaN rates
    say("### NaN rate per measurement (all records; per-lead measurements over all 12 leads)")
    say("")
    say("| measurement | unit | NaN rate | most frequent reason |")
    say("|---|---|---|---|")
    from collections import Counter

    from medzs.knowledge.schema import MEASUREMENTS

    for name, unit in MEASUREMENTS.items():
        n = bad = 0
        why: Counter = Counter()
        for m in meas.values():
            v = m.values[name]
            items = list(v.items()) if name in PER_LEAD else [(None, v)]
            for lead, x in items:
                n += 1
                if math.isnan(x):
                    bad += 1
                    why[m.reason(name, lead)] += 1
        top = why.most_common(1)[0][0] if why else ""
        say(f"| {name} | {unit} | {bad / n:.3f} | {top} |")
    say("")
    say(validation(ds, meas))
    if args.checks:
        say("")
        say(method_checks(ds))
    text = "\n".join(lines)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    return 0


def validation(ds, meas) -> str:
    """Measurements by PTB-XL label / heart_axis group (all 500 records): median [10th-90th percentile]."""
    db = ds.database

    def has(e: int, c: str) -> bool:
        return c in db.loc[e, "scp_codes"]

    def only(e: int, allowed: set[str]) -> bool:
        return set(db.loc[e, "scp_codes"]) <= allowed

    norm = {"NORM", "SR"}
    extra = db["extra_beats"].fillna("").astype(str).str.strip() != ""
    checks = [
        ("heart_rate", None, "SR (label)", lambda e: has(e, "SR")),
        ("heart_rate", None, "SBRAD", lambda e: has(e, "SBRAD")),
        ("heart_rate", None, "STACH", lambda e: has(e, "STACH")),
        ("rr_cv", None, "SR", lambda e: has(e, "SR")),
        ("rr_cv", None, "SARRH", lambda e: has(e, "SARRH")),
        ("rr_cv", None, "AFIB", lambda e: has(e, "AFIB")),
        ("p_wave_fraction", None, "SR", lambda e: has(e, "SR")),
        ("p_wave_fraction", None, "AFIB", lambda e: has(e, "AFIB")),
        ("p_wave_fraction", None, "AFLT", lambda e: has(e, "AFLT")),
        ("p_wave_fraction", None, "PACE", lambda e: has(e, "PACE")),
        ("pr_interval", None, "NORM+SR only", lambda e: only(e, norm)),
        ("pr_interval", None, "1AVB", lambda e: has(e, "1AVB")),
        ("qrs_duration", None, "NORM+SR only", lambda e: only(e, norm)),
        ("qrs_duration", None, "IRBBB", lambda e: has(e, "IRBBB")),
        ("qrs_duration", None, "IVCD", lambda e: has(e, "IVCD")),
        ("qrs_duration", None, "CRBBB", lambda e: has(e, "CRBBB")),
        ("qrs_duration", None, "CLBBB", lambda e: has(e, "CLBBB")),
        ("r_peak_time", "V6", "NORM+SR only", lambda e: only(e, norm)),
        ("r_peak_time", "V6", "CLBBB", lambda e: has(e, "CLBBB")),
        ("qrs_axis", None, "heart_axis MID", lambda e: db.loc[e, "heart_axis"] == "MID"),
        ("qrs_axis", None, "heart_axis LAD", lambda e: db.loc[e, "heart_axis"] == "LAD"),
        ("qrs_axis", None, "heart_axis ALAD", lambda e: db.loc[e, "heart_axis"] == "ALAD"),
        ("qrs_axis", None, "heart_axis RAD", lambda e: db.loc[e, "heart_axis"] == "RAD"),
        ("qrs_axis", None, "LAFB", lambda e: has(e, "LAFB")),
        ("sokolow_lyon", None, "NORM+SR only", lambda e: only(e, norm)),
        ("sokolow_lyon", None, "LVH", lambda e: has(e, "LVH")),
        ("sokolow_lyon", None, "VCLVH", lambda e: has(e, "VCLVH")),
        ("qtc_bazett", None, "NORM+SR only", lambda e: only(e, norm)),
        ("qtc_bazett", None, "LNGQT", lambda e: has(e, "LNGQT")),
        ("p_axis", None, "NORM+SR only", lambda e: only(e, norm)),
        ("premature_beats", None, "no extra_beats noted", lambda e: not extra[e]),
        ("premature_beats", None, "extra_beats noted", lambda e: bool(extra[e])),
        ("premature_beats", None, "PVC", lambda e: has(e, "PVC")),
    ]
    out = ["### Validation: measurements by PTB-XL label (all records)", "",
           "| measurement | group | n | median | 10th-90th percentile | NaN |", "|---|---|---|---|---|---|"]
    for name, lead, label, f in checks:
        ids = [e for e in ds.ecg_ids if f(e)]
        v = np.array([meas[e].get(name, lead) for e in ids], dtype=float)
        ok = v[np.isfinite(v)]
        shown = f"{name}[{lead}]" if lead else name
        if ok.size == 0:
            out.append(f"| {shown} | {label} | {len(ids)} | - | - | {len(ids)} |")
            continue
        lo, med, hi = np.percentile(ok, [10, 50, 90])
        out.append(f"| {shown} | {label} | {len(ids)} | {med:.3g} | {lo:.3g} - {hi:.3g} | {v.size - ok.size} |")
    return "\n".join(out)


def method_checks(ds, n_norm: int = 40) -> str:
    """Folds 1-8 only: (a) QRS duration from neurokit2's own delineators vs medzs, on NORM+SR and complete bundle
    branch block records; (b) measurements from the 100 Hz files minus those from the 500 Hz files."""
    import warnings

    import neurokit2 as nk

    from medzs.measure.ecg import measure_ecg

    db = ds.database
    train = ds.split("train")
    norm = [e for e in train if set(db.loc[e, "scp_codes"]) <= {"NORM", "SR"}][:n_norm]
    bbb = [e for e in train if {"CLBBB", "CRBBB"} & set(db.loc[e, "scp_codes"])]
    out = ["### Method checks (folds 1-8)", "",
           ("QRS duration (ms), median over records; neurokit2 columns: per lead, median over beats of "
            "R_Offsets - R_Onsets, then median over the 12 leads (R peaks from lead II)."), "",
           "| records | n | medzs (median beat, spatial velocity) | nk dwt | nk cwt | nk prominence |",
           "|---|---|---|---|---|---|"]
    for label, ids in (("NORM+SR only", norm), ("CLBBB or CRBBB", bbb)):
        cols: dict[str, list[float]] = {"medzs": [], "dwt": [], "cwt": [], "prominence": []}
        for e in ids:
            s = ds.load(e)
            cols["medzs"].append(measure_ecg(s).get("qrs_duration"))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                clean = np.array([nk.ecg_clean(v, sampling_rate=500) for v in s["signal"].astype(float)])
                r = nk.ecg_peaks(clean[1], sampling_rate=500)[1]["ECG_R_Peaks"]
                for method in ("dwt", "cwt", "prominence"):
                    per_lead = []
                    for lead in clean:
                        try:
                            _, d = nk.ecg_delineate(lead, r, sampling_rate=500, method=method)
                        except Exception:  # noqa: BLE001, S112 - a failed lead is just left out
                            continue
                        on = np.asarray(d.get("ECG_R_Onsets", []), float)
                        off = np.asarray(d.get("ECG_R_Offsets", []), float)
                        if on.size == off.size and on.size:
                            per_lead.append(np.nanmedian(off - on) * 2.0)
                    cols[method].append(float(np.nanmedian(per_lead)) if per_lead else float("nan"))
        cells = " | ".join(f"{np.nanmedian(v):.0f}" for v in cols.values())
        out.append(f"| {label} | {len(ids)} | {cells} |")
    out += ["", "100 Hz files minus 500 Hz files (same NORM+SR records): median [10th-90th percentile].", "",
            "| measurement | median difference | 10th-90th percentile |", "|---|---|---|"]
    diffs: dict[str, list[float]] = {k: [] for k in ("heart_rate", "qrs_duration", "pr_interval", "qt_interval",
                                                      "qrs_axis", "r_amplitude[V5]", "p_wave_fraction")}
    for e in norm:
        hi, lo = measure_ecg(ds.load(e, fs=500)), measure_ecg(ds.load(e, fs=100))
        for k, vals in diffs.items():
            name, lead = (k[:-4], k[-3:-1]) if k.endswith("]") else (k, None)
            vals.append(lo.get(name, lead) - hi.get(name, lead))
    for k, v in diffs.items():
        a = np.asarray(v, float)
        lo_, hi_ = np.nanpercentile(a, [10, 90])
        out.append(f"| {k} | {np.nanmedian(a):+.3g} | {lo_:+.3g} to {hi_:+.3g} |")
    return "\n".join(out)


if __name__ == "__main__":
    raise SystemExit(main())
