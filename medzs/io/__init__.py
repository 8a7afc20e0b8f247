"""Record loaders: files -> medzs sample dicts (see docs/architecture.md).

- :func:`medzs.io.wfdb.read_wfdb`: WFDB records (PhysioNet).

Loaders import their format libraries lazily; ``import medzs.io`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {"read_wfdb": "medzs.io.wfdb"}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'medzs.io' has no attribute {name!r}")
