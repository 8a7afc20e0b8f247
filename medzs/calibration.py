"""Calibrated probabilities for zero-shot scores: per-class Platt scaling fitted on training records only.

A zero-shot score (the cosine between a record's and a condition's embedding) ranks records but is not a
probability: a cosine of 0.3 can be a high score for one condition and a low one for another. ``medzs predict``
turns it into a probability with **Platt scaling** per condition (Platt, "Probabilistic outputs for support vector
machines", in *Advances in Large Margin Classifiers*, MIT Press 1999; Niculescu-Mizil & Caruana, ICML 2005,
doi:10.1145/1102351.1102430)::

    p(condition | record) = sigmoid(a_c * cos_c + b_c)

``a_c`` and ``b_c`` are fitted by logistic regression (one feature, near-unpenalised) on labelled *training* records
and stored as a small JSON file next to the weights (``<weights stem>.calibration.json``). At test time nothing but
the record is needed (no labels, no other records): the probability of a record does not depend on its batch.

What the embedded model's calibration was fitted on (:func:`fit_calibration`, command in the JSON): PTB-XL
``strat_fold`` 1-8 of the local mirror **minus the records the model was trained on** (the ids listed in the
model card JSON), so that the scores it is fitted on behave like scores of unseen records. Folds 9-10 are never used
to fit; the JSON reports the Brier score and the expected calibration error on them (10 equal-width bins), for
information only.

A calibration is tied to the weights (sha256) and to the class prompts (sha256 of their texts): when either
differs, :func:`load_calibration` returns None with the reason and ``medzs predict`` shows uncalibrated scores,
saying so.

Reproduce (about 1-2 min on 2 CPU cores)::

    python -m medzs.calibration --task ptbxl-super --root ../shared/data/ecg/ptbxl2k --in-sample

The shipped default is trained on every fold 1-8 record of the local mirror, so its calibration is fitted
in-sample (``--in-sample``, recorded as ``"in_sample": true``): such probabilities tend to be overconfident, and the
folds 9-10 Brier score and ECE in the file show by how much.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medzs.errors import SpecError

logger = logging.getLogger(__name__)

__all__ = ["CALIBRATION_FORMAT", "MIN_FIT_POSITIVES", "Calibration", "calibration_path", "expected_calibration_error",
           "fit_calibration", "fit_platt", "load_calibration", "prompts_digest"]

CALIBRATION_FORMAT = "medzs-calibration"
#: A condition is calibrated only with at least this many positives (and negatives) among the fit records: with
#: fewer, the two Platt parameters are fitted to a handful of points (a nearly separable fit drives the slope to
#: extremes) and the condition is left uncalibrated instead. So is a condition whose fitted slope is not positive
#: (its score falls, or does not change, as the condition becomes more likely: no evidence to calibrate).
MIN_FIT_POSITIVES = 10


def prompts_digest(prompts: Mapping[str, Any], classes: Sequence[str]) -> str:
    """sha256 (hex) of the class prompt texts, in class order (what a calibration was fitted with)."""
    texts = {}
    for c in classes:
        cp = prompts[c]
        texts[c] = list(cp.texts) if hasattr(cp, "texts") else [str(t) for t in cp]
    return hashlib.sha256(json.dumps(texts, sort_keys=True, ensure_ascii=False).encode("utf-8")).hexdigest()


def fit_platt(scores: np.ndarray, labels: np.ndarray, c_reg: float = 1e4) -> tuple[float, float]:
    """Platt scaling of one condition: ``(a, b)`` with ``p = sigmoid(a * score + b)``.

    Args:
        scores: ``(N,)`` scores (cosines).
        labels: ``(N,)`` 0/1 labels (NaN entries are left out).
        c_reg: Inverse L2 strength of scikit-learn's logistic regression (large: nearly unpenalised).

    Raises:
        ValueError: fewer than 2 labelled records, or only one label value.
    """
    from sklearn.linear_model import LogisticRegression

    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    ok = np.isfinite(s) & np.isfinite(y)
    s, y = s[ok], y[ok]
    if s.size < 2 or y.min() == y.max():
        raise ValueError(f"fit_platt: expected both label values among the labelled records, got {int(y.sum())} "
                         f"positive(s) of {y.size}")
    lr = LogisticRegression(C=c_reg, max_iter=1000)
    lr.fit(s.reshape(-1, 1), y.astype(int))
    return float(lr.coef_[0, 0]), float(lr.intercept_[0])


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def expected_calibration_error(p: np.ndarray, y: np.ndarray, n_bins: int = 10) -> float:
    """Expected calibration error: the record-weighted mean of |mean label - mean probability| over ``n_bins``
    equal-width probability bins (Naeini et al., AAAI 2015). NaN labels are left out."""
    p, y = np.asarray(p, dtype=np.float64), np.asarray(y, dtype=np.float64)
    ok = np.isfinite(p) & np.isfinite(y)
    p, y = p[ok], y[ok]
    if not p.size:
        return float("nan")
    idx = np.minimum((p * n_bins).astype(int), n_bins - 1)
    err = 0.0
    for b in range(n_bins):
        m = idx == b
        if m.any():
            err += m.sum() / p.size * abs(y[m].mean() - p[m].mean())
    return float(err)


@dataclass(frozen=True)
class Calibration:
    """Per-condition Platt parameters for one model and task.

    Attributes:
        task: Task name.
        classes: Class codes, in task order.
        a: ``(C,)`` slopes. b: ``(C,)`` intercepts (NaN: condition not calibrated).
        method: ``"platt"``.
        source: The file it was read from (for provenance).
        fitted_on: One-line description of the fit records.
    """

    task: str
    classes: tuple[str, ...]
    a: np.ndarray
    b: np.ndarray
    method: str = "platt"
    source: str = ""
    fitted_on: str = ""

    def __call__(self, scores: Any) -> np.ndarray:
        """``(N, C)`` or ``(C,)`` scores -> calibrated probabilities of the same shape (NaN where uncalibrated)."""
        s = np.asarray(scores, dtype=np.float64)
        return _sigmoid(self.a * s + self.b)


def calibration_path(weights: str | Path) -> Path:
    """The calibration file of a checkpoint: ``<weights without suffix>.calibration.json``."""
    w = Path(weights)
    return w.with_name(w.stem + ".calibration.json")


def _resolve_weights(weights: str | Path) -> Path:
    p = Path(weights)
    if p.is_absolute() or p.exists():
        return p
    return Path(__file__).resolve().parents[1] / p


def load_calibration(config: Any, task: str, prompts: Mapping[str, Any], classes: Sequence[str],
                     path: str | Path | None = None) -> tuple[Calibration | None, str]:
    """The calibration of a model for a task, checked against the weights and the prompts in use.

    Args:
        config: The model's :class:`~medzs.registry.ModelConfig` (``weights``, ``sha256``, ``name``).
        task: Task name.
        prompts: The class prompts in use (``{code: ClassPrompts}``).
        classes: Class codes in task order.
        path: Calibration file (default: :func:`calibration_path` of the model's weights).

    Returns:
        ``(Calibration, "")`` or ``(None, reason)`` when there is none, or it does not fit the weights or prompts.

    Raises:
        SpecError: the file exists but is not a medzs calibration (one line naming the file and field).
    """
    if path is None:
        if not getattr(config, "weights", None):
            return None, f"model {config.name} has no weights file, hence no calibration"
        path = calibration_path(_resolve_weights(config.weights))
    path = Path(path)
    if not path.is_file():
        return None, f"no calibration file {path.name} for model {config.name}"
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SpecError(f"{path}: not a readable JSON calibration file ({exc})") from None
    if not isinstance(doc, dict) or doc.get("format") != CALIBRATION_FORMAT:
        raise SpecError(f"{path}: field 'format': expected {CALIBRATION_FORMAT!r}")
    sha = getattr(config, "sha256", None)
    if sha and doc.get("weights_sha256") and doc["weights_sha256"] != sha:
        return None, (f"calibration {path.name} was fitted for other weights (sha256 {doc['weights_sha256'][:12]}, "
                      f"model has {sha[:12]}); refit it")
    entry = (doc.get("tasks") or {}).get(task)
    if entry is None:
        return None, f"calibration {path.name} has no entry for task {task!r}"
    digest = prompts_digest(prompts, classes)
    if entry.get("prompts_sha256") != digest:
        return None, f"calibration {path.name} ({task}) was fitted with other class prompts; refit it"
    params = entry.get("classes") or {}
    def param(c: str, k: str) -> float:
        v = (params.get(c) or {}).get(k)
        return math.nan if v is None else float(v)  # a condition without both label values was not fitted

    a = np.array([param(c, "a") for c in classes])
    b = np.array([param(c, "b") for c in classes])
    return Calibration(task, tuple(classes), a, b, entry.get("method", "platt"), str(path),
                       str(entry.get("fitted_on", ""))), ""


def _score(model: Any, side: Any, records: Sequence[Any], batch_size: int = 64) -> tuple[np.ndarray, list[str]]:
    from medzs.engine import Engine

    engine = Engine(model, side, quality=True)
    scores = np.full((len(records), side.n_classes), np.nan)
    for rows in engine.stream(records, batch_size):
        for row in rows:
            if row["status"] == "ok":
                scores[int(row["record_index"])] = row["scores"]
    return scores, [r.source_id for r in records]


def fit_calibration(task_name: str = "ptbxl-super", root: str | Path | None = None,
                    model_name: str = "ecg-resnet18.medzs-ptbxl", writer: str = "grounded",
                    cache: str | Path | None = None, out: str | Path | None = None,
                    command: str = "", in_sample: bool = False) -> dict[str, Any]:
    """Fit per-condition Platt scaling of a model's zero-shot scores on PTB-XL folds 1-8 minus the model's own
    training records, report Brier/ECE on folds 9-10 (never fitted on), and write/merge the calibration JSON.

    Args:
        task_name: PTB-XL task (``ptbxl-super``, ``ptbxl-sub``, ``ptbxl-form``, ``ptbxl-rhythm``).
        root: PTB-XL folder (default: the local mirror).
        model_name: Registry name of the embedding model.
        writer: Prompt writer of the class prompts (their cache must match what ``medzs predict`` uses).
        cache: Prompt cache (default ``knowledge/prompts/<task>.<writer>.json``).
        out: Calibration file (default: next to the weights).
        command: The command line, recorded in the file.
        in_sample: Fit on the model's own training records when folds 1-8 hold no other labelled record (the
            embedded default is trained on all of folds 1-8 of the local mirror). Such probabilities tend to be
            overconfident; the file says so and the folds 9-10 Brier/ECE show by how much. Without it, that case
            is an error.

    Returns:
        The task's entry as written.

    Raises:
        SpecError: no fold 1-8 record left, or the model has no weights file.
    """
    from medzs import registry
    from medzs.batch import class_scorer
    from medzs.data.ptbxl import PTBXLDataset
    from medzs.data.tasks import get_task
    from medzs.engine import Record
    from medzs.prompts.tasks import REPO_ROOT, task_prompts

    task = get_task(task_name)
    classes = list(task.classes)
    model = registry.create_model(model_name)
    config = model.config
    if not config.weights:
        raise SpecError(f"calibration: model {model_name} has no weights file")
    weights = _resolve_weights(config.weights)
    card = weights.with_suffix(".json")
    trained: set[str] = set()
    if card.is_file():
        trained = {str(i) for i in json.loads(card.read_text()).get("data", {}).get("ecg_ids", [])}
    cache = Path(cache) if cache else REPO_ROOT / "knowledge" / "prompts" / f"{task_name}.{writer}.json"
    prompts = task_prompts(task, writer, cache)
    side = class_scorer(model, prompts, classes, softmax=False)
    fs = 100 if getattr(config.input_spec, "fs", 100) <= 100 else 500
    ds = PTBXLDataset(root, fs=fs)
    labels = ds.labels(task)

    def records(split: str, exclude: set[str]) -> list[Record]:
        refs = [r for r in ds.records(split) if r.id in labels.index and r.id not in exclude]
        return [Record(i, r.path, r.id, r.format) for i, r in enumerate(refs)]

    fit_recs = records("train", trained)
    in_sample_used = False
    if not fit_recs:
        if not in_sample:
            raise SpecError(f"calibration: no labelled record of folds 1-8 in {ds.root} outside the model's training "
                            "set; pass --in-sample to fit on the training records (probabilities then tend to be "
                            "overconfident)")
        fit_recs = records("train", set())
        in_sample_used = True
    logger.info("calibration: scoring %d fold 1-8 records", len(fit_recs))
    s_fit, ids_fit = _score(model, side, fit_recs)
    y_fit = labels.loc[ids_fit, classes].to_numpy(dtype=float)
    test_recs = records("test9-10", set())
    s_test, ids_test = _score(model, side, test_recs)
    y_test = labels.loc[ids_test, classes].to_numpy(dtype=float)

    params: dict[str, Any] = {}
    for j, c in enumerate(classes):
        yj, sj = y_fit[:, j], s_fit[:, j]
        lab = np.isfinite(yj) & np.isfinite(sj)
        n_pos = int(np.nansum(yj[lab]))
        entry: dict[str, Any] = {"n": int(lab.sum()), "n_pos": n_pos}
        if min(n_pos, int(lab.sum()) - n_pos) < MIN_FIT_POSITIVES:
            entry.update(a=None, b=None, note=f"{n_pos} positive(s) of {int(lab.sum())} fit records: fewer than "
                                              f"{MIN_FIT_POSITIVES} of each label, not calibrated")
            params[c] = entry
            continue
        try:
            a, b = fit_platt(sj, yj)
        except ValueError as exc:
            entry.update(a=None, b=None, note=str(exc))
            params[c] = entry
            continue
        if a <= 0:  # a higher cosine does not mean the condition is more likely: the score carries no evidence
            entry.update(a=None, b=None, slope=round(a, 6),
                         note=f"Platt slope {a:.3f} <= 0: the zero-shot score does not rise with the condition on "
                              "the fit records; not calibrated")
            params[c] = entry
            continue
        p_fit = _sigmoid(a * sj + b)
        entry.update(a=round(a, 6), b=round(b, 6),
                     brier_fit=round(float(np.mean((p_fit[lab] - yj[lab]) ** 2)), 4),
                     ece_fit=round(expected_calibration_error(p_fit, yj), 4))
        yt, st = y_test[:, j], s_test[:, j]
        lt = np.isfinite(yt) & np.isfinite(st)
        if lt.any():
            pt = _sigmoid(a * st + b)
            entry["test9_10"] = {"n": int(lt.sum()), "n_pos": int(yt[lt].sum()),
                                 "brier": round(float(np.mean((pt[lt] - yt[lt]) ** 2)), 4),
                                 "ece": round(expected_calibration_error(pt, yt), 4),
                                 "brier_prevalence_only": round(float(np.mean((yt[lt].mean() - yt[lt]) ** 2)), 4)}
        params[c] = entry
    doc_entry = {
        "method": "platt",
        "formula": "p = sigmoid(a * cosine + b), per condition",
        "prompts": {"writer": writer, "cache": str(cache.relative_to(REPO_ROOT)) if cache.is_relative_to(REPO_ROOT)
                    else str(cache)},
        "prompts_sha256": prompts_digest(prompts, classes),
        "fitted_on": ((f"PTB-XL strat_fold 1-8 ({ds.root.name}), {len(ids_fit)} labelled records: the model's own "
                       "training records (in-sample, no other fold 1-8 record is available locally; probabilities "
                       "tend to be overconfident, see test9_10); folds 9-10 never used to fit")
                      if in_sample_used else
                      (f"PTB-XL strat_fold 1-8 ({ds.root.name}), {len(ids_fit)} labelled records not used to train "
                       f"the model ({len(trained)} training records excluded); folds 9-10 never used to fit")),
        "in_sample": in_sample_used,
        "fit_record_ids_sha256": hashlib.sha256(",".join(ids_fit).encode()).hexdigest(),
        "classes": params,
        "evaluation_note": "test9_10: Brier and ECE (10 bins) on folds 9-10, reported only, never used to fit",
        "created": _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat(),
        "command": command,
    }
    path = Path(out) if out else calibration_path(weights)
    doc: dict[str, Any] = {}
    if path.is_file():
        doc = json.loads(path.read_text(encoding="utf-8"))
        if doc.get("weights_sha256") not in (None, config.sha256):
            doc = {}
    doc.update({"format": CALIBRATION_FORMAT, "version": 1, "model": config.name, "weights_sha256": config.sha256})
    doc.setdefault("tasks", {})[task_name] = doc_entry
    doc["tasks"] = dict(sorted(doc["tasks"].items()))
    path.write_text(json.dumps(doc, indent=1, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")
    logger.info("calibration: wrote %s (%s)", path, task_name)
    return doc_entry


def _main(argv: Sequence[str] | None = None) -> int:
    import argparse
    import shlex
    import sys

    ap = argparse.ArgumentParser(prog="python -m medzs.calibration",
                                 description="Fit Platt calibration of a model's zero-shot scores (PTB-XL folds 1-8).")
    ap.add_argument("--task", default="ptbxl-super")
    ap.add_argument("--root", default=None, help="PTB-XL folder (default: the local mirror)")
    ap.add_argument("--model", default="ecg-resnet18.medzs-ptbxl")
    ap.add_argument("--writer", default="grounded")
    ap.add_argument("--out", default=None)
    ap.add_argument("--in-sample", action="store_true",
                    help="fit on the model's own training records when no other fold 1-8 record exists")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from medzs.pipeline import default_env

    default_env()
    cmd = shlex.join(["python", "-m", "medzs.calibration", *(sys.argv[1:] if argv is None else argv)])
    entry = fit_calibration(args.task, args.root, args.model, args.writer, out=args.out, command=cmd,
                            in_sample=args.in_sample)
    print(json.dumps(entry, indent=1))  # noqa: T201 - command output
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(_main())
