"""The dataset protocol: :class:`RecordRef` and :class:`Dataset` (registry and factory: :mod:`medzs.data.base`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

__all__ = ["Dataset", "RecordRef"]


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

    def labels(self, task: Any) -> pd.DataFrame:
        """1/0/NaN labels of a task (:class:`medzs.data.tasks.Task`), indexed by record id (str), one float
        column per class code, in the task's order.

        Raises:
            SpecError: a class code this dataset cannot label (the message lists the codes it can).
        """
        ...

    def label_codes(self) -> list[str]:
        """Every class code this dataset can label (for tasks built from the dataset's own labels)."""
        ...
