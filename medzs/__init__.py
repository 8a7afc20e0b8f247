"""medzs: zero-shot classification of medical signals and images with clinical-knowledge grounding.

Importing :mod:`medzs` is cheap: heavy dependencies (torch, chromadb, sentence-transformers, neurokit2,
pydicom, langchain) are imported only by the functions that need them.
"""

from __future__ import annotations

import logging

__version__ = "0.1.0"

logging.getLogger(__name__).addHandler(logging.NullHandler())

__all__ = ["__version__"]
