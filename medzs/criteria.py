"""Knowledge-criteria scorer ``ecg-criteria.kb``: zero-shot ECG scores from measurements and the KB's rules.

No trained weights: each record is measured (:func:`medzs.measure.ecg.measure_ecg`), and each condition's structured
rules in the knowledge base (``knowledge/ecg/*.yaml``, :class:`medzs.knowledge.schema.Rule`) are checked softly and
combined by the entry's logic. Every score comes with the measurements and the rules that produced it.

Soft check of one rule (value ``x`` in the rule's unit, threshold ``t``, scale ``s`` from :func:`rule_scale`):

- ``>``/``>=``: ``sigmoid((x - t) / s)``; ``<``/``<=``: ``sigmoid((t - x) / s)`` (``>`` and ``>=`` are the same
  for a continuous score);
- ``between [lo, hi]``: ``min(sigmoid((x - lo) / s), sigmoid((hi - x) / s))``;
- ``==``: ``2 * sigmoid(-|x - t| / s)`` (1 at equality).

A margin of one scale gives 0.73, two scales 0.88, and the threshold itself 0.5. The scales (:data:`UNIT_SCALES`,
:data:`MEASUREMENT_SCALES`) are about one measurement uncertainty: the CSE tolerances for wave boundaries are
6.5-30.6 ms (CSE Working Party, Eur Heart J 6:815-825, 1985), hence 10 ms; amplitudes are read to about 0.1 mV
on paper (0.025 mV for the small P, ST and Q deflections, 0.05 mV for T); heart rate 5 bpm; axes 15 deg.

Per-lead rules (``leads``): each lead is checked, then ``lead_aggregation`` combines them: ``any`` and ``count``:
the ``min_leads``-th largest lead check ("at least ``min_leads`` leads pass", softly); ``all``: the smallest lead
check; ``mean``/``max``/``min``: that statistic of the lead *values* is checked. Leads that were not measured are
left out; if fewer than ``min_leads`` (any/count) or no leads remain, the rule is unmeasured.

Logic of an entry: ``all_of``: product of the rule checks (``and_mode="min"``: their minimum); ``any_of``: maximum;
``none_of``: 1 - maximum. An unmeasured rule (NaN measurement) contributes 0.5 - no evidence either way - by default
(``nan_policy="half"``); ``nan_policy="skip"`` leaves it out of the combination instead. An entry whose rules are
all unmeasured scores 0.5. A condition whose KB entry has no structured rules, or has no KB entry, is *not scorable
by this scorer*: its column is NaN and the reason is reported (:attr:`CriteriaResult.not_scorable`).

Hybrid mode (:func:`fuse_rank_average`) fuses these scores with an embedding model's similarities without labels:
per class, the average of the two score columns' normalised ranks within the scored batch; classes the criteria
cannot score keep the embedding ranks.

Example:
    >>> from medzs.criteria import CriteriaScorer
    >>> from medzs.data.ptbxl import PTBXL
    >>> db = PTBXL()                                            # doctest: +SKIP
    >>> scorer = CriteriaScorer()                                # doctest: +SKIP
    >>> res = scorer.run([db.load(i) for i in (1, 17)], "ptbxl-rhythm")  # doctest: +SKIP
    >>> res.scores.shape, res.explanations[0]["classes"]["SR"]["score"]  # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medzs.errors import SpecError
from medzs.knowledge.schema import MEASUREMENTS, Entry, Rule

logger = logging.getLogger(__name__)

#: Registry name of the scorer.
SCORER_NAME = "ecg-criteria.kb"

#: Soft-check scale per unit (the margin that gives a check of 0.73).
UNIT_SCALES: dict[str, float] = {"ms": 10.0, "bpm": 5.0, "deg": 15.0, "mV": 0.1, "count": 0.5, "1": 0.05}
#: Scales for measurements whose unit alone is too coarse a guide.
MEASUREMENT_SCALES: dict[str, float] = {
    "rr_cv": 0.02,  # SR rr_cv is about 0.01-0.08, AF 0.15-0.25
    "p_wave_fraction": 0.1,  # one beat in ten
    "p_amplitude": 0.025,
    "q_amplitude": 0.025,
    "st_deviation": 0.025,
    "t_amplitude": 0.05,
}

NAN_POLICIES = ("half", "skip")
AND_MODES = ("product", "min")

#: File the pipeline writes next to the report files.
EXPLANATIONS_FILE = "criteria_explanations.json"


def rule_scale(rule: Rule, scales: Mapping[str, float] | None = None) -> float:
    """Soft-check scale of a rule, in the rule's unit (overrides in ``scales`` by measurement name or unit)."""
    scales = scales or {}
    if rule.measurement in scales:
        return float(scales[rule.measurement])
    if rule.measurement in MEASUREMENT_SCALES:
        return MEASUREMENT_SCALES[rule.measurement]
    if rule.unit in scales:
        return float(scales[rule.unit])
    return UNIT_SCALES.get(rule.unit, 1.0)


def _sigmoid(z: float) -> float:
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


def soft_check(value: float, comparison: str, threshold: float | tuple[float, float], scale: float) -> float:
    """Degree (0-1) to which ``value`` meets ``comparison threshold``; NaN when ``value`` is NaN.

    Raises:
        SpecError: unknown comparison or non-positive scale.
    """
    if scale <= 0:
        raise SpecError(f"soft_check: scale must be positive, got {scale!r}")
    if value is None or not np.isfinite(value):
        return float("nan")
    x = float(value)
    if comparison in (">", ">="):
        return _sigmoid((x - float(threshold)) / scale)  # type: ignore[arg-type]
    if comparison in ("<", "<="):
        return _sigmoid((float(threshold) - x) / scale)  # type: ignore[arg-type]
    if comparison == "between":
        lo, hi = threshold  # type: ignore[misc]
        return min(_sigmoid((x - lo) / scale), _sigmoid((hi - x) / scale))
    if comparison == "==":
        return 2.0 * _sigmoid(-abs(x - float(threshold)) / scale)  # type: ignore[arg-type]
    raise SpecError(f"soft_check: unknown comparison {comparison!r}")


@dataclass(frozen=True)
class CompiledRule:
    """A KB rule ready to check: the rule, its criterion text and its soft-check scale."""

    rule: Rule
    text: str
    scale: float

    def check(self, m: Any) -> dict[str, Any]:
        """Check this rule on a :class:`~medzs.measure.ecg.Measurements`.

        Returns:
            ``{"check": 0-1 or NaN, "value": float | {lead: float}, "reason": str | None}``.
        """
        r = self.rule
        if r.measurement not in m.values:
            return {"check": float("nan"), "value": None, "reason": f"measurement {r.measurement!r} not produced"}
        raw = m.values[r.measurement]
        if not isinstance(raw, dict):
            v = float(raw)
            if math.isnan(v):
                return {"check": float("nan"), "value": v, "reason": m.reason(r.measurement)}
            return {"check": soft_check(v, r.comparison, r.threshold, self.scale), "value": v, "reason": None}
        from medzs.measure.ecg import canonical_lead

        leads = [canonical_lead(lead) or lead for lead in (r.leads or tuple(raw))]
        vals = {lead: float(raw.get(lead, float("nan"))) for lead in leads}
        have = {k: v for k, v in vals.items() if not math.isnan(v)}
        missing = sorted(set(vals) - set(have))
        agg = r.lead_aggregation
        need = r.min_leads if agg in ("any", "count") else 1
        if len(have) < need:
            why = "; ".join(f"{lead}: {m.reason(r.measurement, lead)}" for lead in missing[:4])
            return {"check": float("nan"), "value": vals,
                    "reason": f"measured in {len(have)} of {len(vals)} leads (need {need}): {why}"}
        if agg in ("mean", "max", "min"):
            stat = {"mean": np.mean, "max": np.max, "min": np.min}[agg](list(have.values()))
            return {"check": soft_check(float(stat), r.comparison, r.threshold, self.scale), "value": vals,
                    "aggregate": float(stat), "reason": None}
        checks = sorted((soft_check(v, r.comparison, r.threshold, self.scale) for v in have.values()), reverse=True)
        c = checks[need - 1] if agg in ("any", "count") else checks[-1]
        out: dict[str, Any] = {"check": float(c), "value": vals, "reason": None}
        if missing:
            out["note"] = f"not measured in {', '.join(missing)}"
        return out


@dataclass(frozen=True)
class CompiledEntry:
    """A KB entry compiled into soft checks; ``scorable`` is False (with ``reason``) without structured rules."""

    entry_id: str
    name: str
    logic: str
    rules: tuple[CompiledRule, ...]
    reason: str = ""

    @property
    def scorable(self) -> bool:
        return bool(self.rules)


def compile_entry(entry: Entry, scales: Mapping[str, float] | None = None) -> CompiledEntry:
    """Compile an entry's structured rules (criteria without a rule are prose and are not checked)."""
    rules = tuple(CompiledRule(c.rule, c.text, rule_scale(c.rule, scales)) for c in entry.criteria if c.rule is not None)
    for cr in rules:
        if cr.rule.measurement not in MEASUREMENTS:  # the schema already enforces this; kept for hand-made entries
            raise SpecError(f"{entry.id}: rule measurement {cr.rule.measurement!r} is not in MEASUREMENTS")
    reason = "" if rules else "no structured criteria in its KB entry (prose only): not scorable by this scorer"
    return CompiledEntry(entry.id, entry.name, entry.logic, rules, reason)


def combine(logic: str, checks: Sequence[float], nan_policy: str = "half", and_mode: str = "product") -> float:
    """Combine rule checks by an entry's logic (see the module docstring).

    Raises:
        SpecError: unknown logic, nan_policy or and_mode.
    """
    if nan_policy not in NAN_POLICIES:
        raise SpecError(f"nan_policy: expected one of {NAN_POLICIES}, got {nan_policy!r}")
    if and_mode not in AND_MODES:
        raise SpecError(f"and_mode: expected one of {AND_MODES}, got {and_mode!r}")
    vals = [float(c) for c in checks]
    if nan_policy == "half":
        vals = [0.5 if math.isnan(c) else c for c in vals]
    else:
        vals = [c for c in vals if not math.isnan(c)]
    if not vals:
        return 0.5
    if logic == "all_of":
        return float(np.prod(vals)) if and_mode == "product" else float(min(vals))
    if logic == "any_of":
        return float(max(vals))
    if logic == "none_of":
        return 1.0 - float(max(vals))
    raise SpecError(f"logic: expected all_of, any_of or none_of, got {logic!r}")


@dataclass
class CriteriaResult:
    """Scores and explanations of a batch.

    Attributes:
        classes: Class codes (columns).
        scores: ``(N, C)`` float; NaN columns for classes not scorable by this scorer.
        record_ids: One id per row.
        explanations: One dict per record: ``record_id``, ``measurements`` (values used, units), ``classes``:
            class -> ``{score, entry_id, logic, rules: [...], driver}`` (see :meth:`CriteriaScorer.explain`).
        not_scorable: Class -> reason, for the NaN columns.
        measurements: The :class:`~medzs.measure.ecg.Measurements` per record.
        seconds: Time spent measuring and scoring.
        provenance: The scorer's settings (:meth:`CriteriaScorer.describe`), when run through the pipeline.
    """

    classes: list[str]
    scores: np.ndarray
    record_ids: list[str]
    explanations: list[dict[str, Any]]
    not_scorable: dict[str, str]
    measurements: list[Any] = field(default_factory=list)
    seconds: float = 0.0
    provenance: dict[str, Any] = field(default_factory=dict)

    @property
    def scorable(self) -> np.ndarray:
        """``(C,)`` bool: the classes this scorer scores."""
        return np.array([c not in self.not_scorable for c in self.classes])

    def filled(self, value: float = 0.5) -> np.ndarray:
        """Scores with the not-scorable columns set to ``value`` (e.g. for code that needs finite scores)."""
        s = self.scores.copy()
        s[:, ~self.scorable] = value
        return s

    def write_explanations(self, path: str | Path, provenance: Mapping[str, Any] | None = None) -> Path:
        """Write ``criteria_explanations.json`` (``path`` may be the report folder)."""
        p = Path(path)
        if p.suffix != ".json":
            p = p / EXPLANATIONS_FILE
        p.parent.mkdir(parents=True, exist_ok=True)
        doc = {"scorer": SCORER_NAME, "classes": self.classes, "not_scorable": self.not_scorable,
               "provenance": dict(provenance or {}), "records": self.explanations}
        p.write_text(json.dumps(_jsonable(doc), separators=(",", ":"), allow_nan=False, ensure_ascii=False) + "\n")
        return p


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (float, np.floating)):
        return None if not np.isfinite(x) else round(float(x), 4)
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, np.bool_):
        return bool(x)
    return x


def _task_classes(task: Any) -> tuple[list[str], dict[str, str]]:
    """(classes, class -> KB id) from a Task, a task name, or a mapping class -> KB id."""
    if isinstance(task, str):
        from medzs.data.tasks import get_task

        task = get_task(task)
    if isinstance(task, Mapping):
        return list(task), {str(k): str(v) for k, v in task.items()}
    if hasattr(task, "classes") and hasattr(task, "kb_ids"):
        return list(task.classes), dict(task.kb_ids)
    raise SpecError(f"task: expected a Task, a task name or a mapping class -> KB id, got {type(task).__name__}")


class CriteriaScorer:
    """Zero-shot scorer from ECG measurements and the knowledge base's structured criteria (``ecg-criteria.kb``).

    Args:
        entries: KB entries (default: :func:`medzs.knowledge.loader.load_entries` for ``ecg``).
        knowledge_root: ``knowledge/`` folder to load from (when ``entries`` is None).
        scales: Soft-check scale overrides, by measurement name or unit.
        nan_policy: ``"half"`` (an unmeasured rule contributes 0.5) or ``"skip"`` (left out).
        and_mode: ``"product"`` or ``"min"`` for ``all_of`` entries.

    Example:
        >>> scorer = CriteriaScorer()                          # doctest: +SKIP
        >>> scores = scorer.score([sample], "ptbxl-rhythm")    # doctest: +SKIP
        >>> scorer.last_result.explanations[0]                 # doctest: +SKIP
    """

    name = SCORER_NAME
    kind = "criteria"

    def __init__(self, entries: Iterable[Entry] | None = None, knowledge_root: str | Path | None = None,
                 scales: Mapping[str, float] | None = None, nan_policy: str = "half",
                 and_mode: str = "product") -> None:
        if nan_policy not in NAN_POLICIES:
            raise SpecError(f"nan_policy: expected one of {NAN_POLICIES}, got {nan_policy!r}")
        if and_mode not in AND_MODES:
            raise SpecError(f"and_mode: expected one of {AND_MODES}, got {and_mode!r}")
        if entries is None:
            from medzs.knowledge.loader import load_entries

            entries = load_entries(knowledge_root, modality="ecg")
        self.entries = {e.id: e for e in entries}
        self.scales = dict(scales or {})
        self.nan_policy = nan_policy
        self.and_mode = and_mode
        self._compiled: dict[str, CompiledEntry] = {}
        self.last_result: CriteriaResult | None = None

    def compiled(self, entry_id: str) -> CompiledEntry:
        """The compiled entry (cached); an unknown id gives a not-scorable entry with the reason."""
        if entry_id not in self._compiled:
            e = self.entries.get(entry_id)
            if e is None:
                self._compiled[entry_id] = CompiledEntry(entry_id, entry_id, "all_of", (),
                                                         "no KB entry with this id: not scorable by this scorer")
            else:
                self._compiled[entry_id] = compile_entry(e, self.scales)
        return self._compiled[entry_id]

    def not_scorable(self, task: Any) -> dict[str, str]:
        """Class -> reason for the classes of ``task`` this scorer cannot score."""
        classes, kb = _task_classes(task)
        return {c: self.compiled(kb[c]).reason for c in classes if not self.compiled(kb[c]).scorable}

    def measure(self, ecgs: Any, fs: float | None = None, progress: bool = False) -> list[Any]:
        """Measurements of records (sample dicts, or ``(leads, samples)`` arrays / an ``(N, leads, samples)`` array
        with ``fs``); :class:`~medzs.measure.ecg.Measurements` pass through unchanged."""
        from medzs.measure.ecg import Measurements, measure_ecg

        if isinstance(ecgs, np.ndarray) and ecgs.ndim == 2:
            ecgs = [ecgs]
        items = [ecgs[k] for k in range(ecgs.shape[0])] if isinstance(ecgs, np.ndarray) else list(ecgs)
        it: Iterable[Any] = items
        if progress:
            from tqdm.auto import tqdm

            it = tqdm(items, desc="measure ECGs", unit="ECG")
        out = []
        for k, item in enumerate(it):
            if isinstance(item, Measurements):
                out.append(item)
            elif isinstance(item, Mapping):
                out.append(measure_ecg(item, fs=fs))
            else:
                out.append(measure_ecg(item, fs=fs, record_id=f"record{k}"))
        return out

    def explain(self, m: Any, task: Any) -> dict[str, Any]:
        """Score one record's measurements for every class and say why.

        Returns:
            ``{"record_id", "measurements": {name: value, ...} (only those the rules used), "units",
            "classes": {class: {"score", "entry_id", "logic", "scorable", "rules": [{"criterion", "measurement",
            "comparison", "threshold", "unit", "leads", "lead_aggregation", "min_leads", "scale", "value",
            "check", "reason"}], "driver": index of the rule that decided the score, "note"}}}``.
        """
        classes, kb = _task_classes(task)
        used: dict[str, Any] = {}
        out: dict[str, Any] = {}
        for c in classes:
            ce = self.compiled(kb[c])
            if not ce.scorable:
                out[c] = {"score": None, "entry_id": ce.entry_id, "scorable": False, "note": ce.reason}
                continue
            rules = []
            for cr in ce.rules:
                r = cr.rule
                chk = cr.check(m)
                used[r.measurement] = m.values.get(r.measurement)
                rules.append({
                    "criterion": cr.text, "measurement": r.measurement, "comparison": r.comparison,
                    "threshold": list(r.threshold) if isinstance(r.threshold, tuple) else r.threshold,
                    "unit": r.unit, "leads": list(r.leads), "lead_aggregation": r.lead_aggregation if r.leads else None,
                    "min_leads": r.min_leads if r.leads else None, "scale": cr.scale, **chk,
                })
            checks = [rr["check"] for rr in rules]
            score = combine(ce.logic, checks, self.nan_policy, self.and_mode)
            finite = [(i, v) for i, v in enumerate(checks) if not math.isnan(v)]
            driver = None
            if finite:
                pick = min if ce.logic == "all_of" else max
                driver = pick(finite, key=lambda t: t[1])[0]
            note = None
            if not finite:
                note = "no rule could be checked (measurements NaN): score 0.5"
            elif len(finite) < len(checks):
                note = (f"{len(checks) - len(finite)} rule(s) unmeasured, counted as 0.5" if self.nan_policy == "half"
                        else f"{len(checks) - len(finite)} rule(s) unmeasured, left out")
            out[c] = {"score": score, "entry_id": ce.entry_id, "logic": ce.logic, "scorable": True,
                      "rules": rules, "driver": driver, "note": note}
        units = {k: MEASUREMENTS[k] for k in used}
        return {"record_id": m.record_id, "measurements": used, "units": units, "classes": out}

    def score_measurements(self, measurements: Sequence[Any], task: Any) -> CriteriaResult:
        """Scores and explanations from measurements already taken."""
        t0 = time.perf_counter()
        classes, _ = _task_classes(task)
        scores = np.full((len(measurements), len(classes)), np.nan)
        expl = []
        for i, m in enumerate(measurements):
            e = self.explain(m, task)
            expl.append(e)
            for j, c in enumerate(classes):
                s = e["classes"][c]["score"]
                if s is not None:
                    scores[i, j] = s
        res = CriteriaResult(classes, scores, [m.record_id for m in measurements], expl, self.not_scorable(task),
                             list(measurements), time.perf_counter() - t0)
        self.last_result = res
        return res

    def run(self, ecgs: Any, task: Any, fs: float | None = None, progress: bool = False) -> CriteriaResult:
        """Measure and score: the full :class:`CriteriaResult` (scores, explanations, measurements)."""
        t0 = time.perf_counter()
        ms = self.measure(ecgs, fs=fs, progress=progress)
        res = self.score_measurements(ms, task)
        res.seconds = time.perf_counter() - t0
        return res

    def score(self, ecgs: Any, task: Any, fs: float | None = None, progress: bool = False) -> np.ndarray:
        """``(N, C)`` scores in [0, 1] (NaN columns: not scorable); explanations in :attr:`last_result`.

        Args:
            ecgs: Sample dicts, ``(leads, samples)`` arrays (mV) or an ``(N, leads, samples)`` array (with ``fs``;
                rows in the standard 12-lead order), or :class:`~medzs.measure.ecg.Measurements`.
            task: A :class:`~medzs.data.tasks.Task`, a task name (``"ptbxl-rhythm"``) or a mapping class -> KB id.
            fs: Sampling rate of array input, Hz.
            progress: Show a progress bar while measuring.
        """
        return self.run(ecgs, task, fs=fs, progress=progress).scores

    def describe(self) -> dict[str, Any]:
        """Provenance: name, knowledge-base size, scales, policies."""
        return {"name": self.name, "kind": self.kind, "kb_entries": len(self.entries),
                "unit_scales": dict(UNIT_SCALES), "measurement_scales": {**MEASUREMENT_SCALES, **self.scales},
                "nan_policy": self.nan_policy, "and_mode": self.and_mode}


from medzs.scoring import fuse_rank_average, fusion_inputs  # noqa: E402, F401  (kept for existing imports)


__all__ = [
    "AND_MODES", "EXPLANATIONS_FILE", "MEASUREMENT_SCALES", "NAN_POLICIES", "SCORER_NAME", "UNIT_SCALES",
    "CompiledEntry", "CompiledRule", "CriteriaResult", "CriteriaScorer", "combine", "compile_entry",
    "fuse_rank_average", "rule_scale", "soft_check",
]
