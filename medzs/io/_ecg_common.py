"""Helpers shared by the ECG file readers: lead names, units, sample-dict assembly, safe XML parsing.

Private module; the public readers are :mod:`medzs.io.cinc`, :mod:`medzs.io.cpsc`, :mod:`medzs.io.dicom_ecg`,
:mod:`medzs.io.muse`, :mod:`medzs.io.philips`, :mod:`medzs.io.hl7aecg` and :func:`medzs.io.detect.read_ecg`.
"""

from __future__ import annotations

import logging
import math
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medzs.errors import RecordError
from medzs.spec import STANDARD_12_LEADS

logger = logging.getLogger(__name__)

#: Upper-cased, space-free lead labels -> standard names. Chest leads may be labelled C1..C6 (IEC 60601-2-51).
_CANONICAL: dict[str, str] = {name.upper(): name for name in STANDARD_12_LEADS}
_CANONICAL.update({f"C{i}": f"V{i}" for i in range(1, 7)})

#: Lead number of the SCP-ECG lead table (EN 1064 / ISO 11073-91064), which the MDC ``2:n`` and the
#: DICOM ``SCPECG 5.6.3-9-n`` codes share, -> standard name.
SCP_LEAD_NUMBERS: dict[int, str] = {
    1: "I", 2: "II", 3: "V1", 4: "V2", 5: "V3", 6: "V4", 7: "V5", 8: "V6",
    61: "III", 62: "aVR", 63: "aVL", 64: "aVF",
}

#: Amplitude unit spellings (upper-cased) -> factor to millivolts.
UNIT_TO_MV: dict[str, float] = {
    "MV": 1.0,
    "MILLIVOLTS": 1.0,
    "MILLIVOLT": 1.0,
    "UV": 1e-3,
    "µV".upper(): 1e-3,
    "μV".upper(): 1e-3,
    "MICROVOLTS": 1e-3,
    "MICROVOLT": 1e-3,
    "NV": 1e-6,
    "NANOVOLTS": 1e-6,
    "V": 1e3,
    "VOLTS": 1e3,
    "VOLT": 1e3,
}


#: Largest file (bytes) an ECG reader opens: 256 MiB, far above any 12-lead resting ECG (a 10 s 12-lead record at
#: 1 kHz in 16 bits is 240 kB; a 24 h 3-lead Holter at 1 kHz is about 500 MB and is not a supported input).
#: The environment variable ``MEDZS_MAX_FILE_MB`` overrides it. The size is checked before a byte is read.
MAX_FILE_BYTES = 256 * 1024 * 1024
MAX_FILE_ENV = "MEDZS_MAX_FILE_MB"


def max_file_bytes() -> int:
    """The file-size limit in bytes: ``$MEDZS_MAX_FILE_MB`` (MiB) when set to a positive number, else
    :data:`MAX_FILE_BYTES`."""
    env = os.environ.get(MAX_FILE_ENV, "").strip()
    if env:
        try:
            mb = float(env)
        except ValueError:
            raise RecordError(f"{MAX_FILE_ENV}={env!r} (expected a positive number of MiB)") from None
        if mb > 0:
            return int(mb * 1024 * 1024)
        raise RecordError(f"{MAX_FILE_ENV}={env!r} (expected a positive number of MiB)")
    return MAX_FILE_BYTES


def check_file_size(path: str | os.PathLike[str]) -> None:
    """Refuse a file larger than :func:`max_file_bytes` before reading it (missing files pass: the reader names them).

    Raises:
        RecordError: one line naming the file, its size and the limit.
    """
    p = Path(path)
    try:
        size = p.stat().st_size
    except OSError:
        return
    limit = max_file_bytes()
    if size > limit:
        raise RecordError(f"{p.name}: file size {size / 2**20:,.0f} MiB (expected at most {limit / 2**20:,.0f} MiB "
                          f"for an ECG file; set {MAX_FILE_ENV} to raise the limit)")


def unit_factor(unit: str | None, where: str, field: str) -> float:
    """Factor that converts ``unit`` to millivolts.

    Args:
        unit: Unit spelling, e.g. ``"uV"``, ``"mV"``, ``"MICROVOLTS"``, UCUM ``"uV"`` (case-insensitive; for
            ``mV``/``MV`` ambiguity note that megavolts never occur in ECG files, so ``MV`` is read as millivolts).
        where: File name for the error message.
        field: Field name for the error message.

    Raises:
        RecordError: missing or unknown unit.
    """
    key = (unit or "").strip().strip("[]").upper()
    if key not in UNIT_TO_MV:
        raise RecordError(f"{where}: {field} {unit!r} is not a voltage unit (expected uV, mV, V or MICROVOLTS)")
    return UNIT_TO_MV[key]


def normalize_lead_name(name: str) -> str:
    """Standard name of a lead label; labels that are not one of the 12 standard leads come back trimmed.

    Handles ``"Lead I"``, ``"Lead I (Einthoven)"``, ``"aVR, augmented voltage, right"``, ``"AVR"``,
    ``"MDC_ECG_LEAD_AVR"``, ``"v1"`` and IEC chest labels ``C1``..``C6``.

    Args:
        name: The label as written in the file.

    Returns:
        One of :data:`medzs.spec.STANDARD_12_LEADS`, or the trimmed label (e.g. ``"V4R"``).
    """
    s = str(name).strip()
    s = re.sub(r"^(MDC_ECG_LEAD_|LEAD[\s_-]*)", "", s, flags=re.IGNORECASE)
    s = re.sub(r"\s*\(.*\)\s*$", "", s)
    s = s.split(",")[0].strip()
    return _CANONICAL.get(s.upper().replace(" ", ""), s)


def order_leads(signal: np.ndarray, leads: Sequence[str]) -> tuple[np.ndarray, list[str]]:
    """Put the standard 12 leads first, in the conventional order, followed by any other leads as they came."""
    std = [n for n in STANDARD_12_LEADS if n in leads]
    other = [n for n in leads if n not in STANDARD_12_LEADS]
    order = [list(leads).index(n) for n in (*std, *other)]
    return signal[order], [leads[i] for i in order]


def clean_identifiers(identifiers: Mapping[str, Any] | None) -> dict[str, Any]:
    """Drop empty identifier values (None, ``""``, whitespace) so that only present identifiers are kept."""
    out: dict[str, Any] = {}
    for k, v in (identifiers or {}).items():
        if v is None:
            continue
        if isinstance(v, str):
            v = v.strip()
            if not v:
                continue
        out[k] = v
    return out


def build_sample(
    signal: Any,
    leads: Sequence[str],
    fs: float,
    path: str | os.PathLike[str],
    fmt: str,
    meta: Mapping[str, Any] | None = None,
    identifiers: Mapping[str, Any] | None = None,
    reorder: bool = True,
) -> dict[str, Any]:
    """Validate a decoded record and assemble the medzs sample dict.

    Args:
        signal: ``(leads, samples)`` array in millivolts.
        leads: Lead names (already normalised), one per row.
        fs: Sampling frequency in Hz.
        path: Source file; its stem becomes the sample ``id``.
        fmt: Format name stored as ``meta["format"]``.
        meta: Non-identifying metadata.
        identifiers: Patient identifiers (id, name, birth date, accession, acquisition date/time); stored only
            under ``meta["identifiers"]``.
        reorder: Put the standard 12 leads first in the conventional order.

    Returns:
        ``{"signal": float32 (leads, samples) mV, "leads", "fs", "id", "meta", "path"}``.

    Raises:
        RecordError: wrong shape, no samples, lead-count mismatch, duplicate lead names, non-positive ``fs``,
            or non-finite values (the message names the lead).
    """
    p = Path(path)
    where = p.name
    arr = np.asarray(signal, dtype=np.float64)
    if arr.ndim != 2:
        raise RecordError(f"{where}: signal has shape {arr.shape} (expected 2-D (leads, samples))")
    if arr.shape[0] != len(leads):
        raise RecordError(f"{where}: {arr.shape[0]} signal rows but {len(leads)} lead names (expected one per row)")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise RecordError(f"{where}: signal has shape {arr.shape} (expected at least one lead and one sample)")
    leads = [str(n) for n in leads]
    dup = sorted({n for n in leads if leads.count(n) > 1})
    if dup:
        raise RecordError(f"{where}: duplicate lead names {dup} (expected each lead once)")
    if not (isinstance(fs, (int, float, np.floating, np.integer)) and math.isfinite(float(fs)) and float(fs) > 0):
        raise RecordError(f"{where}: sampling frequency {fs!r} (expected a positive number of Hz)")
    finite = np.isfinite(arr)
    if not finite.all():
        bad = leads[int(np.where(~finite.all(axis=1))[0][0])]
        raise RecordError(f"{where}: lead {bad!r} contains NaN or infinite values (expected finite values)")
    out = arr.astype(np.float32)
    if reorder:
        out, leads = order_leads(out, leads)
    m: dict[str, Any] = {"format": fmt}
    m.update(dict(meta or {}))
    m["identifiers"] = clean_identifiers(identifiers)
    return {
        "signal": np.ascontiguousarray(out),
        "leads": list(leads),
        "fs": float(fs),
        "id": p.stem,
        "meta": m,
        "path": str(p),
    }


def parse_xml(path: str | os.PathLike[str], expected: str) -> Any:
    """Parse an XML file with lxml, refusing external entities, DTD loading and network access.

    Args:
        path: XML file.
        expected: What the file should be, for the error message (e.g. ``"GE MUSE RestingECG XML"``).

    Returns:
        The root ``lxml.etree._Element``.

    Raises:
        RecordError: unreadable file or not well-formed XML (e.g. truncated).
    """
    from lxml import etree

    p = Path(path)
    check_file_size(p)
    parser = etree.XMLParser(
        resolve_entities=False, no_network=True, load_dtd=False, dtd_validation=False, huge_tree=True
    )
    try:
        tree = etree.parse(str(p), parser)
    except etree.XMLSyntaxError as exc:
        raise RecordError(f"{p.name}: not well-formed XML ({exc}); expected a complete {expected} file") from exc
    except OSError as exc:
        raise RecordError(f"{p.name}: cannot read file ({exc}); expected a {expected} file") from exc
    return tree.getroot()


def local_name(element: Any) -> str:
    """Tag name of an lxml element without its namespace (``{urn:hl7-org:v3}sequence`` -> ``sequence``)."""
    tag = element.tag
    if not isinstance(tag, str):
        return ""
    return tag.rsplit("}", 1)[-1]


def normalize_sex(value: Any) -> str | None:
    """``"male"``, ``"female"`` or None from common spellings (``M``, ``Male``, ``MALE``, ``F``, ``Female``, ...)."""
    if value is None:
        return None
    s = str(value).strip().lower()
    if s in ("m", "male", "man"):
        return "male"
    if s in ("f", "female", "woman"):
        return "female"
    return None


def to_float(value: Any) -> float | None:
    """A finite float, or None for missing, empty, ``NaN`` or unparseable values."""
    if value is None:
        return None
    try:
        f = float(str(value).strip())
    except ValueError:
        return None
    return f if math.isfinite(f) else None
