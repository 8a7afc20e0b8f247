"""Run reports: ``scores.csv``, ``metrics.json`` and a self-contained ``report.html``.

The HTML report has no external assets: ROC curves are drawn with matplotlib (Agg backend) and embedded as
base64 PNG data URIs, styles are inline, collapsible sections are plain ``<details>``. It is written for a reader
who did not run the job: a header (task, model, dataset, split, record count, code version, date), a notice for a
partial local mirror, the macro AUROC both ways, conditions by code *and* name with their flags, the records that
could not be scored, and the provenance as readable tables (raw JSON last, collapsed). Reports name records by
their record id only (never a patient identifier); provenance keys that look like patient identifiers are refused.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import io
import json
import logging
import math
import shlex
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

logger = logging.getLogger(__name__)

__all__ = ["DATASET_CITATIONS", "format_table", "git_commit", "rich_table", "roc_figure_png", "write_report"]

#: Citations of the datasets medzs evaluates on (used when ``provenance`` gives none).
DATASET_CITATIONS: dict[str, list[str]] = {
    "ptbxl": [
        "Wagner P, Strodthoff N, Bousseljot RD, Kreiseler D, Lunze FI, Samek W, Schaeffter T. PTB-XL, a large "
        "publicly available electrocardiography dataset. Scientific Data. 2020;7:154. doi:10.1038/s41597-020-0495-6",
        "Goldberger AL, Amaral LAN, Glass L, et al. PhysioBank, PhysioToolkit, and PhysioNet: components of a new "
        "research resource for complex physiologic signals. Circulation. 2000;101(23):e215-e220. "
        "doi:10.1161/01.CIR.101.23.e215",
    ],
}

#: Provenance keys refused because they would carry patient identifiers.
_FORBIDDEN_KEYS = {"identifiers", "patient", "patient_id", "patient_name", "patient_ids", "dob", "birth_date",
                   "date_of_birth", "meta"}


def _check_provenance(obj: Any, where: str = "provenance") -> None:
    if isinstance(obj, Mapping):
        for k, v in obj.items():
            if str(k).lower() in _FORBIDDEN_KEYS:
                raise ValueError(f"{where}: key {k!r} is not allowed in a report (patient identifiers never are)")
            _check_provenance(v, f"{where}.{k}")
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            _check_provenance(v, f"{where}[{i}]")


def _jsonable(x: Any) -> Any:
    """Make values JSON-safe: NaN/inf -> None, numpy scalars -> Python, paths -> str."""
    if isinstance(x, Mapping):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple, set)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return _jsonable(x.tolist())
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        f = float(x)
        return f if math.isfinite(f) else None
    if isinstance(x, (str, int, bool)) or x is None:
        return x
    return str(x)


def _dataset_citation(prov: Mapping[str, Any]) -> Any:
    """``provenance["dataset_citation"]``, ``provenance["dataset"]["citation"]``, or a known dataset's citation."""
    if prov.get("dataset_citation") is not None:
        return prov["dataset_citation"]
    ds = prov.get("dataset")
    if isinstance(ds, Mapping):
        if ds.get("citation") is not None:
            return ds["citation"]
        ds = ds.get("name")
    key = "".join(ch for ch in str(ds or "").lower() if ch.isalnum())
    return DATASET_CITATIONS.get(key)


def _macro_dict(macro: Any) -> dict[str, Any]:
    if macro is None:
        return {}
    if isinstance(macro, Mapping):
        return dict(macro)
    if isinstance(macro, tuple):
        return {"auroc": float(macro[0]), "n_conditions": int(macro[1])}
    return {"auroc": float(macro)}


def _fmt(x: Any, nd: int = 3) -> str:
    try:
        f = float(x)
    except (TypeError, ValueError):
        return "—"
    return "—" if not math.isfinite(f) else f"{f:.{nd}f}"


def _auc_cell(row: Mapping[str, Any]) -> str:
    auc = _fmt(row.get("auroc"))
    if auc == "—":
        return "n/a"
    lo, hi = _fmt(row.get("ci_low")), _fmt(row.get("ci_high"))
    return auc if lo == "—" else f"{auc} [{lo}, {hi}]"


def format_table(table: pd.DataFrame, macro: Any = None, title: str | None = None,
                 names: Mapping[str, str] | None = None) -> str:
    """Plain-text table for the CLI: condition, AUROC [CI], n_pos, n_neg, then the macro AUROC.

    Args:
        table: Per-condition table (:func:`medzs.metrics.auroc_per_condition`).
        macro: Macro AUROC: a float, ``(value, n_conditions)`` or the dict from :func:`medzs.metrics.evaluate`.
        title: Optional first line.
        names: Class code -> spelled-out condition name (shown beside the code).

    Returns:
        The table as a string (no trailing newline).
    """
    rows = [("condition", "AUROC [95% CI]", "n_pos", "n_neg", "flag")]
    for rec in table.to_dict("records"):
        code = str(rec["condition"])
        label = f"{code} ({names[code]})" if names and names.get(code) and names[code] != code else code
        rows.append((label, _auc_cell(rec), str(rec["n_pos"]), str(rec["n_neg"]),
                     str(rec.get("flag") or "")))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = ["  ".join(c.ljust(w) if i in (0, 1, 4) else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
             for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    if title:
        lines.insert(0, str(title))
    m = _macro_dict(macro)
    if m:
        used = m.get("n_conditions")
        used_s = f" over {used} condition(s)" if used is not None else ""
        lines.append("")
        mp = m.get("min_positives")
        rule = f" with >= {mp} positives" if mp and mp > 1 else ""
        lines.append(f"macro AUROC {_auc_cell(m)}{used_s}{rule}")
        if m.get("auroc_all") is not None and m.get("n_conditions_all") != used:
            all_cell = _auc_cell({"auroc": m["auroc_all"], "ci_low": m.get("ci_low_all"),
                                  "ci_high": m.get("ci_high_all")})
            lines.append(f"macro AUROC {all_cell} over all {m.get('n_conditions_all')} condition(s) with an AUROC")
    return "\n".join(line.rstrip() for line in lines)


def rich_table(table: pd.DataFrame, macro: Any = None, title: str | None = None) -> Any:
    """The same table as a :class:`rich.table.Table` (macro AUROC in the caption)."""
    from rich.table import Table

    m = _macro_dict(macro)
    caption = f"macro AUROC {_auc_cell(m)}" if m else None
    t = Table(title=title or "AUROC per condition", caption=caption)
    for name, justify in (("condition", "left"), ("AUROC [95% CI]", "left"), ("n_pos", "right"),
                          ("n_neg", "right")):
        t.add_column(name, justify=justify)
    for rec in table.to_dict("records"):
        t.add_row(str(rec["condition"]), _auc_cell(rec), str(rec["n_pos"]), str(rec["n_neg"]))
    return t


def roc_figure_png(y_true: np.ndarray, scores: np.ndarray, classes: Sequence[str], table: pd.DataFrame | None = None,
                   ncols: int = 4, dpi: int = 100, names: Mapping[str, str] | None = None) -> bytes | None:
    """ROC curves, one small panel per condition with a defined AUROC, as PNG bytes (matplotlib Agg).

    ``names`` (class code -> condition name) titles each panel with the spelled-out name.

    Returns:
        PNG bytes, or None when no condition has both label values.
    """
    from matplotlib.figure import Figure  # a bare Figure renders with Agg; the pyplot backend is untouched
    from sklearn.metrics import roc_curve

    aucs = {} if table is None else dict(zip(table["condition"].astype(str), table["auroc"]))
    panels = []
    for j, name in enumerate(classes):
        m = ~np.isnan(y_true[:, j]) & np.isfinite(scores[:, j])  # unscored conditions get no panel
        yj = y_true[m, j]
        if yj.size and 0 < yj.sum() < yj.size:
            fpr, tpr, _ = roc_curve(yj, scores[m, j])
            panels.append((str(name), fpr, tpr, int(yj.sum()), aucs.get(str(name))))
    if not panels:
        return None
    ncols = max(1, min(ncols, len(panels)))
    nrows = math.ceil(len(panels) / ncols)
    fig = Figure(figsize=(2.6 * ncols, 2.6 * nrows), dpi=dpi)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for ax, (name, fpr, tpr, n_pos, auc) in zip(axes.ravel(), panels):
        ax.plot([0, 1], [0, 1], color="0.7", lw=0.8, ls="--")
        ax.plot(fpr, tpr, lw=1.5)
        full = names.get(name) if names else None
        full = f"{name}: {full[:28]}" if full and full != name else name
        label = f"{full}\nAUROC {_fmt(auc)}, {n_pos} positives" if auc is not None else f"{full}\n{n_pos} positives"
        ax.set_title(label, fontsize=9)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.tick_params(labelsize=8)
        ax.set_xlabel("1 - specificity", fontsize=8)
        ax.set_ylabel("sensitivity", fontsize=8)
    for ax in axes.ravel()[len(panels):]:
        ax.set_axis_off()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;color:#222;
max-width:1150px;padding:0 1.5em;line-height:1.45}
h1{font-size:1.6em;margin-bottom:.2em}h2{font-size:1.25em;margin-top:1.6em;border-bottom:1px solid #ddd;
padding-bottom:.2em}h3{font-size:1.05em}
table{border-collapse:collapse;margin:.8em 0}th,td{border:1px solid #ccc;padding:4px 9px;font-size:14px;
vertical-align:top}th{background:#f2f2f2;text-align:left}td.num{text-align:right;font-variant-numeric:tabular-nums}
.na{color:#888}.macro{font-size:1.25em;font-weight:600;margin:.3em 0}.sub{color:#444;margin:.2em 0}
table.meta th{width:11em;background:#f7f7f7}table.meta{min-width:60%}
.notice{border-left:5px solid #d48a00;background:#fff6e0;padding:.6em 1em;margin:.8em 0}
.errors{border-left-color:#b3261e;background:#fdecea}
.flag{display:inline-block;border-radius:3px;padding:0 6px;font-size:12px;font-weight:600;margin-right:4px}
.flag.few{background:#fff1c2;color:#6b4e00}.flag.below{background:#fbd5d2;color:#8a1c12}
tr.flagged td{background:#fffbf0}
details{margin:.5em 0}summary{cursor:pointer;font-weight:600}details details{margin-left:1.2em}
details details summary{font-weight:normal}
.cite{font-size:13px;color:#444}code{font-size:13px}td.pid code{white-space:nowrap}
pre.raw{white-space:pre-wrap;word-break:break-word;font-size:12px;background:#f7f7f7;padding:1em}
.legend{font-size:13px;color:#444}img{max-width:100%}
"""

_FLAG_HELP = {
    "few positives": "fewer test positives than the minimum: shown, left out of the headline macro AUROC",
    "below chance": "AUROC below 0.5: the scores rank this condition worse than chance",
}


def git_commit(path: str | Path | None = None) -> str | None:
    """Short git commit of the source checkout holding medzs (``+dirty`` when tracked files changed), or None
    outside a git checkout or without git."""
    import subprocess

    where = Path(path) if path is not None else Path(__file__).resolve().parent
    try:
        head = subprocess.run(["git", "-C", str(where), "rev-parse", "--short=12", "HEAD"], capture_output=True,
                              text=True, timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(where), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return (head + ("+dirty" if dirty else "")) if head else None


#: Display names of dataset ids in the report header.
DATASET_NAMES = {"ptbxl": "PTB-XL", "cinc2021": "PhysioNet/CinC Challenge 2021", "cpsc2018": "CPSC 2018",
                 "folder": "folder of files"}


#: What the splits of a dataset are (shown beside the split name).
SPLIT_NOTES = {
    "ptbxl": {"train": "strat_fold 1-8 (training folds)", "val": "strat_fold 9", "test": "strat_fold 10",
              "test9-10": "strat_fold 9-10: held out, never used to train or tune",
              "all": "every record"},
}


def _when(value: Any) -> str | None:
    """``2026-12-06T20:54:23+0000`` -> ``2026-12-06 20:54 UTC`` (other offsets kept); unparsable values as is."""
    if not value:
        return None
    s = str(value)
    for fmt in ("%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M:%S.%f%z"):
        try:
            t = _dt.datetime.strptime(s, fmt)
        except ValueError:
            continue
        off = t.utcoffset()
        zone = "UTC" if off is not None and off.total_seconds() == 0 else t.strftime("UTC%z")
        return f"{t:%Y-%m-%d %H:%M} {zone}"
    return s


def _command(value: Any) -> str | None:
    """The command as a user would type it (``python -m medzs`` records ``__main__.py``)."""
    if not value:
        return None
    s = str(value)
    for prefix in ("__main__.py ", "cli.py "):
        if s.startswith(prefix):
            return "medzs " + s[len(prefix):]
    return s


def _is_ecg(prov: Mapping[str, Any]) -> bool:
    """True when the run's model reads ECGs (from ``model.input_spec.modality``, a criteria scorer, or the task)."""
    model = prov.get("model")
    if isinstance(model, Mapping):
        spec = model.get("input_spec")
        if isinstance(spec, Mapping) and spec.get("modality"):
            return spec["modality"] == "ecg"
        if model.get("kind") == "criteria":
            return True
    return str(prov.get("task") or "").startswith(("ptbxl", "cinc", "cpsc"))


def _class_names(prov: Mapping[str, Any], classes: Sequence[str]) -> dict[str, str]:
    """Class code -> spelled-out name: ``provenance["class_names"]``, else the named task's display names."""
    names = prov.get("class_names")
    if isinstance(names, Mapping) and names:
        return {str(k): str(v) for k, v in names.items()}
    task = prov.get("task")
    if isinstance(task, str):
        try:
            from medzs.data.tasks import get_task

            return dict(get_task(task).display_names)
        except Exception:  # noqa: BLE001 - a custom task name: codes only
            return {}
    return {}


def _label(code: str, names: Mapping[str, str]) -> str:
    name = names.get(code)
    return f"{code} — {name}" if name and name != code else code


def _kv_table(rows: Sequence[tuple[str, Any]], e: Any) -> str:
    out = ['<table class="meta">']
    for k, v in rows:
        if v is None or v == "" or v == {} or v == []:
            continue
        out.append(f"<tr><th>{e(str(k))}</th><td>{v if isinstance(v, _Raw) else e(str(v))}</td></tr>")
    out.append("</table>")
    return "\n".join(out)


class _Raw(str):
    """Already-escaped HTML for :func:`_kv_table`."""


def _spec_text(spec: Any) -> str:
    if not isinstance(spec, Mapping):
        return str(spec or "")
    bits = []
    leads = spec.get("leads")
    if leads:
        bits.append(f"{len(leads)} leads ({', '.join(map(str, leads))})")
    if spec.get("fs"):
        bits.append(f"{_num(spec['fs'])} Hz")
    if spec.get("duration_s"):
        bits.append(f"{_num(spec['duration_s'])} s")
    if spec.get("units"):
        bits.append(str(spec["units"]))
    bp = spec.get("bandpass_hz")
    if bp:
        bits.append(f"band-pass {_num(bp[0])}–{_num(bp[1])} Hz")
    if spec.get("normalization"):
        bits.append(f"{spec['normalization']} per lead")
    if spec.get("size"):
        bits.append(f"size {spec['size']}")
    return "; ".join(bits) or json.dumps(spec, sort_keys=True)


def _num(x: Any) -> str:
    try:
        f = float(x)
    except (TypeError, ValueError):
        return str(x)
    return f"{f:g}"


def _flag_badges(flag: Any, e: Any) -> str:
    out = []
    for f in [s.strip() for s in str(flag or "").split(",") if s.strip()]:
        cls = "few" if f.startswith("few") else "below" if f.startswith("below") else ""
        out.append(f'<span class="flag {cls}" title="{e(_FLAG_HELP.get(f, f))}">{e(f)}</span>')
    return "".join(out)


def _html_report(table: pd.DataFrame | None, macro: Mapping[str, Any], provenance: Mapping[str, Any],
                 png: bytes | None, citations: list[str], n_records: int, classes: Sequence[str] = (),
                 thumbnails: Mapping[str, Sequence[Mapping[str, Any]]] | None = None) -> str:
    e = html.escape
    prov = provenance
    names = _class_names(prov, classes)
    task = str(prov.get("task") or "")
    title = f"medzs zero-shot report — {task}" if task else "medzs zero-shot report"
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             '<meta name="viewport" content="width=device-width, initial-scale=1">', f"<title>{e(title)}</title>",
             f"<style>{_CSS}</style></head><body>", f"<h1>{e(title)}</h1>",
             ('<p class="sub">Zero-shot classification: each condition is scored by how similar the recording is to '
              "text describing the condition (prompts written from a cited knowledge base), without training on "
              "this dataset's labels. The labels are used only to measure how well the scores rank the records.</p>")]

    # ---- header: what was run, on what, with which code, when
    ds = prov.get("dataset")
    dsd = ds if isinstance(ds, Mapping) else {"name": ds} if ds else {}
    model = prov.get("model")
    md = model if isinstance(model, Mapping) else {"name": model} if model else {}
    n_total = dsd.get("n_records")
    n_err = dsd.get("n_errors")
    what = "ECG records" if _is_ecg(prov) else "records"
    recs = f"{n_records} {what} scored"
    if n_total is not None and int(n_total) != n_records:
        recs = f"{n_records} of {n_total} {what} scored"
    if n_err:
        recs += f" ({n_err} could not be scored, listed below)"
    sha = md.get("sha256")
    model_txt = str(md.get("name") or "")
    if sha:
        model_txt += f" (weights sha256 {str(sha)[:12]}…)"
    code = prov.get("code_version") if isinstance(prov.get("code_version"), Mapping) else {}
    version = f"medzs {code.get('medzs') or prov.get('medzs_version') or '?'}"
    if code.get("git_commit"):
        version += f", git {code['git_commit']}"
    split = dsd.get("split")
    ds_name = str(dsd.get("name") or "")
    ds_txt = DATASET_NAMES.get(ds_name, ds_name)
    if dsd.get("root"):
        ds_txt += f" ({Path(str(dsd['root'])).name})"
    head_rows = [
        ("Task", f"{task} ({len(classes)} conditions)" if task else None),
        ("Model", model_txt),
        ("Dataset", ds_txt),
        ("Split", f"{split} ({SPLIT_NOTES[ds_name][str(split)]})"
                  if str(split) in SPLIT_NOTES.get(ds_name, {}) else split),
        ("Records", recs),
        ("Code version", version),
        ("Date", _when(prov.get("created") or prov.get("time"))),
        ("Pipeline", prov.get("pipeline_file") or prov.get("pipeline")),
        ("Command", _command(prov.get("command") or prov.get("command_line"))),
    ]
    parts.append(_kv_table(head_rows, e))
    if dsd.get("partial_mirror"):
        root = Path(str(dsd["root"])).name if dsd.get("root") else "the dataset folder"
        parts.append('<div class="notice"><b>Partial local mirror.</b> '
                     f"<code>{e(root)}</code> holds only part of {e(DATASET_NAMES.get(ds_name, ds_name) or 'the dataset')}"
                     f" ({e(str(n_total if n_total is not None else n_records))} records in this split). "
                     "The numbers describe these records only and are not comparable with published results on the "
                     "full release.</div>")
    if n_err:
        parts.append(f'<div class="notice errors"><b>{int(n_err)} record(s) could not be scored</b> and are left '
                     'out of the AUROC (see <a href="#errors">Records not scored</a>).</div>')

    # ---- results
    if macro:
        mp = macro.get("min_positives")
        used, total = macro.get("n_conditions"), macro.get("n_conditions_total")
        over = ""
        if used is not None:
            over = f" over {used}" + (f" of {total}" if total is not None else "") + " conditions"
        rule = f" with at least {mp} positives" if mp and int(mp) > 1 else ""
        parts.append("<h2>Results</h2>")
        parts.append(f'<p class="macro">Macro AUROC: {e(_auc_cell(macro))}{e(over)}{e(rule)}</p>')
        if macro.get("auroc_all") is not None and macro.get("n_conditions_all") not in (None, used):
            all_cell = _auc_cell({"auroc": macro["auroc_all"], "ci_low": macro.get("ci_low_all"),
                                  "ci_high": macro.get("ci_high_all")})
            parts.append(f'<p class="sub">Macro AUROC over all {e(str(macro.get("n_conditions_all")))} conditions '
                         f"with a defined AUROC (including those with few positives): {e(all_cell)}</p>")
        few = [str(c) for c in macro.get("few_positives") or []]
        if few and mp:
            parts.append(f'<p class="sub">Fewer than {int(mp)} positives (flagged, not in the headline macro): '
                         f"{e(', '.join(_label(c, names) for c in few))}</p>")
        if macro.get("excluded"):
            not_scored = set(macro.get("not_scored") or ())
            one_value = [str(c) for c in macro["excluded"] if c not in not_scored and c not in few]
            if one_value:
                parts.append("<p class=\"sub\">Without a defined AUROC (one label value): "
                             f"{e(', '.join(_label(c, names) for c in one_value))}</p>")
            if not_scored:
                parts.append("<p class=\"sub\">Without a defined AUROC (not scored by this model/scorer): "
                             f"{e(', '.join(_label(str(c), names) for c in macro['excluded'] if c in not_scored))}</p>")
    if table is not None and len(table):
        parts.append("<h2>AUROC per condition</h2>"
                     '<p class="legend">AUROC: the probability that a record with the condition scores higher than '
                     "one without it (0.5 = chance, 1 = perfect ranking); computed from the model's scores and the "
                     "dataset's labels.</p><table><tr><th>code</th><th>condition</th>"
                     "<th>AUROC [95% CI]</th><th>positives</th><th>negatives</th><th>flag</th></tr>")
        for rec in table.to_dict("records"):
            cell = _auc_cell(rec)
            cls = ' class="na"' if cell == "n/a" else ""
            c = str(rec["condition"])
            flag = rec.get("flag") or ""
            tr = ' class="flagged"' if flag else ""
            parts.append(f"<tr{tr}><td><code>{e(c)}</code></td><td>{e(names.get(c, ''))}</td><td{cls}>{e(cell)}</td>"
                         f"<td class=\"num\">{int(rec['n_pos'])}</td><td class=\"num\">{int(rec['n_neg'])}</td>"
                         f"<td>{_flag_badges(flag, e)}</td></tr>")
        parts.append("</table>")
        n_boot = (prov.get("metrics") or {}).get("n_boot") if isinstance(prov.get("metrics"), Mapping) else None
        parts.append('<p class="legend">95 % CI: percentile bootstrap over records'
                     + (f" ({e(str(n_boot))} resamples)" if n_boot else "") + ". "
                     + " ".join(f"<b>{e(k)}</b>: {e(v)}." for k, v in _FLAG_HELP.items()) + "</p>")
    if png is not None:
        b64 = base64.b64encode(png).decode("ascii")
        parts.append('<h2>ROC curves</h2><img alt="ROC curves per condition" '
                     f'src="data:image/png;base64,{b64}">')
    if thumbnails:
        parts.append("<h2>Highest-scored images per finding</h2><p class=\"legend\">The records each finding scored "
                     "highest, with their label (1 = finding present, 0 = absent): a quick look at what the model "
                     "ranks first. Shown because the pipeline asked for it (report.thumbnails); a report of "
                     "patient images is patient data.</p>")
        for code, items in thumbnails.items():
            cells = "".join(
                f'<figure style="display:inline-block;margin:4px;text-align:center"><img alt="{e(str(t["id"]))}" '
                f'src="data:image/png;base64,{t["png"]}"><figcaption style="font-size:11px">{e(str(t["id"]))}'
                f'<br>score {float(t["score"]):.3f}, label {e(str(t["label"]))}</figcaption></figure>'
                for t in items)
            parts.append(f"<h3>{e(code)}: {e(names.get(code, code))}</h3><div>{cells}</div>")

    # ---- errors
    errors = prov.get("errors") or []
    if errors:
        parts.append(f'<h2 id="errors">Records not scored ({len(errors)})</h2>')
        parts.append(f"<details><summary>Show the {len(errors)} record(s) and why</summary>"
                     "<table><tr><th>record id</th><th>error</th><th>message</th></tr>")
        for err in errors:
            err = err if isinstance(err, Mapping) else {"error_message": str(err)}
            parts.append(f"<tr><td><code>{e(str(err.get('record_id', '')))}</code></td>"
                         f"<td>{e(str(err.get('error_class') or ''))}</td>"
                         f"<td>{e(str(err.get('error_message') or ''))}</td></tr>")
        parts.append("</table></details>")
    qf = prov.get("quality_flags")
    if isinstance(qf, Mapping) and qf.get("n_flagged"):
        parts.append(f"<p>{int(qf['n_flagged'])} scored record(s) carry a signal-quality note "
                     "(<code>quality_flags</code>, e.g. a flat lead or mains noise).</p>")

    # ---- provenance, readable
    parts.append("<h2>Provenance</h2>")
    if md:
        spec = md.get("input_spec")
        parts.append("<h3>Model</h3>")
        parts.append(_kv_table([("Name", md.get("name")), ("Weights", md.get("weights")), ("sha256", sha),
                                ("Input", _spec_text(spec) if spec else None), ("Precision", md.get("precision")),
                                ("Paper", md.get("paper")), ("Licence", md.get("licence")),
                                ("Kind", md.get("kind"))], e))
    pr = prov.get("prompts")
    if isinstance(pr, Mapping) and isinstance(pr.get("classes"), Mapping):
        pids = pr.get("passage_ids") or {}
        parts.append("<h3>Class prompts</h3>")
        parts.append(f"<p>Writer <b>{e(str(pr.get('writer') or '?'))}</b>"
                     + (f", cache <code>{e(str(pr['cache']))}</code>" if pr.get("cache") else "")
                     + ". Each prompt cites the knowledge-base passages it was written from "
                       "(<code>knowledge/</code>, sources in <code>knowledge/sources.yaml</code>).</p>")
        parts.append("<details><summary>Prompts per condition</summary>")
        per_prompt = pr.get("prompt_passage_ids") if isinstance(pr.get("prompt_passage_ids"), Mapping) else {}
        order = [c for c in classes if c in pr["classes"]] + [c for c in pr["classes"] if c not in classes]
        for c in order:
            texts = pr["classes"][c]
            cited = pids.get(c) or []
            pp = per_prompt.get(c) if isinstance(per_prompt.get(c), list) else None
            if pp is not None and len(pp) != len(texts):
                pp = None
            parts.append(f"<details><summary>{e(_label(str(c), names))}: {len(texts)} prompts, "
                         f"{len(cited)} cited passages</summary>")
            parts.append("<table><tr><th>#</th><th>prompt</th>" + ("<th>cited passages</th>" if pp else "") + "</tr>")
            for i, t in enumerate(texts, 1):
                cell = ""
                if pp:
                    ids = pp[i - 1] or []
                    cell = ('<td class="pid">' + ("<br>".join(f"<code>{e(str(x))}</code>" for x in ids)
                                                  or '<span class="na">class name only</span>') + "</td>")
                parts.append(f"<tr><td class=\"num\">{i}</td><td>{e(str(t))}</td>{cell}</tr>")
            parts.append("</table>")
            if cited and not pp:
                parts.append("<p>Cited passages: " + ", ".join(f"<code>{e(str(p))}</code>" for p in cited) + "</p>")
            parts.append("</details>")
        parts.append("</details>")
    rows: list[tuple[str, Any]] = []
    sc = prov.get("scoring")
    if isinstance(sc, Mapping):
        rows.append(("Scoring", ", ".join(f"{k} {v}" for k, v in sc.items())))
    hy = prov.get("hybrid")
    if isinstance(hy, Mapping):
        rows.append(("Hybrid", ", ".join(f"{k} {v}" for k, v in hy.items() if k != "not_scorable")))
    ns = prov.get("not_scorable")
    if isinstance(ns, Mapping) and ns:
        rows.append(("Not scorable", _Raw("<br>".join(f"{e(_label(str(k), names))}: {e(str(v))}"
                                                      for k, v in ns.items()))))
    mt = prov.get("metrics")
    if isinstance(mt, Mapping):
        rows.append(("Metrics", ", ".join(f"{k} {v}" for k, v in mt.items())))
    rows.append(("Seconds", prov.get("seconds")))
    if rows:
        parts.append("<h3>Settings</h3>")
        parts.append(_kv_table(rows, e))
    if citations:
        parts.append("<h2>Dataset citation</h2>")
        parts.extend(f'<p class="cite">{e(c)}</p>' for c in citations)
    parts.append("<h2>Raw provenance</h2><details><summary>Provenance as JSON (also in metrics.json)</summary>"
                 f'<pre class="raw">{e(json.dumps(prov, indent=1, sort_keys=True, ensure_ascii=False))}</pre>'
                 "</details>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def write_report(
    out_dir: str | Path,
    *,
    record_ids: Sequence[Any],
    classes: Sequence[str],
    scores: Any,
    y_true: Any = None,
    table: pd.DataFrame | None = None,
    macro: Any = None,
    provenance: Mapping[str, Any] | None = None,
    thumbnails: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
) -> dict[str, Path]:
    """Write ``scores.csv``, ``metrics.json`` and a self-contained ``report.html`` into ``out_dir``.

    Args:
        out_dir: Output folder (created).
        record_ids: ``N`` record ids (e.g. PTB-XL ``ecg_id``s or file stems) — never patient identifiers.
        classes: ``C`` class codes (score columns, in order).
        scores: ``(N, C)`` scores.
        y_true: ``(N, C)`` labels 1/0/NaN, or None (no label columns, no ROC curves).
        table: Per-condition table from :func:`medzs.metrics.auroc_per_condition`, or None.
        macro: Macro AUROC: a float, ``(value, n_conditions)`` or the dict from :func:`medzs.metrics.evaluate`.
        thumbnails: Optional ``{class: [{"id", "png" (base64 PNG), "score", "label"}]}`` shown per finding (imaging
            pipelines that ask for them with ``report.thumbnails``; images of patients are patient data).
        provenance: Run provenance, e.g. ``model``, ``model_sha256``, ``task``, ``dataset``,
            ``dataset_citation``, ``prompts_cache_hash``, ``writer``, ``seed``. ``medzs_version``, ``time``
            (UTC, ISO 8601; unless ``created`` is given) and ``command_line`` (unless ``command`` is given) are
            filled in when absent. The citation block uses
            ``dataset_citation``, else ``dataset["citation"]``, else the entry of :data:`DATASET_CITATIONS` for
            ``dataset`` (or ``dataset["name"]``, e.g. ``"PTB-XL"``).

    Returns:
        ``{"scores": Path, "metrics": Path, "html": Path}``.

    Raises:
        ValueError: shapes disagree, or ``provenance`` has a key that would carry patient identifiers
            (``identifiers``, ``patient_id``, ``meta`` ...).
    """
    from medzs import __version__

    out = Path(out_dir)
    ids = [str(r) for r in record_ids]
    classes = [str(c) for c in classes]
    s = np.asarray(scores.detach().cpu().numpy() if hasattr(scores, "detach") else scores, dtype=np.float64)
    if s.shape != (len(ids), len(classes)):
        raise ValueError(f"scores: expected shape ({len(ids)}, {len(classes)}) (records, classes), got {s.shape}")
    y = None
    if y_true is not None:
        y = np.asarray(y_true[classes] if isinstance(y_true, pd.DataFrame) else y_true, dtype=np.float64)
        if y.shape != s.shape:
            raise ValueError(f"y_true: expected shape {s.shape}, got {y.shape}")
    prov = dict(provenance or {})
    _check_provenance(prov)
    prov.setdefault("medzs_version", __version__)
    if "code_version" not in prov:
        prov["code_version"] = {"medzs": prov.get("medzs_version") or __version__, "git_commit": git_commit()}
    if "time" not in prov and "created" not in prov:
        prov["time"] = _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()
    if "command_line" not in prov and "command" not in prov:
        prov["command_line"] = shlex.join(sys.argv)
    citation = _dataset_citation(prov)
    if citation is not None and "dataset_citation" not in prov and not isinstance(prov.get("dataset"), Mapping):
        prov["dataset_citation"] = citation
    citations = [] if citation is None else [citation] if isinstance(citation, str) else [str(c) for c in citation]
    m = _macro_dict(macro)

    out.mkdir(parents=True, exist_ok=True)
    paths = {"scores": out / "scores.csv", "metrics": out / "metrics.json", "html": out / "report.html"}

    df = pd.DataFrame(s, columns=classes)
    df.insert(0, "record_id", ids)
    if y is not None:
        for j, c in enumerate(classes):
            df[f"y_{c}"] = y[:, j]
    df.to_csv(paths["scores"], index=False, float_format="%.6g")

    conditions = [] if table is None else table.to_dict("records")
    metrics = {
        "format": "medzs-metrics",
        "version": 1,
        "n_records": len(ids),
        "classes": classes,
        "conditions": conditions,
        "macro": m,
        "provenance": prov,
    }
    paths["metrics"].write_text(
        json.dumps(_jsonable(metrics), indent=2, sort_keys=True, allow_nan=False, ensure_ascii=False) + "\n",
        encoding="utf-8",
    )

    png = roc_figure_png(y, s, classes, table, names=_class_names(prov, classes)) if y is not None else None
    paths["html"].write_text(_html_report(table, _jsonable(m), _jsonable(prov), png, citations, len(ids),
                                          classes, thumbnails=thumbnails),
                             encoding="utf-8")
    logger.info("report written to %s (%d records, %d classes)", out, len(ids), len(classes))
    return paths
