"""Class prompts: written from knowledge-base passages, cached with provenance.

- :mod:`medzs.prompts.types`: :class:`Prompt`, :class:`ClassPrompts`, the passage protocol, the writer base.
- :mod:`medzs.prompts.grounded`: :class:`GroundedWriter` (no LLM), :class:`NamesOnlyWriter` (control).
- :mod:`medzs.prompts.llm`: :class:`LLMWriter` (langchain-core chat model; imported lazily).
- :mod:`medzs.prompts.cache`: :class:`PromptCache`, :func:`build_task_prompts`.

Writers take a condition name and passages only; records and their metadata never reach them.
"""

from __future__ import annotations

from typing import Any

from medzs.prompts.cache import PromptCache, build_task_prompts, prompts_hash
from medzs.prompts.grounded import GroundedWriter, NamesOnlyWriter
from medzs.prompts.types import (
    ClassPrompts,
    PassageLike,
    Prompt,
    PromptWriter,
    TextPassage,
    passages_hash,
)

__all__ = [
    "ClassPrompts",
    "GroundedWriter",
    "LLMWriter",
    "NamesOnlyWriter",
    "PassageLike",
    "Prompt",
    "PromptCache",
    "PromptWriter",
    "TextPassage",
    "build_task_prompts",
    "passages_hash",
    "prompts_hash",
]


def __getattr__(name: str) -> Any:
    if name == "LLMWriter":  # langchain-core is only needed when the LLM writer is used
        from medzs.prompts.llm import LLMWriter

        return LLMWriter
    raise AttributeError(f"module 'medzs.prompts' has no attribute {name!r}")
