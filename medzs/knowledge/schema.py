"""Schema of knowledge-base entries (``knowledge/<modality>/*.yaml``) and its validator.

An entry describes one condition in the project's own words, with codes, measurable criteria (prose and,
where the condition is defined by measurements, structured rules) and cited sources (ids from
``knowledge/sources.yaml``). See ``docs/architecture.md`` for the field list.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medzs.errors import KnowledgeBaseError

#: Measurements a structured rule may use, with their unit. ECG measurements are computed per record
#: (``lead``-specific ones per lead, selected by the rule's ``leads``). Ratios and flags are unitless ("1").
MEASUREMENTS: dict[str, str] = {
    # rate and rhythm
    "heart_rate": "bpm",
    "rr_mean": "ms",
    "rr_sd": "ms",
    "rr_cv": "1",  # coefficient of variation of RR intervals
    "rmssd": "ms",  # root mean square of successive RR differences
    "p_wave_fraction": "1",  # fraction of beats with a detectable P wave (0-1)
    "p_axis": "deg",
    "p_duration": "ms",
    "p_amplitude": "mV",  # per lead
    "pr_interval": "ms",
    "premature_beats": "count",
    "pause_max": "ms",  # longest RR interval
    # ventricular depolarisation
    "qrs_duration": "ms",
    "qrs_axis": "deg",
    "q_amplitude": "mV",  # per lead, magnitude of the Q wave (positive number)
    "q_duration": "ms",  # per lead
    "r_amplitude": "mV",  # per lead
    "s_amplitude": "mV",  # per lead, magnitude of the S wave (positive number)
    "r_peak_time": "ms",  # per lead, intrinsicoid deflection
    "qrs_amplitude": "mV",  # per lead, peak-to-peak
    "sokolow_lyon": "mV",  # S(V1) + max(R(V5), R(V6))
    "cornell_voltage": "mV",  # R(aVL) + S(V3)
    # repolarisation
    "st_deviation": "mV",  # per lead, at J point + 60 ms, signed
    "t_amplitude": "mV",  # per lead, signed
    "qt_interval": "ms",
    "qtc_bazett": "ms",
    "qtc_fridericia": "ms",
}

COMPARISONS = (">", ">=", "<", "<=", "==", "between")
LOGICS = ("all_of", "any_of", "none_of")
LEAD_AGGREGATIONS = ("any", "all", "mean", "max", "min", "count")
MODALITIES = ("ecg", "cxr", "ct")
_ID_RE = re.compile(r"^(ecg|cxr|ct)\.[a-z0-9_-]+\.[A-Za-z0-9_+\-]+$")
REQUIRED = ("id", "modality", "name", "codes", "definition", "criteria", "sources")


@dataclass(frozen=True)
class Rule:
    """A structured, machine-checkable criterion.

    Attributes:
        measurement: A key of :data:`MEASUREMENTS`.
        comparison: One of :data:`COMPARISONS`.
        threshold: Threshold in ``unit``; for ``"between"`` a ``(low, high)`` pair.
        unit: Must equal ``MEASUREMENTS[measurement]``.
        leads: Lead names for per-lead measurements (empty for record-level ones).
        lead_aggregation: How per-lead values combine: ``any`` (at least ``min_leads`` leads pass),
            ``all``, ``mean``, ``max``, ``min``.
        min_leads: For ``any``: how many leads must pass (e.g. 2 contiguous leads for ST elevation).
    """

    measurement: str
    comparison: str
    threshold: float | tuple[float, float]
    unit: str
    leads: tuple[str, ...] = ()
    lead_aggregation: str = "any"
    min_leads: int = 1


@dataclass(frozen=True)
class Criterion:
    """A criterion in prose, optionally with its structured rule."""

    text: str
    rule: Rule | None = None


@dataclass(frozen=True)
class Entry:
    """One knowledge-base entry (a condition)."""

    id: str
    modality: str
    name: str
    codes: dict[str, tuple[str, ...]]
    definition: str
    criteria: tuple[Criterion, ...]
    sources: tuple[str, ...]
    synonyms: tuple[str, ...] = ()
    parents: tuple[str, ...] = ()
    logic: str = "all_of"
    path: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def rules(self) -> tuple[Rule, ...]:
        """The structured rules of this entry's criteria."""
        return tuple(c.rule for c in self.criteria if c.rule is not None)


def _fail(where: str, fld: str, expected: str, got: Any = None) -> KnowledgeBaseError:
    tail = "" if got is None else f", got {got!r}"
    return KnowledgeBaseError(f"{where}: field '{fld}': expected {expected}{tail}")


def parse_rule(raw: Any, where: str) -> Rule:
    """Validate and build a :class:`Rule` from its YAML mapping.

    Raises:
        KnowledgeBaseError: naming the file and field when the rule is malformed.
    """
    if not isinstance(raw, dict):
        raise _fail(where, "rule", "a mapping", raw)
    m = raw.get("measurement")
    if m not in MEASUREMENTS:
        raise _fail(where, "rule.measurement", f"one of {sorted(MEASUREMENTS)}", m)
    cmp_ = raw.get("comparison")
    if cmp_ not in COMPARISONS:
        raise _fail(where, "rule.comparison", f"one of {COMPARISONS}", cmp_)
    thr = raw.get("threshold")
    if cmp_ == "between":
        if not (isinstance(thr, (list, tuple)) and len(thr) == 2 and all(isinstance(t, (int, float)) for t in thr)):
            raise _fail(where, "rule.threshold", "[low, high] numbers for 'between'", thr)
        thr = (float(thr[0]), float(thr[1]))
    elif not isinstance(thr, (int, float)) or isinstance(thr, bool):
        raise _fail(where, "rule.threshold", "a number", thr)
    else:
        thr = float(thr)
    unit = str(raw.get("unit"))
    if unit != MEASUREMENTS[m]:
        raise _fail(where, "rule.unit", f"{MEASUREMENTS[m]!r} for {m}", unit)
    leads = tuple(str(x) for x in (raw.get("leads") or ()))
    agg = raw.get("lead_aggregation", "any")
    if agg not in LEAD_AGGREGATIONS:
        raise _fail(where, "rule.lead_aggregation", f"one of {LEAD_AGGREGATIONS}", agg)
    min_leads = int(raw.get("min_leads", 1))
    return Rule(m, cmp_, thr, unit, leads, agg, min_leads)


def parse_entry(raw: Any, path: str | Path = "<memory>", known_sources: set[str] | None = None) -> Entry:
    """Validate one YAML entry and build an :class:`Entry`.

    Args:
        raw: The parsed YAML mapping.
        path: File the entry came from (named in errors).
        known_sources: Source ids from ``knowledge/sources.yaml``; when given, every cited id must be in it.

    Raises:
        KnowledgeBaseError: an entry without codes, criteria or sources, an unknown source id, a malformed
            rule, or a bad id; the message names the file and the field.
    """
    where = str(path)
    if not isinstance(raw, dict):
        raise _fail(where, "<root>", "a mapping", type(raw).__name__)
    for key in REQUIRED:
        if raw.get(key) in (None, "", [], {}):
            raise _fail(where, key, "a non-empty value")
    eid = str(raw["id"])
    if not _ID_RE.match(eid):
        raise _fail(where, "id", "'<modality>.<system>.<CODE>' e.g. 'ecg.scp.CLBBB'", eid)
    modality = raw["modality"]
    if modality not in MODALITIES or not eid.startswith(modality + "."):
        raise _fail(where, "modality", f"one of {MODALITIES} matching the id prefix", modality)
    codes_raw = raw["codes"]
    if not isinstance(codes_raw, dict):
        raise _fail(where, "codes", "a mapping of coding system -> list of codes", codes_raw)
    codes = {str(k): tuple(str(c) for c in (v if isinstance(v, list) else [v]) if c is not None and str(c))
             for k, v in codes_raw.items()}
    if not any(codes.values()):
        raise _fail(where, "codes", "at least one code")
    crit_raw = raw["criteria"]
    if not isinstance(crit_raw, list):
        raise _fail(where, "criteria", "a list", crit_raw)
    criteria = []
    for i, c in enumerate(crit_raw):
        if isinstance(c, str):
            criteria.append(Criterion(c.strip()))
            continue
        if not isinstance(c, dict) or not str(c.get("text", "")).strip():
            raise _fail(where, f"criteria[{i}].text", "a non-empty string")
        rule = parse_rule(c["rule"], f"{where}: criteria[{i}]") if c.get("rule") is not None else None
        criteria.append(Criterion(str(c["text"]).strip(), rule))
    sources = tuple(str(s) for s in raw["sources"])
    if known_sources is not None:
        unknown = [s for s in sources if s not in known_sources]
        if unknown:
            raise _fail(where, "sources", "ids listed in knowledge/sources.yaml", unknown)
    logic = raw.get("logic", "all_of")
    if logic not in LOGICS:
        raise _fail(where, "logic", f"one of {LOGICS}", logic)
    known = set(REQUIRED) | {"synonyms", "parents", "logic"}
    return Entry(
        id=eid,
        modality=modality,
        name=str(raw["name"]).strip(),
        codes=codes,
        definition=" ".join(str(raw["definition"]).split()),
        criteria=tuple(criteria),
        sources=sources,
        synonyms=tuple(str(s) for s in raw.get("synonyms") or ()),
        parents=tuple(str(p) for p in raw.get("parents") or ()),
        logic=logic,
        path=where,
        extra={k: v for k, v in raw.items() if k not in known},
    )
