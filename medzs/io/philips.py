"""Read Philips Sierra ECG XML files (root element ``restingecgdata``), XLI-compressed or uncompressed.

The waveforms are decoded by the ``sierraecg`` package (Christopher A. Watford, MIT licence,
https://github.com/sixlettervariables/sierra-ecg-tools), which undoes the XLI compression (LZW + delta coding)
and reconstructs the limb leads III, aVR, aVL, aVF from their stored residuals. Samples are integers in units of
``dataacquisition/signalcharacteristics/signalresolution`` microvolts (Sierra ECG schema 1.03/1.04),
sampled at ``samplingrate`` Hz, ``parsedwaveforms@durationperchannel`` ms per lead.

Philips writes a 1 mV calibration pulse at the end of each lead (all leads identical: zeros, then the pulse);
by default it is cut off and its measured height kept as ``meta["calibration_mv"]`` (1.0 for a correct
``signalresolution``). Interpretation statements are ``interpretations/interpretation/statement/leftstatement``
(the reason, if any, in ``rightstatement``).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from medzs.errors import RecordError
from medzs.io._ecg_common import build_sample, local_name, normalize_lead_name, normalize_sex, parse_xml, to_float

logger = logging.getLogger(__name__)

_EXPECTED = "Philips Sierra ECG XML"
_NS = "{http://www3.medical.philips.com}"
#: Minimum length in seconds of the trailing all-leads-identical segment that counts as the calibration signal.
_MIN_CAL_S = 0.1


def _find(el: Any, path: str) -> Any:
    """``el.find`` with or without the Philips namespace."""
    if el is None:
        return None
    hit = el.find("/".join(_NS + part for part in path.split("/")))
    return hit if hit is not None else el.find(path)


def _text(el: Any, path: str) -> str | None:
    hit = _find(el, path)
    if hit is None or hit.text is None:
        return None
    return hit.text.strip() or None


def _findall(el: Any, path: str) -> list[Any]:
    if el is None:
        return []
    hits = el.findall("/".join(_NS + part for part in path.split("/")))
    return hits if hits else el.findall(path)


def calibration_tail(signal: np.ndarray, fs: float) -> int | None:
    """Start index of a trailing calibration segment, or None when there is none.

    The segment is the longest run at the end of the record in which every lead has the same value at each
    sample (a real ECG never does), at least 0.1 s long and containing a non-zero level (the pulse).

    Args:
        signal: (leads, samples) array.
        fs: Sampling frequency in Hz.
    """
    if signal.shape[0] < 2 or signal.shape[1] == 0:
        return None
    same = (signal == signal[:1]).all(axis=0)
    if same.all():
        return None
    start = int(np.flatnonzero(~same)[-1]) + 1
    if signal.shape[1] - start < _MIN_CAL_S * fs or not np.any(signal[0, start:] != 0):
        return None
    return start


def read_philips(path: str | os.PathLike[str], strip_calibration: bool = True) -> dict[str, Any]:
    """Read a Philips Sierra ECG XML file as a medzs sample.

    Args:
        path: The XML file.
        strip_calibration: Cut off the trailing calibration segment (see the module docstring).

    Returns:
        Sample dict (``docs/architecture.md``), leads in mV. ``meta``: ``format="philips"``, ``doc_type``,
        ``doc_version``, ``resolution_uv``, ``statements`` (left statements), ``statement_details``
        (``{"text", "reason"}``), ``severity``, ``measurements`` (interpretation measurements: ms, bpm, degrees),
        ``age`` (years), ``sex``, ``device``, ``calibration_mv`` and ``calibration_removed_s`` (when stripped),
        ``duration_in_file_s``. ``meta["identifiers"]``: ``patient_id``, ``patient_name``, ``birth_date``,
        ``acquisition_date``, ``acquisition_time`` and user-defined fields (``userdefines``), when present.

    Raises:
        RecordError: not well-formed XML (e.g. truncated), root element not ``restingecgdata``, missing
            ``signalresolution`` or ``samplingrate``, or a file ``sierraecg`` cannot decode (unsupported version,
            compression or encoding, missing elements).
    """
    import sierraecg

    p = Path(path)
    root = parse_xml(p, _EXPECTED)
    if local_name(root) != "restingecgdata":
        raise RecordError(f"{p.name}: root element <{local_name(root)}> (expected <restingecgdata>, {_EXPECTED})")
    sc = _find(root, "dataacquisition/signalcharacteristics")
    res = to_float(_text(sc, "signalresolution"))
    if res is None or res <= 0:
        raise RecordError(
            f"{p.name}: signalcharacteristics/signalresolution {_text(sc, 'signalresolution')!r} "
            "(expected microvolts per sample unit)"
        )
    fs = to_float(_text(sc, "samplingrate"))
    if fs is None or fs <= 0:
        raise RecordError(f"{p.name}: signalcharacteristics/samplingrate missing (expected a rate in Hz)")
    try:
        ecg = sierraecg.read_file(str(p))
    except (
        sierraecg.UnsupportedXmlFileError,
        sierraecg.MissingXmlElementError,
        sierraecg.MissingXmlAttributeError,
    ) as exc:
        raise RecordError(f"{p.name}: sierraecg cannot decode the waveforms ({type(exc).__name__}: {exc})") from exc
    except Exception as exc:  # noqa: BLE001 - the XLI/LZW decoder raises IndexError, ValueError, ... on bad data
        raise RecordError(
            f"{p.name}: waveform data undecodable ({type(exc).__name__}: {exc}); expected XLI or plain base64 data"
        ) from exc
    if not ecg.leads:
        raise RecordError(f"{p.name}: no leads decoded (expected parsedwaveforms with 12 leads)")
    lengths = {lead.label: len(lead.samples) for lead in ecg.leads}
    n = min(lengths.values())
    if len(set(lengths.values())) != 1:
        logger.warning("%s: leads decoded with different lengths; truncating to the shortest", p.name)
    if n == 0:
        raise RecordError(f"{p.name}: decoded leads are empty (expected samples)")
    leads = [normalize_lead_name(lead.label) for lead in ecg.leads]
    raw = np.stack([np.asarray(lead.samples[:n], dtype=np.float64) for lead in ecg.leads])
    signal = raw * (res / 1000.0)

    meta: dict[str, Any] = {
        "doc_type": ecg.doc_type,
        "doc_version": ecg.doc_ver,
        "resolution_uv": res,
        "duration_in_file_s": n / fs,
    }
    if strip_calibration:
        start = calibration_tail(signal, fs)
        if start is not None:
            tail = signal[0, start:]
            meta["calibration_mv"] = float(np.max(np.abs(tail)))
            meta["calibration_removed_s"] = (n - start) / fs
            signal = signal[:, :start]

    interp = _find(root, "interpretations/interpretation")
    details = []
    for st in _findall(interp, "statement"):
        left = _text(st, "leftstatement")
        if left:
            details.append({"text": left, "reason": _text(st, "rightstatement")})
    measurements: dict[str, float] = {}
    im = _find(interp, "interpretationmeasurements")
    if im is not None:
        for child in im:
            v = to_float(child.text)
            if v is not None:
                measurements[local_name(child)] = v
    patient = _find(root, "patient/generalpatientdata")
    age = to_float(_text(patient, "age/years"))
    meta.update(
        statements=[d["text"] for d in details],
        statement_details=details,
        severity=_text(interp, "severity"),
        measurements=measurements,
        age=age,
        sex=normalize_sex(_text(patient, "sex")),
        device=_text(root, "dataacquisition/machine"),
    )
    acq = _find(root, "dataacquisition")
    identifiers: dict[str, Any] = {
        "patient_id": _text(patient, "patientid"),
        "patient_name": " ".join(
            x for x in (_text(patient, "name/firstname"), _text(patient, "name/lastname")) if x
        ),
        "birth_date": _text(patient, "age/dateofbirth") or _text(patient, "dateofbirth"),
        "acquisition_date": acq.get("date") if acq is not None else None,
        "acquisition_time": acq.get("time") if acq is not None else None,
    }
    userdefines = {}
    for ud in _findall(root, "userdefines/userdefine"):
        label, value = _text(ud, "label"), _text(ud, "value")
        if label and value:
            userdefines[label] = value
    if userdefines:
        identifiers["userdefines"] = userdefines
    logger.debug("read_philips: %d leads x %d samples at %s Hz", len(leads), signal.shape[1], fs)
    return build_sample(signal, leads, fs, p, "philips", meta, identifiers)


__all__ = ["calibration_tail", "read_philips"]
