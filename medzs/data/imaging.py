"""Dataset adapters for the layouts radiology data come in, following :mod:`medzs.data.base`.

| registry name    | class                       | layout                                                              |
|------------------|-----------------------------|---------------------------------------------------------------------|
| ``kermany``      | :class:`KermanyDataset`     | ``NORMAL/``, ``PNEUMONIA/`` (optionally under ``train/``, ``test/``, ``val/``), or a ``labels.csv`` |
| ``covid-ct``     | :class:`CovidCTDataset`     | UCSD COVID-CT ``CT_COVID/``, ``CT_NonCOVID/`` + ``labels.csv`` (``source_group``) |
| ``chexpert``     | :class:`CheXpertDataset`    | ``train.csv`` / ``valid.csv`` with ``Path`` + 14 findings            |
| ``chestxray14``  | :class:`ChestXray14Dataset` | ``Data_Entry_2017*.csv`` (``Finding Labels`` joined by ``|``) + PNGs |
| ``rsna-pneumonia`` | :class:`RSNAPneumoniaDataset` | ``stage_2_train_labels.csv`` + ``stage_2_train_images/*.dcm``    |
| ``image-folder`` | :class:`ImageFolderDataset` | any folder + a labels CSV (``path`` column + 1/0/blank label columns) |

Labels are 1.0 (present), 0.0 (absent) or NaN (not labelled / uncertain), one column per class code; class codes
are each dataset's own label names (``"pneumonia"``, ``"Pleural Effusion"``, ``"Pleural_Thickening"``...).

Splits are **group-disjoint**: every record has a group (a patient, or for COVID-CT the source paper), and
``"train"`` / ``"test"`` are decided per group by a keyed hash (:func:`group_split`), so a patient never
straddles the two, the assignment does not depend on the order or number of records, and adding records never
moves an existing group. ``"all"`` is every record. Where a dataset ships an official patient-disjoint split
(ChestX-ray14 ``train_val_list.txt`` / ``test_list.txt``, Kermany ``train/`` / ``test/`` folders) it is offered
as ``"official-train"`` / ``"official-test"`` (and ``"official-val"``). :func:`group_kfold` gives folds inside a
split (for model selection by cross-validation inside the training part only).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from medzs.data.types import RecordRef
from medzs.errors import SpecError

logger = logging.getLogger(__name__)

#: Default share of groups held out as ``"test"``.
TEST_FRACTION = 0.2
_IMAGE_EXT = (".png", ".jpg", ".jpeg", ".dcm", ".dicom")


# ------------------------------------------------------------------------------------------------ split helpers
def hash_unit(key: str, seed: int = 0) -> float:
    """A deterministic number in [0, 1) from ``key`` and ``seed`` (SHA-256; stable across runs and machines)."""
    h = hashlib.sha256(f"{int(seed)}:{key}".encode()).digest()
    return int.from_bytes(h[:8], "big") / 2.0**64


def group_split(groups: Iterable[str], test_fraction: float = TEST_FRACTION, seed: int = 0) -> list[str]:
    """``"train"`` / ``"test"`` per element: a group goes to test when ``hash_unit(group, seed) < test_fraction``.

    All records of a group get the same answer. The share of *groups* in test is ``test_fraction`` on average
    (the share of records varies with group sizes).

    Raises:
        SpecError: ``test_fraction`` outside (0, 1).
    """
    if not 0.0 < float(test_fraction) < 1.0:
        raise SpecError(f"test_fraction: expected a number in (0, 1), got {test_fraction!r}")
    cache: dict[str, str] = {}
    out = []
    for g in groups:
        if g not in cache:
            cache[g] = "test" if hash_unit(str(g), seed) < test_fraction else "train"
        out.append(cache[g])
    return out


def group_kfold(groups: Iterable[str], k: int = 5, seed: int = 0) -> list[int]:
    """Fold index ``0..k-1`` per element, by group (keyed hash), for cross-validation inside one split.

    Raises:
        SpecError: ``k < 2``.
    """
    if int(k) < 2:
        raise SpecError(f"k: expected at least 2 folds, got {k!r}")
    return [min(int(hash_unit(f"fold:{g}", seed) * k), k - 1) for g in groups]


def assert_group_disjoint(a: Sequence[RecordRef], b: Sequence[RecordRef]) -> None:
    """Raise SpecError when a group appears in both record lists (records without a group are ignored)."""
    shared = {r.group for r in a if r.group is not None} & {r.group for r in b if r.group is not None}
    if shared:
        raise SpecError(f"splits share {len(shared)} group(s), e.g. {sorted(shared)[:3]} (expected disjoint groups)")


def _shared_root(*parts: str) -> Path | None:
    """``$MEDZS_SHARED_DATA/<parts>`` or ``<checkout>/../shared/data/<parts>`` when it exists."""
    cands = []
    shared = os.environ.get("MEDZS_SHARED_DATA")
    if shared:
        cands.append(Path(shared).expanduser().joinpath(*parts))
    cands.append(Path(__file__).resolve().parents[2].parent.joinpath("shared", "data", *parts))
    cands.append(Path.cwd().parent.joinpath("shared", "data", *parts))
    for c in cands:
        if c.is_dir():
            return c
    return None


def _to_label(v: Any, uncertain: str = "nan") -> float:
    """1/0/-1/blank -> 1.0/0.0/(uncertain policy)/NaN."""
    if v is None:
        return float("nan")
    try:
        f = float(v)
    except (TypeError, ValueError):
        s = str(v).strip().lower()
        if s in ("", "nan", "none"):
            return float("nan")
        if s in ("true", "yes", "positive", "pos"):
            return 1.0
        if s in ("false", "no", "negative", "neg"):
            return 0.0
        return float("nan")
    if np.isnan(f):
        return float("nan")
    if f == -1.0:
        return {"nan": float("nan"), "zeros": 0.0, "ones": 1.0}[uncertain]
    if f in (0.0, 1.0):
        return f
    return float("nan")


_UNCERTAIN = ("nan", "zeros", "ones")


# ------------------------------------------------------------------------------------------------ base class
class ImageLabelDataset:
    """Shared machinery: a table of records (id, path, group, official split, labels) -> the dataset protocol.

    Subclasses fill ``self._ids``, ``self._paths``, ``self._groups``, ``self._labels`` (dict code -> float array),
    optionally ``self._official`` (official split names per record) and ``self._format`` (reader format).
    """

    name = "image-dataset"
    modality = "cxr"
    citation = ""
    partial = False
    #: Code system of the class codes (the ``codes`` key of the knowledge-base entries, for tasks built from them).
    system = ""
    #: Other names accepted for a class code in :meth:`labels` (not listed by :meth:`label_codes`).
    _aliases: ClassVar[dict[str, str]] = {}

    def __init__(self, root: Path, test_fraction: float = TEST_FRACTION, seed: int = 0) -> None:
        if not 0.0 < float(test_fraction) < 1.0:
            raise SpecError(f"dataset {self.name}: test_fraction expected in (0, 1), got {test_fraction!r}")
        self.root = Path(root)
        self.test_fraction = float(test_fraction)
        self.seed = int(seed)
        self._ids: list[str] = []
        self._paths: list[str] = []
        self._groups: list[str] = []
        self._labels: dict[str, np.ndarray] = {}
        self._official: list[str] | None = None
        self._format: str | None = None
        self._split_cache: list[str] | None = None

    # -- protocol -------------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._ids)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(root={str(self.root)!r}, n={len(self)})"

    def splits(self) -> list[str]:
        """``all``, ``train``, ``test`` (group-hash) and any ``official-*`` split of the source."""
        out = ["all", "train", "test"]
        if self._official is not None:
            out += [f"official-{s}" for s in sorted(set(self._official))]
        return out

    def split_of(self) -> list[str]:
        """``"train"`` / ``"test"`` for every record (aligned with the internal record order)."""
        if self._split_cache is None:
            self._split_cache = group_split(self._groups, self.test_fraction, self.seed)
        return self._split_cache

    def _indices(self, split: str) -> list[int]:
        if split == "all":
            idx = list(range(len(self._ids)))
        elif split in ("train", "test"):
            sp = self.split_of()
            idx = [i for i, s in enumerate(sp) if s == split]
        elif split.startswith("official-") and self._official is not None and split[9:] in set(self._official):
            idx = [i for i, s in enumerate(self._official) if s == split[9:]]
        else:
            raise SpecError(f"dataset {self.name}: split expected one of {self.splits()}, got {split!r}")
        return sorted(idx, key=lambda i: self._ids[i])

    def records(self, split: str = "all") -> list[RecordRef]:
        """The records of a split, sorted by id.

        Raises:
            SpecError: unknown split name.
        """
        return [
            RecordRef(id=self._ids[i], path=self._paths[i], group=self._groups[i], format=self._format)
            for i in self._indices(split)
        ]

    def split(self, name: str = "all") -> list[str]:
        """Record ids of a split (``"train"``, ``"test"``, ``"all"`` or ``"official-*"``), sorted."""
        return [self._ids[i] for i in self._indices(name)]

    def label_codes(self) -> list[str]:
        """Every class code this dataset labels."""
        return list(self._labels)

    def labels(self, task: Any = None) -> Any:
        """1/0/NaN float DataFrame indexed by record id (all records), one column per class, in the task's order.

        Args:
            task: A :class:`medzs.data.tasks.Task` (its ``classes``; a class is positive when any of its
                ``label_codes`` is, 0 when all of them are 0, NaN otherwise), a list of class codes, or None
                (every code of :meth:`label_codes`).

        Raises:
            SpecError: the task's code ``system`` is not this dataset's, or a class this dataset does not label
                (the message lists those it does).
        """
        import pandas as pd

        if task is None:
            classes, codes = self.label_codes(), {}
        elif hasattr(task, "classes"):
            system = getattr(task, "system", "") or ""
            if system and self.system and system != self.system:
                raise SpecError(f"task {getattr(task, 'name', '?')!r}: its classes are {system} codes, but dataset "
                                f"{self.name} labels {self.system} codes (build the task with system: {self.system})")
            classes, codes = list(task.classes), dict(getattr(task, "label_codes", {}) or {})
        else:
            classes, codes = [str(c) for c in task], {}
        out = {}
        for c in classes:
            srcs = [self._aliases.get(k, k) for k in (codes.get(c) or (c,))]
            known = [k for k in dict.fromkeys(srcs) if k in self._labels]
            if not known:
                raise SpecError(f"dataset {self.name}: cannot label {c!r}; labels: {self.label_codes()}")
            m = np.stack([self._labels[k] for k in known])
            col = np.full(m.shape[1], np.nan)
            col[np.all(m == 0.0, axis=0)] = 0.0
            col[np.any(m == 1.0, axis=0)] = 1.0
            out[c] = col
        df = pd.DataFrame(out, index=pd.Index(self._ids, name="id"), columns=classes)
        return df.astype(float).sort_index()

    def groups(self) -> dict[str, str]:
        """Record id -> group id."""
        return dict(zip(self._ids, self._groups))

    # -- helpers for subclasses ------------------------------------------------------------------------------
    def _check_unique_ids(self) -> None:
        seen: set[str] = set()
        dup = [i for i in self._ids if i in seen or seen.add(i)]  # type: ignore[func-returns-value]
        if dup:
            raise SpecError(f"dataset {self.name} at {self.root}: duplicate record ids, e.g. {dup[:3]}")


def _require_root(name: str, root: Path | None, default: Path | None = None, env: str | None = None) -> Path:
    if root is None and env and os.environ.get(env):
        root = Path(os.environ[env]).expanduser()
    if root is None:
        root = default
    if root is None:
        hint = f" or set {env}" if env else ""
        raise SpecError(f"dataset {name}: root: expected the dataset folder{hint}")
    root = Path(root)
    if not root.exists():
        raise SpecError(f"dataset {name}: root {root} does not exist")
    return root


# ------------------------------------------------------------------------------------------------ Kermany
_KERMANY_NORMAL = re.compile(r"^(?P<prefix>NORMAL\d*-)?IM-(?P<id>\d+)-", re.IGNORECASE)
_KERMANY_PNEU = re.compile(r"^person(?P<id>\d+)_(?P<kind>bacteria|virus)", re.IGNORECASE)


def kermany_person(file_name: str) -> str:
    """Person (group) id from a Kermany file name.

    ``IM-0115-0001.jpeg`` -> ``IM-0115``; ``NORMAL2-IM-1427-0001.jpeg`` -> ``NORMAL2-IM-1427`` (a separate
    numbering); ``person1000_bacteria_2931.jpeg`` -> ``person1000``; anything else -> the file stem.
    """
    name = Path(file_name).name
    m = _KERMANY_NORMAL.match(name)
    if m:
        return f"{(m.group('prefix') or '').upper()}IM-{m.group('id')}"
    m = _KERMANY_PNEU.match(name)
    if m:
        return f"person{m.group('id')}"
    return Path(name).stem


def _union_duplicates(paths: Sequence[str], groups: list[str]) -> tuple[list[str], int]:
    """Merge the groups of byte-identical files (union-find on SHA-1 of the bytes)."""
    parent: dict[str, str] = {}

    def find(g: str) -> str:
        while parent.get(g, g) != g:
            parent[g] = parent.get(parent[g], parent[g])
            g = parent[g]
        return g

    first_by_hash: dict[str, str] = {}
    n_dup = 0
    for p, g in zip(paths, groups):
        try:
            h = hashlib.sha1(Path(p).read_bytes()).hexdigest()
        except OSError:
            continue
        if h in first_by_hash:
            n_dup += 1
            a, b = find(first_by_hash[h]), find(g)
            if a != b:
                parent[max(a, b)] = min(a, b)
        else:
            first_by_hash[h] = g
    return [find(g) for g in groups], n_dup


class KermanyDataset(ImageLabelDataset):
    """Kermany et al. 2018 paediatric chest radiographs (pneumonia: bacterial / viral / normal).

    Reads ``root/labels.csv`` when present (``path`` relative to root, ``pneumonia``, ``bacterial``, ``viral``,
    optional ``split``), else the folders: ``root/{NORMAL,PNEUMONIA}/`` or ``root/{train,test,val}/{NORMAL,
    PNEUMONIA}/`` (labels from the folder; bacterial/viral from the file name). The group is the person id in
    the file name (:func:`kermany_person`). With ``merge_duplicates`` (default), byte-identical files put their
    persons in one group, so exact duplicates (30 groups in the shared copy) cannot straddle train and test.

    Class codes: ``pneumonia``, ``bacterial``, ``viral``, ``normal`` (= 1 - pneumonia).

    Source: Kermany DS et al., Cell 172(5):1122-1131, 2018, doi:10.1016/j.cell.2018.02.010; data: Mendeley
    Data doi:10.17632/rscbjbr9sj.2 (CC BY 4.0).
    """

    name = "kermany"
    modality = "cxr"
    system = "kermany"
    citation = ("Kermany DS et al. Identifying medical diagnoses and treatable diseases by image-based deep "
                "learning. Cell 2018;172(5):1122-1131. doi:10.1016/j.cell.2018.02.010 (data CC BY 4.0, "
                "doi:10.17632/rscbjbr9sj.2)")

    def __init__(self, root: Path | None = None, labels: str | None = "labels.csv", merge_duplicates: bool = True,
                 test_fraction: float = TEST_FRACTION, seed: int = 0) -> None:
        root = _require_root(self.name, root, _shared_root("imaging", "cxr-pneumonia"), "MEDZS_KERMANY_ROOT")
        super().__init__(root, test_fraction, seed)
        csv = root / labels if labels else None
        rows: list[tuple[str, float, float, float, str | None]] = []
        if csv is not None and csv.is_file():
            import pandas as pd

            df = pd.read_csv(csv)
            if "path" not in df.columns or "pneumonia" not in df.columns:
                raise SpecError(f"{csv}: expected columns 'path' and 'pneumonia', got {list(df.columns)}")
            for r in df.itertuples(index=False):
                rel = str(r.path)
                pneu = _to_label(r.pneumonia)
                bac = _to_label(getattr(r, "bacterial", np.nan))
                vir = _to_label(getattr(r, "viral", np.nan))
                if "bacterial" not in df.columns:
                    bac = float("bacteria" in rel.lower()) if pneu == 1 else (0.0 if pneu == 0 else np.nan)
                if "viral" not in df.columns:
                    vir = float("virus" in rel.lower()) if pneu == 1 else (0.0 if pneu == 0 else np.nan)
                rows.append((rel, pneu, bac, vir, str(r.split) if "split" in df.columns else None))
        else:
            bases = [d for d in ("train", "test", "val") if (root / d).is_dir()]
            for base in bases or [""]:
                for cls in ("NORMAL", "PNEUMONIA"):
                    folder = root / base / cls if base else root / cls
                    if not folder.is_dir():
                        continue
                    for f in sorted(folder.iterdir()):
                        if f.suffix.lower() not in _IMAGE_EXT:
                            continue
                        rel = f.relative_to(root).as_posix()
                        pneu = 1.0 if cls == "PNEUMONIA" else 0.0
                        low = f.name.lower()
                        rows.append((rel, pneu, float(pneu == 1 and "bacteria" in low),
                                     float(pneu == 1 and "virus" in low), base or None))
        if not rows:
            raise SpecError(f"dataset kermany: no images under {root} (expected labels.csv or NORMAL/ and "
                            f"PNEUMONIA/ folders)")
        rows.sort(key=lambda r: r[0])
        self._ids = [r[0] for r in rows]
        self._paths = [str(root / r[0]) for r in rows]
        groups = [kermany_person(r[0]) for r in rows]
        self.n_duplicate_files = 0
        if merge_duplicates:
            groups, self.n_duplicate_files = _union_duplicates(self._paths, groups)
        self._groups = groups
        pneu = np.array([r[1] for r in rows], dtype=float)
        self._labels = {
            "pneumonia": pneu,
            "bacterial": np.array([r[2] for r in rows], dtype=float),
            "viral": np.array([r[3] for r in rows], dtype=float),
            "normal": 1.0 - pneu,
        }
        official = [r[4] for r in rows]
        if all(o is not None for o in official):
            self._official = [str(o) for o in official]
        self._check_unique_ids()


# ------------------------------------------------------------------------------------------------ COVID-CT
def covid_ct_source_group(path: str) -> str:
    """Source (paper / case) id from a UCSD COVID-CT file name, as the shared ``labels.csv`` derives it.

    ``2020.03.12.20034686-p17-91-1.png`` -> ``2020.03.12.20034686``; ``PIIS0140673620301549_1.png`` ->
    ``PIIS0140673620301549``; ``10%0.jpg`` -> ``10``.
    """
    stem = Path(path).name.rsplit(".", 1)[0]
    stem = re.sub(r"%\d+$", "", stem)
    stem = re.sub(r"-p\d+([-_].*)?$", "", stem)
    return re.sub(r"_\d+$", "", stem)


class CovidCTDataset(ImageLabelDataset):
    """UCSD COVID-CT 2-D chest CT slices, grouped by source (paper / case) for group-disjoint splits.

    Reads ``root/labels.csv`` (``path``, ``covid``, ``source_group``) when present, else the folders
    ``CT_COVID/`` and ``CT_NonCOVID/`` with groups from the file names (:func:`covid_ct_source_group`). A
    trailing ``_<n>`` is removed from a ``source_group`` (in the shared copy only ``PIIS0140673620301549_0``,
    the same paper as ``PIIS0140673620301549``), so one source can never straddle two splits.
    Class codes (the original folder names, as the knowledge base's ``covid_ct`` codes): ``CT_COVID`` and
    ``CT_NonCOVID`` (= 1 - CT_COVID); ``covid`` / ``noncovid`` are accepted as aliases. Records are 2-D slices (modality ``ct``; read them
    with ``read_image(path, modality="ct")``).

    Source: Zhao J, Zhang Y, He X, Xie P. COVID-CT-Dataset: a CT scan dataset about COVID-19.
    arXiv:2003.13865, 2020.
    """

    name = "covid-ct"
    modality = "ct"
    system = "covid_ct"
    _aliases: ClassVar[dict[str, str]] = {"covid": "CT_COVID", "noncovid": "CT_NonCOVID"}
    citation = "Zhao J, Zhang Y, He X, Xie P. COVID-CT-Dataset: a CT scan dataset about COVID-19. arXiv:2003.13865 (2020)"

    def __init__(self, root: Path | None = None, labels: str | None = "labels.csv",
                 test_fraction: float = TEST_FRACTION, seed: int = 0) -> None:
        root = _require_root(self.name, root, _shared_root("imaging", "ct-covid-slices"), "MEDZS_COVID_CT_ROOT")
        super().__init__(root, test_fraction, seed)
        rows: list[tuple[str, float, str]] = []
        csv = root / labels if labels else None
        if csv is not None and csv.is_file():
            import pandas as pd

            df = pd.read_csv(csv, dtype={"source_group": str})
            missing = {"path", "covid"} - set(df.columns)
            if missing:
                raise SpecError(f"{csv}: expected columns 'path', 'covid' (and 'source_group'), missing {sorted(missing)}")
            for r in df.itertuples(index=False):
                if "source_group" in df.columns and isinstance(r.source_group, str) and r.source_group.strip():
                    # "PIIS0140673620301549_0" and "PIIS0140673620301549" are one Lancet paper: merged.
                    grp = re.sub(r"_\d+$", "", r.source_group.strip())
                else:
                    grp = covid_ct_source_group(str(r.path))
                rows.append((str(r.path), _to_label(r.covid), grp))
        else:
            for cls, y in (("CT_COVID", 1.0), ("CT_NonCOVID", 0.0)):
                folder = root / cls
                if folder.is_dir():
                    rows += [(f.relative_to(root).as_posix(), y, covid_ct_source_group(f.name))
                             for f in sorted(folder.iterdir()) if f.suffix.lower() in _IMAGE_EXT]
        if not rows:
            raise SpecError(f"dataset covid-ct: no images under {root} (expected labels.csv or CT_COVID/, CT_NonCOVID/)")
        rows.sort(key=lambda r: r[0])
        self._ids = [r[0] for r in rows]
        self._paths = [str(root / r[0]) for r in rows]
        # COVID and non-COVID sources are separate namespaces (a paper id vs a MedPix/LUNA case number).
        self._groups = [r[2] for r in rows]
        covid = np.array([r[1] for r in rows], dtype=float)
        self._labels = {"CT_COVID": covid, "CT_NonCOVID": 1.0 - covid}
        self._check_unique_ids()


# ------------------------------------------------------------------------------------------------ CheXpert
#: The 14 CheXpert observations, in the CSV's column order (Irvin et al. 2019).
CHEXPERT_FINDINGS: tuple[str, ...] = (
    "No Finding", "Enlarged Cardiomediastinum", "Cardiomegaly", "Lung Opacity", "Lung Lesion", "Edema",
    "Consolidation", "Pneumonia", "Atelectasis", "Pneumothorax", "Pleural Effusion", "Pleural Other",
    "Fracture", "Support Devices",
)


def _resolve_base(root: Path, rel_paths: Sequence[str], what: str) -> Path:
    """The folder the CSV's relative paths hang from: ``root``, its parent, or ``root`` minus the first part."""
    for rel in rel_paths[:50]:
        for base in (root, root.parent):
            if (base / rel).exists():
                return base
        parts = Path(rel).parts
        if len(parts) > 1 and (root / Path(*parts[1:])).exists():
            return root / "__strip_first__"
    raise SpecError(f"{what}: none of the first image paths (e.g. {rel_paths[0]!r}) exists under {root} or its "
                    f"parent (expected the images next to the CSV)")


def _join(base: Path, rel: str) -> Path:
    if base.name == "__strip_first__":
        parts = Path(rel).parts
        return base.parent.joinpath(*parts[1:])
    return base / rel


class CheXpertDataset(ImageLabelDataset):
    """CheXpert (Stanford) chest radiographs from ``train.csv`` / ``valid.csv``.

    Columns: ``Path`` (e.g. ``CheXpert-v1.0-small/train/patient00001/study1/view1_frontal.jpg``, resolved
    against ``root``, its parent, or ``root`` without the first path part), ``Frontal/Lateral``, and the 14
    observations :data:`CHEXPERT_FINDINGS` with values 1 (positive), 0 (negative), -1 (uncertain) or blank
    (not mentioned). Mapping: 1 -> 1.0, 0 -> 0.0, **-1 -> NaN** (``uncertain="nan"``, default; ``"zeros"``
    and ``"ones"`` are the U-Zeros / U-Ones policies of the paper) and **blank -> NaN** (``blank="nan"``;
    ``"zeros"`` treats unmentioned as absent). The group is the patient (``patientNNNNN`` in the path).

    Args:
        root: Folder holding the CSV.
        csv: CSV file name (``train.csv``, ``valid.csv``).
        views: Keep only these ``Frontal/Lateral`` values (e.g. ``("Frontal",)``); None keeps all.

    Source: Irvin J et al. CheXpert: a large chest radiograph dataset with uncertainty labels and expert
    comparison. AAAI 2019, arXiv:1901.07031.
    """

    name = "chexpert"
    modality = "cxr"
    system = "chexpert"
    citation = ("Irvin J et al. CheXpert: A Large Chest Radiograph Dataset with Uncertainty Labels and Expert "
                "Comparison. AAAI 2019. arXiv:1901.07031")

    def __init__(self, root: Path | None = None, csv: str = "train.csv", uncertain: str = "nan", blank: str = "nan",
                 views: Sequence[str] | None = None, test_fraction: float = TEST_FRACTION, seed: int = 0) -> None:
        import pandas as pd

        root = _require_root(self.name, root, None, "MEDZS_CHEXPERT_ROOT")
        super().__init__(root, test_fraction, seed)
        if uncertain not in _UNCERTAIN:
            raise SpecError(f"dataset chexpert: uncertain expected one of {_UNCERTAIN}, got {uncertain!r}")
        if blank not in ("nan", "zeros"):
            raise SpecError(f"dataset chexpert: blank expected 'nan' or 'zeros', got {blank!r}")
        path = root / csv if root.is_dir() else root
        if not path.is_file():
            raise SpecError(f"dataset chexpert: {path} not found (expected train.csv or valid.csv)")
        df = pd.read_csv(path)
        need = {"Path", *CHEXPERT_FINDINGS}
        if need - set(df.columns):
            raise SpecError(f"{path}: missing columns {sorted(need - set(df.columns))}")
        if views is not None and "Frontal/Lateral" in df.columns:
            df = df[df["Frontal/Lateral"].isin(list(views))]
        rels = [str(p) for p in df["Path"]]
        if not rels:
            raise SpecError(f"{path}: no rows (after the views filter {views})")
        base = _resolve_base(path.parent, rels, str(path))
        self._ids = rels
        self._paths = [str(_join(base, r)) for r in rels]
        self._groups = [m.group(0) if (m := re.search(r"patient\d+", r)) else r for r in rels]
        for c in CHEXPERT_FINDINGS:
            vals = np.array([_to_label(v, uncertain) for v in df[c]], dtype=float)
            if blank == "zeros":
                vals[df[c].isna().to_numpy()] = 0.0
            self._labels[c] = vals
        self._check_unique_ids()


# ------------------------------------------------------------------------------------------------ ChestX-ray14
#: The 14 ChestX-ray14 findings (Wang et al. 2017, NIH data entry file spelling) and ``No Finding``.
CHESTXRAY14_FINDINGS: tuple[str, ...] = (
    "Atelectasis", "Cardiomegaly", "Effusion", "Infiltration", "Mass", "Nodule", "Pneumonia", "Pneumothorax",
    "Consolidation", "Edema", "Emphysema", "Fibrosis", "Pleural_Thickening", "Hernia",
)


class ChestXray14Dataset(ImageLabelDataset):
    """NIH ChestX-ray14 from ``Data_Entry_2017_v2020.csv`` (or ``Data_Entry_2017.csv``).

    ``Finding Labels`` lists findings joined by ``|`` (``"Cardiomegaly|Effusion"``) or ``No Finding``; every
    finding is definite (1.0 or 0.0; no NaN). Class codes: :data:`CHESTXRAY14_FINDINGS` and ``No Finding``.
    Images are found by ``Image Index`` anywhere under ``root`` (``images/``, ``images_001/images/``...); rows
    whose image is absent are dropped (``partial`` is then True). The group is ``Patient ID``. The official
    patient-disjoint lists ``train_val_list.txt`` / ``test_list.txt``, when present, give ``official-train`` /
    ``official-test``.

    Source: Wang X et al. ChestX-ray8: hospital-scale chest X-ray database and benchmarks. CVPR 2017,
    arXiv:1705.02315.
    """

    name = "chestxray14"
    modality = "cxr"
    system = "chestxray14"
    citation = ("Wang X et al. ChestX-ray8: Hospital-scale Chest X-ray Database and Benchmarks on Weakly-Supervised "
                "Classification and Localization of Common Thorax Diseases. CVPR 2017. arXiv:1705.02315")

    def __init__(self, root: Path | None = None, csv: str | None = None, test_fraction: float = TEST_FRACTION,
                 seed: int = 0) -> None:
        import pandas as pd

        root = _require_root(self.name, root, None, "MEDZS_CHESTXRAY14_ROOT")
        super().__init__(root, test_fraction, seed)
        cands = [root / csv] if csv else [root / "Data_Entry_2017_v2020.csv", root / "Data_Entry_2017.csv"]
        path = next((c for c in cands if c.is_file()), None)
        if path is None:
            raise SpecError(f"dataset chestxray14: none of {[str(c) for c in cands]} found")
        df = pd.read_csv(path)
        need = {"Image Index", "Finding Labels", "Patient ID"}
        if need - set(df.columns):
            raise SpecError(f"{path}: missing columns {sorted(need - set(df.columns))}")
        found = {f.name: f for f in root.rglob("*.png")}
        keep = df["Image Index"].isin(set(found))
        if not keep.any():
            raise SpecError(f"dataset chestxray14: no image of {path.name} found under {root} (expected PNGs "
                            f"named by 'Image Index')")
        self.partial = bool((~keep).any())
        self.n_missing_images = int((~keep).sum())
        df = df[keep]
        self._ids = [str(v) for v in df["Image Index"]]
        self._paths = [str(found[i]) for i in self._ids]
        self._groups = [str(int(v)) if not isinstance(v, str) else v for v in df["Patient ID"]]
        sets = [{s.strip() for s in str(v).split("|")} for v in df["Finding Labels"]]
        known = set(CHESTXRAY14_FINDINGS) | {"No Finding"}
        other = set().union(*sets) - known
        if other:
            raise SpecError(f"{path}: Finding Labels: unknown finding(s) {sorted(other)} (expected {sorted(known)})")
        for c in (*CHESTXRAY14_FINDINGS, "No Finding"):
            self._labels[c] = np.array([float(c in s) for s in sets], dtype=float)
        lists = {"train": root / "train_val_list.txt", "test": root / "test_list.txt"}
        if all(p.is_file() for p in lists.values()):
            member = {}
            for name, p in lists.items():
                for line in p.read_text().split():
                    member[line.strip()] = name
            if all(i in member for i in self._ids):
                self._official = [member[i] for i in self._ids]
        self._check_unique_ids()


# ------------------------------------------------------------------------------------------------ RSNA
class RSNAPneumoniaDataset(ImageLabelDataset):
    """RSNA Pneumonia Detection Challenge (2018) chest radiographs (DICOM).

    ``stage_2_train_labels.csv`` has one row per box (``patientId, x, y, width, height, Target``), several
    rows for a patient with several opacities; ``pneumonia`` is the maximum ``Target`` per ``patientId``.
    With ``stage_2_detailed_class_info.csv``, also ``lung_opacity`` (class "Lung Opacity"),
    ``no_opacity_not_normal`` ("No Lung Opacity / Not Normal") and ``normal`` ("Normal"). Images:
    ``<images>/<patientId>.dcm`` (default folder ``stage_2_train_images``); rows without an image file are
    dropped (``partial``). One image per patient: the group is the ``patientId``.

    Source: Shih G et al. Augmenting the National Institutes of Health chest radiograph dataset with expert
    annotations of possible pneumonia. Radiol Artif Intell 2019;1(1):e180041, doi:10.1148/ryai.2019180041.
    """

    name = "rsna-pneumonia"
    modality = "cxr"
    system = "rsna_pneumonia"
    citation = ("Shih G et al. Augmenting the National Institutes of Health Chest Radiograph Dataset with Expert "
                "Annotations of Possible Pneumonia. Radiology: Artificial Intelligence 2019;1(1):e180041. "
                "doi:10.1148/ryai.2019180041")

    def __init__(self, root: Path | None = None, csv: str = "stage_2_train_labels.csv",
                 images: str = "stage_2_train_images", test_fraction: float = TEST_FRACTION, seed: int = 0) -> None:
        import pandas as pd

        root = _require_root(self.name, root, None, "MEDZS_RSNA_ROOT")
        super().__init__(root, test_fraction, seed)
        path = root / csv
        if not path.is_file():
            raise SpecError(f"dataset rsna-pneumonia: {path} not found (expected stage_2_train_labels.csv)")
        df = pd.read_csv(path)
        if {"patientId", "Target"} - set(df.columns):
            raise SpecError(f"{path}: expected columns patientId and Target, got {list(df.columns)}")
        target = df.groupby("patientId")["Target"].max()
        img_dir = root / images
        pids = [str(p) for p in target.index]
        exists = [(img_dir / f"{p}.dcm").is_file() for p in pids]
        if not any(exists):
            raise SpecError(f"dataset rsna-pneumonia: no <patientId>.dcm under {img_dir}")
        self.partial = not all(exists)
        self._ids = [p for p, e in zip(pids, exists) if e]
        self._paths = [str(img_dir / f"{p}.dcm") for p in self._ids]
        self._groups = list(self._ids)
        self._format = "dicom-image"
        self._labels["pneumonia"] = np.array([_to_label(target[p]) for p in self._ids], dtype=float)
        detail = root / "stage_2_detailed_class_info.csv"
        if detail.is_file():
            d = pd.read_csv(detail).drop_duplicates("patientId").set_index("patientId")["class"]
            for code, cls in (("lung_opacity", "Lung Opacity"), ("no_opacity_not_normal", "No Lung Opacity / Not Normal"),
                              ("normal", "Normal")):
                self._labels[code] = np.array(
                    [float(d[p] == cls) if p in d.index else np.nan for p in self._ids], dtype=float
                )
        self._check_unique_ids()


# ------------------------------------------------------------------------------------------------ generic folder
class ImageFolderDataset(ImageLabelDataset):
    """Any folder of images, DICOM files, DICOM series folders or NIfTI volumes, with a labels CSV.

    The CSV has a path column (relative to ``root``, or absolute), optional id / group / split columns, and
    label columns: every other column whose values are all 1, 0, -1 or blank (-1 -> ``uncertain`` policy,
    blank -> NaN). Text columns (e.g. a subtype) are ignored. Records without a group column are their own
    group; a ``split`` column is offered as ``official-<value>`` splits.

    Args:
        root: Folder the paths are relative to.
        labels: CSV path (relative to ``root`` or absolute; default ``labels.csv``).
        modality: ``"cxr"`` or ``"ct"``.
        path_column / id_column / group_column / split_column: column names (id default: the path).
        classes: Label columns to use (default: every 1/0/-1/blank column).
        system: Code system the column names belong to (e.g. ``"chexpert"`` when the columns are CheXpert
            findings), checked against a task's ``system``; empty: not checked.
    """

    name = "image-folder"
    citation = ""

    def __init__(self, root: Path | None = None, labels: str | os.PathLike[str] = "labels.csv", modality: str = "cxr",
                 path_column: str = "path", id_column: str | None = None, group_column: str | None = None,
                 split_column: str | None = "split", classes: Sequence[str] | None = None, uncertain: str = "nan",
                 system: str = "", test_fraction: float = TEST_FRACTION, seed: int = 0) -> None:
        import pandas as pd

        root = _require_root(self.name, root)
        super().__init__(root, test_fraction, seed)
        if modality not in ("cxr", "ct"):
            raise SpecError(f"dataset image-folder: modality expected 'cxr' or 'ct', got {modality!r}")
        if uncertain not in _UNCERTAIN:
            raise SpecError(f"dataset image-folder: uncertain expected one of {_UNCERTAIN}, got {uncertain!r}")
        self.modality = modality
        self.system = str(system)
        csv = Path(labels) if Path(labels).is_absolute() else root / labels
        if not csv.is_file():
            raise SpecError(f"dataset image-folder: labels CSV {csv} not found")
        df = pd.read_csv(csv)
        for col, what in ((path_column, "path_column"), (id_column, "id_column"), (group_column, "group_column")):
            if col is not None and col not in df.columns:
                raise SpecError(f"{csv}: {what} {col!r} not a column (columns: {list(df.columns)})")
        if df.empty:
            raise SpecError(f"{csv}: no rows")
        reserved = {path_column, id_column, group_column, split_column}
        if classes is None:
            classes = [c for c in df.columns if c not in reserved and _is_label_column(df[c])]
        bad = [c for c in classes if c not in df.columns or not _is_label_column(df[c])]
        if bad:
            raise SpecError(f"{csv}: label column(s) {bad} missing or not 1/0/-1/blank")
        if not classes:
            raise SpecError(f"{csv}: no label column (expected columns of 1/0/-1/blank besides {path_column!r})")
        rel = [str(p) for p in df[path_column]]
        self._paths = [str(Path(p) if Path(p).is_absolute() else root / p) for p in rel]
        self._ids = [str(v) for v in df[id_column]] if id_column else rel
        self._groups = [str(v) for v in df[group_column]] if group_column else list(self._ids)
        if split_column and split_column in df.columns:
            self._official = [str(v) for v in df[split_column]]
        for c in classes:
            self._labels[str(c)] = np.array([_to_label(v, uncertain) for v in df[c]], dtype=float)
        self._check_unique_ids()


def _is_label_column(s: Any) -> bool:
    import pandas as pd

    v = pd.to_numeric(s, errors="coerce")
    if v.isna().sum() != s.isna().sum():
        return False  # text values
    vals = set(v.dropna().unique().tolist())
    return bool(vals) and vals <= {-1.0, 0.0, 1.0}


__all__ = [
    "CHESTXRAY14_FINDINGS",
    "CHEXPERT_FINDINGS",
    "TEST_FRACTION",
    "CheXpertDataset",
    "ChestXray14Dataset",
    "CovidCTDataset",
    "ImageFolderDataset",
    "ImageLabelDataset",
    "KermanyDataset",
    "RSNAPneumoniaDataset",
    "assert_group_disjoint",
    "covid_ct_source_group",
    "group_kfold",
    "group_split",
    "hash_unit",
    "kermany_person",
]
