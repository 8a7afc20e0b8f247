"""Input discovery: folders, files, glob patterns and manifest CSVs -> a deterministic list of files to read.

Used by ``medzs score`` (:mod:`medzs.batch`) and the ``folder`` datasets (:mod:`medzs.data.folder`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

from medzs.errors import SpecError

#: Extensions a folder walk picks up (case-insensitive); files without an extension are taken when they carry
#: the DICOM preamble. Name other files explicitly, with a glob or in a manifest.
FOLDER_EXTENSIONS: tuple[str, ...] = (".hea", ".mat", ".xml", ".dcm", ".dicom")
#: Files sharing a ``.hea``'s stem in the same folder are its companions (``.dat``, ``.mat``, ``.atr``, ...) and
#: are not records of their own, except these.
_NOT_COMPANIONS: tuple[str, ...] = (".hea", ".xml", ".dcm", ".dicom")
#: Image extensions a folder walk picks up for radiographs and CT (DICOM files without extension are found by their
#: preamble).
IMAGE_EXTENSIONS: tuple[str, ...] = (".dcm", ".dicom", ".png", ".jpg", ".jpeg", ".nii", ".gz")
_GLOB_MAGIC = re.compile(r"[*?\[]")


def _has_dicom_preamble(path: Path) -> bool:
    try:
        with path.open("rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


def _folder_candidate(path: Path, extensions: Sequence[str] = FOLDER_EXTENSIONS) -> bool:
    if path.name.startswith("."):
        return False
    suffix = path.suffix.lower()
    if suffix in extensions:
        return True
    return suffix == "" and _has_dicom_preamble(path)


def _drop_companions(paths: Sequence[Path]) -> list[Path]:
    headers = {(p.parent, p.stem) for p in paths if p.suffix.lower() == ".hea"}
    return [p for p in paths if p.suffix.lower() in _NOT_COMPANIONS or (p.parent, p.stem) not in headers]


def _walk(root: Path, extensions: Sequence[str] = FOLDER_EXTENSIONS) -> list[Path]:
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        found.extend(Path(dirpath) / f for f in filenames if _folder_candidate(Path(dirpath) / f, extensions))
    return found


def _glob_root(pattern: str) -> Path:
    parts = Path(pattern).parts
    static: list[str] = []
    for part in parts:
        if _GLOB_MAGIC.search(part):
            break
        static.append(part)
    return Path(*static) if static else Path(".")


def _rel(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return Path(os.path.relpath(path, root)).as_posix()


def _read_manifest(path: Path) -> list[tuple[str, str]]:
    import pandas as pd

    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except Exception as exc:  # pandas raises ParserError, UnicodeDecodeError, EmptyDataError, ...
        raise SpecError(f"manifest {path}: not readable as CSV ({type(exc).__name__}); expected a CSV with a "
                        "'path' column and an optional 'record_id' column") from exc
    if "path" not in df.columns:
        raise SpecError(f"manifest {path}: column 'path' missing (columns: {list(df.columns)}); expected 'path' "
                        "and optionally 'record_id'")
    base = path.parent
    has_id = "record_id" in df.columns
    rows: list[tuple[str, str]] = []
    for i, value in enumerate(df["path"].tolist()):
        value = value.strip()
        if not value:
            raise SpecError(f"manifest {path}: row {i + 2}: field 'path' is empty (expected a file path)")
        full = Path(value) if Path(value).is_absolute() else base / value
        rid = df["record_id"].iat[i].strip() if has_id else ""
        rows.append((os.path.abspath(full), rid or value))
    return rows


def discover_files(inputs: Sequence[str | os.PathLike[str]],
                   extensions: Sequence[str] = FOLDER_EXTENSIONS) -> list[tuple[str, str]]:
    """Expand inputs to a deterministic list of records.

    Each input is, in this order of checks:

    - a ``.csv`` file: a manifest with a ``path`` column (relative paths are relative to the manifest's folder)
      and an optional ``record_id`` column (default: the ``path`` value). Rows are kept in file order and never
      de-duplicated (a repeated row is scored again);
    - a folder: walked recursively; files with the extensions :data:`FOLDER_EXTENSIONS` (and extension-less
      files with a DICOM preamble) are taken, sorted by relative path; ``source_id`` is the path relative to the
      folder;
    - a file: taken as is (``source_id`` = its name);
    - otherwise a glob pattern (``**`` recursive), every matching file, sorted; ``source_id`` is the path
      relative to the pattern's leading non-wildcard folders.

    For folders and globs, a record with a ``.hea`` header is taken once by its header: files with the same
    stem in the same folder (``.dat``, ``.mat``, annotations) are dropped. A file reached by several folder, file
    or glob inputs is taken once (first occurrence). The format is not checked here; files that are not ECGs
    become error rows when scored.

    Args:
        inputs: Folders, files, glob patterns and manifest CSVs, in the order wanted.
        extensions: File extensions a folder walk picks up (ECG formats by default; images: ``IMAGE_EXTENSIONS``).

    Returns:
        ``(absolute path, source id)`` pairs in that order.

    Raises:
        SpecError: a glob that matches nothing, a path that does not exist, or a malformed manifest.
    """
    import glob as _glob

    out: list[tuple[str, str]] = []
    seen: set[str] = set()

    def add(paths: Sequence[Path], root: Path) -> None:
        for p in sorted(_drop_companions(paths), key=lambda q: _rel(q, root)):
            real = os.path.realpath(p)
            if real in seen:
                continue
            seen.add(real)
            out.append((os.path.abspath(p), _rel(p, root)))

    for item in inputs:
        s = os.fspath(item)
        p = Path(s)
        if p.is_file() and p.suffix.lower() == ".csv":
            out.extend(_read_manifest(p))
        elif p.is_dir():
            add(_walk(p, extensions), p)
        elif p.is_file():
            add([p], p.parent)
        elif _GLOB_MAGIC.search(s):
            matches = [Path(m) for m in _glob.glob(s, recursive=True) if Path(m).is_file()]
            if not matches:
                raise SpecError(f"input {s!r}: glob pattern matches no file")
            add(matches, _glob_root(s))
        else:
            raise SpecError(f"input {s!r}: no such file or folder (expected a folder, a file, a glob pattern or a "
                            "manifest .csv)")
    return out


__all__ = ["FOLDER_EXTENSIONS", "IMAGE_EXTENSIONS", "discover_files"]
