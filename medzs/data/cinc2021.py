"""PhysioNet/CinC Challenge 2020-2021 12-lead ECG folders as a :class:`medzs.data.base.Dataset`.

Layout: WFDB headers ``<record>.hea`` with MATLAB ``<record>.mat`` signals (Georgia, Chapman-Shaoxing, Ningbo,
CPSC, PTB, INCART... as distributed by the challenge), labels in the header comment ``# Dx:`` as SNOMED CT concept
ids, matched exactly (:func:`medzs.data.vocab.parse_dx`; no substring matching).

Reyna MA, Sadr N, Perez Alday EA, et al. Will Two Do? Varying Dimensions in Electrocardiography: The
PhysioNet/Computing in Cardiology Challenge 2021. CinC 2021; doi:10.23919/CinC53138.2021.9662687. Data:
PhysioNet doi:10.13026/34va-7q14 (CC-BY-4.0).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from medzs.errors import SpecError

CITATION = ("Reyna MA, Sadr N, Perez Alday EA, et al. Will Two Do? Varying Dimensions in Electrocardiography: "
            "the PhysioNet/Computing in Cardiology Challenge 2021. CinC 2021, doi:10.23919/CinC53138.2021.9662687; "
            "PhysioNet doi:10.13026/34va-7q14 (CC-BY-4.0)")


class CinC2021Dataset:
    """Every ``.hea`` (with its ``.mat``) under ``root``, sorted by relative path; ids are the relative stems.

    Args:
        root: Folder (searched recursively).
        groups: ``"prefix"`` (default): the letters before the digits of the record name (``E`` Georgia,
            ``JS`` Chapman-Shaoxing-Ningbo, ``A`` CPSC, ``HR`` PTB-XL...) is the record's group; ``None``: no groups.

    Splits: ``all``, and one per group prefix (``E``, ``JS``...).

    Raises:
        SpecError: root missing or holding no header.
    """

    name = "cinc2021"
    modality = "ecg"
    citation = CITATION
    partial = True  # a local folder is a subset of the challenge data unless the user says otherwise

    def __init__(self, root: str | os.PathLike[str] | None = None, groups: str | None = "prefix") -> None:
        if root is None or not Path(root).is_dir():
            raise SpecError(f"dataset.root: {root} is not a folder (expected a PhysioNet/CinC 2021 folder of .hea "
                            "and .mat files)")
        self.root = Path(root)
        self.headers = sorted(p for p in self.root.rglob("*.hea") if not p.name.startswith("."))
        if not self.headers:
            raise SpecError(f"dataset.root: {self.root} holds no .hea header (expected PhysioNet/CinC 2021 records)")
        self.groups = groups
        self._codes: dict[str, list[str] | None] | None = None

    def _id(self, p: Path) -> str:
        return p.relative_to(self.root).with_suffix("").as_posix()

    def _group(self, p: Path) -> str | None:
        if self.groups != "prefix":
            return None
        stem = p.stem
        i = 0
        while i < len(stem) and not stem[i].isdigit():
            i += 1
        return stem[:i] or None

    def splits(self) -> list[str]:
        return ["all", *sorted({g for g in map(self._group, self.headers) if g})]

    def records(self, split: str = "all") -> list[Any]:
        from medzs.data.types import RecordRef

        if split not in self.splits():
            raise SpecError(f"dataset.split: expected one of {self.splits()}, got {split!r}")
        return [RecordRef(id=self._id(p), path=str(p), group=self._group(p), format="cinc")
                for p in self.headers if split == "all" or self._group(p) == split]

    def record_codes(self) -> dict[str, list[str] | None]:
        """``{record id: SNOMED CT codes of its # Dx: line, or None when it has none}``."""
        if self._codes is None:
            from medzs.data.vocab import parse_dx

            out: dict[str, list[str] | None] = {}
            for p in self.headers:
                dx = None
                with p.open(encoding="utf-8", errors="replace") as fh:
                    for line in fh:
                        s = line.strip()
                        if s.startswith("#") and s[1:].strip().lower().startswith("dx"):
                            dx = parse_dx(s, source=str(p))
                            break
                out[self._id(p)] = dx or None
            self._codes = out
        return self._codes

    def label_codes(self) -> list[str]:
        return sorted({c for codes in self.record_codes().values() if codes for c in codes})

    def labels(self, task: Any) -> Any:
        from medzs.data._labels import code_matrix

        return code_matrix(self.record_codes(), task, self.name, "snomed_ct")
