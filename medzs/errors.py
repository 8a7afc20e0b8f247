"""Exceptions raised by medzs.

Every message names the file or record, the field, and what was expected.
"""

from __future__ import annotations


class MedzsError(Exception):
    """Base class of all medzs errors."""


class RecordError(MedzsError, ValueError):
    """A record or file cannot be read or does not meet what the pipeline needs.

    The message names the record (or file), the field and what was expected.
    """


class SpecError(MedzsError, ValueError):
    """An input specification or model configuration is invalid."""


class KnowledgeBaseError(MedzsError, ValueError):
    """A knowledge-base entry is malformed or a knowledge-base operation failed."""


class PromptError(MedzsError, RuntimeError):
    """Prompt writing failed (e.g. an LLM answer could not be parsed after retries)."""
