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
from pathlib import Path
from typing import Any

from medzs.data.types import Dataset, RecordRef
from medzs.errors import SpecError

__all__ = ["DATASETS", "Dataset", "RecordRef", "create_dataset", "list_datasets"]


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
