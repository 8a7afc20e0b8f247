"""Label-matrix helpers shared by the dataset adapters: codes per record -> 1/0/NaN over a task's classes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from medzs.errors import SpecError


def code_matrix(record_codes: Mapping[str, Sequence[str] | None], task: Any, dataset: str, system: str) -> Any:
    """``{record id: codes or None}`` -> DataFrame (index record id, one float column per class of ``task``).

    A record is 1 for a class when it carries any of the class's ``task.label_codes`` (default: the class code),
    exactly; 0 when it has codes but none of them; NaN when its codes are unknown (None).

    Raises:
        SpecError: the task's code system is not the dataset's.
    """
    import pandas as pd

    task_system = getattr(task, "system", "")
    if task_system != system:
        raise SpecError(f"task {task.name!r}: its classes are {task_system or 'PTB-XL label-set'} codes, but dataset "
                        f"{dataset} labels {system} codes (build the task with task.system: {system})")
    classes = list(task.classes)
    wanted = [set(task.label_codes.get(c) or (c,)) for c in classes]
    ids = list(record_codes)
    y = np.full((len(ids), len(classes)), np.nan)
    for i, rid in enumerate(ids):
        codes = record_codes[rid]
        if codes is None:
            continue
        have = set(codes)
        y[i] = [1.0 if have & w else 0.0 for w in wanted]
    return pd.DataFrame(y, index=ids, columns=classes)
