"""Read GE MUSE resting ECG XML exports (root element ``RestingECG``).

A MUSE export holds one or more ``<Waveform>`` blocks (``WaveformType`` ``Rhythm`` = the full recording,
``Median`` = the representative beat). Each has ``SampleBase`` (Hz, times ``10**SampleExponent``) and one
``<LeadData>`` per stored lead with base64-encoded little-endian int16 samples in ``<WaveFormData>``,
``LeadAmplitudeUnitsPerBit`` and ``LeadAmplitudeUnits`` (``MICROVOLTS``), and a CRC-32 of the decoded bytes
(``LeadDataCRC32``). MUSE stores 8 leads (I, II, V1-V6); the 4 others follow from Einthoven's and Goldberger's
equations (Einthoven 1912; Goldberger, Am Heart J 23:483, 1942):

    III = II - I,  aVR = -(I + II) / 2,  aVL = I - II / 2,  aVF = II - I / 2

Interpretation statements are ``<Diagnosis>/<DiagnosisStatement>/<StmtText>``; a statement may be split over
several ``DiagnosisStatement`` elements, of which the last carries ``<StmtFlag>ENDSLINE</StmtFlag>``.
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from medzs.errors import RecordError
from medzs.io._ecg_common import (
    build_sample,
    local_name,
    normalize_lead_name,
    normalize_sex,
    parse_xml,
    to_float,
    unit_factor,
)

logger = logging.getLogger(__name__)

_EXPECTED = "GE MUSE RestingECG XML"
_MEASUREMENTS = (
    "VentricularRate", "AtrialRate", "PRInterval", "QRSDuration", "QTInterval", "QTCorrected",
    "PAxis", "RAxis", "TAxis", "QRSCount", "QTcFrederica",
)


def _text(el: Any, tag: str) -> str | None:
    child = el.find(tag)
    if child is None or child.text is None:
        return None
    t = child.text.strip()
    return t or None


def _statements(diag: Any) -> list[str]:
    """Join ``StmtText`` pieces into statements; ``ENDSLINE`` ends a statement."""
    if diag is None:
        return []
    out: list[str] = []
    pending: list[str] = []
    for st in diag.findall("DiagnosisStatement"):
        text = _text(st, "StmtText")
        if text:
            pending.append(text)
        flags = {(f.text or "").strip().upper() for f in st.findall("StmtFlag")}
        if "ENDSLINE" in flags and pending:
            out.append(" ".join(pending))
            pending = []
    if pending:
        out.append(" ".join(pending))
    return out


def derive_limb_leads(lead_i: np.ndarray, lead_ii: np.ndarray) -> dict[str, np.ndarray]:
    """III, aVR, aVL, aVF from leads I and II (Einthoven's law and Goldberger's augmented leads).

    Computed in the dtype of the inputs, so that ``III == II - I`` holds exactly for the returned arrays.

    Args:
        lead_i: Lead I, shape (samples,).
        lead_ii: Lead II, same shape and units.

    Returns:
        ``{"III": II - I, "aVR": -(I + II) / 2, "aVL": I - II / 2, "aVF": II - I / 2}``.
    """
    half = lead_i.dtype.type(0.5) if np.issubdtype(lead_i.dtype, np.floating) else 0.5
    return {
        "III": lead_ii - lead_i,
        "aVR": -(lead_i + lead_ii) * half,
        "aVL": lead_i - lead_ii * half,
        "aVF": lead_ii - lead_i * half,
    }


def read_muse(
    path: str | os.PathLike[str],
    waveform: str = "Rhythm",
    verify_crc: bool = True,
) -> dict[str, Any]:
    """Read a GE MUSE XML file as a medzs sample.

    Args:
        path: The XML file.
        waveform: ``WaveformType`` to read (``"Rhythm"`` = full recording, ``"Median"`` = representative beat).
            When the file lacks it, the first ``<Waveform>`` is read and a warning is logged.
        verify_crc: Check each lead's ``LeadDataCRC32`` against its decoded bytes.

    Returns:
        Sample dict (``docs/architecture.md``) with the 12 standard leads in mV. ``meta``: ``format="muse"``,
        ``waveform_type``, ``stored_leads`` (as in the file), ``derived_leads`` (computed here),
        ``statements`` (``<Diagnosis>``), ``original_statements`` (``<OriginalDiagnosis>``), ``measurements``
        (``RestingECGMeasurements``: ms, bpm, degrees), ``age`` (years, or None when ``AgeUnits`` is not years),
        ``sex``, ``device``, ``muse_version``, ``units_per_bit_uv``. ``meta["identifiers"]``: ``patient_id``,
        ``patient_name``, ``birth_date``, ``acquisition_date``, ``acquisition_time``, ``requisition_number`` when
        present.

    Raises:
        RecordError: not well-formed XML (e.g. truncated), root element not ``RestingECG``, no ``<Waveform>``,
            missing sampling rate, a lead with undecodable base64, a CRC-32 mismatch, a sample count that
            differs from ``LeadSampleCountTotal``, leads of unequal length, unknown amplitude units, or I/II
            missing when other limb leads must be derived.
    """
    p = Path(path)
    root = parse_xml(p, _EXPECTED)
    if local_name(root) != "RestingECG":
        raise RecordError(f"{p.name}: root element <{local_name(root)}> (expected <RestingECG>, a {_EXPECTED} file)")
    waveforms = root.findall("Waveform")
    if not waveforms:
        raise RecordError(f"{p.name}: no <Waveform> element (expected rhythm waveforms in a {_EXPECTED} file)")
    chosen = [w for w in waveforms if (_text(w, "WaveformType") or "").lower() == waveform.lower()]
    if chosen:
        wf = chosen[0]
    else:
        wf = waveforms[0]
        logger.warning(
            "%s: no %s waveform; reading the %s waveform instead", p.name, waveform, _text(wf, "WaveformType")
        )
    wtype = _text(wf, "WaveformType") or "unknown"
    base = to_float(_text(wf, "SampleBase"))
    if base is None or base <= 0:
        raise RecordError(f"{p.name}: Waveform/SampleBase {_text(wf, 'SampleBase')!r} (expected a rate in Hz)")
    exponent = int(to_float(_text(wf, "SampleExponent")) or 0)
    fs = base * 10.0**exponent

    stored: dict[str, np.ndarray] = {}
    stored_names: list[str] = []
    upb_uv: set[float] = set()
    for ld in wf.findall("LeadData"):
        raw_name = _text(ld, "LeadID")
        if raw_name is None:
            raise RecordError(f"{p.name}: Waveform/LeadData without LeadID (expected a lead name)")
        name = normalize_lead_name(raw_name)
        b64 = "".join((ld.findtext("WaveFormData") or "").split())
        try:
            raw = base64.b64decode(b64, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise RecordError(f"{p.name}: lead {name!r} WaveFormData is not valid base64 ({exc})") from exc
        if len(raw) % 2:
            raise RecordError(f"{p.name}: lead {name!r} WaveFormData has {len(raw)} bytes (expected int16 pairs)")
        crc = _text(ld, "LeadDataCRC32")
        if verify_crc and crc is not None and zlib.crc32(raw) != int(crc):
            raise RecordError(
                f"{p.name}: lead {name!r} LeadDataCRC32 mismatch (expected {crc}, got {zlib.crc32(raw)}); "
                "the waveform data is corrupt"
            )
        samples = np.frombuffer(raw, dtype="<i2")
        n_expected = to_float(_text(ld, "LeadSampleCountTotal"))
        if n_expected is not None and samples.size != int(n_expected):
            raise RecordError(
                f"{p.name}: lead {name!r} has {samples.size} samples (expected LeadSampleCountTotal={int(n_expected)})"
            )
        upb = to_float(_text(ld, "LeadAmplitudeUnitsPerBit"))
        if upb is None or upb <= 0:
            raise RecordError(
                f"{p.name}: lead {name!r} LeadAmplitudeUnitsPerBit {_text(ld, 'LeadAmplitudeUnitsPerBit')!r} "
                "(expected a positive number)"
            )
        units = _text(ld, "LeadAmplitudeUnits") or "MICROVOLTS"
        scale = upb * unit_factor(units, p.name, f"lead {name!r} LeadAmplitudeUnits")
        upb_uv.add(round(scale * 1000.0, 9))
        if name in stored:
            raise RecordError(f"{p.name}: lead {name!r} stored twice in the {wtype} waveform (expected once)")
        stored[name] = (samples.astype(np.float64) * scale).astype(np.float32)
        stored_names.append(raw_name)
    if not stored:
        raise RecordError(f"{p.name}: {wtype} waveform has no <LeadData> (expected 8 stored leads)")
    lengths = {k: v.size for k, v in stored.items()}
    if len(set(lengths.values())) != 1:
        raise RecordError(f"{p.name}: leads have different sample counts {lengths} (expected equal lengths)")

    derived: list[str] = []
    missing_limb = [n for n in ("III", "aVR", "aVL", "aVF") if n not in stored]
    if missing_limb:
        if "I" not in stored or "II" not in stored:
            raise RecordError(
                f"{p.name}: leads I and II needed to derive {missing_limb} (stored: {sorted(stored)})"
            )
        for n, v in derive_limb_leads(stored["I"], stored["II"]).items():
            if n in missing_limb:
                stored[n] = v
                derived.append(n)
    names = list(stored)
    signal = np.stack([stored[n] for n in names])

    demo = root.find("PatientDemographics")
    test = root.find("TestDemographics")
    age_units = (_text(demo, "AgeUnits") or "YEARS").upper() if demo is not None else "YEARS"
    age = to_float(_text(demo, "PatientAge")) if demo is not None else None
    meas_el = root.find("RestingECGMeasurements")
    measurements = {}
    if meas_el is not None:
        for tag in _MEASUREMENTS:
            v = to_float(_text(meas_el, tag))
            if v is not None:
                measurements[tag] = v
    meta: dict[str, Any] = {
        "waveform_type": wtype,
        "stored_leads": stored_names,
        "derived_leads": derived,
        "statements": _statements(root.find("Diagnosis")),
        "original_statements": _statements(root.find("OriginalDiagnosis")),
        "measurements": measurements,
        "age": age if age_units == "YEARS" else None,
        "age_raw": None if age_units == "YEARS" or age is None else {"value": age, "units": age_units},
        "sex": normalize_sex(_text(demo, "Gender")) if demo is not None else None,
        "device": _text(test, "AcquisitionDevice") if test is not None else None,
        "muse_version": root.findtext("MuseInfo/MuseVersion"),
        "units_per_bit_uv": sorted(upb_uv)[0] if len(upb_uv) == 1 else sorted(upb_uv),
    }
    if meta["age_raw"] is None:
        del meta["age_raw"]
    identifiers: dict[str, Any] = {}
    if demo is not None:
        last, first = _text(demo, "PatientLastName"), _text(demo, "PatientFirstName")
        identifiers.update(
            patient_id=_text(demo, "PatientID"),
            patient_name=" ".join(x for x in (first, last) if x) or None,
            birth_date=_text(demo, "DateofBirth"),
        )
    if test is not None:
        identifiers.update(
            acquisition_date=_text(test, "AcquisitionDate"), acquisition_time=_text(test, "AcquisitionTime")
        )
    order = root.find("Order")
    if order is not None:
        identifiers["requisition_number"] = _text(order, "RequisitionNumber")
    logger.debug("read_muse: %s waveform, %d leads x %d samples at %s Hz", wtype, len(names), signal.shape[1], fs)
    return build_sample(signal, names, fs, p, "muse", meta, identifiers)


__all__ = ["derive_limb_leads", "read_muse"]
