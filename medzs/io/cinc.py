"""Read PhysioNet/Computing in Cardiology Challenge 2020-2021 records (WFDB ``.hea`` header + MATLAB ``.mat``).

Each record is a WFDB header (Goldberger et al., PhysioBank/PhysioToolkit/PhysioNet, Circulation 101:e215, 2000;
header format: https://physionet.org/physiotools/wag/header-5.htm) whose signal file is a MATLAB Level 4
``.mat`` file holding one int16 matrix ``val`` of shape (leads, samples) (the header's ``16+24``: format 16 at
byte offset 24, after the 20-byte Level 4 header and the name ``val``). Header comment lines carry ``# Age:``,
``# Sex:`` and ``# Dx:`` (comma-separated SNOMED CT concept ids; Reyna et al., CinC 2021). Used for the Georgia
12-lead (E0xxxx) and Chapman-Shaoxing-Ningbo (JSxxxxx) databases, among others.

Some of these headers write the record line's base date before the base time
(``E00001 12 500 5000 05-May-2020 14:50:55``), which the WFDB specification orders the other way round.
``wfdb.rdheader`` then raises (``05/05/2020 14:50:55``) or silently reads a wrong time (``05-May-2020``), so the
record line is always parsed here as well, and the whole header falls back to the parser in this module when
``wfdb`` fails. The acquisition date and time are identifiers and go to ``meta["identifiers"]`` only.
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medzs.errors import RecordError
from medzs.io._ecg_common import (
    build_sample,
    check_file_size,
    normalize_lead_name,
    normalize_sex,
    to_float,
    unit_factor,
)

logger = logging.getLogger(__name__)

_MAT_MAGIC = b"MATLAB 5.0 MAT-file"
_TIME_RE = re.compile(r"^\d{1,2}:\d{2}(:\d{2}(\.\d+)?)?$")
_DATE_FORMATS = ("%d/%m/%Y", "%d-%b-%Y", "%d-%m-%Y", "%Y-%m-%d", "%Y/%m/%d", "%d.%m.%Y")
#: ADC gain the WFDB software uses for a signal whose header gain is 0 (uncalibrated).
_WFDB_DEFAULT_GAIN = 200.0
_GAIN_RE = re.compile(r"^(?P<gain>[-+]?[\d.eE+-]+)?(\((?P<baseline>[-+]?\d+)\))?(/(?P<units>\S+))?$")


@dataclass
class CincHeader:
    """The parts of a WFDB header that the CinC reader uses.

    Attributes:
        record_name: Name on the record line.
        n_sig: Number of signals.
        fs: Sampling frequency in Hz.
        n_samples: Samples per signal (None when the header omits it).
        base_time: Base time as written (``HH:MM:SS``) or None.
        base_date: Base date as an ISO string, or None.
        file_names: Signal file per signal.
        gains: ADC units per physical unit, per signal.
        baselines: ADC value of physical zero, per signal.
        units: Physical units per signal (``mV`` when omitted, as WFDB specifies).
        init_values: First sample value per signal (None when omitted).
        checksums: 16-bit checksum per signal (None when omitted).
        lead_names: Signal descriptions (lead names as written).
        comments: Comment lines without the leading ``#``.
        parser: ``"wfdb"`` or ``"medzs"`` (which parser produced the signal specifications).
    """

    record_name: str
    n_sig: int
    fs: float
    n_samples: int | None
    base_time: str | None = None
    base_date: str | None = None
    file_names: list[str] = field(default_factory=list)
    gains: list[float] = field(default_factory=list)
    baselines: list[int] = field(default_factory=list)
    units: list[str] = field(default_factory=list)
    init_values: list[int | None] = field(default_factory=list)
    checksums: list[int | None] = field(default_factory=list)
    lead_names: list[str] = field(default_factory=list)
    comments: list[str] = field(default_factory=list)
    parser: str = "medzs"


def _parse_date(token: str) -> str | None:
    for f in _DATE_FORMATS:
        try:
            return _dt.datetime.strptime(token, f).date().isoformat()
        except ValueError:
            continue
    return None


def _parse_record_line(line: str, where: str) -> tuple[str, int, float, int | None, str | None, str | None]:
    """Record line -> (name, n_sig, fs, n_samples, base_time, base_date), accepting date and time in either order."""
    tok = line.split()
    if len(tok) < 2:
        raise RecordError(f"{where}: record line {line!r} (expected 'name n_sig [fs [n_samples [time [date]]]]')")
    name = tok[0].split("/")[0]
    try:
        n_sig = int(tok[1])
    except ValueError as exc:
        raise RecordError(f"{where}: number of signals {tok[1]!r} (expected an integer)") from exc
    fs = 250.0  # WFDB default
    if len(tok) > 2:
        m = re.match(r"^([\d.eE+-]+)", tok[2])
        if not m:
            raise RecordError(f"{where}: sampling frequency {tok[2]!r} (expected a number of Hz)")
        fs = float(m.group(1))
    n_samples = None
    if len(tok) > 3:
        try:
            n_samples = int(tok[3])
        except ValueError as exc:
            raise RecordError(f"{where}: number of samples {tok[3]!r} (expected an integer)") from exc
    base_time = base_date = None
    for t in tok[4:6]:
        if _TIME_RE.match(t):
            base_time = t
        else:
            d = _parse_date(t)
            if d is None:
                logger.warning("%s: base date/time token not understood; ignored", where)
            base_date = d
    return name, n_sig, fs, n_samples, base_time, base_date


def _parse_signal_line(line: str, where: str) -> tuple[str, float, int, str, int | None, int | None, str]:
    """Signal line -> (file, gain, baseline, units, init_value, checksum, description)."""
    tok = line.split()
    if len(tok) < 2:
        raise RecordError(f"{where}: signal line {line!r} (expected 'file format [gain(baseline)/units ...]')")
    file_name = tok[0]
    gain, baseline, units = 200.0, None, "mV"  # WFDB defaults
    adc_zero = 0
    init = checksum = None
    if len(tok) > 2:
        m = _GAIN_RE.match(tok[2])
        if not m:
            raise RecordError(f"{where}: ADC gain field {tok[2]!r} (expected 'gain[(baseline)][/units]')")
        if m.group("gain"):
            gain = float(m.group("gain"))
        if m.group("baseline"):
            baseline = int(m.group("baseline"))
        if m.group("units"):
            units = m.group("units")
    if len(tok) > 4:
        adc_zero = int(tok[4])
    if len(tok) > 5:
        init = int(tok[5])
    if len(tok) > 6:
        checksum = int(tok[6])
    desc = " ".join(tok[8:]) if len(tok) > 8 else ""
    if baseline is None:
        baseline = adc_zero  # WFDB: the baseline defaults to the ADC zero
    return file_name, gain, baseline, units, init, checksum, desc


def parse_header_text(text: str, where: str = "header") -> CincHeader:
    """Parse WFDB header text without ``wfdb`` (record line, signal lines, comments).

    Args:
        text: Header file content.
        where: File name for error messages.

    Returns:
        The parsed :class:`CincHeader` (``parser="medzs"``).

    Raises:
        RecordError: missing record line, too few signal lines, or malformed fields.
    """
    lines = [ln.strip() for ln in text.splitlines()]
    comments = [ln.lstrip("#").strip() for ln in lines if ln.startswith("#")]
    body = [ln for ln in lines if ln and not ln.startswith("#")]
    if not body:
        raise RecordError(f"{where}: no record line (expected a WFDB header)")
    name, n_sig, fs, n_samples, base_time, base_date = _parse_record_line(body[0], where)
    sig_lines = body[1 : 1 + n_sig]
    if len(sig_lines) != n_sig:
        raise RecordError(f"{where}: {len(sig_lines)} signal lines (expected {n_sig}, as the record line says)")
    h = CincHeader(name, n_sig, fs, n_samples, base_time, base_date, comments=comments)
    for ln in sig_lines:
        f, g, b, u, init, cks, desc = _parse_signal_line(ln, where)
        h.file_names.append(f)
        h.gains.append(g)
        h.baselines.append(b)
        h.units.append(u)
        h.init_values.append(init)
        h.checksums.append(cks)
        h.lead_names.append(desc)
    return h


def read_header(path: str | os.PathLike[str]) -> CincHeader:
    """Read a CinC/WFDB header, with ``wfdb.rdheader`` first and this module's parser as the fallback.

    The record line (base date and time) is always parsed here, because ``wfdb`` misreads headers that put the
    date first. When ``wfdb`` raises, or the file does not end in ``.hea`` (``wfdb`` needs that name), the
    whole header comes from :func:`parse_header_text`.

    Args:
        path: Header file.

    Returns:
        :class:`CincHeader`.

    Raises:
        RecordError: unreadable or malformed header.
    """
    p = Path(path)
    check_file_size(p)
    try:
        text = p.read_text(encoding="latin-1")
    except OSError as exc:
        raise RecordError(f"{p.name}: cannot read header ({exc}); expected a WFDB .hea file") from exc
    own = parse_header_text(text, p.name)
    if p.suffix != ".hea":
        return own
    try:
        import wfdb

        h = wfdb.rdheader(str(p.with_suffix("")))
    except Exception as exc:  # noqa: BLE001 - wfdb raises ValueError, IndexError, TypeError, ... on odd headers
        logger.info("%s: wfdb could not parse the header (%s); using medzs's parser", p.name, type(exc).__name__)
        return own
    if h.n_sig != own.n_sig or float(h.fs) != own.fs or (own.n_samples is not None and h.sig_len != own.n_samples):
        logger.warning("%s: wfdb's reading of the record line differs from medzs's; using medzs's parser", p.name)
        return own
    n = int(h.n_sig)

    def _list(v: Any, default: Any) -> list[Any]:
        return list(v) if v is not None else [default] * n

    return CincHeader(
        record_name=str(h.record_name),
        n_sig=n,
        fs=float(h.fs),
        n_samples=int(h.sig_len) if h.sig_len is not None else None,
        base_time=own.base_time,
        base_date=own.base_date,
        file_names=[str(f) for f in _list(h.file_name, "")],
        gains=list(own.gains),  # wfdb silently turns an uncalibrated gain (0) into 200
        baselines=[int(b) for b in _list(h.baseline, 0)],
        units=[str(u) if u else "mV" for u in _list(h.units, "mV")],
        init_values=[None if v is None else int(v) for v in _list(h.init_value, None)],
        checksums=[None if v is None else int(v) for v in _list(h.checksum, None)],
        lead_names=[str(s) for s in _list(h.sig_name, "")],
        comments=[str(c).strip() for c in (h.comments or [])],
        parser="wfdb",
    )


def _comment_fields(comments: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for c in comments:
        if ":" in c:
            k, v = c.split(":", 1)
            out.setdefault(k.strip().lower(), v.strip())
    return out


def mat_version(head: bytes) -> int | None:
    """MATLAB file version from the first bytes of a file: 5 (text header), 4 (Level 4 header) or None.

    PhysioNet/CinC ``.mat`` files are MATLAB Level 4 files (no text header): five int32 ``type, mrows, ncols,
    imagf, namlen`` (``type`` = 1000*M + 100*O + 10*P + T; M 0 = little-endian, 1 = big-endian), then the
    NUL-terminated variable name (``val``) and the column-major data -- hence the ``+24`` byte offset in the
    headers. Level 5 files (e.g. CPSC2018) start with the text ``MATLAB 5.0 MAT-file``. Only the header is
    checked here; ``scipy.io.loadmat`` reads the data.

    Args:
        head: At least the first 20 + namlen bytes of the file (e.g. the first 128 bytes).
    """
    if head.startswith(_MAT_MAGIC):
        return 5
    if len(head) < 20:
        return None
    for endian, m_flag in (("<", 0), (">", 1)):
        mtype, mrows, ncols, imagf, namlen = struct.unpack(endian + "5i", head[:20])
        if not 0 <= mtype < 5000:
            continue
        m, rest = divmod(mtype, 1000)
        o, rest = divmod(rest, 100)
        prec, kind = divmod(rest, 10)
        if m != m_flag or o != 0 or prec > 5 or kind not in (0, 1, 2):
            continue
        if mrows < 0 or ncols < 0 or imagf not in (0, 1) or not 2 <= namlen <= 64 or len(head) < 20 + namlen:
            continue
        name = head[20 : 20 + namlen]
        if name[-1] == 0 and re.fullmatch(rb"[A-Za-z_]\w*", name[:-1]):
            return 4
    return None


def is_mat_file(path: str | os.PathLike[str]) -> bool:
    """True when the file has a MATLAB Level 4 or Level 5 header (see :func:`mat_version`)."""
    try:
        with open(path, "rb") as fh:
            return mat_version(fh.read(128)) is not None
    except OSError:
        return False


def _locate(path: Path) -> tuple[Path, Path | None]:
    """(header, signal file or None=take from header) for a path to the header, the .mat file or the record base."""
    if path.suffix not in (".hea", ".mat") and not path.exists():
        return path.with_suffix(".hea"), None
    if is_mat_file(path):
        return path.with_suffix(".hea"), path
    return path, None


def read_cinc(path: str | os.PathLike[str], verify_checksum: bool = True) -> dict[str, Any]:
    """Read a PhysioNet/CinC 2020-2021 record (``.hea`` + ``.mat``) as a medzs sample.

    The signal is ``val`` from the ``.mat`` file (``scipy.io.loadmat``), converted with the header's gain,
    baseline and units: ``mV = (val - baseline) / gain * unit_factor``.

    Args:
        path: The header, the ``.mat`` file (its header is the sibling file with the same stem and ``.hea``) or
            the record path without extension.
        verify_checksum: Compare each lead's first value and 16-bit checksum with the header (detects altered or
            mismatched signal files).

    Returns:
        Sample dict (``docs/architecture.md``). ``meta``: ``format="cinc"``, ``snomed_ct`` (Dx codes, exact),
        ``labels`` (CinC abbreviations of the codes known to :mod:`medzs.data.vocab`), ``statements`` (their
        names), ``age`` (years or None), ``sex`` (``"male"``/``"female"``/None), ``rx``/``hx``/``sx`` when
        present, ``comments``, ``gains`` (as written in the header), ``baselines``, ``units``, ``header_parser``,
        ``uncalibrated_leads`` (leads whose header gain is 0, "uncalibrated" in the WFDB specification: their
        values use the WFDB default gain 200, and :func:`medzs.quality.check_ecg` makes the record an error);
        ``meta["identifiers"]`` holds ``acquisition_date``/``acquisition_time`` when the header has them (None
        parts are dropped: a date or time that cannot be parsed is unknown, never guessed).

    Raises:
        RecordError: header or ``.mat`` missing or malformed, no ``val`` matrix, shape differing from the
            header, checksum mismatch, non-finite values.
    """
    import scipy.io

    from medzs.data.vocab import code_name, codes, map_codes, parse_dx

    p = Path(path)
    hea, mat = _locate(p)
    if not hea.is_file():
        raise RecordError(f"{hea.name}: header not found (expected a WFDB .hea file next to {p.name})")
    h = read_header(hea)
    if mat is None:
        names = sorted(set(h.file_names))
        if len(names) != 1:
            raise RecordError(f"{hea.name}: signal files {names} (expected one .mat file for all leads)")
        mat = hea.parent / names[0]
        if not mat.is_file() and hea.with_suffix(".mat").is_file():
            mat = hea.with_suffix(".mat")
    if not mat.is_file():
        raise RecordError(f"{hea.name}: signal file {mat.name} not found (expected it next to the header)")
    check_file_size(mat)
    try:
        data = scipy.io.loadmat(str(mat))
    except Exception as exc:  # noqa: BLE001 - scipy raises ValueError, TypeError, OSError, MatReadError, ...
        raise RecordError(f"{mat.name}: unreadable MATLAB file ({exc}); expected a complete .mat with 'val'") from exc
    if "val" not in data:
        keys = [k for k in data if not k.startswith("__")]
        raise RecordError(f"{mat.name}: variable 'val' missing (found {keys}; expected the CinC 'val' matrix)")
    val = np.asarray(data["val"])
    if val.ndim != 2 or val.shape[0] != h.n_sig:
        raise RecordError(f"{mat.name}: 'val' has shape {val.shape} (expected ({h.n_sig}, samples) as the header says)")
    if h.n_samples is not None and val.shape[1] != h.n_samples:
        raise RecordError(
            f"{mat.name}: 'val' has {val.shape[1]} samples (expected {h.n_samples} as {hea.name} says)"
        )
    leads = [normalize_lead_name(n) for n in h.lead_names]
    if verify_checksum:
        for i, lead in enumerate(leads):
            if h.init_values[i] is not None and val.shape[1] and int(val[i, 0]) != h.init_values[i]:
                raise RecordError(
                    f"{mat.name}: lead {lead!r} first value {int(val[i, 0])} (expected {h.init_values[i]} from "
                    f"{hea.name}; the signal file does not belong to this header or was altered)"
                )
            cks = h.checksums[i]
            if cks is not None and (int(val[i].astype(np.int64).sum()) - cks) % 65536 != 0:
                raise RecordError(
                    f"{mat.name}: lead {lead!r} checksum differs from {hea.name} (expected an unaltered signal file)"
                )
    header_gains = np.asarray(h.gains, dtype=np.float64)
    uncalibrated = [leads[i] for i in np.flatnonzero(header_gains == 0)]
    if uncalibrated:
        logger.warning("%s: lead(s) %s have ADC gain 0 (uncalibrated); values use the WFDB default gain 200",
                       hea.name, uncalibrated)
    gains = np.where(header_gains == 0, _WFDB_DEFAULT_GAIN, header_gains)
    factors = np.asarray(
        [unit_factor(u, hea.name, f"units of lead {n!r}") for u, n in zip(h.units, leads, strict=True)]
    )
    signal = (val.astype(np.float64) - np.asarray(h.baselines, dtype=np.float64)[:, None]) / gains[:, None]
    signal *= factors[:, None]

    fields = _comment_fields(h.comments)
    snomed = parse_dx(fields.get("dx"), source=f"{hea.name} '# Dx:'")
    labels = map_codes(snomed, "snomed_ct", "cinc", unknown="skip")
    unknown = [c for c in snomed if c not in codes("snomed_ct")]
    if unknown:
        logger.info("%s: %d Dx code(s) not in the vocabulary table", hea.name, len(unknown))
    meta: dict[str, Any] = {
        "snomed_ct": snomed,
        "labels": labels,
        "statements": [code_name(c, "snomed_ct") for c in snomed if c not in unknown],
        "age": to_float(fields.get("age")),
        "sex": normalize_sex(fields.get("sex")),
        "comments": [c for c in h.comments if not c.lower().startswith(("age", "sex"))],
        "gains": [float(g) for g in header_gains],
        "uncalibrated_leads": uncalibrated,
        "baselines": [int(b) for b in h.baselines],
        "units": list(h.units),
        "n_samples": int(val.shape[1]),
        "header_parser": h.parser,
        "signal_file": mat.name,
    }
    for k in ("rx", "hx", "sx"):
        if k in fields:
            meta[k] = fields[k]
    identifiers = {"acquisition_date": h.base_date, "acquisition_time": h.base_time}
    sample = build_sample(signal, leads, h.fs, hea, "cinc", meta, identifiers)
    logger.debug("read_cinc: %d leads x %d samples at %s Hz", len(leads), val.shape[1], h.fs)
    return sample


__all__ = ["CincHeader", "is_mat_file", "mat_version", "parse_header_text", "read_cinc", "read_header"]
