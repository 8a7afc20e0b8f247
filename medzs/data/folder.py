"""Any folder, glob or manifest of files ``medzs score`` reads, plus a labels CSV: the hospital case.

The labels CSV has one row per record, joined to the files by a ``path`` column (relative to the CSV's folder, or
absolute) or a ``record_id`` column (matched to the file's path relative to ``root``, with or without extension,
or to its file name stem), and either

- one column per class code with 1 / 0 / blank (blank = not labelled, NaN), or
- a ``codes`` column listing each record's codes (separated by ``,;|`` or spaces), exact codes of ``system``.

Example ``labels.csv``::

    record_id,codes
    ecg0001,164889003
    ecg0002,"426783006,270492004"

A file with no row in the labels CSV is kept (scored) with NaN labels; a labels row whose file is missing is an
error naming the row.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from medzs.errors import SpecError


class FolderDataset:
    """Files found under ``root`` (folder, glob or manifest CSV) with labels from a CSV.

    Args:
        root: A folder (walked recursively), a glob pattern, or a manifest CSV (:mod:`medzs.io.discover`).
        labels: The labels CSV (required for ``medzs zeroshot``; optional for scoring only).
        system: Code system of the labels (``snomed_ct``, ``scp_ecg``, ``cpsc2018``): how classes map to the
            knowledge base.
        modality: ``"ecg"`` (default), ``"cxr"`` or ``"ct"``.
        citation: How to cite the data in reports.

    Raises:
        SpecError: root or labels missing/malformed (the message names the file, the row and the column).
    """

    name = "folder"
    partial = False

    def __init__(self, root: str | os.PathLike[str] | None = None, labels: str | os.PathLike[str] | None = None,
                 system: str = "snomed_ct", modality: str = "ecg", citation: str = "") -> None:
        from medzs.io.discover import FOLDER_EXTENSIONS, IMAGE_EXTENSIONS, discover_files

        if root is None:
            raise SpecError("dataset.root: required for a folder dataset (a folder, glob or manifest CSV)")
        self.root = Path(root)
        self.modality = modality
        self.system = system
        self.citation = citation or "local data (no citation given)"
        exts = FOLDER_EXTENSIONS if modality == "ecg" else IMAGE_EXTENSIONS
        self.files = discover_files([root], extensions=exts)
        if not self.files:
            raise SpecError(f"dataset.root: {root}: no file found")
        self.labels_path = Path(labels) if labels is not None else None
        self._rows: dict[str, dict[str, Any]] | None = None
        self._columns: list[str] = []
        self._codes_column = False
        if self.labels_path is not None:
            self._read_labels()

    # -- labels CSV ----------------------------------------------------------------------------------------
    def _keys(self, path: str, sid: str) -> list[str]:
        p = Path(path)
        return [os.path.realpath(path), sid, str(Path(sid).with_suffix("")), p.stem]

    def _read_labels(self) -> None:
        import pandas as pd

        lp = self.labels_path
        assert lp is not None
        if not lp.is_file():
            raise SpecError(f"dataset.labels: {lp} not found (expected a CSV with a path or record_id column)")
        try:
            df = pd.read_csv(lp, dtype=str, keep_default_na=False)
        except Exception as exc:  # noqa: BLE001 - pandas raises several parser errors
            raise SpecError(f"dataset.labels: {lp}: not readable as CSV ({type(exc).__name__})") from None
        key_col = "path" if "path" in df.columns else ("record_id" if "record_id" in df.columns else None)
        if key_col is None:
            raise SpecError(f"dataset.labels: {lp.name}: columns {list(df.columns)} (expected 'path' or "
                            "'record_id', then 'codes' or one 0/1 column per class)")
        self._codes_column = "codes" in df.columns
        self._columns = [c for c in df.columns if c not in ("path", "record_id", "codes")]
        index: dict[str, int] = {}
        for i, (path, sid) in enumerate(self.files):
            for k in self._keys(path, sid):
                index.setdefault(k, i)
        rows: dict[str, dict[str, Any]] = {}
        for n, row in df.iterrows():
            key = row[key_col].strip()
            if key_col == "path":
                full = Path(key) if Path(key).is_absolute() else lp.parent / key
                key = os.path.realpath(full)
            if key not in index:
                raise SpecError(f"dataset.labels: {lp.name} row {n + 2}: {key_col} {row[key_col]!r} matches no file "
                                f"under {self.root}")
            sid = self.files[index[key]][1]
            if self._codes_column:
                from medzs.data.vocab import parse_dx

                rows[sid] = {"codes": parse_dx(row["codes"], source=f"{lp.name} row {n + 2}")}
            else:
                vals = {}
                for c in self._columns:
                    v = row[c].strip()
                    if v == "":
                        vals[c] = float("nan")
                    elif v in ("0", "1", "0.0", "1.0"):
                        vals[c] = float(v)
                    else:
                        raise SpecError(f"dataset.labels: {lp.name} row {n + 2}: column {c!r} = {v!r} (expected 1, "
                                        "0 or blank)")
                rows[sid] = vals
        self._rows = rows

    # -- protocol --------------------------------------------------------------------------------------------
    def splits(self) -> list[str]:
        return ["all"]

    def records(self, split: str = "all") -> list[Any]:
        from medzs.data.types import RecordRef

        if split != "all":
            raise SpecError(f"dataset.split: a folder dataset has the split 'all' only, got {split!r}")
        return [RecordRef(id=sid, path=path) for path, sid in self.files]

    def label_codes(self) -> list[str]:
        if self._rows is None:
            return []
        if self._codes_column:
            return sorted({c for r in self._rows.values() for c in r["codes"]})
        return list(self._columns)

    def labels(self, task: Any) -> Any:
        import pandas as pd

        if self._rows is None:
            raise SpecError("dataset.labels: a folder dataset needs a labels CSV for zero-shot evaluation")
        if self._codes_column:
            from medzs.data._labels import code_matrix

            return code_matrix({sid: (self._rows[sid]["codes"] if sid in self._rows else None)
                                for _, sid in self.files}, task, self.name, self.system)
        missing = [c for c in task.classes if c not in self._columns]
        if missing:
            raise SpecError(f"dataset.labels: {self.labels_path}: no column for classes {missing} "
                            f"(columns: {self._columns})")
        data = {sid: [self._rows.get(sid, {}).get(c, float("nan")) for c in task.classes] for _, sid in self.files}
        return pd.DataFrame.from_dict(data, orient="index", columns=list(task.classes)).astype(float)
