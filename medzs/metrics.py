"""Per-condition AUROC with bootstrap confidence intervals, and the macro AUROC.

Point estimates use :func:`sklearn.metrics.roc_auc_score`. Confidence intervals are percentile bootstrap
intervals (Efron & Tibshirani, *An Introduction to the Bootstrap*, 1993, doi:10.1007/978-1-4899-4541-9):
records are resampled with replacement (the same resamples for every condition, so the macro CI is
consistent with the per-condition ones); a resample in which a condition has only one label value is
skipped for that condition. The bootstrap AUROC is computed for all resamples at once as a weighted
Mann–Whitney statistic (ties count 1/2), equal to ``roc_auc_score`` on the resampled records.

Labels are 1 (present), 0 (absent) or NaN (unknown: the record is left out for that condition only).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

logger = logging.getLogger(__name__)

__all__ = ["COLUMNS", "auc_table", "auroc_per_condition", "evaluate", "macro_auroc", "macro_ci"]

#: Columns of the per-condition table.
COLUMNS = ["condition", "auroc", "ci_low", "ci_high", "n_pos", "n_neg", "n"]

_MAX_CELLS = 4_000_000  # bootstrap weights held at once (resamples x records)


def _as_matrix(x: Any, classes: Sequence[str] | None, what: str) -> np.ndarray:
    if isinstance(x, pd.DataFrame) and classes is not None and set(map(str, classes)) <= set(map(str, x.columns)):
        x = x[list(classes)]
    if hasattr(x, "detach") and hasattr(x, "cpu"):
        x = x.detach().cpu().numpy()
    a = np.asarray(x, dtype=np.float64)
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2:
        raise ValueError(f"{what}: expected a 2-D (records, conditions) array, got shape {a.shape}")
    return a


def _prepare(y_true: Any, scores: Any, classes: Sequence[str] | None) -> tuple[np.ndarray, np.ndarray, list[str]]:
    y = _as_matrix(y_true, classes, "y_true")
    s = _as_matrix(scores, classes, "scores")
    if y.shape != s.shape:
        raise ValueError(f"y_true and scores: expected the same shape, got {y.shape} and {s.shape}")
    if classes is None:
        classes = [str(c) for c in y_true.columns] if isinstance(y_true, pd.DataFrame) else [
            str(i) for i in range(y.shape[1])]
    classes = [str(c) for c in classes]
    if len(classes) != y.shape[1]:
        raise ValueError(f"classes: expected {y.shape[1]} names (one per column), got {len(classes)}")
    finite = ~np.isnan(y)
    if np.any((y[finite] != 0) & (y[finite] != 1)):
        raise ValueError("y_true: expected values 1, 0 or NaN")
    # a condition the scorer does not score at all (every score NaN) is reported, not an error
    unscored = np.all(np.isnan(s), axis=0) if s.shape[0] else np.zeros(s.shape[1], bool)
    bad = finite & ~np.isfinite(s) & ~unscored[None, :]
    if np.any(bad):
        cols = sorted({classes[j] for j in np.nonzero(bad)[1]})
        raise ValueError(f"scores: expected finite scores for labelled records, got NaN/inf for {cols}")
    return y, s, classes


def _weighted_auc(y: np.ndarray, s: np.ndarray, w: np.ndarray) -> np.ndarray:
    """AUROC of scores ``s`` (n,) for labels ``y`` (n,) in {0, 1} under weights ``w`` (B, n).

    Returns ``(B,)``; NaN where a weighting leaves only one class.
    """
    order = np.argsort(s, kind="mergesort")
    ss, ys, ws = s[order], y[order], w[:, order]
    starts = np.flatnonzero(np.r_[True, ss[1:] != ss[:-1]])
    gp = np.add.reduceat(ws * ys, starts, axis=1)
    gn = np.add.reduceat(ws * (1.0 - ys), starts, axis=1)
    below = np.cumsum(gn, axis=1) - gn
    u = np.sum(gp * (below + 0.5 * gn), axis=1)
    p, n = gp.sum(axis=1), gn.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = u / (p * n)
    auc[(p == 0) | (n == 0)] = np.nan
    return auc


def _bootstrap(y: np.ndarray, s: np.ndarray, n_boot: int, seed: int) -> np.ndarray:
    """``(n_boot, C)`` bootstrap AUROCs (NaN for skipped resamples) over shared record resamples."""
    n_rec, n_cls = y.shape
    out = np.full((n_boot, n_cls), np.nan)
    if n_boot <= 0 or n_rec == 0:
        return out
    rng = np.random.default_rng(seed)
    chunk = max(1, _MAX_CELLS // n_rec)
    masks = [~np.isnan(y[:, j]) for j in range(n_cls)]
    for b0 in range(0, n_boot, chunk):
        b = min(chunk, n_boot - b0)
        idx = rng.integers(0, n_rec, size=(b, n_rec))
        counts = np.bincount((idx + n_rec * np.arange(b)[:, None]).ravel(), minlength=b * n_rec)
        counts = counts.reshape(b, n_rec).astype(np.float64)
        for j, m in enumerate(masks):
            yj = y[m, j]
            if yj.size == 0 or yj.min() == yj.max() or np.isnan(s[m, j]).all():
                continue
            out[b0:b0 + b, j] = _weighted_auc(yj, s[m, j], counts[:, m])
    return out


def _percentile_ci(values: np.ndarray, ci: float) -> tuple[float, float]:
    v = values[~np.isnan(values)]
    if v.size == 0:
        return float("nan"), float("nan")
    alpha = (1.0 - ci) / 2.0
    lo, hi = np.percentile(v, [100.0 * alpha, 100.0 * (1.0 - alpha)])
    return float(lo), float(hi)


def _table(y: np.ndarray, s: np.ndarray, classes: list[str], boot: np.ndarray, ci: float) -> pd.DataFrame:
    from sklearn.metrics import roc_auc_score

    rows = []
    for j, name in enumerate(classes):
        m = ~np.isnan(y[:, j])
        yj, sj = y[m, j], s[m, j]
        n_pos, n = int(yj.sum()), int(m.sum())
        auc, lo, hi = float("nan"), float("nan"), float("nan")
        if n and np.isnan(sj).all():
            logger.info("condition %s: not scored (all scores NaN); AUROC undefined (NaN)", name)
        elif n_pos == 0 or n_pos == n:
            logger.info("condition %s: only one label value among %d labelled records (%d positive); "
                        "AUROC undefined (NaN)", name, n, n_pos)
        else:
            auc = float(roc_auc_score(yj, sj))
            col = boot[:, j]
            lo, hi = _percentile_ci(col, ci)
            skipped = int(np.isnan(col).sum())
            if boot.shape[0] and skipped:
                logger.info("condition %s: %d of %d bootstrap resamples had one label value and were skipped",
                            name, skipped, boot.shape[0])
        rows.append({"condition": name, "auroc": auc, "ci_low": lo, "ci_high": hi,
                     "n_pos": n_pos, "n_neg": n - n_pos, "n": n})
    table = pd.DataFrame(rows, columns=COLUMNS)
    return table.astype({"n_pos": "int64", "n_neg": "int64", "n": "int64"})


def _check(n_boot: int, ci: float) -> None:
    if n_boot < 0:
        raise ValueError(f"n_boot: expected >= 0, got {n_boot}")
    if not 0.0 < ci < 1.0:
        raise ValueError(f"ci: expected a level in (0, 1), got {ci}")


def auroc_per_condition(y_true: Any, scores: Any, classes: Sequence[str] | None = None, n_boot: int = 1000,
                        ci: float = 0.95, seed: int = 0) -> pd.DataFrame:
    """AUROC per condition with a percentile-bootstrap confidence interval.

    Args:
        y_true: ``(N, C)`` labels, 1/0/NaN (array or DataFrame; with ``classes`` the columns are selected).
        scores: ``(N, C)`` scores (higher = more likely present).
        classes: ``C`` condition names (default: DataFrame columns, else ``"0"``, ``"1"``, ...).
        n_boot: Bootstrap resamples (0: no CI).
        ci: Confidence level, e.g. 0.95.
        seed: Seed of the record resampling.

    Returns:
        DataFrame with columns ``condition, auroc, ci_low, ci_high, n_pos, n_neg, n`` (``n`` = labelled
        records). ``auroc`` (and the CI) is NaN, with a logged note, for a condition with one label value.

    Raises:
        ValueError: shapes differ, labels other than 1/0/NaN, non-finite scores of labelled records,
            bad ``n_boot``/``ci``.
    """
    _check(n_boot, ci)
    y, s, names = _prepare(y_true, scores, classes)
    table = _table(y, s, names, _bootstrap(y, s, n_boot, seed), ci)
    table.attrs.update(n_boot=int(n_boot), ci=float(ci), seed=int(seed))
    return table


def auc_table(y_true: Any, scores: Any, classes: Sequence[str] | None = None, n_boot: int = 1000,
              seed: int = 0, ci: float = 0.95) -> pd.DataFrame:
    """Alias of :func:`auroc_per_condition` (the name used in ``docs/architecture.md``)."""
    return auroc_per_condition(y_true, scores, classes, n_boot=n_boot, ci=ci, seed=seed)


def macro_auroc(table: pd.DataFrame, *, return_count: bool = False) -> float | tuple[float, int]:
    """Mean AUROC over the conditions with a defined AUROC.

    Args:
        table: A table from :func:`auroc_per_condition`.
        return_count: Also return the number of conditions averaged.

    Returns:
        The macro AUROC (NaN only when no condition has a defined AUROC), or ``(macro, n_conditions)``.
    """
    a = table["auroc"].to_numpy(dtype=np.float64)
    used = int(np.sum(~np.isnan(a)))
    value = float(np.mean(a[~np.isnan(a)])) if used else float("nan")
    return (value, used) if return_count else value


def _macro_from_boot(boot: np.ndarray, defined: np.ndarray, ci: float) -> tuple[float, float]:
    if boot.shape[0] == 0 or not defined.any():
        return float("nan"), float("nan")
    sub = boot[:, defined]
    ok = ~np.all(np.isnan(sub), axis=1)
    if not ok.any():
        return float("nan"), float("nan")
    return _percentile_ci(np.nanmean(sub[ok], axis=1), ci)


def macro_ci(y_true: Any, scores: Any, classes: Sequence[str] | None = None, n_boot: int = 1000,
             ci: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile-bootstrap CI of the macro AUROC.

    Uses the same record resamples as :func:`auroc_per_condition` with the same ``seed``; in each resample the
    macro is the mean over the conditions with a defined point AUROC that have both label values in it.

    Returns:
        ``(ci_low, ci_high)``; NaN when no condition has a defined AUROC or ``n_boot == 0``.
    """
    _check(n_boot, ci)
    y, s, names = _prepare(y_true, scores, classes)
    defined = np.array([0 < np.nansum(y[:, j]) < np.sum(~np.isnan(y[:, j])) for j in range(len(names))], bool)
    return _macro_from_boot(_bootstrap(y, s, n_boot, seed), defined, ci)


def evaluate(y_true: Any, scores: Any, classes: Sequence[str] | None = None, n_boot: int = 1000,
             ci: float = 0.95, seed: int = 0, min_positives: int = 1) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Per-condition table and macro summary from one set of bootstrap resamples.

    Args:
        min_positives: Conditions with fewer labelled positives stay in the table, flagged ``few positives``,
            but are left out of the headline macro AUROC (``macro["auroc"]``); the macro over every condition with
            a defined AUROC is reported beside it (``macro["auroc_all"]``). 1 keeps every defined condition.

    Returns:
        ``(table, macro)``. The table has a ``flag`` column (``few positives``, ``below chance`` for an AUROC under
        0.5, or empty). ``macro`` is ``{"auroc", "ci_low", "ci_high", "n_conditions", "n_conditions_total",
        "auroc_all", "ci_low_all", "ci_high_all", "n_conditions_all", "min_positives", "few_positives": [...],
        "excluded": [conditions without a defined AUROC or below min_positives], "not_scored": [conditions
        whose scores are all NaN, i.e. the scorer cannot score them], "n_boot", "ci", "seed"}``.

    Raises:
        ValueError: as :func:`auroc_per_condition`.
    """
    _check(n_boot, ci)
    y, s, names = _prepare(y_true, scores, classes)
    boot = _bootstrap(y, s, n_boot, seed)
    table = _table(y, s, names, boot, ci)
    table.attrs.update(n_boot=int(n_boot), ci=float(ci), seed=int(seed))
    if int(min_positives) < 1:
        raise ValueError(f"min_positives: expected >= 1, got {min_positives}")
    aucs = table["auroc"].to_numpy(dtype=np.float64)
    defined_all = ~np.isnan(aucs)
    few = table["n_pos"].to_numpy() < int(min_positives)
    defined = defined_all & ~few
    flags = []
    for j in range(len(names)):
        f = []
        if few[j] and table["n"].iat[j] > 0:
            f.append("few positives")
        if defined_all[j] and aucs[j] < 0.5:
            f.append("below chance")
        flags.append(", ".join(f))
    table["flag"] = flags
    value = float(np.mean(aucs[defined])) if defined.any() else float("nan")
    used = int(defined.sum())
    lo, hi = _macro_from_boot(boot, defined, ci)
    lo_all, hi_all = _macro_from_boot(boot, defined_all, ci)
    macro = {"auroc": value, "ci_low": lo, "ci_high": hi, "n_conditions": used, "n_conditions_total": len(names),
             "auroc_all": float(np.mean(aucs[defined_all])) if defined_all.any() else float("nan"),
             "ci_low_all": lo_all, "ci_high_all": hi_all, "n_conditions_all": int(defined_all.sum()),
             "min_positives": int(min_positives),
             "few_positives": [n for n, f in zip(names, few) if f],
             "excluded": [n for n, d in zip(names, defined) if not d],
             "not_scored": [n for j, n in enumerate(names) if s.shape[0] and np.isnan(s[:, j]).all()],
             "n_boot": int(n_boot), "ci": float(ci),
             "seed": int(seed)}
    return table, macro
