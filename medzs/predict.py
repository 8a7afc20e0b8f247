"""``medzs predict``: what does this ECG show? Top conditions with calibrated probabilities and their evidence.

For each record (any format :mod:`medzs.io` reads: WFDB, PhysioNet/CinC, CPSC, DICOM waveform, GE MUSE XML, Philips
XML, HL7 aECG):

1. the engine (:class:`medzs.engine.Engine`) reads it, runs the quality checks (:mod:`medzs.quality`; an error
   finding turns the record into an error answer, a note is shown), preprocesses it to the model's InputSpec and
   embeds it; the class scorer gives one zero-shot score (cosine) per condition of the task;
2. the scores become **calibrated probabilities** by per-condition Platt scaling fitted on PTB-XL training folds
   only (:mod:`medzs.calibration`); without a calibration that fits the weights and prompts, the cosines are shown
   and labelled as uncalibrated scores;
3. the top ``k`` conditions are listed, each with its **evidence**:

   - *knowledge passages*: the condition's class prompts whose embeddings are closest to the record's embedding,
     with the knowledge-base passages each prompt was written from (passage id, text, bibliography ids and
     citations from ``knowledge/sources.yaml``);
   - *measured criteria* (ECG): the record is measured (:mod:`medzs.measure.ecg`) and the condition's structured
     criteria are checked (:meth:`medzs.criteria.CriteriaScorer.explain`): each criterion *held* (soft check
     >= 0.5), *failed* (< 0.5) or was *not measured* (with why), with the measured value, the criterion's passage id
     and its sources. The criteria are evidence shown beside the probability, not part of it.

Patient identifiers never appear: the answer is built from a fixed set of fields (scores, measurements, KB
passages); no reader metadata (``meta``, where names, ids and dates live) is copied into it. Records are named by
the path the user gave.

Example:
    >>> from medzs.predict import predict
    >>> res = predict(["exports/ecg.xml"], task="ptbxl-super", top=3)     # doctest: +SKIP
    >>> res["records"][0]["conditions"][0]["probability"]                    # doctest: +SKIP
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medzs.errors import SpecError

logger = logging.getLogger(__name__)

__all__ = ["DEFAULT_MODEL", "DEFAULT_TASK", "predict", "render_text"]

DEFAULT_MODEL = "ecg-resnet18.medzs-ptbxl"
DEFAULT_TASK = "ptbxl-super"
#: Distinct knowledge passages shown per condition (from its best-matching prompts).
N_PASSAGE_EVIDENCE = 2
#: A soft criterion check at or above this value "held" (the threshold itself gives 0.5, medzs.criteria).
HELD_AT = 0.5

DISCLAIMER = ("Research software: zero-shot scores from a model trained on a few hundred PTB-XL ECGs. "
              "Not a diagnosis; read the ECG.")


def _resolve_inputs(inputs: Sequence[str | os.PathLike[str]]) -> list[tuple[str, str]]:
    """``(absolute path, name shown)`` per record; a WFDB record may be named without its extension."""
    from medzs.io.discover import discover_files

    fixed: list[str] = []
    for item in inputs:
        s = os.fspath(item)
        if not os.path.exists(s) and os.path.isfile(s + ".hea"):
            s += ".hea"
        elif os.path.isfile(s) and Path(s).suffix.lower() in (".dat", ".mat") and Path(s).with_suffix(".hea").is_file():
            s = str(Path(s).with_suffix(".hea"))
        fixed.append(s)
    return discover_files(fixed)


def _passage_index() -> tuple[dict[str, Any], dict[str, dict[str, Any]], dict[str, Any]]:
    """(passage id -> Passage, source id -> bibliography record, entry id -> Entry) of the curated KB."""
    from medzs.knowledge.kb import passages_from_entry
    from medzs.knowledge.loader import load_entries, load_sources

    entries = load_entries()
    passages = {p.id: p for e in entries for p in passages_from_entry(e)}
    return passages, load_sources(), {e.id: e for e in entries}


def _cite(source_ids: Sequence[str], sources: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for sid in source_ids:
        rec = sources.get(sid, {})
        item = {"id": sid, "citation": rec.get("citation")}
        for k in ("doi", "url", "isbn", "arxiv"):
            if rec.get(k):
                item[k] = str(rec[k])
        out.append(item)
    return out


def _fnum(x: Any) -> float | None:
    try:
        f = float(x)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _criteria_evidence(expl: Mapping[str, Any], entry: Any, sources: Mapping[str, Mapping[str, Any]]
                       ) -> dict[str, Any]:
    """The measured-criteria evidence of one condition from :meth:`CriteriaScorer.explain`'s class entry."""
    if not expl.get("scorable", False):
        return {"entry_id": expl.get("entry_id"), "scorable": False, "note": expl.get("note")}
    crit_idx = [i for i, c in enumerate(entry.criteria) if c.rule is not None] if entry is not None else []
    src = list(entry.sources) if entry is not None else []
    rules = []
    for k, r in enumerate(expl.get("rules", [])):
        check = _fnum(r.get("check"))
        status = "not measured" if check is None else "held" if check >= HELD_AT else "failed"
        value = r.get("value")
        if isinstance(value, Mapping):
            value = {lead: round(v, 3) for lead, v in value.items() if _fnum(v) is not None}
        else:
            value = None if _fnum(value) is None else round(float(value), 3)
        thr = r.get("threshold")
        rules.append({
            "criterion": r.get("criterion"),
            "rule": _rule_text(r),
            "measurement": r.get("measurement"), "unit": r.get("unit"), "threshold": thr,
            "value": value, "aggregate": None if _fnum(r.get("aggregate")) is None else round(r["aggregate"], 3),
            "check": None if check is None else round(check, 3),
            "status": status,
            "reason": r.get("reason") or r.get("note"),
            "passage_id": f"{expl['entry_id']}#criterion-{crit_idx[k]}" if k < len(crit_idx) else None,
            "sources": src,
        })
    score = _fnum(expl.get("score"))
    return {"entry_id": expl.get("entry_id"), "scorable": True, "logic": expl.get("logic"),
            "score": None if score is None else round(score, 3), "note": expl.get("note"),
            "n_held": sum(r["status"] == "held" for r in rules),
            "n_failed": sum(r["status"] == "failed" for r in rules),
            "n_unmeasured": sum(r["status"] == "not measured" for r in rules),
            "rules": rules, "citations": _cite(src, sources)}


def _rule_text(r: Mapping[str, Any]) -> str:
    thr = r.get("threshold")
    unit = r.get("unit") or ""
    unit = "" if unit == "1" else f" {unit}"
    if r.get("comparison") == "between" and isinstance(thr, (list, tuple)):
        s = f"{r.get('measurement')} between {thr[0]:g} and {thr[1]:g}{unit}"
    else:
        s = f"{r.get('measurement')} {r.get('comparison')} {thr:g}{unit}" if _fnum(thr) is not None else \
            f"{r.get('measurement')} {r.get('comparison')} {thr}{unit}"
    if r.get("leads"):
        agg = r.get("lead_aggregation") or "any"
        s += f" in {','.join(r['leads'])}"
        if agg in ("any", "count") and (r.get("min_leads") or 1) > 1:
            s += f" (at least {r['min_leads']} leads)"
        elif agg in ("mean", "max", "min"):
            s += f" ({agg} over leads)"
        elif agg == "all":
            s += " (all leads)"
    return s


def _flags(value: Any) -> list[str]:
    if not value:
        return []
    return [f for f in str(value).split(";") if f]


def predict(inputs: Sequence[str | os.PathLike[str]], task: str = DEFAULT_TASK, model: str = DEFAULT_MODEL,
            top: int = 3, weights: str | os.PathLike[str] | None = None, criteria: bool = True,
            calibration: str | os.PathLike[str] | None = None, writer: str = "grounded",
            prompts_cache: str | os.PathLike[str] | None = None, batch_size: int = 16) -> dict[str, Any]:
    """Predict the top conditions of each record, with calibrated probabilities and cited evidence.

    Args:
        inputs: Files, folders, glob patterns or manifest CSVs (:func:`medzs.io.discover.discover_files`); a WFDB
            record may also be named without its extension.
        task: Task whose conditions are ranked (e.g. ``ptbxl-super``, ``ptbxl-sub``, ``ptbxl-rhythm``).
        model: Registry name of an ECG embedding model with a text tower.
        top: Conditions shown per record (>= 1; at most the task's classes).
        weights: Checkpoint overriding the model's weights.
        criteria: Also measure the ECG and check each shown condition's KB criteria.
        calibration: Calibration file (default: next to the weights, :func:`medzs.calibration.calibration_path`).
        writer: Prompt writer of the class prompts (``grounded`` or ``names``).
        prompts_cache: Prompt cache (default ``knowledge/prompts/<task>.<writer>.json``).
        batch_size: Records per encoder batch.

    Returns:
        A JSON-ready dict: ``model``, ``task``, ``calibration`` (method and fit, or why uncalibrated),
        ``disclaimer`` and ``records``: per record ``input``, ``format``, ``status`` (``ok``/``error``),
        ``error``, ``quality_flags`` (list), ``signal`` (sampling rate, usable leads, beats) and ``conditions``
        (ranked: ``code``, ``name``, ``probability`` (or None when uncalibrated), ``score`` (cosine),
        ``evidence`` {``passages``: [...], ``criteria``: {...}}).

    Raises:
        SpecError: unknown task or model, a model without a text tower, ``top < 1``, or no input found.
    """
    import torch

    from medzs import registry
    from medzs.batch import class_scorer
    from medzs.calibration import load_calibration
    from medzs.data.tasks import TASKS, get_task
    from medzs.engine import Engine, Record, read_record, redact_logs  # noqa: F401
    from medzs.prompts.tasks import REPO_ROOT, task_prompts

    if top < 1:
        raise SpecError(f"--top: expected >= 1, got {top}")
    if task not in TASKS:
        raise SpecError(f"--task: unknown task {task!r} (expected one of {sorted(TASKS)})")
    if model not in registry.list_models():
        raise SpecError(f"--model: unknown model {model!r} (see `medzs models`)")
    t = get_task(task)
    if t.modality != "ecg":
        raise SpecError(f"--task: {task} is a {t.modality} task; medzs predict reads ECGs")
    files = _resolve_inputs(inputs)
    if not files:
        raise SpecError("predict: no ECG file found in the inputs")

    m = registry.create_model(model, weights=str(weights) if weights else None)
    if not hasattr(m, "encode_text"):
        raise SpecError(f"--model: {model} has no text tower (zero-shot prediction needs one)")
    classes = list(t.classes)
    cache = Path(prompts_cache) if prompts_cache else REPO_ROOT / "knowledge" / "prompts" / f"{task}.{writer}.json"
    prompts = task_prompts(t, writer, cache)
    side = class_scorer(m, prompts, classes, softmax=False)
    calib, why = load_calibration(m.config, task, prompts, classes, path=calibration)
    crit = None
    if criteria:
        from medzs.criteria import CriteriaScorer

        crit = CriteriaScorer()
    engine = Engine(m, side, criteria=crit, task=t if crit is not None else None, fusion="per-record",
                    embeddings=True, quality=True)

    # every prompt of every class embedded once: which prompts (hence passages) a record matches best
    texts = list(dict.fromkeys(p.text for c in classes for p in prompts[c].prompts))
    with torch.inference_mode():
        emb_t = np.asarray(m.encode_text(texts).float().numpy(), dtype=np.float64)
    emb_t /= np.linalg.norm(emb_t, axis=1, keepdims=True)
    text_row = {s: i for i, s in enumerate(texts)}
    passages, sources, entries = _passage_index()

    records = [Record(i, path, sid) for i, (path, sid) in enumerate(files)]
    out_records: list[dict[str, Any]] = []
    top = min(int(top), len(classes))
    with redact_logs():
        for start in range(0, len(records), batch_size):
            batch = records[start:start + batch_size]
            reads = engine.read_batch(batch)
            rows = engine.score_read(batch, reads)
            for rec, rd, row in zip(batch, reads, rows):
                out_records.append(_answer(rec, rd, row, t, classes, prompts, calib, top, emb_t, text_row,
                                           passages, sources, entries, crit))
    cal_doc: dict[str, Any]
    if calib is not None:
        cal_doc = {"calibrated": True, "method": calib.method, "fitted_on": calib.fitted_on,
                   "file": Path(calib.source).name,
                   "uncalibrated_conditions": [c for c, a in zip(classes, calib.a) if not np.isfinite(a)]}
    else:
        cal_doc = {"calibrated": False, "reason": why}
    return {
        "model": m.config.name, "task": task,
        "conditions_in_task": [{"code": c, "name": t.display_names.get(c, c)} for c in classes],
        "prompts": {"writer": writer, "cache": cache.name},
        "calibration": cal_doc, "criteria": crit is not None, "disclaimer": DISCLAIMER,
        "records": out_records,
    }


def _answer(rec: Any, rd: Mapping[str, Any], row: Mapping[str, Any], t: Any, classes: list[str],
            prompts: Mapping[str, Any], calib: Any, top: int, emb_t: np.ndarray, text_row: Mapping[str, int],
            passages: Mapping[str, Any], sources: Mapping[str, Any], entries: Mapping[str, Any],
            crit: Any) -> dict[str, Any]:
    """One record's answer (no reader metadata is copied: identifiers cannot leak)."""
    ans: dict[str, Any] = {"input": rec.source_id, "format": row.get("source_format"), "status": row["status"],
                           "quality_flags": _flags(row.get("quality_flags")), "conditions": []}
    if row["status"] != "ok":
        msg = str(row.get("error_message") or row.get("error_class") or "error")
        ans["error"] = f"{row.get('error_class')}: {msg}"
        return ans
    meas = rd.get("m")
    if meas is not None:
        info = getattr(meas, "info", {}) or {}
        ans["signal"] = {"fs_hz": _fnum(info.get("fs_in")), "usable_leads": len(info.get("usable_leads") or []),
                         "beats": info.get("n_beats"),
                         "heart_rate_bpm": None if _fnum(meas.values.get("heart_rate")) is None
                         else round(float(meas.values["heart_rate"]), 1)}
    cos = np.asarray(row.get("embedding_scores", row["scores"]), dtype=np.float64)
    prob = calib(cos) if calib is not None else np.full(cos.shape, np.nan)
    # calibrated conditions by probability, then any condition without a calibration by cosine
    order = sorted(range(len(classes)), key=lambda j: (0, -prob[j]) if np.isfinite(prob[j]) else (1, -cos[j]))[:top]
    emb = np.asarray(row["embedding"], dtype=np.float64)
    emb = emb / np.linalg.norm(emb)
    expl = crit.explain(meas, t) if (crit is not None and meas is not None) else None
    for rank, j in enumerate(order, start=1):
        code = classes[j]
        cond: dict[str, Any] = {"rank": rank, "code": code, "name": t.display_names.get(code, code),
                                "probability": None if not np.isfinite(prob[j]) else round(float(prob[j]), 3),
                                "score": round(float(cos[j]), 4)}
        # prompts of this condition, nearest first; evidence = the passages of the best prompts that cite any
        cps = [p for p in prompts[code].prompts if p.passage_ids]
        sims = [(float(emb @ emb_t[text_row[p.text]]), p) for p in cps]
        sims.sort(key=lambda x: -x[0])
        ev: list[dict[str, Any]] = []
        for sim, p in sims:  # the best-matching prompts, until N_PASSAGE_EVIDENCE distinct passages are cited
            if len(ev) >= N_PASSAGE_EVIDENCE:
                break
            for pid in p.passage_ids:
                if any(x["passage_id"] == pid for x in ev):
                    continue
                psg = passages.get(pid)
                ev.append({"passage_id": pid, "prompt": p.text, "similarity": round(sim, 4),
                           "text": psg.text if psg is not None else None,
                           "sources": _cite(list(psg.sources) if psg is not None else [], sources)})
        cond["evidence"] = {"passages": ev}
        if expl is not None:
            ce = expl["classes"].get(code)
            if ce is not None:
                cond["evidence"]["criteria"] = _criteria_evidence(ce, entries.get(ce.get("entry_id")), sources)
        ans["conditions"].append(cond)
    return ans


# ---------------------------------------------------------------------------------------------- text
def _g(x: float) -> str:
    """A measured value at a readable precision: 61 bpm, 158 ms, 0.035 mV, 1.2 mV."""
    a = abs(x)
    if a >= 10:
        return f"{x:.0f}"
    if a >= 1:
        return f"{x:.1f}"
    if x == 0:
        return "0"
    return f"{x:.2f}" if a >= 0.1 else f"{x:.3f}"


def _value_text(rule: Mapping[str, Any]) -> str:
    v = rule.get("value")
    unit = rule.get("unit") or ""
    unit = "" if unit == "1" else f" {unit}"
    if isinstance(v, Mapping):
        if not v:
            return "not measured"
        items = list(v.items())
        shown = ", ".join(f"{lead} {_g(x)}" for lead, x in items[:6]) + (", ..." if len(items) > 6 else "")
        agg = rule.get("aggregate")
        return f"{_g(agg)}{unit} ({shown})" if agg is not None else f"{shown}{unit}"
    return "not measured" if v is None else f"{_g(v)}{unit}"


def render_text(result: Mapping[str, Any], console: Any = None, width: int | None = None) -> str:
    """Readable text of a :func:`predict` result, printed on ``console`` (rich) when given.

    Returns:
        The plain text (no colours) when no console is given, else ``""``.
    """
    from rich.console import Console
    from rich.padding import Padding
    from rich.text import Text

    con = console or Console(width=width or 100, highlight=False, color_system=None, force_terminal=False,
                              force_jupyter=False)
    own = console is None
    if own:
        con.begin_capture()

    def line(*parts: tuple[str, str] | str, indent: int = 0, hang: int = 0) -> None:
        """Print styled parts (plain text, never markup) with ``indent`` and a hanging indent for wrapped lines."""
        t = Text()
        for p in parts:
            if isinstance(p, tuple):
                t.append(p[0], style=p[1])
            else:
                t.append(p)
        if indent or hang:
            con.print(Padding(t, (0, 0, 0, indent), expand=False) if not hang else _hanging(t, indent, hang))
        else:
            con.print(t)

    def _hanging(t: Text, indent: int, hang: int) -> Any:
        from rich.table import Table

        g = Table.grid(padding=0)
        g.add_column(width=indent + hang, no_wrap=True)
        g.add_column(overflow="fold")
        g.add_row(Text(" " * indent) + t[:hang], t[hang:])
        return g

    cal = result["calibration"]
    line(("medzs predict", "bold"), f"  model {result['model']}  task {result['task']}")
    if cal.get("calibrated"):
        line("Probabilities: ", (f"{cal['method']} calibration", "bold"), f" fitted on {cal['fitted_on']}.")
        if cal.get("uncalibrated_conditions"):
            line(("Not calibrated", "yellow"), " (too few training positives, or a score that does not rise with the "
                 "condition; cosine shown, ranked after the others): "
                 + ", ".join(cal["uncalibrated_conditions"]))
    else:
        line(("Uncalibrated", "yellow"), f": scores are cosine similarities, not probabilities ({cal.get('reason')}).")
    line((result["disclaimer"], "dim"))
    for r in result["records"]:
        con.print()
        con.rule(Text(r["input"], style="bold"), align="left")
        sig = r.get("signal") or {}
        bits = [f"format {r.get('format') or '?'}"]
        if sig.get("fs_hz"):
            bits.append(f"{sig['fs_hz']:g} Hz")
        if "usable_leads" in sig:
            bits.append(f"{sig['usable_leads']} usable leads")
        if sig.get("heart_rate_bpm") is not None:
            bits.append(f"measured heart rate {sig['heart_rate_bpm']:.0f} bpm")
        line(", ".join(bits))
        flags = r.get("quality_flags") or []
        line("Signal quality: ", ("no finding", "green") if not flags else (", ".join(flags), "yellow"))
        if r["status"] != "ok":
            line(("Not scored", "bold red"), f": {r.get('error', '')}")
            continue
        for c in r["conditions"]:
            p = c.get("probability")
            val = f"{100 * p:.0f}%" if p is not None else f"score {c['score']:.3f} (uncalibrated)"
            con.print()
            line(f"{c['rank']}. ", (c["name"], "bold"), f" ({c['code']})  ", (val, "bold cyan"),
                 (f"  cosine {c['score']:.3f}", "dim") if p is not None else "", indent=1)
            ev = c.get("evidence", {})
            psg = ev.get("passages") or []
            if psg:
                line("Knowledge passages matched best:", indent=4)
                for e in psg:
                    srcs = ", ".join(s["id"] for s in e["sources"]) or "no source"
                    line("- ", (e["passage_id"], "bold"), f": {e.get('text') or e['prompt']} ",
                         (f"(sources: {srcs}; similarity {e['similarity']:.2f})", "dim"), indent=4, hang=2)
            crit = ev.get("criteria")
            if crit:
                if not crit.get("scorable"):
                    line(f"Measured criteria: none checkable ({crit.get('note')})", indent=4, hang=2)
                else:
                    logic = str(crit["logic"]).replace("_", " ")
                    line(f"Measured criteria ({logic}: {crit['n_held']} held, {crit['n_failed']} failed, "
                         f"{crit['n_unmeasured']} not measured; sources: "
                         f"{', '.join(s['id'] for s in crit['citations'])}):", indent=4, hang=2)
                    for rule in crit["rules"]:
                        mark = {"held": ("held   ", "green"), "failed": ("failed ", "red")}.get(
                            rule["status"], ("n/a    ", "yellow"))
                        why = f" ({rule['reason']})" if rule["status"] == "not measured" and rule.get("reason") else ""
                        line(mark, f"{rule['rule']}: measured {_value_text(rule)}{why} ",
                             (f"[{rule['passage_id']}]", "dim"), indent=4, hang=7)
    refs: dict[str, str] = {}
    for r in result["records"]:
        for c in r.get("conditions", []):
            for e in c.get("evidence", {}).get("passages", []):
                refs.update({s["id"]: s.get("citation") or "" for s in e["sources"]})
            for s in (c.get("evidence", {}).get("criteria") or {}).get("citations", []):
                refs[s["id"]] = s.get("citation") or ""
    if refs:
        con.print()
        line(("Sources", "bold"), " (knowledge/sources.yaml)")
        for sid in sorted(refs):
            line((sid, "bold"), f": {refs[sid]}", indent=1, hang=2)
    if own:
        return "\n".join(ln.rstrip() for ln in con.end_capture().splitlines()) + "\n"
    return ""
