"""The six zero-shot ECG benchmarks of MERL, read from the published split files.

MERL (Liu et al., "Zero-Shot ECG Classification with Multimodal Learning and Test-time Clinical Knowledge
Enhancement", ICML 2024, arXiv:2403.06659) evaluates on PTBXL-super/-sub/-form/-rhythm, CPSC2018 (ICBEB) and
Chapman-Shaoxing-Ningbo with train/val/test split files published in its repository
(github.com/cheliu-computation/MERL, commit 38799b7d, ``finetune/data_split/``, MIT licence). This module reads
those files (a local copy: ``splits_root``, default ``../shared/data/benchmarks/merl-splits``) and exposes, per
benchmark and split: the record ids, the label matrix **as published** (``protocol="faithful"``) and a
**corrected** one (``protocol="corrected"``), the class list, the records found under a local records root
(:class:`~medzs.data.base.RecordRef` lists) and found/expected counts.

Split-file layouts (first label column in brackets):

- PTB-XL ``ecg_id, patient_id, strat_fold, filename_lr, filename_hr, <task>, <classes...>`` [6]; the record is
  ``<root>/<filename_hr>`` (500 Hz, what MERL reads) or, when only that is missing, ``<root>/<filename_lr>``
  (100 Hz; counted in ``found`` but not in ``found_native``).
- ICBEB ``patient_id, ecg_id, filename, validation, age, sex, scp_codes, <classes...>`` [7]; the record is the
  CPSC2018 original ``<root>/<filename>.mat`` (``A0001.mat``...) or its PhysioNet/CinC 2020 re-encoding
  ``<filename>.hea`` + ``.mat`` (also in sub-folders such as ``g1/``). (MERL read a WFDB conversion named by
  ``ecg_id``; ``filename`` is the original CPSC record name.)
- Chapman ``ecg_path, age, diagnose, <classes...>`` [3]; ``ecg_path`` is ``/chapman/WFDBRecords/18/186/
  JS18048.mat`` in the PhysioNet *ecg-arrhythmia* layout; the record is looked up there under ``<root>`` and,
  failing that, as ``<root>/JS18048.hea`` (the flat PhysioNet/CinC 2021 layout, which keeps the ``JSxxxxx``
  names: the diagnosis codes in the local CinC headers agree with the split file's ``diagnose`` strings).

Corrected labels. The published Chapman columns were built by *substring* matching of each class code in the
``diagnose`` string (checked: the rule reproduces every published cell of the three files), so a code is
positive whenever it is part of a longer one: ``AF`` (atrial flutter) for ``AFIB``, ``ST`` (sinus tachycardia)
for ``STTC``/``STE``/``STDD``/``STTU``, ``SA`` (sinus arrhythmia) for ``LVQRSAL``, ``VB`` (ventricular bigeminy)
and ``AVB`` for ``1AVB``/``2AVB``/``2AVB1``/``3AVB``, ``2AVB`` for ``2AVB1`` and ``CR`` for ``CCR``. The
corrected matrix matches whole comma-separated codes only (:func:`chapman_exact_labels`). Where a Chapman record
exists locally, :meth:`MERLBenchmarkData.header_labels` also derives its labels from the SNOMED CT codes of its
own header (:data:`CHAPMAN_SNOMED`) to check the rule. PTB-XL and ICBEB columns are exact codes already and are
the same in both protocols.

Example:
    >>> from medzs.data.merl import load_benchmark  # doctest: +SKIP
    >>> b = load_benchmark("chapman")
    >>> b.coverage("test")          # {'expected': 4620, 'found': 0, 'found_native': 0}
    >>> y = b.labels("test", protocol="corrected")
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medzs.data.base import RecordRef
from medzs.errors import RecordError, SpecError

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

logger = logging.getLogger(__name__)

__all__ = [
    "BENCHMARKS",
    "CHAPMAN_SNOMED",
    "PROTOCOLS",
    "SPLITS",
    "MERLBenchmark",
    "MERLBenchmarkData",
    "MERLDataset",
    "chapman_exact_labels",
    "chapman_substring_labels",
    "default_records_root",
    "default_splits_root",
    "load_benchmark",
]

PROTOCOLS: tuple[str, ...] = ("faithful", "corrected")
SPLITS: tuple[str, ...] = ("train", "val", "test")

_CITE_MERL = ("Liu C, Wan Z, Ouyang C, Shah A, Bai W, Arcucci R. Zero-Shot ECG Classification with Multimodal "
              "Learning and Test-time Clinical Knowledge Enhancement. ICML 2024. arXiv:2403.06659; split files: "
              "github.com/cheliu-computation/MERL (finetune/data_split, MIT)")


@dataclass(frozen=True)
class MERLBenchmark:
    """One published benchmark.

    Attributes:
        name: medzs name (``ptbxl-super``, ``ptbxl-sub``, ``ptbxl-form``, ``ptbxl-rhythm``, ``cpsc2018``,
            ``chapman``).
        merl_name: MERL's name in its configs (``ptbxl_super_class``, ..., ``icbeb``, ``chapman``).
        source: Record collection: ``ptbxl``, ``cpsc2018`` or ``chapman``.
        split_dir: Folder of the split files under the splits root.
        stem: File stem; files are ``<stem>_{train,val,test}.csv``.
        label_start: Index of the first label column.
        citation: How to cite the records.
    """

    name: str
    merl_name: str
    source: str
    split_dir: str
    stem: str
    label_start: int
    citation: str


_PTBXL_CITE = ("Wagner P, et al. PTB-XL, a large publicly available electrocardiography dataset. Sci Data 7:154 "
               "(2020), doi:10.1038/s41597-020-0495-6")
_CPSC_CITE = ("Liu F, et al. An open access database for evaluating the algorithms of electrocardiogram rhythm "
              "and morphology abnormality detection. J Med Imaging Health Inform 8:1368-1373 (2018)")
_CHAPMAN_CITE = ("Zheng J, et al. A 12-lead electrocardiogram database for arrhythmia research covering more than "
                 "10,000 patients. Sci Data 7:48 (2020), doi:10.1038/s41597-020-0386-x; Zheng J, et al. Optimal "
                 "multi-stage arrhythmia classification approach. Sci Rep 10:2898 (2020)")

#: The six benchmarks, in MERL's order.
BENCHMARKS: dict[str, MERLBenchmark] = {
    b.name: b
    for b in (
        MERLBenchmark("ptbxl-super", "ptbxl_super_class", "ptbxl", "ptbxl/super_class", "ptbxl_super_class", 6,
                      _PTBXL_CITE),
        MERLBenchmark("ptbxl-sub", "ptbxl_sub_class", "ptbxl", "ptbxl/sub_class", "ptbxl_sub_class", 6,
                      _PTBXL_CITE),
        MERLBenchmark("ptbxl-form", "ptbxl_form", "ptbxl", "ptbxl/form", "ptbxl_form", 6, _PTBXL_CITE),
        MERLBenchmark("ptbxl-rhythm", "ptbxl_rhythm", "ptbxl", "ptbxl/rhythm", "ptbxl_rhythm", 6, _PTBXL_CITE),
        MERLBenchmark("cpsc2018", "icbeb", "cpsc2018", "icbeb", "icbeb", 7, _CPSC_CITE),
        MERLBenchmark("chapman", "chapman", "chapman", "chapman", "chapman", 3, _CHAPMAN_CITE),
    )
}

#: Chapman-Shaoxing-Ningbo condition acronym -> SNOMED CT concept, for the 38 classes of the published Chapman
#: split (from the database's ``ConditionNames_SNOMED-CT.csv``, PhysioNet *ecg-arrhythmia* 1.0.0; names checked
#: against the PhysioNet/CinC 2021 ``dx_mapping`` tables, except 251199001 counterclockwise rotation, which those
#: tables lack). Used only to derive labels from a local record's own ``# Dx:`` header line.
CHAPMAN_SNOMED: dict[str, str] = {
    "AQW": "164917005", "UW": "164937009", "SR": "426783006", "WPW": "74390002", "2AVB": "195042002",
    "AT": "713422000", "VB": "11157007", "ARS": "47665007", "STTC": "428750005", "SA": "427393009",
    "STE": "164931005", "VPB": "17338001", "TWO": "59931005", "STTU": "164930006", "ALS": "39732003",
    "APB": "284470004", "2AVB1": "54016002", "PRIE": "164947007", "CCR": "251199001", "CR": "251198002",
    "AF": "164890007", "AVB": "233917008", "QTIE": "111975006", "LBBB": "164909002", "VEB": "75532003",
    "SVT": "426761007", "RBBB": "59118001", "1AVB": "270492004", "STDD": "429622005", "MI": "164865005",
    "AFIB": "164889003", "TWC": "164934002", "PWC": "164912004", "ERV": "428417006", "RVH": "89792004",
    "LVH": "164873001", "ST": "427084000", "JEB": "426995002",
}


def _repo_root() -> Path:
    return Path(__file__).resolve().parents[2]


def default_splits_root() -> Path:
    """``$MEDZS_MERL_SPLITS``, else ``../shared/data/benchmarks/merl-splits`` next to the checkout."""
    env = os.environ.get("MEDZS_MERL_SPLITS")
    if env:
        return Path(env).expanduser()
    return _repo_root().parent / "shared" / "data" / "benchmarks" / "merl-splits"


_RECORD_ENV = {"ptbxl": "MEDZS_PTBXL_ROOT", "cpsc2018": "MEDZS_CPSC2018_ROOT", "chapman": "MEDZS_CHAPMAN_ROOT"}
_RECORD_MIRROR = {
    "ptbxl": ("ecg", "ptbxl2k"),
    "cpsc2018": ("ecg", "cinc-samples", "cpsc2018"),
    "chapman": ("ecg", "cinc-samples", "cinc2021_georgia_chapman"),
}


def default_records_root(source: str) -> Path:
    """Records root of a source: ``$MEDZS_PTBXL_ROOT`` / ``$MEDZS_CPSC2018_ROOT`` / ``$MEDZS_CHAPMAN_ROOT``, else the
    shared mirror (``../shared/data/ecg/ptbxl2k``, ``.../cinc-samples/cpsc2018``,
    ``.../cinc-samples/cinc2021_georgia_chapman``).

    Raises:
        SpecError: unknown source.
    """
    if source not in _RECORD_ENV:
        raise SpecError(f"merl: records source expected one of {sorted(_RECORD_ENV)}, got {source!r}")
    env = os.environ.get(_RECORD_ENV[source])
    if env:
        return Path(env).expanduser()
    return _repo_root().parent.joinpath("shared", "data", *_RECORD_MIRROR[source])


def _tokens(diagnose: Any) -> list[str]:
    if diagnose is None or (isinstance(diagnose, float) and math.isnan(diagnose)):
        return []
    return [t.strip() for t in str(diagnose).split(",") if t.strip()]


def chapman_substring_labels(diagnose: str, classes: Sequence[str]) -> list[int]:
    """The published (defective) rule: class ``c`` is positive when ``c`` occurs anywhere in ``diagnose``.

    Reproduces every cell of the published Chapman split files.
    """
    text = "" if diagnose is None else str(diagnose)
    return [int(c in text) for c in classes]


def chapman_exact_labels(diagnose: str, classes: Sequence[str]) -> list[int]:
    """Corrected rule: class ``c`` is positive when ``c`` is one of the comma-separated codes of ``diagnose``.

    Example:
        >>> chapman_exact_labels("AFIB,STTC", ["AF", "AFIB", "ST", "STTC"])
        [0, 1, 0, 1]
    """
    toks = set(_tokens(diagnose))
    return [int(c in toks) for c in classes]


class MERLBenchmarkData:
    """One benchmark's split files and local records.

    Args:
        benchmark: A name of :data:`BENCHMARKS`.
        splits_root: Folder holding ``ptbxl/``, ``icbeb/``, ``chapman/`` as published (default
            :func:`default_splits_root`).
        records_root: Folder of the records (default :func:`default_records_root` of the benchmark's source).

    Raises:
        SpecError: unknown benchmark, or a split file missing / without the expected columns (names the file).
    """

    def __init__(self, benchmark: str, splits_root: str | os.PathLike[str] | None = None,
                 records_root: str | os.PathLike[str] | None = None) -> None:
        if benchmark not in BENCHMARKS:
            raise SpecError(f"merl: benchmark expected one of {list(BENCHMARKS)}, got {benchmark!r}")
        self.spec = BENCHMARKS[benchmark]
        self.name = benchmark
        self.splits_root = Path(splits_root).expanduser() if splits_root is not None else default_splits_root()
        self.records_root = (Path(records_root).expanduser() if records_root is not None
                             else default_records_root(self.spec.source))
        self.citation = self.spec.citation + "; benchmark: " + _CITE_MERL
        self._tables: dict[str, pd.DataFrame] = {}
        self._scans: dict[str, list[tuple[str, Path | None, bool, str | None, str | None]]] = {}
        self._index: dict[str, tuple[Path, str]] | None = None

    def __repr__(self) -> str:
        return f"MERLBenchmarkData({self.name!r}, splits_root={str(self.splits_root)!r})"

    # -- split files ------------------------------------------------------------------------------------------
    def split_file(self, split: str) -> Path:
        """Path of the published split file.

        Raises:
            SpecError: split not in :data:`SPLITS`.
        """
        if split not in SPLITS:
            raise SpecError(f"merl {self.name}: split expected one of {SPLITS}, got {split!r}")
        return self.splits_root / self.spec.split_dir / f"{self.spec.stem}_{split}.csv"

    def table(self, split: str) -> pd.DataFrame:
        """The split file as published (a copy).

        Raises:
            SpecError: missing file or missing id/label columns.
        """
        if split not in self._tables:
            import pandas as pd

            path = self.split_file(split)
            if not path.is_file():
                raise SpecError(f"merl {self.name}: split file {path} not found (download finetune/data_split/ from "
                                f"github.com/cheliu-computation/MERL and pass its folder as splits_root)")
            df = pd.read_csv(path)
            need = {"ptbxl": ("ecg_id", "filename_hr", "filename_lr", "patient_id"),
                    "cpsc2018": ("ecg_id", "filename"), "chapman": ("ecg_path", "diagnose")}[self.spec.source]
            missing = [c for c in need if c not in df.columns]
            if missing:
                raise SpecError(f"merl {self.name}: {path}: column {missing[0]!r} missing (expected {list(need)})")
            if df.shape[1] <= self.spec.label_start:
                raise SpecError(f"merl {self.name}: {path}: no label columns after column {self.spec.label_start}")
            self._tables[split] = df
        return self._tables[split].copy()

    @cached_property
    def classes(self) -> list[str]:
        """Class codes in the test file's column order (train/val files must hold the same set; the published
        PTBXL-sub files order them differently, and every split is read by name)."""
        cols = list(self.table("test").columns[self.spec.label_start:])
        for split in ("train", "val"):
            if self.split_file(split).is_file():
                other = list(self.table(split).columns[self.spec.label_start:])
                if sorted(other) != sorted(cols):
                    diff = sorted(set(other) ^ set(cols))
                    raise SpecError(f"merl {self.name}: {self.split_file(split)}: label columns differ from the "
                                    f"test file's (not in both: {diff[:5]})")
        return cols

    def _ids(self, df: pd.DataFrame) -> list[str]:
        src = self.spec.source
        if src == "ptbxl":
            return [str(int(v)) for v in df["ecg_id"]]
        if src == "cpsc2018":
            return [str(v).strip() for v in df["filename"]]
        return [Path(str(v)).stem for v in df["ecg_path"]]

    def ids(self, split: str) -> list[str]:
        """Record ids of a split, in file order (PTB-XL ``ecg_id``, CPSC ``A0001``, Chapman ``JS00001``)."""
        return self._ids(self.table(split))

    def labels(self, split: str, protocol: str = "faithful") -> pd.DataFrame:
        """0/1 label matrix (float), indexed by record id, one column per :attr:`classes` code.

        Args:
            split: ``train``, ``val`` or ``test``.
            protocol: ``faithful`` (the published cells) or ``corrected`` (Chapman: whole-code matches of the
                ``diagnose`` string; other benchmarks: unchanged).

        Raises:
            SpecError: unknown split or protocol.
        """
        import numpy as np
        import pandas as pd

        if protocol not in PROTOCOLS:
            raise SpecError(f"merl {self.name}: protocol expected one of {PROTOCOLS}, got {protocol!r}")
        df = self.table(split)
        ids = self._ids(df)
        classes = self.classes
        if protocol == "corrected" and self.spec.source == "chapman":
            values = np.array([chapman_exact_labels(d, classes) for d in df["diagnose"]], dtype=np.float64)
        else:
            values = df[classes].to_numpy(dtype=np.float64)
        out = pd.DataFrame(values.reshape(len(ids), len(classes)), index=pd.Index(ids, name="id"), columns=classes)
        return out

    def label_changes(self, split: str) -> pd.DataFrame:
        """Cells where the corrected labels differ from the published ones.

        Returns:
            Frame with columns ``id, class, published, corrected, diagnose`` (empty outside Chapman).
        """
        import pandas as pd

        a, b = self.labels(split, "faithful"), self.labels(split, "corrected")
        diag = (dict(zip(self._ids(self.table(split)), self.table(split)["diagnose"]))
                if self.spec.source == "chapman" else {})
        rows = []
        for cls in self.classes:
            for rid in a.index[a[cls].to_numpy() != b[cls].to_numpy()]:
                rows.append({"id": rid, "class": cls, "published": a.at[rid, cls], "corrected": b.at[rid, cls],
                             "diagnose": diag.get(rid)})
        return pd.DataFrame(rows, columns=["id", "class", "published", "corrected", "diagnose"])

    # -- local records ----------------------------------------------------------------------------------------
    def _locate(self, row: Mapping[str, Any]) -> tuple[Path | None, bool, str | None]:
        """(path, native, format) of one split row's record, or (None, False, None)."""
        root = self.records_root
        src = self.spec.source
        if src == "ptbxl":
            for col, native in (("filename_hr", True), ("filename_lr", False)):
                p = root / f"{row[col]}.hea"
                if p.is_file():
                    return p, native, "wfdb"
            return None, False, None
        if src == "cpsc2018":
            name = str(row["filename"]).strip()
            if (root / f"{name}.hea").is_file():  # PhysioNet/CinC 2020 re-encoding (WFDB header + .mat)
                return root / f"{name}.hea", True, "cinc"
            if (root / f"{name}.mat").is_file():  # the original CPSC2018 .mat
                return root / f"{name}.mat", True, "cpsc2018"
            return self._indexed(name)
        rel = str(row["ecg_path"]).lstrip("/")
        rel = rel.removeprefix("chapman/")
        stem = Path(rel).stem
        for p in (root / Path(rel).with_suffix(".hea"), root / f"{stem}.hea"):
            if p.is_file():
                return p, True, "cinc"
        return self._indexed(stem)

    def _indexed(self, stem: str) -> tuple[Path | None, bool, str | None]:
        """Fallback for nested layouts (CinC ``training/cpsc_2018/g1/``, other Chapman trees): one recursive
        index of the records root by file stem, built on first use."""
        if self._index is None:
            self._index = {}
            if self.records_root.is_dir():
                for p in sorted(self.records_root.rglob("*.mat")):
                    hea = p.with_suffix(".hea")
                    self._index.setdefault(p.stem, (hea, "cinc") if hea.is_file() else (p, "cpsc2018"))
        hit = self._index.get(stem)
        if hit is None or (self.spec.source == "chapman" and hit[1] != "cinc"):
            return None, False, None
        return hit[0], True, hit[1]

    def _scan(self, split: str) -> list[tuple[str, Path | None, bool, str | None, str | None]]:
        if split not in self._scans:
            self._scans[split] = self._scan_files(split)
        return self._scans[split]

    def _scan_files(self, split: str) -> list[tuple[str, Path | None, bool, str | None, str | None]]:
        df = self.table(split)
        ids = self._ids(df)
        out = []
        for rid, row in zip(ids, df.to_dict("records")):
            path, native, fmt = self._locate(row)
            group = None
            pid = row.get("patient_id")
            if self.spec.source == "ptbxl" and pid is not None and not (isinstance(pid, float) and math.isnan(pid)):
                group = str(int(float(row["patient_id"])))
            out.append((rid, path, native, fmt, group))
        return out

    def records(self, split: str, native_only: bool = False) -> list[RecordRef]:
        """The split's records that exist under :attr:`records_root`, in file order.

        Args:
            split: ``train``, ``val`` or ``test``.
            native_only: Keep only records at the rate MERL read (PTB-XL 500 Hz; drops 100 Hz-only records).
        """
        return [RecordRef(id=rid, path=str(path), group=group, format=fmt)
                for rid, path, native, fmt, group in self._scan(split)
                if path is not None and (native or not native_only)]

    def coverage(self, split: str) -> dict[str, int]:
        """``{"expected", "found", "found_native"}`` for a split (``found_native``: at MERL's 500 Hz)."""
        scan = self._scan(split)
        return {"expected": len(scan), "found": sum(p is not None for _, p, _, _, _ in scan),
                "found_native": sum(p is not None and n for _, p, n, _, _ in scan)}

    def header_labels(self, split: str) -> pd.DataFrame:
        """Chapman only: labels of the locally present records derived from their own ``# Dx:`` SNOMED CT codes.

        Returns:
            0/1 frame indexed by record id over :attr:`classes` (only records found locally).

        Raises:
            SpecError: not the Chapman benchmark. RecordError: unreadable header.
        """
        import numpy as np
        import pandas as pd

        if self.spec.source != "chapman":
            raise SpecError(f"merl {self.name}: header_labels is defined for the Chapman benchmark only")
        from medzs.io.cinc import read_header

        rows, ids = [], []
        for rid, path, _, _, _ in self._scan(split):
            if path is None:
                continue
            hea = read_header(path)
            dx: list[str] = []
            for line in hea.comments:
                key, _, value = line.partition(":")
                if key.strip().lower() == "dx":
                    dx = [c.strip() for c in value.split(",") if c.strip()]
            if not dx:
                raise RecordError(f"{path}: '# Dx:' header line missing (expected SNOMED CT codes)")
            rows.append([int(CHAPMAN_SNOMED.get(c) in dx) for c in self.classes])
            ids.append(rid)
        return pd.DataFrame(np.array(rows, dtype=np.float64).reshape(len(ids), len(self.classes)),
                            index=pd.Index(ids, name="id"), columns=self.classes)


def load_benchmark(name: str, splits_root: str | os.PathLike[str] | None = None,
                   records_root: str | os.PathLike[str] | None = None) -> MERLBenchmarkData:
    """Shorthand for :class:`MERLBenchmarkData`."""
    return MERLBenchmarkData(name, splits_root=splits_root, records_root=records_root)


class MERLDataset:
    """One MERL benchmark as a :class:`~medzs.data.base.Dataset` (for the generic engine and pipelines).

    Args:
        root: Records folder (None: :func:`default_records_root` of the benchmark's source).
        benchmark: A name of :data:`BENCHMARKS`.
        protocol: ``faithful`` or ``corrected`` (which label matrix :meth:`labels` returns).
        splits_root: Folder of the published split files.
        native_only: Keep only records at MERL's rate (PTB-XL 500 Hz).

    ``records("test")`` etc. list the split's records found locally; ``records("all")`` is train + val + test.
    ``labels(task)`` covers the records of every split (a record belongs to exactly one split).

    Raises:
        SpecError: as :class:`MERLBenchmarkData`, or a protocol not in :data:`PROTOCOLS`.
    """

    modality = "ecg"

    def __init__(self, root: str | os.PathLike[str] | None = None, benchmark: str = "ptbxl-super",
                 protocol: str = "faithful", splits_root: str | os.PathLike[str] | None = None,
                 native_only: bool = False) -> None:
        if protocol not in PROTOCOLS:
            raise SpecError(f"dataset merl: protocol expected one of {PROTOCOLS}, got {protocol!r}")
        self.data = MERLBenchmarkData(benchmark, splits_root=splits_root, records_root=root)
        self.name = f"merl-{benchmark}"
        self.root = self.data.records_root
        self.protocol = protocol
        self.native_only = native_only
        self.citation = self.data.citation
        cov = self.data.coverage("test")
        self.partial = cov["found"] < cov["expected"]

    def splits(self) -> list[str]:
        return ["all", *SPLITS]

    def records(self, split: str = "all") -> list[RecordRef]:
        if split == "all":
            return [r for s in SPLITS for r in self.data.records(s, native_only=self.native_only)]
        if split not in SPLITS:
            raise SpecError(f"dataset {self.name}: split expected one of {self.splits()}, got {split!r}")
        return self.data.records(split, native_only=self.native_only)

    def label_codes(self) -> list[str]:
        return list(self.data.classes)

    def labels(self, task: Any) -> pd.DataFrame:
        """1/0 labels of the benchmark's published classes for every split's records (the chosen protocol).

        Args:
            task: A :class:`medzs.data.tasks.Task` (its ``classes``) or a sequence of class codes.
        """
        import pandas as pd

        classes = list(getattr(task, "classes", task))
        unknown = [c for c in classes if c not in self.data.classes]
        if unknown:
            raise SpecError(f"dataset {self.name}: class {unknown[0]!r} not labelled (codes: {self.data.classes})")
        frames = [self.data.labels(s, self.protocol) for s in SPLITS if self.data.split_file(s).is_file()]
        return pd.concat(frames)[list(classes)]
