"""Read and write HL7 version 3 annotated ECG (aECG) XML files (root element ``AnnotatedECG``).

HL7 aECG (ANSI/HL7 V3 ECG, R1-2004; "HL7 aECG Implementation Guide", 21 March 2005), namespace
``urn:hl7-org:v3``. The rhythm waveforms of a recording are in

    AnnotatedECG/component/series[code=RHYTHM]/component/sequenceSet/component/sequence

one ``sequence`` per lead (``code`` ``MDC_ECG_LEAD_I`` .. ``MDC_ECG_LEAD_V6``, code system MDC
2.16.840.1.113883.6.24) with ``value xsi:type="SLIST_PQ"``: ``origin`` and ``scale`` (physical quantities with a
``unit``, usually ``uV``) and ``digits`` (whitespace-separated integers); physical value = origin + scale * digit.
One more ``sequence`` (code ``TIME_ABSOLUTE`` with ``GLIST_TS``, or ``TIME_RELATIVE`` with ``GLIST_PQ``) gives the
sample times: ``head`` and ``increment`` (seconds per sample, so fs = 1 / increment).
Interpretation statements are ``series/subjectOf/annotationSet//annotation`` with code
``MDC_ECG_INTERPRETATION_STATEMENT`` and a text ``value`` (``xsi:type="ST"``).
"""

from __future__ import annotations

import logging
import os
import re
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medzs.errors import RecordError
from medzs.io._ecg_common import build_sample, local_name, normalize_lead_name, normalize_sex, parse_xml, unit_factor

logger = logging.getLogger(__name__)

HL7_NS = "urn:hl7-org:v3"
XSI_NS = "http://www.w3.org/2001/XMLSchema-instance"
#: OIDs of the code systems used in aECG files.
MDC_OID = "2.16.840.1.113883.6.24"
ACTCODE_OID = "2.16.840.1.113883.5.4"
CPT4_OID = "2.16.840.1.113883.6.12"
GENDER_OID = "2.16.840.1.113883.5.1"

_EXPECTED = "HL7 aECG (AnnotatedECG) XML"
_N = f"{{{HL7_NS}}}"
_XSI_TYPE = f"{{{XSI_NS}}}type"
_TIME_S = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "ks": 1e3, "min": 60.0}

#: Standard lead name -> MDC lead code.
LEAD_TO_MDC: dict[str, str] = {
    "I": "MDC_ECG_LEAD_I", "II": "MDC_ECG_LEAD_II", "III": "MDC_ECG_LEAD_III",
    "aVR": "MDC_ECG_LEAD_AVR", "aVL": "MDC_ECG_LEAD_AVL", "aVF": "MDC_ECG_LEAD_AVF",
    **{f"V{i}": f"MDC_ECG_LEAD_V{i}" for i in range(1, 7)},
}


def _q(tag: str) -> str:
    return _N + tag


def _child(el: Any, *tags: str) -> Any:
    for tag in tags:
        if el is None:
            return None
        el = el.find(_q(tag))
    return el


def _children(el: Any, tag: str) -> list[Any]:
    return [] if el is None else el.findall(_q(tag))


def _code(el: Any) -> str:
    c = _child(el, "code")
    return (c.get("code") or "").strip() if c is not None else ""


def _seconds(el: Any, where: str, field: str) -> float:
    try:
        v = float(el.get("value"))
    except (TypeError, ValueError) as exc:
        raise RecordError(f"{where}: {field} value {el.get('value')!r} (expected a number)") from exc
    unit = (el.get("unit") or "s").strip()
    if unit not in _TIME_S:
        raise RecordError(f"{where}: {field} unit {unit!r} (expected one of {sorted(_TIME_S)})")
    return v * _TIME_S[unit]


def _pq_mv(el: Any, where: str, field: str) -> float:
    if el is None:
        raise RecordError(f"{where}: {field} missing (expected a physical quantity with value and unit)")
    try:
        v = float(el.get("value"))
    except (TypeError, ValueError) as exc:
        raise RecordError(f"{where}: {field} value {el.get('value')!r} (expected a number)") from exc
    return v * unit_factor(el.get("unit"), where, f"{field} unit")


def _choose_series(root: Any, where: str) -> Any:
    series = [s for comp in _children(root, "component") for s in _children(comp, "series")]
    if not series:
        raise RecordError(f"{where}: no component/series element (expected rhythm waveforms in an {_EXPECTED} file)")
    for s in series:
        if _code(s).upper() == "RHYTHM":
            return s
    logger.info("%s: no RHYTHM series; reading the first series", where)
    return series[0]


def read_hl7aecg(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read an HL7 aECG file as a medzs sample (rhythm series, first sequence set).

    Args:
        path: The XML file.

    Returns:
        Sample dict (``docs/architecture.md``), leads in mV. ``meta``: ``format="hl7aecg"``, ``series_code``,
        ``time_code`` (``TIME_ABSOLUTE``/``TIME_RELATIVE``), ``statements``, ``interpretation_summary`` (or None),
        ``sex``, ``scale_uv`` (per lead scale, or one value when equal). ``meta["identifiers"]``:
        ``subject_id``, ``patient_name``, ``birth_date``, ``acquisition_start`` (effectiveTime/low, or the
        absolute time sequence head), when present.

    Raises:
        RecordError: not well-formed XML (e.g. truncated), root not ``AnnotatedECG``, no series or sequence
            set, no time sequence or a non-positive increment, a lead value that is not ``SLIST_PQ`` with numeric
            digits, unknown units, leads of unequal length.
    """
    p = Path(path)
    where = p.name
    root = parse_xml(p, _EXPECTED)
    if local_name(root) != "AnnotatedECG" or (root.tag.startswith("{") and not root.tag.startswith(_N)):
        raise RecordError(f"{where}: root element {root.tag!r} (expected <AnnotatedECG xmlns='{HL7_NS}'>)")
    series = _choose_series(root, where)
    seqset = _child(series, "component", "sequenceSet")
    if seqset is None:
        raise RecordError(f"{where}: series without component/sequenceSet (expected waveform sequences)")
    fs = None
    time_code = None
    acq_start = None
    leads: list[str] = []
    rows: list[np.ndarray] = []
    scales: list[float] = []
    for comp in _children(seqset, "component"):
        seq = _child(comp, "sequence")
        if seq is None:
            continue
        code = _code(seq)
        value = _child(seq, "value")
        if value is None:
            raise RecordError(f"{where}: sequence {code!r} without value (expected GLIST or SLIST_PQ data)")
        vtype = (value.get(_XSI_TYPE) or "").split(":")[-1]
        if code.startswith("TIME_"):
            inc = _child(value, "increment")
            if inc is None:
                raise RecordError(f"{where}: time sequence {code} without increment (expected {vtype} increment)")
            step = _seconds(inc, where, f"{code} increment")
            if step <= 0:
                raise RecordError(f"{where}: {code} increment {step} s (expected a positive sample interval)")
            fs = 1.0 / step
            if abs(fs - round(fs)) < 1e-6 * fs:
                fs = float(round(fs))
            time_code = code
            head = _child(value, "head")
            if code == "TIME_ABSOLUTE" and head is not None:
                acq_start = head.get("value")
            continue
        if vtype != "SLIST_PQ":
            raise RecordError(f"{where}: sequence {code!r} value type {vtype!r} (expected SLIST_PQ)")
        name = normalize_lead_name(code)
        origin = _pq_mv(_child(value, "origin"), where, f"lead {name!r} origin")
        scale = _pq_mv(_child(value, "scale"), where, f"lead {name!r} scale")
        digits_text = _child(value, "digits")
        try:
            digits = np.array((digits_text.text or "").split() if digits_text is not None else [], dtype=np.int64)
        except ValueError as exc:
            raise RecordError(f"{where}: lead {name!r} digits are not integers ({exc})") from exc
        if digits.size == 0:
            raise RecordError(f"{where}: lead {name!r} has no digits (expected samples)")
        leads.append(name)
        rows.append(origin + scale * digits.astype(np.float64))
        scales.append(round(scale * 1000.0, 9))
    if fs is None:
        raise RecordError(f"{where}: no TIME_ABSOLUTE or TIME_RELATIVE sequence (expected a sample increment)")
    if not rows:
        raise RecordError(f"{where}: no lead sequences (expected MDC_ECG_LEAD_* sequences)")
    lengths = {n: r.size for n, r in zip(leads, rows, strict=True)}
    if len(set(lengths.values())) != 1:
        raise RecordError(f"{where}: leads have different lengths {lengths} (expected equal lengths)")

    statements: list[str] = []
    summary = None
    for aset in [_child(s, "annotationSet") for s in _children(series, "subjectOf")]:
        if aset is None:
            continue
        for ann in aset.iter(_q("annotation")):
            acode = _code(ann)
            val = _child(ann, "value")
            text = (val.text or "").strip() if val is not None else ""
            if not text:
                continue
            if acode == "MDC_ECG_INTERPRETATION_STATEMENT":
                statements.append(text)
            elif acode == "MDC_ECG_INTERPRETATION_SUMMARY":
                summary = text

    subject = _child(root, "componentOf", "timepointEvent", "componentOf", "subjectAssignment", "subject",
                     "trialSubject")
    person = _child(subject, "subjectDemographicPerson")
    sid = _child(subject, "id")
    gender = _child(person, "administrativeGenderCode")
    birth = _child(person, "birthTime")
    name_el = _child(person, "name")
    eff_low = _child(root, "effectiveTime", "low")
    identifiers = {
        "subject_id": (sid.get("extension") or sid.get("root")) if sid is not None else None,
        "patient_name": " ".join(name_el.itertext()).strip() if name_el is not None else None,
        "birth_date": birth.get("value") if birth is not None else None,
        "acquisition_start": (eff_low.get("value") if eff_low is not None else None) or acq_start,
    }
    meta = {
        "series_code": _code(series) or None,
        "time_code": time_code,
        "statements": statements,
        "interpretation_summary": summary,
        "sex": normalize_sex(gender.get("code")) if gender is not None else None,
        "scale_uv": scales[0] if len(set(scales)) == 1 else scales,
    }
    return build_sample(np.stack(rows), leads, fs, p, "hl7aecg", meta, identifiers)


def _fmt_number(x: float) -> str:
    return np.format_float_positional(float(x), trim="-")


def write_hl7aecg(
    sample: dict[str, Any],
    path: str | os.PathLike[str],
    resolution_uv: float = 1.0,
    statements: Sequence[str] | None = None,
    include_identifiers: bool = False,
) -> Path:
    """Write a sample as a small HL7 aECG file (one RHYTHM series, relative time, SLIST_PQ leads in uV).

    The document follows the aECG structure: ``AnnotatedECG`` (id, CPT-4 code 93000, effectiveTime,
    ``componentOf/timepointEvent/componentOf/subjectAssignment`` with the trial subject, ``component/series``).
    Times are relative (``TIME_RELATIVE``, ``GLIST_PQ`` in seconds); no acquisition time is written, and the
    subject id, name and birth time are written only with ``include_identifiers=True`` (otherwise the
    subject id carries ``nullFlavor="MSK"``, masked).

    Args:
        sample: Sample dict (``signal`` (leads, samples) in mV, ``leads``, ``fs``, ``id``, ``meta``).
        path: Output file.
        resolution_uv: Amplitude quantisation step in microvolts (``scale``); samples are rounded to it, so the
            round-trip error is at most ``resolution_uv / 2``.
        statements: Interpretation statements to write; default ``sample["meta"]["statements"]`` if present.
        include_identifiers: Also write ``meta["identifiers"]`` subject id, patient name and birth date.

    Returns:
        The written path.

    Raises:
        RecordError: invalid sample (shape, lead names, non-finite values, fs) or non-positive resolution.
    """
    from lxml import etree

    out = Path(path)
    where = str(sample.get("id") or out.name)
    signal = np.asarray(sample.get("signal"), dtype=np.float64)
    leads = list(sample.get("leads") or [])
    fs = float(sample.get("fs") or 0)
    if signal.ndim != 2 or signal.shape[0] != len(leads) or signal.shape[1] == 0:
        raise RecordError(f"{where}: signal shape {signal.shape} with {len(leads)} leads (expected (leads, samples))")
    if not np.isfinite(signal).all():
        raise RecordError(f"{where}: signal has non-finite values (expected finite mV values)")
    if fs <= 0:
        raise RecordError(f"{where}: fs {fs} (expected a positive rate in Hz)")
    if resolution_uv <= 0:
        raise RecordError(f"{where}: resolution_uv {resolution_uv} (expected a positive step in uV)")
    meta = dict(sample.get("meta") or {})
    if statements is None:
        statements = list(meta.get("statements") or [])

    nsmap = {None: HL7_NS, "xsi": XSI_NS, "voc": "urn:hl7-org:v3/voc"}

    def el(parent: Any, tag: str, text: str | None = None, **attrs: str) -> Any:
        e = etree.SubElement(parent, _q(tag)) if parent is not None else etree.Element(_q(tag), nsmap=nsmap)
        for k, v in attrs.items():
            e.set(_XSI_TYPE if k == "xsi_type" else k, v)
        if text is not None:
            e.text = text
        return e

    counter = iter(range(1_000_000))

    def new_id() -> str:
        # Deterministic UUIDs (same sample -> same file); derived from the record id, never from identifiers.
        return str(uuid.uuid5(uuid.NAMESPACE_URL, f"medzs:hl7aecg:{where}:{next(counter)}"))

    root = el(None, "AnnotatedECG")
    root.set(f"{{{XSI_NS}}}schemaLocation", f"{HL7_NS} ../schema/PORT_MT020001.xsd")
    root.set("type", "Observation")
    el(root, "id", root=new_id())
    el(root, "code", code="93000", codeSystem=CPT4_OID, codeSystemName="CPT-4")
    el(root, "text", f"medzs export of record {where}")
    eff = el(root, "effectiveTime")
    el(eff, "low", nullFlavor="UNK")
    el(eff, "high", nullFlavor="UNK")
    ident = meta.get("identifiers") or {}
    subj = el(
        el(el(el(el(el(root, "componentOf"), "timepointEvent"), "componentOf"), "subjectAssignment"), "subject"),
        "trialSubject",
    )
    if include_identifiers and ident.get("subject_id", ident.get("patient_id")):
        el(subj, "id", root=new_id(), extension=str(ident.get("subject_id", ident.get("patient_id"))))
    else:
        el(subj, "id", nullFlavor="MSK")
    person = el(subj, "subjectDemographicPerson")
    if include_identifiers and ident.get("patient_name"):
        el(person, "name", str(ident["patient_name"]))
    sex = {"male": "M", "female": "F"}.get(str(meta.get("sex")), "UN")
    el(person, "administrativeGenderCode", code=sex, codeSystem=GENDER_OID, codeSystemName="AdministrativeGender")
    if include_identifiers and ident.get("birth_date"):
        el(person, "birthTime", value=re.sub(r"\D", "", str(ident["birth_date"])))
    ca = subj.getparent().getparent()
    trial = el(el(ca, "componentOf"), "clinicalTrial")
    el(trial, "id", root=new_id())

    series = el(el(root, "component"), "series")
    el(series, "id", root=new_id())
    el(series, "code", code="RHYTHM", codeSystem=ACTCODE_OID, codeSystemName="ActCode", displayName="Rhythm Waveforms")
    seff = el(series, "effectiveTime")
    el(seff, "low", nullFlavor="UNK")
    el(seff, "high", nullFlavor="UNK")
    seqset = el(el(series, "component"), "sequenceSet")
    tseq = el(el(seqset, "component"), "sequence")
    el(tseq, "code", code="TIME_RELATIVE", codeSystem=ACTCODE_OID, codeSystemName="ActCode")
    tval = el(tseq, "value", xsi_type="GLIST_PQ")
    el(tval, "head", value="0", unit="s")
    el(tval, "increment", value=repr(1.0 / fs), unit="s")
    digits = np.rint(signal * 1000.0 / resolution_uv).astype(np.int64)
    for i, lead in enumerate(leads):
        code = LEAD_TO_MDC.get(str(lead), f"MDC_ECG_LEAD_{str(lead).upper()}")
        seq = el(el(seqset, "component"), "sequence")
        el(seq, "code", code=code, codeSystem=MDC_OID, codeSystemName="MDC")
        val = el(seq, "value", xsi_type="SLIST_PQ")
        el(val, "origin", value="0", unit="uV")
        el(val, "scale", value=_fmt_number(resolution_uv), unit="uV")
        el(val, "digits", " ".join(map(str, digits[i].tolist())))
    if statements:
        aset = el(el(series, "subjectOf"), "annotationSet")
        interp = el(el(aset, "component"), "annotation")
        el(interp, "code", code="MDC_ECG_INTERPRETATION", codeSystem=MDC_OID, codeSystemName="MDC")
        for text in statements:
            ann = el(el(interp, "component"), "annotation")
            el(ann, "code", code="MDC_ECG_INTERPRETATION_STATEMENT", codeSystem=MDC_OID, codeSystemName="MDC")
            el(ann, "value", str(text), xsi_type="ST")
    out.parent.mkdir(parents=True, exist_ok=True)
    etree.ElementTree(root).write(str(out), xml_declaration=True, encoding="UTF-8", pretty_print=True)
    logger.debug("write_hl7aecg: %d leads x %d samples", len(leads), signal.shape[1])
    return out


__all__ = ["LEAD_TO_MDC", "read_hl7aecg", "write_hl7aecg"]
