"""Linear probe on frozen embeddings: one-vs-rest logistic regression, C chosen on validation only.

The protocol of the ECG-text papers (MERL, Liu et al., ICML 2024, arXiv:2403.06659, Table 2: linear probing with 1 %,
10 % and 100 % of the training split), done without MERL's defect of reporting the best *test* epoch: here the
training subsample is deterministic (seeded), the regularisation strength ``C`` of each class is chosen on the
validation split only, and the test split is touched once, for the returned scores. Logistic regression is
scikit-learn's (``LogisticRegression``, L2, lbfgs) on standardised embeddings (``StandardScaler`` fitted on the
training subsample).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

__all__ = ["DEFAULT_CS", "ProbeResult", "linear_probe", "subsample_indices"]

#: Regularisation grid (inverse strength) searched on the validation split.
DEFAULT_CS: tuple[float, ...] = (0.001, 0.01, 0.1, 1.0, 10.0)


def subsample_indices(n: int, fraction: float, seed: int = 0) -> np.ndarray:
    """Deterministic training subsample: ``max(1, round(fraction * n))`` indices of ``range(n)``, sorted.

    Raises:
        ValueError: ``fraction`` not in (0, 1] or ``n < 1``.
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"subsample_indices: fraction must be in (0, 1], got {fraction!r}")
    if n < 1:
        raise ValueError(f"subsample_indices: no training records (n={n})")
    if fraction == 1:
        return np.arange(n)
    k = max(1, round(fraction * n))
    return np.sort(np.random.default_rng(seed).permutation(n)[:k])


@dataclass
class ProbeResult:
    """Scores of one training fraction.

    Attributes:
        fraction: Share of the training split used.
        n_train: Training records used.
        scores: ``(N_test, C)`` positive-class probabilities; NaN columns for skipped classes.
        chosen_c: Class -> C chosen on validation (or the default when validation cannot rank).
        c_source: Class -> ``"val"`` or ``"default (val has one label value)"``.
        skipped: Classes with a single label value in the training subsample (not fitted).
    """

    fraction: float
    n_train: int
    scores: np.ndarray
    chosen_c: dict[str, float] = field(default_factory=dict)
    c_source: dict[str, str] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"fraction": self.fraction, "n_train": self.n_train, "chosen_c": self.chosen_c,
                "c_source": self.c_source, "skipped": self.skipped}


def _finite_labels(y: np.ndarray) -> np.ndarray:
    return ~np.isnan(y)


def linear_probe(x_train: Any, y_train: Any, x_val: Any, y_val: Any, x_test: Any, classes: Sequence[str],
                 fractions: Sequence[float] = (0.01, 0.1, 1.0), cs: Sequence[float] = DEFAULT_CS,
                 seed: int = 0, default_c: float = 1.0, max_iter: int = 2000) -> list[ProbeResult]:
    """Fit one-vs-rest logistic regressions on frozen embeddings and score the test split.

    Args:
        x_train, x_val, x_test: ``(N, D)`` embeddings of the three splits.
        y_train, y_val: ``(N, C)`` 1/0 (NaN = unlabelled, left out per class) labels; test labels are not taken.
        classes: The C class codes (names in the results).
        fractions: Training shares, each in (0, 1]; the subsample of each is :func:`subsample_indices` with ``seed``.
        cs: Grid of ``C``; per class the value with the best validation AUROC wins (ties: the smaller C).
        seed: Subsampling seed (the solver is deterministic).
        default_c: C used for a class whose validation labels have one value only.
        max_iter: lbfgs iterations.

    Returns:
        One :class:`ProbeResult` per fraction, in order.

    Raises:
        ValueError: mismatched shapes or an empty grid.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.preprocessing import StandardScaler

    xtr, xva, xte = (np.asarray(a, dtype=np.float64) for a in (x_train, x_val, x_test))
    ytr, yva = (np.asarray(a, dtype=np.float64) for a in (y_train, y_val))
    c = len(classes)
    if ytr.shape != (xtr.shape[0], c) or yva.shape != (xva.shape[0], c):
        raise ValueError(f"linear_probe: labels {ytr.shape}/{yva.shape} do not match embeddings "
                         f"{xtr.shape}/{xva.shape} and {c} classes")
    if not (xtr.shape[1] == xva.shape[1] == xte.shape[1]):
        raise ValueError("linear_probe: embeddings of the three splits differ in width")
    if not cs:
        raise ValueError("linear_probe: empty C grid")
    results = []
    for fraction in fractions:
        idx = subsample_indices(xtr.shape[0], float(fraction), seed)
        scaler = StandardScaler().fit(xtr[idx])
        a_tr, a_va, a_te = scaler.transform(xtr[idx]), scaler.transform(xva), scaler.transform(xte)
        res = ProbeResult(float(fraction), len(idx), np.full((xte.shape[0], c), np.nan))
        for j, cls in enumerate(classes):
            yj = ytr[idx, j]
            keep = _finite_labels(yj)
            if np.unique(yj[keep]).size < 2:
                res.skipped.append(cls)
                continue
            vkeep = _finite_labels(yva[:, j])
            yv = yva[vkeep, j]
            fits = {}
            best_c, best_auc = default_c, -np.inf
            if np.unique(yv).size == 2:
                for cval in sorted(cs):
                    m = LogisticRegression(C=cval, max_iter=max_iter).fit(a_tr[keep], yj[keep].astype(int))
                    fits[cval] = m
                    auc = roc_auc_score(yv, m.predict_proba(a_va[vkeep])[:, 1])
                    if auc > best_auc + 1e-12:
                        best_c, best_auc = cval, auc
                res.c_source[cls] = "val"
            else:
                res.c_source[cls] = "default (val has one label value)"
            model = fits.get(best_c) or LogisticRegression(C=best_c, max_iter=max_iter).fit(
                a_tr[keep], yj[keep].astype(int))
            res.chosen_c[cls] = float(best_c)
            res.scores[:, j] = model.predict_proba(a_te)[:, 1]
        if res.skipped:
            logger.info("linear probe %.0f%%: %d classes with one label value in train skipped: %s",
                        100 * fraction, len(res.skipped), res.skipped)
        results.append(res)
    return results
