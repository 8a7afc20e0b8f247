"""Read any supported ECG file, detecting its format from the content rather than the file name.

Detection, in order:

1. ``DICM`` at byte offset 128 (DICOM Part 10 preamble) -> :func:`medzs.io.dicom_ecg.read_dicom_ecg`;
2. a MATLAB file header (Level 5: the text ``MATLAB 5.0 MAT-file``; Level 4, as PhysioNet/CinC writes them: a
   valid 20-byte binary header, see :func:`medzs.io.cinc.mat_version`) -> with a sibling ``.hea`` of the same
   stem: CinC 2020-2021 (:func:`medzs.io.cinc.read_cinc`); else a struct ``ECG``: CPSC2018
   (:func:`medzs.io.cpsc.read_cpsc`);
3. XML, by root element name: ``RestingECG`` -> GE MUSE (:func:`medzs.io.muse.read_muse`),
   ``restingecgdata`` -> Philips Sierra (:func:`medzs.io.philips.read_philips`), ``AnnotatedECG`` -> HL7 aECG
   (:func:`medzs.io.hl7aecg.read_hl7aecg`);
4. WFDB header text (record line ``name n_sig ...``) -> CinC when its signal file is a ``.mat`` file, otherwise
   WFDB (:func:`medzs.io.wfdb.read_wfdb`);
5. a file that is none of these (e.g. a WFDB ``.dat``) but has a sibling ``.hea`` -> that header, as in 4.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Any

from medzs.errors import RecordError
from medzs.io.cinc import mat_version

logger = logging.getLogger(__name__)

#: Format names returned by :func:`detect_format` and accepted by :func:`read_ecg`.
FORMATS: tuple[str, ...] = ("dicom", "muse", "philips", "hl7aecg", "cinc", "cpsc2018", "wfdb")

_XML_ROOTS = {"RestingECG": "muse", "restingecgdata": "philips", "AnnotatedECG": "hl7aecg"}
_EXPECTED = (
    "DICOM ECG waveform (DICM at offset 128), GE MUSE XML (<RestingECG>), Philips Sierra XML "
    "(<restingecgdata>), HL7 aECG XML (<AnnotatedECG>), MATLAB .mat (CinC 'val' with a .hea, or CPSC2018 "
    "struct 'ECG'), or a WFDB .hea header"
)
_RECORD_LINE = re.compile(r"^[\w.\-+~]+(/\d+)?\s+\d+(\s|$)")


def _xml_root(path: Path) -> str | None:
    """Local name of the root element, or None when the file is not well-formed XML up to its first tag."""
    from lxml import etree

    try:
        for _, el in etree.iterparse(
            str(path), events=("start",), resolve_entities=False, no_network=True, load_dtd=False, huge_tree=True
        ):
            tag = el.tag if isinstance(el.tag, str) else ""
            return tag.rsplit("}", 1)[-1]
    except (etree.XMLSyntaxError, OSError, ValueError):
        return None
    return None


def _looks_like_xml(head: bytes) -> bool:
    for bom, enc in ((b"\xef\xbb\xbf", "utf-8"), (b"\xff\xfe", "utf-16-le"), (b"\xfe\xff", "utf-16-be")):
        if head.startswith(bom):
            return head[len(bom) :].decode(enc, errors="ignore").lstrip().startswith("<")
    return head.lstrip().startswith(b"<")


def _wfdb_header_kind(head: bytes) -> str | None:
    """``"cinc"`` or ``"wfdb"`` when ``head`` is WFDB header text, else None."""
    if b"\x00" in head:
        return None
    try:
        text = head.decode("ascii")
    except UnicodeDecodeError:
        return None
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("#")]
    if not lines or not _RECORD_LINE.match(lines[0]):
        return None
    if len(lines) > 1 and lines[1].split()[0].lower().endswith(".mat"):
        return "cinc"
    return "wfdb"


def _mat_kind(path: Path) -> str:
    if path.suffix != ".hea" and path.with_suffix(".hea").is_file():
        return "cinc"
    import scipy.io

    try:
        names = {name for name, _, _ in scipy.io.whosmat(str(path))}
    except Exception as exc:  # noqa: BLE001 - scipy raises ValueError, TypeError, MatReadError, ...
        raise RecordError(f"{path}: unreadable MATLAB file ({exc}); expected a CinC or CPSC2018 .mat") from exc
    if "ECG" in names:
        return "cpsc2018"
    if "val" in names:
        raise RecordError(
            f"{path}: MATLAB matrix 'val' but no header {path.with_suffix('.hea').name} next to it "
            "(expected a CinC record: .mat plus .hea)"
        )
    raise RecordError(f"{path}: MATLAB variables {sorted(names)} (expected CPSC2018 struct 'ECG' or CinC 'val')")


def detect_format(path: str | os.PathLike[str]) -> str:
    """Detect the ECG file format from the file's content.

    Args:
        path: The file (any extension), or a WFDB/CinC record path without extension.

    Returns:
        One of :data:`FORMATS`.

    Raises:
        RecordError: file missing, or content of none of the supported formats (the message lists them).
    """
    p = Path(path)
    if not p.is_file():
        if p.with_suffix(".hea").is_file() and p.suffix not in (".hea",):
            return detect_format(p.with_suffix(".hea"))
        raise RecordError(f"{p}: file not found (expected {_EXPECTED})")
    try:
        with p.open("rb") as fh:
            head = fh.read(4096)
    except OSError as exc:
        raise RecordError(f"{p}: cannot read file ({exc}); expected {_EXPECTED}") from exc
    if len(head) >= 132 and head[128:132] == b"DICM":
        return "dicom"
    if mat_version(head) is not None:
        return _mat_kind(p)
    if head.startswith(b"MATLAB 7.3 MAT-file"):
        raise RecordError(f"{p}: MATLAB 7.3 (HDF5) .mat file (expected a MATLAB 5 .mat file; re-save with -v7)")
    if _looks_like_xml(head):
        root = _xml_root(p)
        if root in _XML_ROOTS:
            return _XML_ROOTS[root]
        what = f"root element <{root}>" if root else "XML that is not well-formed"
        raise RecordError(f"{p}: {what} (expected {_EXPECTED})")
    kind = _wfdb_header_kind(head)
    if kind is not None:
        return kind
    sibling = p.with_suffix(".hea")
    if sibling != p and sibling.is_file():
        with sibling.open("rb") as fh:
            kind = _wfdb_header_kind(fh.read(4096))
        if kind is not None:
            return kind
    raise RecordError(f"{p}: unrecognised content (expected {_EXPECTED})")


def _header_for(p: Path) -> Path:
    """The WFDB header belonging to ``p`` (``p`` itself when it is header text)."""
    if p.is_file():
        with p.open("rb") as fh:
            if _wfdb_header_kind(fh.read(4096)) is not None:
                return p
    return p.with_suffix(".hea")


def read_ecg(path: str | os.PathLike[str], format: str | None = None, **kwargs: Any) -> dict[str, Any]:
    """Read an ECG file of any supported format as a medzs sample dict.

    Args:
        path: The file (the extension is not trusted), or a WFDB/CinC record path without extension.
        format: Skip detection and use this reader (one of :data:`FORMATS`).
        **kwargs: Passed to the reader (e.g. ``waveform="Median"`` for MUSE, ``group=1`` for DICOM).

    Returns:
        The sample dict (``docs/architecture.md``); ``meta["format"]`` names the format.

    Raises:
        RecordError: unknown format name, undetectable content, or any reader error.
    """
    from medzs.io._ecg_common import check_file_size

    p = Path(path)
    check_file_size(p)  # before detection or any reader touches the content
    fmt = format or detect_format(p)
    if fmt not in FORMATS:
        raise RecordError(f"{p}: format {fmt!r} unknown (expected one of {FORMATS})")
    logger.debug("read_ecg: detected format %s", fmt)
    if fmt == "dicom":
        from medzs.io.dicom_ecg import read_dicom_ecg

        return read_dicom_ecg(p, **kwargs)
    if fmt == "muse":
        from medzs.io.muse import read_muse

        return read_muse(p, **kwargs)
    if fmt == "philips":
        from medzs.io.philips import read_philips

        return read_philips(p, **kwargs)
    if fmt == "hl7aecg":
        from medzs.io.hl7aecg import read_hl7aecg

        return read_hl7aecg(p, **kwargs)
    if fmt == "cinc":
        from medzs.io.cinc import read_cinc

        return read_cinc(p if p.is_file() else p.with_suffix(".hea"), **kwargs)
    if fmt == "cpsc2018":
        from medzs.io.cpsc import read_cpsc

        return read_cpsc(p, **kwargs)
    from medzs.io.wfdb import read_wfdb

    return read_wfdb(_header_for(p), **kwargs)


__all__ = ["FORMATS", "detect_format", "read_ecg"]
