"""Run reports: ``scores.csv``, ``metrics.json`` and a self-contained ``report.html``.

The HTML report has no external assets: ROC curves are drawn with matplotlib (Agg backend) and embedded as
base64 PNG data URIs, styles are inline. Reports name records by their record id only (never a patient
identifier) and conditions by their code; provenance keys that look like patient identifiers are refused.
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

__all__ = ["DATASET_CITATIONS", "format_table", "rich_table", "roc_figure_png", "write_report"]

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
                   ncols: int = 4, dpi: int = 80) -> bytes | None:
    """ROC curves, one small panel per condition with a defined AUROC, as PNG bytes (matplotlib Agg).

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
        label = f"{name}  AUROC {_fmt(auc)}" if auc is not None else name
        ax.set_title(f"{label}\n(n_pos={n_pos})", fontsize=8)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.tick_params(labelsize=7)
        ax.set_xlabel("1 - specificity", fontsize=7)
        ax.set_ylabel("sensitivity", fontsize=7)
    for ax in axes.ravel()[len(panels):]:
        ax.set_axis_off()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em;color:#222;max-width:1200px}
table{border-collapse:collapse;margin:1em 0}th,td{border:1px solid #ccc;padding:3px 8px;font-size:14px}
th{background:#f2f2f2;text-align:left}td.num{text-align:right}.na{color:#999}
.macro{font-size:1.3em;font-weight:600}.cite{font-size:13px;color:#444}code{font-size:13px}
"""


def _html_report(table: pd.DataFrame | None, macro: Mapping[str, Any], provenance: Mapping[str, Any],
                 png: bytes | None, citations: list[str], n_records: int) -> str:
    e = html.escape
    title = f"medzs report — {provenance.get('task', '')}".strip(" —")
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">', f"<title>{e(title)}</title>",
             f"<style>{_CSS}</style></head><body>", f"<h1>{e(title)}</h1>",
             f"<p>{n_records} records scored.</p>"]
    if macro:
        used = macro.get("n_conditions")
        total = macro.get("n_conditions_total")
        over = ""
        if used is not None:
            over = f" over {used}" + (f" of {total}" if total is not None else "") + " conditions"
        parts.append(f'<p class="macro">Macro AUROC: {e(_auc_cell(macro))}{e(over)}</p>')
        if macro.get("excluded"):
            not_scored = set(macro.get("not_scored") or ())
            one_value = [str(c) for c in macro["excluded"] if c not in not_scored]
            if one_value:
                parts.append(f"<p>Without a defined AUROC (one label value): {e(', '.join(one_value))}</p>")
            if not_scored:
                parts.append("<p>Without a defined AUROC (not scored by this model/scorer): "
                             f"{e(', '.join(str(c) for c in macro['excluded'] if c in not_scored))}</p>")
    if table is not None and len(table):
        parts.append("<h2>AUROC per condition</h2><table><tr><th>condition</th><th>AUROC [95% CI]</th>"
                     "<th>n_pos</th><th>n_neg</th></tr>")
        for rec in table.to_dict("records"):
            cell = _auc_cell(rec)
            cls = ' class="na"' if cell == "n/a" else ""
            parts.append(f"<tr><td>{e(str(rec['condition']))}</td><td{cls}>{e(cell)}</td>"
                         f"<td class=\"num\">{int(rec['n_pos'])}</td><td class=\"num\">{int(rec['n_neg'])}</td></tr>")
        parts.append("</table>")
    if png is not None:
        b64 = base64.b64encode(png).decode("ascii")
        parts.append('<h2>ROC curves</h2><img alt="ROC curves per condition" '
                     f'src="data:image/png;base64,{b64}">')
    parts.append("<h2>Provenance</h2><table>")
    for k in sorted(provenance):
        v = provenance[k]
        text = v if isinstance(v, str) else json.dumps(_jsonable(v), sort_keys=True)
        parts.append(f"<tr><th>{e(str(k))}</th><td><code>{e(text)}</code></td></tr>")
    parts.append("</table>")
    if citations:
        parts.append("<h2>Dataset citation</h2>")
        parts.extend(f'<p class="cite">{e(c)}</p>' for c in citations)
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

    png = roc_figure_png(y, s, classes, table) if y is not None else None
    paths["html"].write_text(_html_report(table, _jsonable(m), _jsonable(prov), png, citations, len(ids)),
                             encoding="utf-8")
    logger.info("report written to %s (%d records, %d classes)", out, len(ids), len(classes))
    return paths
