"""The original CPSC2018 (China Physiological Signal Challenge 2018) ``.mat`` files as a Dataset.

Liu F, Liu C, Zhao L, et al. An Open Access Database for Evaluating the Algorithms of Electrocardiogram Rhythm
and Morphology Abnormality Detection. J Med Imaging Health Inform 8(7):1368-1373, 2018,
doi:10.1166/jmihi.2018.2442. Classes: Normal, AF, I-AVB, LBBB, RBBB, PAC, PVC, STD, STE (CPSC2018 names).

Labels come from the official ``REFERENCE.csv`` (``Recording, First_label...``, class numbers 1-9) or from a CSV
with ``filename`` and ``labels`` columns (class names separated by ``,;|`` or spaces; CPSC2018 names, or the
SCP-ECG-style names of the label file derived from MERL's ICBEB split, :data:`MERL_ICBEB_NAMES`), found in ``root`` or given as ``reference``. A ``merl_split`` (or ``split``) column
gives named splits.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from medzs.errors import SpecError

CITATION = ("Liu F, Liu C, Zhao L, et al. An Open Access Database for Evaluating the Algorithms of "
            "Electrocardiogram Rhythm and Morphology Abnormality Detection. J Med Imaging Health Inform "
            "8(7):1368-1373 (2018), doi:10.1166/jmihi.2018.2442")


#: Names used for the CPSC2018 classes by the label files derived from MERL's ICBEB split (SCP-ECG style) -> the
#: CPSC2018 class names; the official names map to themselves.
MERL_ICBEB_NAMES: dict[str, str] = {"NORM": "Normal", "AFIB": "AF", "1AVB": "I-AVB", "CLBBB": "LBBB",
                                    "CRBBB": "RBBB", "PAC": "PAC", "VPC": "PVC", "PVC": "PVC", "STD": "STD",
                                    "STD_": "STD", "STE": "STE", "STE_": "STE"}


class CPSC2018Dataset:
    """CPSC2018 records (``A*.mat``) under ``root`` with their reference labels.

    Args:
        root: Folder of ``.mat`` files.
        reference: Label file (default: ``REFERENCE.csv`` in root, else the only other ``*.csv`` there).

    Raises:
        SpecError: root missing, no ``.mat`` file, or no/ambiguous label file.
    """

    name = "cpsc2018"
    modality = "ecg"
    citation = CITATION
    partial = True

    def __init__(self, root: str | os.PathLike[str] | None = None,
                 reference: str | os.PathLike[str] | None = None) -> None:
        if root is None or not Path(root).is_dir():
            raise SpecError(f"dataset.root: {root} is not a folder (expected the CPSC2018 .mat files)")
        self.root = Path(root)
        self.mats = sorted(p for p in self.root.glob("*.mat") if not p.name.startswith("."))
        if not self.mats:
            raise SpecError(f"dataset.root: {self.root} holds no .mat file (expected CPSC2018 records A0001.mat...)")
        if reference is None:
            ref = self.root / "REFERENCE.csv"
            if not ref.is_file():
                csvs = sorted(self.root.glob("*.csv"))
                if len(csvs) != 1:
                    raise SpecError(f"dataset.reference: {self.root} has {len(csvs)} CSV files; name the label file "
                                    "(REFERENCE.csv, or a CSV with filename and labels columns)")
                ref = csvs[0]
        else:
            ref = Path(reference)
        self.reference = ref
        self._labels, self._splits = self._read_reference(ref)

    @staticmethod
    def _read_reference(ref: Path) -> tuple[dict[str, list[str]], dict[str, str]]:
        import pandas as pd

        from medzs.data.vocab import CPSC2018_CLASSES, parse_dx

        if not ref.is_file():
            raise SpecError(f"dataset.reference: {ref} not found (expected the CPSC2018 REFERENCE.csv)")
        df = pd.read_csv(ref, dtype=str, keep_default_na=False)
        if "Recording" in df.columns:
            from medzs.io.cpsc import read_reference

            return read_reference(ref), {}
        if not {"filename", "labels"} <= set(df.columns):
            raise SpecError(f"dataset.reference: {ref.name}: columns {list(df.columns)} (expected Recording, "
                            "First_label... or filename, labels)")
        names = set(CPSC2018_CLASSES.values())
        labels, splits = {}, {}
        split_col = "merl_split" if "merl_split" in df.columns else ("split" if "split" in df.columns else None)
        for _, row in df.iterrows():
            codes = [c if c in names else MERL_ICBEB_NAMES.get(c, c)
                     for c in parse_dx(row["labels"], source=f"{ref.name} row {row['filename']}")]
            bad = [c for c in codes if c not in names]
            if bad:
                raise SpecError(f"dataset.reference: {ref.name}: record {row['filename']}: labels {bad} "
                                f"(expected CPSC2018 class names {sorted(names)})")
            labels[row["filename"].strip()] = codes
            if split_col:
                splits[row["filename"].strip()] = row[split_col].strip()
        return labels, splits

    def splits(self) -> list[str]:
        return ["all", *sorted(set(self._splits.values()))]

    def records(self, split: str = "all") -> list[Any]:
        from medzs.data.types import RecordRef

        if split not in self.splits():
            raise SpecError(f"dataset.split: expected one of {self.splits()}, got {split!r}")
        return [RecordRef(id=p.stem, path=str(p), format="cpsc2018") for p in self.mats
                if split == "all" or self._splits.get(p.stem) == split]

    def label_codes(self) -> list[str]:
        from medzs.data.vocab import CPSC2018_CLASSES

        return list(CPSC2018_CLASSES.values())

    def labels(self, task: Any) -> Any:
        from medzs.data._labels import code_matrix

        return code_matrix({p.stem: self._labels.get(p.stem) for p in self.mats}, task, self.name, "cpsc2018")
