"""Data types shared by the prompt writers, the prompt cache and the scorer.

A *passage* is any object with the attributes of :class:`PassageLike` (``medzs.knowledge.kb.Passage`` is one;
:class:`TextPassage` is a minimal stand-alone one). Writers turn a condition name plus its retrieved passages
into :class:`Prompt` objects; each prompt records the ids of the passages its words come from, so every
class prompt can be traced back to the knowledge base.

Writers never receive records, signals or their metadata: the writer API takes a condition name and passages
only, so patient data cannot reach an LLM through it.
"""

from __future__ import annotations

import abc
import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

__all__ = [
    "ClassPrompts",
    "PassageLike",
    "Prompt",
    "PromptWriter",
    "TextPassage",
    "canonical_order",
    "check_passages",
    "passages_hash",
]

#: Rank of a passage field in the canonical passage order.
_FIELD_RANK = {"definition": 0, "criterion": 1, "synonyms": 2}
_TRAILING_INT = re.compile(r"(\d+)$")


@runtime_checkable
class PassageLike(Protocol):
    """What medzs needs from a retrieved knowledge-base passage (duck-typed).

    Attributes:
        id: Passage id, e.g. ``"ecg.scp.CLBBB#criterion-0"`` or ``"ecg.scp.CLBBB#definition"``.
        entry_id: Knowledge-base entry the passage belongs to, e.g. ``"ecg.scp.CLBBB"``.
        text: The passage text (the project's own words).
        field: ``"definition"``, ``"criterion"`` or ``"synonyms"``.
        sources: Bibliography ids (``knowledge/sources.yaml``) the passage rests on.
        score: Retrieval score, or None.
    """

    id: str
    entry_id: str
    text: str
    field: str
    sources: tuple[str, ...]
    score: float | None


@dataclass(frozen=True)
class TextPassage:
    """A minimal passage (implements :class:`PassageLike`); the knowledge base's own is
    ``medzs.knowledge.kb.Passage`` (``medzs.knowledge.kb.passages_from_entry`` builds them from an entry).

    Attributes:
        id: Passage id (``"<entry id>#definition"``, ``"<entry id>#criterion-<i>"``, ``"<entry id>#synonyms"``).
        entry_id: Knowledge-base entry id.
        text: Passage text.
        field: ``"definition"``, ``"criterion"`` or ``"synonyms"``.
        sources: Bibliography ids.
        score: Retrieval score, or None.
    """

    id: str
    entry_id: str
    text: str
    field: str
    sources: tuple[str, ...] = ()
    score: float | None = None

    @property
    def sha256(self) -> str:
        """SHA-256 (hex) of the passage id, field and text."""
        return _sha256_json([self.id, self.field, self.text])


def check_passages(passages: Iterable[Any]) -> list[Any]:
    """Check that every item looks like a passage (has string ``id`` and ``text`` attributes).

    This keeps records (plain dicts with ``signal``/``meta``) from being handed to a writer by mistake.

    Args:
        passages: Candidate passages.

    Returns:
        The passages as a list.

    Raises:
        TypeError: an item lacks a string ``id`` or ``text`` attribute (the message names its index and type).
    """
    out = list(passages)
    for i, p in enumerate(out):
        if not (isinstance(getattr(p, "id", None), str) and isinstance(getattr(p, "text", None), str)):
            raise TypeError(
                f"passages[{i}]: expected a knowledge-base passage with string 'id' and 'text' attributes, "
                f"got {type(p).__name__}"
            )
    return out


def _sort_key(p: Any) -> tuple[int, int, str]:
    rank = _FIELD_RANK.get(str(getattr(p, "field", "")), len(_FIELD_RANK))
    m = _TRAILING_INT.search(p.id)
    return rank, int(m.group(1)) if m else -1, p.id


def canonical_order(passages: Iterable[Any]) -> list[Any]:
    """Sort passages deterministically: definition, criteria by number, synonyms, others; then by id.

    Retrieval order depends on similarity scores; writers use this order instead so that the same passages
    always give the same prompts.
    """
    return sorted(check_passages(passages), key=_sort_key)


def _sha256_json(obj: Any) -> str:
    blob = json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def passages_hash(passages: Iterable[Any]) -> str:
    """SHA-256 (hex) of a set of passages: ids, fields and texts, order-independent.

    Retrieval scores and sources are not part of the hash; a changed passage text (or an added/removed
    passage) changes it.
    """
    items = sorted([p.id, str(getattr(p, "field", "")), p.text] for p in check_passages(passages))
    return _sha256_json(items)


@dataclass(frozen=True)
class Prompt:
    """One class prompt.

    Attributes:
        text: The prompt text given to the text encoder.
        passage_ids: Ids of the knowledge-base passages the text is taken from (empty for the bare name).
    """

    text: str
    passage_ids: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready mapping."""
        return {"text": self.text, "passage_ids": list(self.passage_ids)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Prompt:
        """Inverse of :meth:`to_dict`."""
        return cls(str(d["text"]), tuple(str(x) for x in d.get("passage_ids", ())))


@dataclass(frozen=True)
class ClassPrompts:
    """The prompts of one class, with their provenance.

    Attributes:
        class_code: Task class code, e.g. ``"CLBBB"``.
        entry_id: Knowledge-base entry id, e.g. ``"ecg.scp.CLBBB"``.
        class_name: Condition name the prompts were written for.
        prompts: The prompts (at least one for a usable class).
        writer: Writer name (``"grounded"``, ``"names"``, ``"llm"``).
        model: LLM name for LLM-written prompts, else None.
        dropped: Items the writer discarded, each ``{"text" or "passage_id": ..., "reason": ...}``.
        template_hash: The writer's template hash (see the writers).
        passages_hash: :func:`passages_hash` of the passages the prompts were written from.
    """

    class_code: str
    entry_id: str
    class_name: str
    prompts: tuple[Prompt, ...]
    writer: str = "unknown"
    model: str | None = None
    dropped: tuple[dict, ...] = ()
    template_hash: str = ""
    passages_hash: str = ""

    @property
    def texts(self) -> list[str]:
        """The prompt texts, in order."""
        return [p.text for p in self.prompts]

    @property
    def passage_ids(self) -> tuple[str, ...]:
        """Sorted ids of all passages cited by the prompts."""
        return tuple(sorted({i for p in self.prompts for i in p.passage_ids}))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready mapping (round-trips through :meth:`from_dict`)."""
        return {
            "class_code": self.class_code,
            "entry_id": self.entry_id,
            "class_name": self.class_name,
            "prompts": [p.to_dict() for p in self.prompts],
            "writer": self.writer,
            "model": self.model,
            "dropped": [dict(d) for d in self.dropped],
            "template_hash": self.template_hash,
            "passages_hash": self.passages_hash,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ClassPrompts:
        """Inverse of :meth:`to_dict` (extra keys, e.g. cache provenance, are ignored)."""
        return cls(
            class_code=str(d["class_code"]),
            entry_id=str(d["entry_id"]),
            class_name=str(d.get("class_name", "")),
            prompts=tuple(Prompt.from_dict(p) for p in d.get("prompts", ())),
            writer=str(d.get("writer", "unknown")),
            model=None if d.get("model") is None else str(d["model"]),
            dropped=tuple(dict(x) for x in d.get("dropped", ())),
            template_hash=str(d.get("template_hash", "")),
            passages_hash=str(d.get("passages_hash", "")),
        )

    def to_json(self) -> str:
        """Deterministic JSON (sorted keys, 2-space indent)."""
        return json.dumps(self.to_dict(), sort_keys=True, indent=2, ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> ClassPrompts:
        """Inverse of :meth:`to_json`."""
        return cls.from_dict(json.loads(text))


class PromptWriter(abc.ABC):
    """Base class of prompt writers.

    A writer turns ``(class_name, passages)`` into prompts. It never receives records or their metadata.
    Subclasses implement :meth:`write_with_report` and :attr:`template_hash`; :attr:`name` and :attr:`model`
    identify the writer in the prompt cache.
    """

    #: Writer name recorded in provenance.
    name: str = "writer"

    @property
    def model(self) -> str | None:
        """Name of the language model behind the writer, or None for rule-based writers."""
        return None

    @property
    @abc.abstractmethod
    def template_hash(self) -> str:
        """SHA-256 (hex) of everything besides the inputs that determines the output (templates, version)."""

    @abc.abstractmethod
    def write_with_report(
        self, class_name: str, passages: Sequence[Any], *, entry_id: str | None = None
    ) -> tuple[list[Prompt], list[dict]]:
        """Write prompts and report what was discarded.

        Args:
            class_name: Condition name (e.g. ``"complete left bundle branch block"``).
            passages: Retrieved passages (:class:`PassageLike`).
            entry_id: The class's knowledge-base entry id, when known.

        Returns:
            ``(prompts, dropped)``.
        """

    def write(self, class_name: str, passages: Sequence[Any], *, entry_id: str | None = None) -> list[Prompt]:
        """Write the prompts of one condition.

        Args:
            class_name: Condition name.
            passages: Retrieved passages (:class:`PassageLike`).
            entry_id: The class's knowledge-base entry id, when known.

        Returns:
            The prompts.

        Raises:
            TypeError: an item of ``passages`` is not a passage.
            medzs.errors.PromptError: the writer could not produce prompts.
        """
        return self.write_with_report(class_name, passages, entry_id=entry_id)[0]

    def write_class(self, class_code: str, entry_id: str, class_name: str, passages: Sequence[Any]) -> ClassPrompts:
        """Write the prompts of one task class and wrap them with their provenance.

        Raises:
            TypeError: an item of ``passages`` is not a passage.
            medzs.errors.PromptError: the writer could not produce prompts.
        """
        passages = check_passages(passages)
        prompts, dropped = self.write_with_report(class_name, passages, entry_id=entry_id)
        return ClassPrompts(
            class_code=class_code,
            entry_id=entry_id,
            class_name=class_name,
            prompts=tuple(prompts),
            writer=self.name,
            model=self.model,
            dropped=tuple(dropped),
            template_hash=self.template_hash,
            passages_hash=passages_hash(passages),
        )

