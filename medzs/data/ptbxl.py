"""PTB-XL in its official PhysioNet layout: database, statements, benchmark labels, splits and download.

PTB-XL (Wagner et al., "PTB-XL, a large publicly available electrocardiography dataset", Sci Data 7:154, 2020,
doi:10.1038/s41597-020-0495-6; PhysioNet doi:10.13026/kfzx-aw45) ships

- ``ptbxl_database.csv``: one row per record (``ecg_id``), with ``scp_codes`` (a Python dict literal
  ``{statement code: likelihood in %}``), ``report``, ``strat_fold`` (1-10), ``filename_lr``, ``filename_hr``;
- ``scp_statements.csv``: the 71 SCP-ECG statements with ``diagnostic_class`` (superclass),
  ``diagnostic_subclass`` and the ``diagnostic``/``form``/``rhythm`` flags;
- ``records100/`` and ``records500/``: WFDB records at 100 Hz (``*_lr``) and 500 Hz (``*_hr``).

The task labels follow the benchmark of Strodthoff et al. (IEEE JBHI 25(5):1519-1528, 2021,
doi:10.1109/JBHI.2020.3022989), which MERL (Liu et al., ICML 2024) uses for its PTBXL-super/sub/form/rhythm
zero-shot benchmarks: a record is positive for a superclass/subclass when *any* statement in its ``scp_codes``
(whatever its likelihood, 0 included) has that ``diagnostic_class``/``diagnostic_subclass``; form and rhythm
labels are the statements with the ``form``/``rhythm`` flag. Class order is the column order of MERL's split
files (``finetune/data_split/ptbxl/*/ptbxl_*_test.csv``, github.com/cheliu-computation/MERL).

Class codes are PTB-XL's own statement/subclass codes (``NST_``, ``ISC_``, ``_AVB``, ``STD_``...). MERL's split
files drop the underscores (``NST``, ``ISC``, ``AVB``, ``STD``...); :data:`MERL_COLUMN_NAMES` and
:func:`to_merl_columns` translate.

PTB-XL versions: v1.0.1 has 21,837 records; v1.0.3 has 21,799. The 38 ecg_ids of v1.0.1 that are not in v1.0.3
(:data:`NOT_IN_V1_0_3`) are absent from every MERL split file (the union of MERL's 12 PTB-XL split files is
exactly 21,799 ids, 1-21,837 minus these 38).
"""

from __future__ import annotations

import ast
import hashlib
import logging
import numbers
import operator
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medzs.errors import RecordError

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

logger = logging.getLogger(__name__)

#: PhysioNet home of PTB-XL v1.0.3 (files are below this URL in the layout this module reads).
DEFAULT_BASE_URL = "https://physionet.org/files/ptb-xl/1.0.3/"

DATABASE_CSV = "ptbxl_database.csv"
STATEMENTS_CSV = "scp_statements.csv"
SHA256SUMS = "SHA256SUMS.txt"

#: The 5 diagnostic superclasses, in MERL's column order (``ptbxl_super_class_test.csv``).
SUPERCLASSES: tuple[str, ...] = ("HYP", "NORM", "MI", "CD", "STTC")

#: The 23 diagnostic subclasses, in MERL's column order (``ptbxl_sub_class_test.csv``), PTB-XL spelling.
SUBCLASSES: tuple[str, ...] = (
    "AMI", "LAFB/LPFB", "LVH", "STTC", "IMI", "SEHYP", "CRBBB", "WPW", "LAO/LAE", "NORM", "ISC_", "_AVB",
    "RAO/RAE", "LMI", "ISCI", "ISCA", "NST_", "CLBBB", "ILBBB", "IRBBB", "PMI", "RVH", "IVCD",
)

#: The 19 form statements, in MERL's column order (``ptbxl_form_test.csv``), PTB-XL spelling.
FORM_CODES: tuple[str, ...] = (
    "PAC", "DIG", "HVOLT", "STD_", "LPR", "QWAVE", "VCLVH", "NDT", "TAB_", "LOWT", "ABQRS", "LNGQT", "PRC(S)",
    "NT_", "STE_", "NST_", "PVC", "INVT", "LVOLT",
)

#: The 12 rhythm statements, in MERL's column order (``ptbxl_rhythm_test.csv``).
RHYTHM_CODES: tuple[str, ...] = (
    "SVARR", "BIGU", "STACH", "SARRH", "SBRAD", "TRIGU", "AFIB", "SR", "SVTAC", "PSVT", "AFLT", "PACE",
)

#: All 71 SCP-ECG statements of PTB-XL, in the row order of ``scp_statements.csv`` (task ``"all"``).
STATEMENT_CODES: tuple[str, ...] = (
    "NDT", "NST_", "DIG", "LNGQT", "NORM", "IMI", "ASMI", "LVH", "LAFB", "ISC_", "IRBBB", "1AVB", "IVCD",
    "ISCAL", "CRBBB", "CLBBB", "ILMI", "LAO/LAE", "AMI", "ALMI", "ISCIN", "INJAS", "LMI", "ISCIL", "LPFB",
    "ISCAS", "INJAL", "ISCLA", "RVH", "ANEUR", "RAO/RAE", "EL", "WPW", "ILBBB", "IPLMI", "ISCAN", "IPMI",
    "SEHYP", "INJIN", "INJLA", "PMI", "3AVB", "INJIL", "2AVB", "ABQRS", "PVC", "STD_", "VCLVH", "QWAVE",
    "LOWT", "NT_", "PAC", "LPR", "INVT", "LVOLT", "HVOLT", "TAB_", "STE_", "PRC(S)", "SR", "AFIB", "STACH",
    "SARRH", "SBRAD", "PACE", "SVARR", "BIGU", "AFLT", "SVTAC", "PSVT", "TRIGU",
)

#: Class codes per label set (the argument of :meth:`PTBXL.labels`).
LABEL_SETS: dict[str, tuple[str, ...]] = {
    "super": SUPERCLASSES,
    "sub": SUBCLASSES,
    "form": FORM_CODES,
    "rhythm": RHYTHM_CODES,
    "all": STATEMENT_CODES,
}

#: PTB-XL code -> column name in MERL's split files (only the codes whose spelling differs; MERL drops ``_``).
MERL_COLUMN_NAMES: dict[str, str] = {
    "NST_": "NST", "ISC_": "ISC", "_AVB": "AVB", "STD_": "STD", "TAB_": "TAB", "NT_": "NT", "STE_": "STE",
}

#: ecg_ids of PTB-XL v1.0.1 (21,837 records) that are not in v1.0.3 (21,799 records). Derived from MERL's
#: split files (github.com/cheliu-computation/MERL@38799b7d, finetune/data_split/ptbxl): their union is
#: exactly ids 1-21,837 minus these 38.
NOT_IN_V1_0_3: frozenset[int] = frozenset({
    137, 139, 140, 141, 142, 143, 145, 456, 458, 459, 461, 462, 2506, 2511, 3795, 3798, 3800, 3801, 3832,
    5817, 7777, 7779, 7782, 9821, 9825, 9888, 11810, 11814, 11815, 11817, 11838, 13791, 13793, 13796, 13797,
    13799, 15742, 18150,
})

#: ``split(name)`` -> strat_fold values (Strodthoff et al. 2021 / MERL recommended split).
SPLITS: dict[str, tuple[int, ...]] = {
    "train": (1, 2, 3, 4, 5, 6, 7, 8),
    "val": (9,),
    "test": (10,),
    "test9-10": (9, 10),
}

_FS_SUFFIX = {100: ("records100", "lr"), 500: ("records500", "hr")}
_DB_COLUMNS = ("scp_codes", "report", "strat_fold", "filename_lr", "filename_hr")
_STATEMENT_COLUMNS = ("description", "diagnostic", "form", "rhythm", "diagnostic_class", "diagnostic_subclass")


#: Local mirror folders :func:`default_root` looks for, preferred first.
DEFAULT_MIRRORS: tuple[str, ...] = ("ptbxl2k", "ptbxl500")


def _repo_root() -> Path:
    # medzs/data/ptbxl.py -> medzs/data -> medzs -> checkout root
    return Path(__file__).resolve().parents[2]


def default_root() -> Path | None:
    """Locate a local PTB-XL copy.

    Order: the environment variable ``MEDZS_PTBXL_ROOT`` (returned as given, even if it does not exist, so
    that a typo surfaces as a clear error when it is used); then, for each of ``$MEDZS_SHARED_DATA/ecg``,
    ``<checkout>/../shared/data/ecg`` (checkout found from this file) and ``<cwd>/../shared/data/ecg``: the
    1,978-record mirror ``ptbxl2k`` (ecg_id 1-1999) when present, else the 500-record ``ptbxl500``.

    Returns:
        The directory, or None when no candidate exists.
    """
    env = os.environ.get("MEDZS_PTBXL_ROOT")
    if env:
        return Path(env).expanduser()
    bases = []
    shared = os.environ.get("MEDZS_SHARED_DATA")
    if shared:
        bases.append(Path(shared).expanduser() / "ecg")
    bases.append(_repo_root().parent / "shared" / "data" / "ecg")
    bases.append(Path.cwd().parent / "shared" / "data" / "ecg")
    for base in bases:
        for name in DEFAULT_MIRRORS:
            cand = base / name
            if (cand / DATABASE_CSV).is_file():
                return cand
    return None


def record_relpath(ecg_id: int, fs: int = 500) -> str:
    """Relative path (no extension) of a record in PhysioNet's layout.

    ``records500/00000/00001_hr`` for ``ecg_id=1, fs=500``; folders group 1000 ids (``records100/01000/01234_lr``).

    Args:
        ecg_id: PTB-XL record id (positive int).
        fs: 100 or 500 (Hz).

    Raises:
        ValueError: bad ``ecg_id`` or ``fs``.
    """
    ecg_id = _check_ecg_id(ecg_id)
    folder, suffix = _fs_layout(fs)
    return f"{folder}/{(ecg_id // 1000) * 1000:05d}/{ecg_id:05d}_{suffix}"


def _check_ecg_id(ecg_id: Any) -> int:
    if isinstance(ecg_id, bool) or not hasattr(ecg_id, "__index__"):
        raise TypeError(f"ecg_id: expected a positive int, got {ecg_id!r}")
    value = operator.index(ecg_id)
    if value < 1:
        raise ValueError(f"ecg_id: expected a positive int, got {ecg_id!r}")
    return value


def _fs_layout(fs: Any) -> tuple[str, str]:
    if isinstance(fs, bool) or not isinstance(fs, numbers.Real) or fs not in _FS_SUFFIX:
        raise ValueError(f"fs: PTB-XL has records at 100 or 500 Hz, got {fs!r}")
    return _FS_SUFFIX[int(fs)]


def relabel(labels: pd.DataFrame, classes: Sequence[str]) -> pd.DataFrame:
    """Select and reorder label columns; classes the frame does not have become all-NaN columns.

    Like ``torchxrayvision.datasets.relabel_dataset``: lets a model's class list be scored on a dataset that
    labels a different set of conditions. Unknown classes are logged (INFO).

    Args:
        labels: ``(records, classes)`` frame (e.g. :meth:`PTBXL.labels`).
        classes: Wanted class codes, in the wanted order.

    Returns:
        A new float frame with exactly ``classes`` as columns, same index.

    Raises:
        ValueError: duplicate names in ``classes``.
    """
    classes = list(classes)
    if len(set(classes)) != len(classes):
        raise ValueError(f"relabel: duplicate class names in {classes}")
    missing = [c for c in classes if c not in labels.columns]
    if missing:
        logger.info("relabel: %d class(es) not labelled in this frame, set to NaN: %s", len(missing), missing)
    return labels.reindex(columns=classes).astype(float)


def to_merl_columns(labels: pd.DataFrame) -> pd.DataFrame:
    """Rename PTB-XL code columns to MERL's split-file spelling (``NST_`` -> ``NST``, ``_AVB`` -> ``AVB``, ...)."""
    return labels.rename(columns=MERL_COLUMN_NAMES)


class PTBXL:
    """A local PTB-XL copy in PhysioNet's layout (Wagner et al. 2020, doi:10.1038/s41597-020-0495-6).

    Args:
        root: Folder holding ``ptbxl_database.csv``, ``scp_statements.csv``, ``records100/``, ``records500/``.
            None: :func:`default_root`.

    Raises:
        RecordError: no root found, or a csv is missing, malformed, or lacks a needed column.

    Example:
        >>> db = PTBXL()                                  # doctest: +SKIP
        >>> y = db.labels("super", drop_empty=True)       # doctest: +SKIP
        >>> y.loc[db.split("test")]                       # doctest: +SKIP
    """

    def __init__(self, root: str | os.PathLike[str] | None = None) -> None:
        if root is None:
            root = default_root()
            if root is None:
                raise RecordError(
                    "PTB-XL root: none given and none found (expected MEDZS_PTBXL_ROOT or "
                    "../shared/data/ecg/ptbxl500 next to the checkout); see medzs.data.ptbxl.download"
                )
        self.root = Path(root)
        self._database = self._read_database()
        self._statements = self._read_statements()
        self._check_codes()

    def __repr__(self) -> str:
        return f"PTBXL(root={str(self.root)!r}, records={len(self._database)})"

    def __len__(self) -> int:
        return len(self._database)

    # -- loading ------------------------------------------------------------------------------------------
    def _csv(self, name: str) -> Path:
        path = self.root / name
        if not path.is_file():
            raise RecordError(f"{path}: file not found (expected PTB-XL's {name} in the PhysioNet layout)")
        return path

    def _read_database(self) -> pd.DataFrame:
        return _read_database_csv(self._csv(DATABASE_CSV))

    @staticmethod
    def _read_database_at(path: Path) -> pd.DataFrame:
        import pandas as pd

        try:
            db = pd.read_csv(path, index_col="ecg_id")
        except (ValueError, pd.errors.ParserError) as exc:
            raise RecordError(f"{path}: cannot parse ({exc}); expected a csv with an 'ecg_id' column") from exc
        missing = [c for c in _DB_COLUMNS if c not in db.columns]
        if missing:
            raise RecordError(f"{path}: missing column(s) {missing} (expected PTB-XL's {list(_DB_COLUMNS)})")
        if not db.index.is_unique:
            dup = db.index[db.index.duplicated()].tolist()[:5]
            raise RecordError(f"{path}: ecg_id: duplicate ids {dup} (expected unique ids)")
        db.index = db.index.astype(int)
        db["scp_codes"] = [PTBXL._parse_codes(path, i, s) for i, s in zip(db.index, db["scp_codes"], strict=True)]
        folds = pd.to_numeric(db["strat_fold"], errors="coerce")
        bad = db.index[~folds.isin(range(1, 11))].tolist()
        if bad:
            raise RecordError(f"{path}: strat_fold: ecg_id(s) {bad[:5]} not in 1-10 (expected folds 1-10)")
        db["strat_fold"] = folds.astype(int)
        return db

    @staticmethod
    def _parse_codes(path: Path, ecg_id: int, text: Any) -> dict[str, float]:
        try:
            codes = ast.literal_eval(text) if isinstance(text, str) else None
        except (ValueError, SyntaxError):
            codes = None
        if not isinstance(codes, dict):
            raise RecordError(
                f"{path}: ecg_id {ecg_id}: scp_codes {text!r} is not a dict literal "
                "(expected e.g. \"{'NORM': 100.0, 'SR': 0.0}\")"
            )
        out: dict[str, float] = {}
        for code, lik in codes.items():
            try:
                value = float(lik)
            except (TypeError, ValueError):
                value = float("nan")
            if not isinstance(code, str) or not 0.0 <= value <= 100.0:
                raise RecordError(
                    f"{path}: ecg_id {ecg_id}: scp_codes entry {code!r}: {lik!r} "
                    "(expected statement code -> likelihood in 0-100 %)"
                )
            out[code] = value
        return out

    def _read_statements(self) -> pd.DataFrame:
        import pandas as pd

        path = self._csv(STATEMENTS_CSV)
        try:
            st = pd.read_csv(path, index_col=0)
        except (ValueError, pd.errors.ParserError) as exc:
            raise RecordError(f"{path}: cannot parse ({exc})") from exc
        missing = [c for c in _STATEMENT_COLUMNS if c not in st.columns]
        if missing:
            raise RecordError(f"{path}: missing column(s) {missing} (expected {list(_STATEMENT_COLUMNS)})")
        for flag in ("diagnostic", "form", "rhythm"):
            st[flag] = st[flag].fillna(0).astype(float) == 1.0
        return st

    def _check_codes(self) -> None:
        known = set(self._statements.index)
        for ecg_id, codes in self._database["scp_codes"].items():
            unknown = [c for c in codes if c not in known]
            if unknown:
                raise RecordError(
                    f"{self.root / DATABASE_CSV}: ecg_id {ecg_id}: scp_codes {unknown} not in {STATEMENTS_CSV} "
                    f"(expected one of its {len(known)} statement codes)"
                )

    # -- tables -------------------------------------------------------------------------------------------
    @property
    def database(self) -> pd.DataFrame:
        """``ptbxl_database.csv`` indexed by ``ecg_id``; ``scp_codes`` parsed to ``dict[code, likelihood %]``."""
        return self._database

    @property
    def statements(self) -> pd.DataFrame:
        """``scp_statements.csv`` indexed by statement code; ``diagnostic``/``form``/``rhythm`` as bool."""
        return self._statements

    @property
    def ecg_ids(self) -> list[int]:
        """All ecg_ids in the database, ascending."""
        return sorted(self._database.index.tolist())

    @property
    def folds(self) -> pd.Series:
        """``strat_fold`` (1-10) per ecg_id."""
        return self._database["strat_fold"]

    @property
    def reports(self) -> pd.Series:
        """Free-text report (``report`` column; mostly German, some Swedish/English) per ecg_id."""
        return self._database["report"]

    @property
    def statement_descriptions(self) -> dict[str, str]:
        """Statement code -> English description (``description`` column of ``scp_statements.csv``)."""
        return {str(k): str(v) for k, v in self._statements["description"].items()}

    # -- records ------------------------------------------------------------------------------------------
    def _row(self, ecg_id: Any) -> Any:
        eid = _check_ecg_id(ecg_id)
        if eid not in self._database.index:
            raise RecordError(
                f"{self.root / DATABASE_CSV}: ecg_id {eid} not found "
                f"(expected one of {len(self._database)} ids, {min(self._database.index)}-{max(self._database.index)})"
            )
        return self._database.loc[eid]

    def record_path(self, ecg_id: int, fs: int = 500) -> Path:
        """Path of a record without extension, as :func:`wfdb.rdrecord` wants it.

        Args:
            ecg_id: PTB-XL record id.
            fs: 500 (``filename_hr``) or 100 (``filename_lr``) Hz.

        Raises:
            RecordError: ``ecg_id`` not in the database.
            ValueError: ``fs`` not 100 or 500.
        """
        _fs_layout(fs)
        row = self._row(ecg_id)
        return self.root / str(row["filename_hr" if int(fs) == 500 else "filename_lr"])

    def load(self, ecg_id: int, fs: int = 500) -> dict[str, Any]:
        """Read one record as a medzs sample dict (see :func:`medzs.io.wfdb.read_wfdb`)."""
        from medzs.io.wfdb import read_wfdb

        return read_wfdb(self.record_path(ecg_id, fs))

    def split(self, name: str) -> list[int]:
        """ecg_ids of a split, ascending.

        Args:
            name: ``"train"`` (strat_fold 1-8), ``"val"`` (9), ``"test"`` (10) or ``"test9-10"`` (9 and 10).

        Raises:
            ValueError: unknown split name.
        """
        if name not in SPLITS:
            raise ValueError(f"split: expected one of {list(SPLITS)}, got {name!r}")
        folds = self.folds
        return sorted(folds.index[folds.isin(SPLITS[name])].tolist())

    # -- labels -------------------------------------------------------------------------------------------
    def labels(self, task: str, drop_empty: bool = False, v1_0_3_only: bool = False) -> pd.DataFrame:
        """Benchmark label matrix for a label set.

        Derivation (Strodthoff et al. 2021, doi:10.1109/JBHI.2020.3022989; used by MERL): every statement in
        ``scp_codes`` counts, whatever its likelihood. ``"super"``/``"sub"``: the ``diagnostic_class`` /
        ``diagnostic_subclass`` of each diagnostic statement. ``"form"``/``"rhythm"``: the statements with that
        flag. ``"all"``: every statement.

        Args:
            task: ``"super"`` (5), ``"sub"`` (23), ``"form"`` (19), ``"rhythm"`` (12) or ``"all"`` (71); the
                ``"ptbxl-"`` prefix of :mod:`medzs.data.tasks` names is accepted.
            drop_empty: Drop records without any label of this set (they are not part of that benchmark).
                When False they stay, as all-NaN rows ("not labelled for this task").
            v1_0_3_only: Drop the ecg_ids that PTB-XL v1.0.3 no longer has (:data:`NOT_IN_V1_0_3`); a no-op on a
                v1.0.3 copy.

        Returns:
            Float frame indexed by ``ecg_id`` (ascending), one column per class in :data:`LABEL_SETS` order,
            values 1.0 / 0.0 / NaN.

        Raises:
            ValueError: unknown task.
        """
        import numpy as np
        import pandas as pd

        name = task[len("ptbxl-"):] if task.startswith("ptbxl-") else task
        if name not in LABEL_SETS:
            raise ValueError(f"labels: expected one of {list(LABEL_SETS)}, got {task!r}")
        classes = LABEL_SETS[name]
        col = {c: j for j, c in enumerate(classes)}
        st = self._statements
        if name == "super":
            mapping = st.loc[st["diagnostic"], "diagnostic_class"].to_dict()
        elif name == "sub":
            mapping = st.loc[st["diagnostic"], "diagnostic_subclass"].to_dict()
        elif name in ("form", "rhythm"):
            mapping = {c: c for c in st.index[st[name]]}
        else:
            mapping = {c: c for c in st.index}
        ids = sorted(self._database.index.tolist())
        y = np.zeros((len(ids), len(classes)), dtype=float)
        codes = self._database["scp_codes"]
        for i, eid in enumerate(ids):
            hits = {mapping[c] for c in codes[eid] if c in mapping}
            unknown = hits - col.keys()
            if unknown:
                raise RecordError(
                    f"{self.root / STATEMENTS_CSV}: {name} label(s) {sorted(unknown)} of ecg_id {eid} are not "
                    f"among the {len(classes)} benchmark classes {list(classes)}"
                )
            if hits:
                y[i, [col[h] for h in hits]] = 1.0
            else:
                y[i, :] = np.nan
        out = pd.DataFrame(y, index=pd.Index(ids, name="ecg_id"), columns=list(classes))
        if drop_empty:
            out = out[out.notna().any(axis=1)]
        if v1_0_3_only:
            out = out[~out.index.isin(NOT_IN_V1_0_3)]
        return out


def _read_database_csv(path: Path) -> pd.DataFrame:
    return PTBXL._read_database_at(path)


# -- download -------------------------------------------------------------------------------------------------
def _check_download_args(
    dest: Any, ecg_ids: Iterable[int] | None, fs: Any, base_url: Any
) -> tuple[Path, list[int] | None, tuple[int, ...], str]:
    if not isinstance(dest, (str, os.PathLike)):
        raise TypeError(f"download: dest: expected a path, got {type(dest).__name__}")
    dest_path = Path(dest).expanduser()
    if dest_path.exists() and not dest_path.is_dir():
        raise ValueError(f"download: dest {dest_path} exists and is not a folder")
    fs_values = (fs,) if isinstance(fs, numbers.Real) else fs
    if isinstance(fs_values, (str, bytes)) or not isinstance(fs_values, Iterable):
        raise TypeError(f"download: fs: expected 100, 500 or a tuple of them, got {fs!r}")
    for f in fs_values:
        _fs_layout(f)
    fs_tuple = tuple(sorted({int(f) for f in fs_values}))
    if not fs_tuple:
        raise ValueError("download: fs: expected at least one of 100, 500")
    ids: list[int] | None = None
    if ecg_ids is not None:
        if isinstance(ecg_ids, (str, bytes)) or not isinstance(ecg_ids, Iterable):
            raise TypeError(f"download: ecg_ids: expected an iterable of ints or None, got {ecg_ids!r}")
        ids = sorted({_check_ecg_id(i) for i in ecg_ids})
        if not ids:
            raise ValueError("download: ecg_ids: expected at least one id (None downloads all)")
    if not isinstance(base_url, str) or not base_url.startswith(("https://", "http://", "file://")):
        raise ValueError(f"download: base_url: expected an https://, http:// or file:// URL, got {base_url!r}")
    if not base_url.endswith("/"):
        base_url += "/"
    return dest_path, ids, fs_tuple, base_url


def _record_files(dest: Path, ids: list[int] | None, fs: tuple[int, ...]) -> list[str]:
    if ids is None:
        frame = _read_database_csv(dest / DATABASE_CSV)
        rel = [str(frame.at[i, "filename_hr" if f == 500 else "filename_lr"]) for i in frame.index for f in fs]
    else:
        rel = [record_relpath(i, f) for i in ids for f in fs]
    return [r + ext for r in rel for ext in (".hea", ".dat")]


def _parse_sha256sums(text: str) -> dict[str, str]:
    sums: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.strip().split(None, 1)
        if len(parts) == 2 and len(parts[0]) == 64:
            name = parts[1].lstrip("*").strip()
            sums[name[2:] if name.startswith("./") else name] = parts[0].lower()
    return sums


def _fetch(url: str, timeout: float) -> bytes:
    import urllib.request

    with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 (scheme checked up front)
        return resp.read()


def _fetch_to(url: str, target: Path, sha256: str | None, timeout: float) -> None:
    import urllib.request

    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(target.name + ".part")
    digest = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp, open(part, "wb") as fh:  # noqa: S310
            expected_len = resp.headers.get("Content-Length") if hasattr(resp, "headers") else None
            n = 0
            while chunk := resp.read(1 << 20):
                fh.write(chunk)
                digest.update(chunk)
                n += len(chunk)
        if expected_len is not None and int(expected_len) != n:
            raise RecordError(f"{url}: size {n} bytes (expected Content-Length {expected_len})")
        if sha256 is not None and digest.hexdigest() != sha256:
            raise RecordError(f"{url}: sha256 {digest.hexdigest()} (expected {sha256} from {SHA256SUMS})")
        os.replace(part, target)
    except BaseException:
        part.unlink(missing_ok=True)
        raise


def download(
    dest: str | os.PathLike[str],
    ecg_ids: Iterable[int] | None = None,
    fs: int | Sequence[int] = (100, 500),
    base_url: str = DEFAULT_BASE_URL,
    *,
    timeout: float = 60.0,
    verify: bool = True,
) -> list[Path]:
    """Download PTB-XL (Wagner et al. 2020, doi:10.1038/s41597-020-0495-6; CC-BY-4.0) from PhysioNet.

    Fetches ``ptbxl_database.csv``, ``scp_statements.csv`` and the ``.hea``/``.dat`` files of the wanted records
    into ``dest`` in PhysioNet's layout. Files already present are skipped (not re-checked); when everything
    is present the function neither touches the network nor writes anything, so a read-only complete copy is
    fine. Downloads go to ``<file>.part`` and are renamed once complete; each is checked against
    ``Content-Length`` and, when ``verify`` and ``SHA256SUMS.txt`` is available under ``base_url``, its sha256.

    Args:
        dest: Target folder (created if needed).
        ecg_ids: Records to fetch; None: every record listed in ``ptbxl_database.csv`` (21,799 in v1.0.3, about
            3 GB for both rates).
        fs: 100 and/or 500 (Hz): which record versions.
        base_url: Folder URL of the release; ``file://`` URLs of a local mirror work too.
        timeout: Socket timeout per request, s.
        verify: Check sha256 sums of downloaded files against ``SHA256SUMS.txt`` (skipped, with a warning, when
            that file cannot be fetched).

    Returns:
        The paths written (empty when everything was present).

    Raises:
        TypeError, ValueError: bad arguments (checked before any network access).
        RecordError: a downloaded file has the wrong size or sha256 (the partial file is removed).
        OSError: network or file-system failure (``urllib.error.URLError`` is an ``OSError``).
    """
    dest_path, ids, fs_tuple, base = _check_download_args(dest, ecg_ids, fs, base_url)
    if timeout <= 0:
        raise ValueError(f"download: timeout: expected a positive number of seconds, got {timeout!r}")

    written: list[Path] = []
    sums: dict[str, str] | None = None

    def get(rel: str) -> None:
        nonlocal sums
        if sums is None:
            sums = {}
            if verify:
                try:
                    sums = _parse_sha256sums(_fetch(base + SHA256SUMS, timeout).decode("utf-8", "replace"))
                except OSError as exc:
                    logger.warning("download: %s%s not available (%s); sha256 not checked", base, SHA256SUMS, exc)
        target = dest_path / rel
        logger.info("download: %s%s", base, rel)
        _fetch_to(base + rel, target, sums.get(rel), timeout)
        written.append(target)

    for csv_name in (DATABASE_CSV, STATEMENTS_CSV):
        if not (dest_path / csv_name).is_file():
            get(csv_name)
    files = _record_files(dest_path, ids, fs_tuple)
    missing = [rel for rel in files if not (dest_path / rel).is_file()]
    logger.info("download: %d of %d record files present in %s", len(files) - len(missing), len(files), dest_path)
    for rel in missing:
        get(rel)
    return written


__all__ = [
    "DEFAULT_BASE_URL",
    "FORM_CODES",
    "LABEL_SETS",
    "MERL_COLUMN_NAMES",
    "NOT_IN_V1_0_3",
    "PTBXL",
    "RHYTHM_CODES",
    "SPLITS",
    "STATEMENT_CODES",
    "SUBCLASSES",
    "SUPERCLASSES",
    "default_root",
    "download",
    "record_relpath",
    "relabel",
    "to_merl_columns",
]


PTBXL_CITATION = ("Wagner P, Strodthoff N, Bousseljot R-D, et al. PTB-XL, a large publicly available "
                  "electrocardiography dataset. Sci Data 7, 154 (2020). doi:10.1038/s41597-020-0495-6; "
                  "PhysioNet doi:10.13026/kfzx-aw45 (CC-BY-4.0)")

#: Records in PTB-XL v1.0.3 (the full release; a local copy with fewer is a partial mirror).
PTBXL_N_RECORDS = 21_799


class PTBXLDataset:
    """PTB-XL as a :class:`medzs.data.base.Dataset` (pipeline ``dataset: {name: ptbxl, root: ..., split: ...}``).

    Args:
        root: PTB-XL folder (official PhysioNet layout); None: :func:`default_root`.
        fs: Sampling rate of the files to read, 100 or 500 Hz (PTB-XL ships both); a record whose file at that
            rate is absent from the local copy is read at the other rate (the engine resamples to the model's
            InputSpec either way).

    Splits: ``train`` (strat_fold 1-8), ``val`` (9), ``test`` (10), ``test9-10`` (9 and 10), ``all``. Records
    without any label of a task are not part of that task's benchmark (as in the published splits); the pipeline
    drops them from the label matrix.

    Raises:
        SpecError: no root given and no local copy found; bad ``fs``.
    """

    name = "ptbxl"
    modality = "ecg"
    citation = PTBXL_CITATION

    def __init__(self, root: str | os.PathLike[str] | None = None, fs: int = 100) -> None:
        from medzs.errors import SpecError

        root = root if root is not None else default_root()
        if root is None:
            raise SpecError("dataset.root: not set and no PTB-XL copy found; set MEDZS_PTBXL_ROOT or download "
                            "with `medzs data ptbxl DEST`")
        if fs not in (100, 500):
            raise SpecError(f"dataset.fs: expected 100 or 500 (Hz), got {fs!r}")
        self.db = PTBXL(root)
        self.root = Path(root)
        self.fs = int(fs)
        self.partial = len(self.db.ecg_ids) < PTBXL_N_RECORDS

    def splits(self) -> list[str]:
        return ["train", "val", "test", "test9-10", "all"]

    def records(self, split: str = "all") -> list[Any]:
        from medzs.data.types import RecordRef
        from medzs.errors import SpecError

        if split == "all":
            ids = list(self.db.ecg_ids)
        else:
            try:
                ids = self.db.split(split)
            except Exception as exc:  # noqa: BLE001 - PTBXL.split raises for unknown names
                raise SpecError(f"dataset.split: expected one of {self.splits()}, got {split!r}") from exc
        patients = self.db.database["patient_id"] if "patient_id" in self.db.database.columns else None
        out = []
        for eid in ids:
            path = self.db.record_path(int(eid), fs=self.fs)
            if not path.with_suffix(".hea").is_file():
                other = self.db.record_path(int(eid), fs=600 - self.fs if self.fs in (100, 500) else 100)
                if other.with_suffix(".hea").is_file():
                    path = other
            group = None
            if patients is not None:
                val = patients.get(int(eid))
                group = None if val is None or val != val else str(int(val))
            out.append(RecordRef(id=str(int(eid)), path=str(path.with_suffix(".hea")), group=group, format="wfdb"))
        return out

    def label_codes(self) -> list[str]:
        return list(STATEMENT_CODES)

    def labels(self, task: Any) -> pd.DataFrame:
        """1/0/NaN labels of a PTB-XL task (``task.label_set``: super, sub, form, rhythm, all), indexed by ecg_id
        as str; records without any label of the set are dropped (v1.0.3 records only)."""
        from medzs.errors import SpecError

        label_set = getattr(task, "label_set", None)
        if label_set not in ("super", "sub", "form", "rhythm", "all"):
            raise SpecError(f"task {getattr(task, 'name', task)!r}: dataset ptbxl labels the tasks ptbxl-super, "
                            "-sub, -form, -rhythm and -all")
        y = self.db.labels(label_set, drop_empty=True, v1_0_3_only=True)
        y = y[list(task.classes)]
        y.index = [str(int(i)) for i in y.index]
        return y.astype(float)
