"""Read WFDB records (PhysioNet format: ``.hea`` header + signal files) into medzs sample dicts.

Uses the ``wfdb`` package (Xie et al., WFDB Python toolbox, PhysioNet; doi:10.13026/9njx-6322). The WFDB
format is described at https://physionet.org/physiotools/wag/header-5.htm and signal-5.htm.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from medzs.errors import RecordError

logger = logging.getLogger(__name__)

#: Physical units (as written in WFDB headers, compared case-sensitively except for the micro sign variants)
#: -> factor to millivolts. The WFDB default when a header gives no units is ``mV``.
UNIT_TO_MV: dict[str, float] = {
    "mV": 1.0,
    "mv": 1.0,
    "uV": 1e-3,
    "uv": 1e-3,
    "µV": 1e-3,  # micro sign U+00B5
    "μV": 1e-3,  # Greek mu U+03BC
    "V": 1e3,
    "v": 1e3,
    "nV": 1e-6,
}

_EXTENSIONS = (".hea", ".dat", ".mat")


def _record_base(path: str | os.PathLike[str]) -> Path:
    p = Path(path)
    return p.with_suffix("") if p.suffix in _EXTENSIONS else p


def _check_sizes(header: Path) -> None:
    """Refuse a header or signal file above the size limit before wfdb reads it (medzs.io._ecg_common)."""
    from medzs.io._ecg_common import check_file_size
    from medzs.io.cinc import parse_header_text

    check_file_size(header)
    try:
        files = set(parse_header_text(header.read_text(encoding="latin-1"), header.name).file_names)
    except (RecordError, OSError, ValueError):
        return  # wfdb reports the header problem
    for f in files:
        if f and f != "~" and "/" not in f:
            check_file_size(header.parent / f)


def _header_facts(header: Path, n_sig: int) -> tuple[str | None, str | None, list[float] | None]:
    """(base date ISO, base time, ADC gains as written) from the header text; Nones when not understood."""
    from medzs.io.cinc import parse_header_text

    try:
        h = parse_header_text(header.read_text(encoding="latin-1"), header.name)
    except (RecordError, OSError, ValueError) as exc:
        logger.info("%s: record line not understood (%s); base date/time unknown", header.name, type(exc).__name__)
        return None, None, None
    gains = [float(g) for g in h.gains] if len(h.gains) == n_sig else None
    return h.base_date, _iso_time(h.base_time), gains


def _iso_time(t: str | None) -> str | None:
    """``"9:49:17"`` -> ``"09:49:17"``; ``"14:50"`` -> ``"14:50:00"``; None for None or an impossible time."""
    if t is None:
        return None
    parts = t.split(":")
    try:
        hh, mm = int(parts[0]), int(parts[1])
        ss = float(parts[2]) if len(parts) > 2 else 0.0
    except (ValueError, IndexError):
        return None
    if not (0 <= hh < 24 and 0 <= mm < 60 and 0 <= ss < 61):
        return None
    sec = int(ss)
    frac = f"{ss - sec:.6f}"[1:].rstrip("0").rstrip(".") if ss != sec else ""
    return f"{hh:02d}:{mm:02d}:{sec:02d}{frac}"


def _read_fast(header: Path, name: str, verify_checksum: bool) -> dict[str, Any] | None:
    """The :mod:`medzs.io._wfdb_fast` path (same sample as the wfdb path), or None to fall back to wfdb."""
    from medzs.io._wfdb_fast import read_header_fast, read_signal_fast

    try:
        text = header.read_text(encoding="latin-1")
    except OSError:
        return None
    h = read_header_fast(text)
    if h is None or any(u not in UNIT_TO_MV for u in h["units"]):
        return None
    got = read_signal_fast(header, h, verify_checksum)
    if got is None:
        return None
    _, phys = got
    factors = np.asarray([UNIT_TO_MV[u] for u in h["units"]])
    signal = (phys * factors[None, :]).T.astype(np.float32)
    base_date, base_time, _ = _header_facts(header, h["n_sig"])
    meta = {
        "format": "wfdb",
        "comments": h["comments"],
        "units": list(h["units"]),
        "adc_gain": list(h["gains"]),
        "baseline": list(h["baselines"]),
        "fmt": ["16"] * h["n_sig"],
        "n_samples": int(h["n_samples"]),
        "base_date": base_date,
        "base_time": base_time,
        "uncalibrated_leads": [],
        "nan_samples": {},
    }
    return {"signal": signal, "leads": list(h["names"]), "fs": float(h["fs"]), "id": str(h["record_name"]),
            "meta": meta, "path": str(header)}


def read_wfdb(path: str | os.PathLike[str], verify_checksum: bool = True, fast: bool = True) -> dict[str, Any]:
    """Read a WFDB record as a medzs sample.

    Args:
        path: Record path with or without extension (``records500/00000/00001_hr`` or ``..._hr.hea``).
        verify_checksum: Compare each signal's 16-bit checksum in the header with the data (detects corrupt or
            altered ``.dat`` files). Headers without checksums are not checked.

    Returns:
        ``{"signal": (leads, samples) float32 mV, "leads": list[str] (names as in the header),
        "fs": float Hz, "id": record name, "meta": {...}, "path": header path}``. ``meta`` holds
        ``comments`` (header comment lines), ``units`` (as in the header), ``adc_gain`` (as written; 0 means
        uncalibrated), ``baseline``, ``fmt``, ``n_samples``, ``base_date``/``base_time`` (ISO strings, or None when
        absent or not understood: never guessed), ``uncalibrated_leads`` (leads whose header ADC gain is 0; their
        values use the WFDB default gain of 200 and :func:`medzs.quality.check_ecg` turns them into an error) and
        ``format="wfdb"``.

    The header's record line is also parsed by :func:`medzs.io.cinc.parse_header_text`, which accepts the base
    date before the base time (``E07835 12 500 5000 05-May-2020 09:49:17``, as in PhysioNet/CinC 2020-21);
    ``wfdb`` reads such a line into an invented time (``00:00:05``), so ``wfdb``'s date and time are never used.
    ``wfdb`` also turns an ADC gain of 0 ("uncalibrated" in the WFDB header specification) into 200 without a
    word; the gains are taken from the header text instead.

    With ``fast`` (default), the common case -- one format-16 signal file, as PTB-XL -- is read by
    :mod:`medzs.io._wfdb_fast` (header split + :func:`numpy.fromfile`, ~30x faster than ``wfdb.rdrecord``); anything
    else goes through ``wfdb``. Both give the same sample (tested on every shared WFDB record).

    Raises:
        RecordError: header or signal file missing or unreadable, data shorter than the header says,
            checksum mismatch, a lead with NaN (invalid-sample) values, units not convertible to mV,
            or no signals. The message names the record and the field.
    """
    base = _record_base(path)
    name = str(base)
    header = base.with_suffix(".hea")
    if not header.is_file():
        raise RecordError(f"{name}: header file {header.name} not found (expected a WFDB .hea file)")
    _check_sizes(header)
    if fast:
        sample = _read_fast(header, name, verify_checksum)
        if sample is not None:
            return sample
    import wfdb

    try:
        rec = wfdb.rdrecord(name, physical=False)
    except FileNotFoundError as exc:
        missing = Path(exc.filename).name if exc.filename else "signal file"
        raise RecordError(f"{name}: {missing} not found (expected the signal file named in {header.name})") from exc
    except (ValueError, IndexError, EOFError, OSError) as exc:
        raise RecordError(
            f"{name}: signal data unreadable ({exc}); expected {header.name}'s signal file(s) to be complete"
        ) from exc
    if rec.d_signal is None or rec.n_sig == 0 or rec.d_signal.size == 0:
        raise RecordError(f"{name}: no signal samples (expected at least one lead with samples)")
    leads = [str(s) for s in (rec.sig_name or [f"ch{i}" for i in range(rec.n_sig)])]

    units = [u if u else "mV" for u in (rec.units or ["mV"] * rec.n_sig)]
    factors = []
    for lead, unit in zip(leads, units, strict=True):
        if unit not in UNIT_TO_MV:
            raise RecordError(
                f"{name}: lead {lead!r}: units {unit!r} (expected a voltage convertible to mV: {sorted(UNIT_TO_MV)})"
            )
        factors.append(UNIT_TO_MV[unit])

    physical = rec.dac(return_res=64)  # (samples, leads), NaN where the stored value is WFDB's invalid sample
    # WFDB's invalid samples stay NaN (as the PhysioNet/CinC 2024 challenge stores ECGs digitised from paper: each
    # lead only in its printed column): an encoder that accepts masked input scores them, preprocessing for one that
    # does not refuses the record naming the lead (medzs.transforms.ecg.check_signal)
    nan_counts = {leads[i]: int(np.isnan(physical[:, i]).sum()) for i in np.flatnonzero(np.isnan(physical).any(axis=0))}
    if verify_checksum and rec.checksum is not None and rec.sig_len is not None:
        actual = rec.calc_checksum()  # 16-bit sums; headers may write them signed, so compare modulo 2**16
        pairs = zip(leads, actual, rec.checksum, strict=True)
        bad = [lead for lead, a, b in pairs if b is not None and (int(a) - int(b)) % 65536 != 0]
        if bad:
            raise RecordError(
                f"{name}: lead(s) {bad}: data checksum differs from the header (expected an unaltered signal file)"
            )
    signal = (physical * np.asarray(factors)[None, :]).T.astype(np.float32)

    base_date, base_time, header_gains = _header_facts(header, rec.n_sig)
    gains = header_gains if header_gains is not None else [float(g) for g in rec.adc_gain]
    uncalibrated = [lead for lead, g in zip(leads, gains, strict=True) if g == 0]
    if uncalibrated:
        logger.warning("%s: lead(s) %s have ADC gain 0 (uncalibrated); values use the WFDB default gain 200",
                       header.name, uncalibrated)
    meta = {
        "format": "wfdb",
        "comments": list(rec.comments or []),
        "units": units,
        "adc_gain": gains,
        "baseline": [int(b) for b in rec.baseline],
        "fmt": list(rec.fmt),
        "n_samples": int(rec.sig_len),
        "base_date": base_date,
        "base_time": base_time,
        "uncalibrated_leads": uncalibrated,
        "nan_samples": nan_counts,
    }
    logger.debug("read_wfdb: %s: %d leads x %d samples at %s Hz", name, signal.shape[0], signal.shape[1], rec.fs)
    return {
        "signal": signal,
        "leads": leads,
        "fs": float(rec.fs),
        "id": str(rec.record_name),
        "meta": meta,
        "path": str(header),
    }


__all__ = ["UNIT_TO_MV", "read_wfdb"]
