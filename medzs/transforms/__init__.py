"""Preprocessing transforms, derived from encoder input specs (:mod:`medzs.spec`).

- :mod:`medzs.transforms.ecg`: lead reordering by name, resampling, band-pass, crop/pad, normalisation,
  :func:`~medzs.transforms.ecg.preprocess` and MONAI-style dict transforms.
- :mod:`medzs.transforms.image`: 2-D images and 3-D CT volumes (:func:`~medzs.transforms.image.preprocess_image`,
  :func:`~medzs.transforms.image.preprocess_volume` with MONAI), and their dict transforms.

Submodules are imported on first use; ``import medzs.transforms`` stays cheap.
"""

from __future__ import annotations

import importlib
from types import ModuleType

_SUBMODULES = ("ecg", "image")

__all__ = list(_SUBMODULES)


def __getattr__(name: str) -> ModuleType:
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
