"""Read DICOM ECG Waveform Storage objects (12-lead, General and Ambulatory ECG) with pydicom.

DICOM PS3.3 A.34 (ECG IODs) and C.10.9 (Waveform module): ``WaveformSequence`` holds one item per multiplex
group (e.g. ``RHYTHM`` = the recording, ``MEDIAN BEAT`` = representative beats); each item has
``SamplingFrequency``, ``NumberOfWaveformChannels``/``Samples``, interleaved ``WaveformData`` and one
``ChannelDefinitionSequence`` item per channel with ``ChannelSourceSequence`` (lead code: MDC ``2:n`` or
SCPECG ``5.6.3-9-n``, and its code meaning), ``ChannelSensitivity``, ``ChannelSensitivityUnitsSequence`` (UCUM
``uV``/``mV``), ``ChannelSensitivityCorrectionFactor`` and ``ChannelBaseline``. Physical value per sample:

    value = raw * ChannelSensitivity * ChannelSensitivityCorrectionFactor + ChannelBaseline

in the sensitivity units (PS3.3 C.10.9.1.4.3: the baseline is the "offset of encoded sample value 0 from actual
0 using the units defined in the Channel Sensitivity Units Sequence"; pydicom's ``multiplex_array`` applies the
same formula), then converted to mV.

Interpretation statements are read from ``WaveformAnnotationSequence`` items that carry text
(``UnformattedTextValue``) or a coded finding (``ConceptCodeSequence`` meaning) without a numeric value;
numeric items (``NumericValue``, e.g. QRS duration) go to ``meta["measurements"]``.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from medzs.errors import RecordError
from medzs.io._imaging_common import DICOM_IDENTIFIERS as _IDENTIFIERS  # one list for every DICOM reader
from medzs.io._ecg_common import SCP_LEAD_NUMBERS, build_sample, normalize_lead_name, normalize_sex, unit_factor
from medzs.spec import STANDARD_12_LEADS

logger = logging.getLogger(__name__)

#: SOP Class UIDs of the ECG waveform IODs (PS3.4 B.5).
ECG_SOP_CLASSES: dict[str, str] = {
    "1.2.840.10008.5.1.4.1.1.9.1.1": "12-lead ECG Waveform Storage",
    "1.2.840.10008.5.1.4.1.1.9.1.2": "General ECG Waveform Storage",
    "1.2.840.10008.5.1.4.1.1.9.1.3": "Ambulatory ECG Waveform Storage",
}

def _lead_name(channel: Any) -> str:
    src = channel.get("ChannelSourceSequence")
    if not src:
        label = channel.get("ChannelLabel")
        return normalize_lead_name(str(label)) if label else ""
    item = src[0]
    code = str(item.get("CodeValue", "")).strip()
    scheme = str(item.get("CodingSchemeDesignator", "")).strip().upper()
    m = re.fullmatch(r"2:(\d+)", code) if scheme == "MDC" else re.fullmatch(r"5\.6\.3-9-(\d+)", code)
    if m and int(m.group(1)) in SCP_LEAD_NUMBERS:
        return SCP_LEAD_NUMBERS[int(m.group(1))]
    return normalize_lead_name(str(item.get("CodeMeaning", code)))


def _age_years(age: Any) -> float | None:
    """DICOM Age String (``nnnD``, ``nnnW``, ``nnnM``, ``nnnY``) -> years."""
    m = re.fullmatch(r"(\d{1,3})([DWMY])", str(age or "").strip().upper())
    if not m:
        return None
    n = float(m.group(1))
    return {"D": n / 365.25, "W": n * 7 / 365.25, "M": n / 12.0, "Y": n}[m.group(2)]


def _choose_group(seq: Any, group: int | None, where: str) -> int:
    if group is not None:
        if not 0 <= group < len(seq):
            raise RecordError(f"{where}: multiplex group {group} (expected 0..{len(seq) - 1})")
        return group
    best, best_key = 0, None
    for i, item in enumerate(seq):
        label = str(item.get("MultiplexGroupLabel", "")).upper()
        names = {_lead_name(ch) for ch in item.get("ChannelDefinitionSequence", [])}
        n_std = len(names & set(STANDARD_12_LEADS))
        key = (
            n_std >= 12,
            "RHYTHM" in label,
            str(item.get("WaveformOriginality", "")).upper() == "ORIGINAL",
            n_std,
            int(item.get("NumberOfWaveformSamples", 0) or 0),
        )
        if best_key is None or key > best_key:
            best, best_key = i, key
    return best


def read_dicom_ecg(path: str | os.PathLike[str], group: int | None = None) -> dict[str, Any]:
    """Read a DICOM ECG waveform file as a medzs sample.

    Args:
        path: The DICOM file (Part 10, with the ``DICM`` preamble).
        group: Index into ``WaveformSequence``; by default the rhythm group with the 12 standard leads
            (preferring ``MultiplexGroupLabel`` containing ``RHYTHM``, then ``WaveformOriginality`` ORIGINAL, then
            the most samples).

    Returns:
        Sample dict (``docs/architecture.md``), leads in mV. ``meta``: ``format="dicom"``, ``sop_class``,
        ``multiplex_group`` (index), ``group_label``, ``statements``, ``measurements`` (name -> value and unit),
        ``age`` (years), ``sex``, ``manufacturer``, ``model``, ``sensitivity_uv`` (scale per LSB).
        ``meta["identifiers"]``: patient name/id/birth date, accession number, UIDs, dates, institution and
        physician names, when present.

    Raises:
        RecordError: not a readable DICOM file (e.g. truncated), SOP class not an ECG waveform, no
            ``WaveformSequence``, missing sampling frequency, waveform data shorter than declared, missing or
            unknown channel sensitivity units, unnamed or duplicate channels.
    """
    import pydicom
    from pydicom.errors import InvalidDicomError
    from pydicom.waveforms.numpy_handler import multiplex_array

    from medzs.io._ecg_common import check_file_size

    p = Path(path)
    check_file_size(p)
    try:
        ds = pydicom.dcmread(str(p))
    except (InvalidDicomError, OSError, EOFError, ValueError, KeyError, TypeError) as exc:
        raise RecordError(f"{p.name}: unreadable DICOM file ({exc}); expected a DICOM ECG waveform object") from exc
    sop = str(ds.get("SOPClassUID", ""))
    if sop not in ECG_SOP_CLASSES:
        raise RecordError(
            f"{p.name}: SOPClassUID {sop!r} (expected an ECG waveform storage class: {sorted(ECG_SOP_CLASSES)})"
        )
    try:
        seq = ds.WaveformSequence
    except AttributeError as exc:
        raise RecordError(f"{p.name}: WaveformSequence missing (expected ECG waveform data)") from exc
    if not seq:
        raise RecordError(f"{p.name}: WaveformSequence is empty (expected at least one multiplex group)")
    # pydicom returns short element values for a truncated file without complaint: check every group.
    for i, it in enumerate(seq):
        n_ch = int(it.get("NumberOfWaveformChannels", 0) or 0)
        n_s = int(it.get("NumberOfWaveformSamples", 0) or 0)
        bits = int(it.get("WaveformBitsAllocated", 16) or 16)
        data = it.get("WaveformData")
        got = 0 if data is None else len(data)
        if n_ch <= 0 or n_s <= 0 or got < n_ch * n_s * bits // 8:
            raise RecordError(
                f"{p.name}: multiplex group {i} WaveformData has {got} bytes (expected {n_ch * n_s * bits // 8} "
                f"for {n_ch} channels x {n_s} samples of {bits} bits; file truncated?)"
            )
    gi = _choose_group(seq, group, p.name)
    item = seq[gi]
    fs = item.get("SamplingFrequency")
    if fs is None or float(fs) <= 0:
        raise RecordError(f"{p.name}: multiplex group {gi} SamplingFrequency {fs!r} (expected a rate in Hz)")
    try:
        raw = multiplex_array(ds, gi, as_raw=True)  # (samples, channels)
    except (AttributeError, KeyError, ValueError) as exc:
        raise RecordError(f"{p.name}: multiplex group {gi} waveform data undecodable ({exc})") from exc
    channels = list(item.get("ChannelDefinitionSequence", []))
    if len(channels) != raw.shape[1]:
        raise RecordError(
            f"{p.name}: {len(channels)} ChannelDefinitionSequence items for {raw.shape[1]} channels (expected equal)"
        )
    leads: list[str] = []
    rows: list[np.ndarray] = []
    sens_uv: set[float] = set()
    for j, ch in enumerate(channels):
        name = _lead_name(ch)
        if not name:
            raise RecordError(f"{p.name}: channel {j + 1} has no ChannelSourceSequence (expected a lead code)")
        units_seq = ch.get("ChannelSensitivityUnitsSequence")
        if ch.get("ChannelSensitivity") is None or not units_seq:
            raise RecordError(
                f"{p.name}: lead {name!r} ChannelSensitivity or ChannelSensitivityUnitsSequence missing "
                "(expected calibrated samples)"
            )
        factor = unit_factor(
            str(units_seq[0].get("CodeValue", "")), p.name, f"lead {name!r} ChannelSensitivityUnitsSequence"
        )
        sens = float(ch.ChannelSensitivity) * float(ch.get("ChannelSensitivityCorrectionFactor", 1.0) or 1.0)
        baseline = float(ch.get("ChannelBaseline", 0.0) or 0.0)
        sens_uv.add(round(sens * factor * 1000.0, 9))
        rows.append((raw[:, j].astype(np.float64) * sens + baseline) * factor)
        leads.append(name)
    signal = np.stack(rows)

    statements: list[str] = []
    measurements: dict[str, Any] = {}
    for ann in ds.get("WaveformAnnotationSequence", []):
        text = ann.get("UnformattedTextValue")
        if text and str(text).strip():
            statements.append(str(text).strip())
            continue
        concept = ann.get("ConceptNameCodeSequence")
        cname = str(concept[0].get("CodeMeaning", "")).strip() if concept else ""
        if ann.get("NumericValue") is not None and cname:
            units = ann.get("MeasurementUnitsCodeSequence")
            unit = str(units[0].get("CodeValue", "")) if units else ""
            try:
                measurements.setdefault(cname, {"value": float(ann.NumericValue), "unit": unit})
            except (TypeError, ValueError):
                logger.debug("%s: annotation %r has a non-numeric value; skipped", p.name, cname)
            continue
        coded = ann.get("ConceptCodeSequence")
        if coded and "ReferencedSamplePositions" not in ann:
            meaning = str(coded[0].get("CodeMeaning", "")).strip()
            if meaning:
                statements.append(meaning)

    identifiers: dict[str, Any] = {}
    for kw, key in _IDENTIFIERS.items():
        v = ds.get(kw)
        if v is not None and str(v).strip():
            identifiers[key] = str(v)
    meta: dict[str, Any] = {
        "sop_class": ECG_SOP_CLASSES[sop],
        "multiplex_group": gi,
        "group_label": str(item.get("MultiplexGroupLabel", "")) or None,
        "n_multiplex_groups": len(seq),
        "statements": statements,
        "measurements": measurements,
        "age": _age_years(ds.get("PatientAge")),
        "sex": normalize_sex(ds.get("PatientSex")),
        "manufacturer": str(ds.get("Manufacturer", "")) or None,
        "model": str(ds.get("ManufacturerModelName", "")) or None,
        "sensitivity_uv": sorted(sens_uv)[0] if len(sens_uv) == 1 else sorted(sens_uv),
    }
    logger.debug("read_dicom_ecg: group %d, %d leads x %d samples at %s Hz", gi, len(leads), signal.shape[1], fs)
    return build_sample(signal, leads, float(fs), p, "dicom", meta, identifiers)


__all__ = ["ECG_SOP_CLASSES", "read_dicom_ecg"]
