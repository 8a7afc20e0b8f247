"""Datasets and tasks.

- :mod:`medzs.data.ptbxl`: PTB-XL in the PhysioNet layout (:class:`~medzs.data.ptbxl.PTBXL`, labels, splits,
  :func:`~medzs.data.ptbxl.download`).
- :mod:`medzs.data.tasks`: :class:`~medzs.data.tasks.Task` and :func:`~medzs.data.tasks.get_task`.

Names are imported lazily so that ``import medzs.data`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "PTBXL": "medzs.data.ptbxl",
    "default_root": "medzs.data.ptbxl",
    "download": "medzs.data.ptbxl",
    "relabel": "medzs.data.ptbxl",
    "Task": "medzs.data.tasks",
    "TASKS": "medzs.data.tasks",
    "get_task": "medzs.data.tasks",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'medzs.data' has no attribute {name!r}")
