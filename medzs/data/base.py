"""The dataset protocol every dataset adapter follows, and the dataset registry used by pipelines.

A dataset is an ordered list of records (:class:`RecordRef`: an id, the file to read, an optional patient or
group id for grouped splits) plus a 1/0/NaN label matrix over a task's class codes (torchxrayvision style:
1 = present, 0 = absent, NaN = not labelled / uncertain), with named splits.

Pipelines name a dataset as ``dataset: {name: ..., root: ..., split: ...}``; :func:`create_dataset` builds it
from :data:`DATASETS` (adapters are imported only when used).

Example:
    >>> from medzs.data.base import create_dataset  # doctest: +SKIP
    >>> ds = create_dataset("cinc2021", root="../shared/data/ecg/cinc-samples/cinc2021_georgia_chapman")
    >>> refs = ds.records("all"); y = ds.labels(task)  # (N, C) DataFrame indexed by record id
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from medzs.errors import SpecError

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

__all__ = ["DATASETS", "Dataset", "RecordRef", "create_dataset", "list_datasets"]


@dataclass(frozen=True)
class RecordRef:
    """One record of a dataset.

    Attributes:
        id: Record id, unique within the dataset (the row index of :meth:`Dataset.labels`); never a patient
            identifier.
        path: File to read (absolute; a WFDB record's ``.hea``, a ``.mat``, a DICOM file or series folder, an
            image...).
        group: Patient or group id for grouped splits (records of one group never straddle two splits), or None.
        format: Reader format name when known (skips content detection), or None.
        read_kwargs: Extra keyword arguments for the reader (e.g. ``{"fs": 100}``).
    """

    id: str
    path: str
    group: str | None = None
    format: str | None = None
    read_kwargs: Mapping[str, Any] = field(default_factory=dict, hash=False)


@runtime_checkable
class Dataset(Protocol):
    """What every dataset adapter provides.

    Attributes:
        name: Registry name (``ptbxl``, ``cinc2021``, ``cpsc2018``, ``folder``, ...).
        modality: ``"ecg"``, ``"cxr"`` or ``"ct"``.
        root: Folder the dataset was read from.
        citation: How to cite the data (shown in reports).
        partial: True when the local copy is known to be a partial mirror (reports say so).
    """

    name: str
    modality: str
    root: Path
    citation: str
    partial: bool

    def splits(self) -> list[str]:
        """Names accepted by :meth:`records` (always includes ``"all"``)."""
        ...

    def records(self, split: str = "all") -> list[RecordRef]:
        """The records of a split, in a deterministic order.

        Raises:
            SpecError: unknown split name.
        """
        ...

    def labels(self, classes: Sequence[str]) -> pd.DataFrame:
        """1/0/NaN labels, indexed by record id (str), one float column per class code, in that order.

        Raises:
            SpecError: a class code this dataset cannot label (the message lists the codes it can).
        """
        ...

    def label_codes(self) -> list[str]:
        """Every class code this dataset can label (for tasks built from the dataset's own labels)."""
        ...


#: Dataset name -> ``"module:Class"``; the class is called as ``Class(root=..., **options)``.
DATASETS: dict[str, str] = {
    "ptbxl": "medzs.data.ptbxl:PTBXLDataset",
    "cinc2021": "medzs.data.cinc2021:CinC2021Dataset",
    "cpsc2018": "medzs.data.cpsc2018:CPSC2018Dataset",
    "folder": "medzs.data.folder:FolderDataset",
    # imaging (medzs/data/imaging.py)
    "kermany": "medzs.data.imaging:KermanyDataset",
    "covid-ct": "medzs.data.imaging:CovidCTDataset",
    "chexpert": "medzs.data.imaging:CheXpertDataset",
    "chestxray14": "medzs.data.imaging:ChestXray14Dataset",
    "rsna-pneumonia": "medzs.data.imaging:RSNAPneumoniaDataset",
    "image-folder": "medzs.data.imaging:ImageFolderDataset",
}


def list_datasets() -> list[str]:
    """Registered dataset names, sorted."""
    return sorted(DATASETS)


def create_dataset(name: str, root: str | os.PathLike[str] | None = None, **options: Any) -> Dataset:
    """Build a registered dataset adapter.

    Args:
        name: Dataset name (:func:`list_datasets`).
        root: Folder (or file, for ``folder`` manifests) to read; None: the adapter's default (env var or the
            shared mirror next to the checkout), where it has one.
        **options: Adapter options (e.g. ``labels=...`` for ``folder``).

    Raises:
        SpecError: unknown name, or the adapter refused the root/options (message names the field).
    """
    if name not in DATASETS:
        raise SpecError(f"dataset.name: expected one of {list_datasets()}, got {name!r}")
    module, cls = DATASETS[name].split(":")
    factory = getattr(importlib.import_module(module), cls)
    try:
        return factory(root=Path(root) if root is not None else None, **options)
    except TypeError as exc:
        raise SpecError(f"dataset {name}: unexpected options {sorted(options)} ({exc})") from None
