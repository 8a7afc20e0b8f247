"""Deterministic, LLM-free prompt writers.

:class:`GroundedWriter` composes descriptive class prompts *only* from the condition name and the retrieved
knowledge-base passages (definition sentences, criteria, synonyms), in the spirit of knowledge-grounded
zero-shot ECG classification (MERL: Liu et al., "Zero-Shot ECG Classification with Multimodal Learning and
Test-time Clinical Knowledge Enhancement", ICML 2024, arXiv:2403.06659) and descriptor-based CLIP prompting
(Menon & Vondrick, "Visual Classification via Description from Large Language Models", ICLR 2023,
arXiv:2210.07183) — without a language model, so every word of a prompt can be traced to a passage.

:class:`NamesOnlyWriter` writes only the class name (the CLIP baseline; Radford et al. 2021, arXiv:2103.00020)
and serves as a control.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Mapping, Sequence
from typing import Any

from medzs.prompts.types import Prompt, PromptWriter, canonical_order, check_passages

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_TEMPLATE",
    "GroundedWriter",
    "NamesOnlyWriter",
    "clean_text",
    "lower_first",
    "split_sentences",
    "split_synonyms",
    "strip_name_prefix",
    "truncate_words",
]

#: Bump when the composition logic changes (invalidates cached prompts through ``template_hash``).
GROUNDED_VERSION = "2"

#: Default templates of :class:`GroundedWriter`. ``{name}`` is the class name, ``{text}`` the passage text.
DEFAULT_TEMPLATE: dict[str, str] = {
    "name": "{name}",
    "definition": "{name}: {text}",
    "criterion": "{name}, with {text}",
    "synonym": "{text}",
}

# Abbreviations after which a full stop does not end a sentence.
# Proper names that open ECG criteria and keep their capital.
_EPONYMS = frozenset({
    "bazett", "brugada", "cabrera", "cornell", "epsilon", "fridericia", "ganong", "lewis", "lown", "lyon",
    "mobitz", "osborn", "romhilt", "sgarbossa", "smith", "sokolow", "wellens", "wenckebach", "wolff",
})
_ABBREVIATIONS = ("e.g.", "i.e.", "etc.", "vs.", "approx.", "cf.", "fig.", "no.", "dr.", "al.", "ca.", "resp.")
_SENT_SPLIT = re.compile(r"(?<=[.!?])\s+(?=[\"'(\[]?[A-Z0-9])")
_WS = re.compile(r"\s+")
_NAME_PAREN = re.compile(r"^([^()]+?)\s*\((.+)\)\s*\.?$")
_SYN_PREFIX = re.compile(r"^\s*(synonyms?|also (known as|called))\s*[:\-]?\s*", re.IGNORECASE)


def clean_text(text: str) -> str:
    """Collapse whitespace and strip trailing sentence punctuation (``" .;,:"``)."""
    return _WS.sub(" ", str(text)).strip().rstrip(" .;,:")


def split_sentences(text: str) -> list[str]:
    """Split prose into sentences (``.``, ``!``, ``?`` followed by a capital or a digit).

    Common abbreviations (``e.g.``, ``i.e.``, ``vs.`` ...) and decimal numbers (``0.1 mV``) do not end a
    sentence. Whitespace is collapsed; empty pieces are dropped.
    """
    text = _WS.sub(" ", str(text)).strip()
    if not text:
        return []
    out: list[str] = []
    for piece in _SENT_SPLIT.split(text):
        if out and out[-1].lower().endswith(_ABBREVIATIONS):
            out[-1] = f"{out[-1]} {piece}"
        else:
            out.append(piece)
    return [s.strip() for s in out if s.strip()]


def truncate_words(text: str, max_words: int) -> str:
    """Shorten ``text`` to at most ``max_words`` words, cutting at a sentence boundary when possible.

    Whole sentences are kept while they fit; when even the first sentence is longer than ``max_words`` it is
    cut after ``max_words`` words (trailing ``,;:`` removed).

    Args:
        text: Prose.
        max_words: Maximum number of whitespace-separated words (>= 1).

    Returns:
        The (possibly) shortened text.

    Raises:
        ValueError: ``max_words < 1``.
    """
    if max_words < 1:
        raise ValueError(f"max_words: expected >= 1, got {max_words}")
    text = _WS.sub(" ", str(text)).strip()
    if len(text.split()) <= max_words:
        return text
    kept: list[str] = []
    n = 0
    for sent in split_sentences(text):
        w = len(sent.split())
        if n + w > max_words:
            break
        kept.append(sent)
        n += w
    if kept:
        return " ".join(kept)
    return " ".join(text.split()[:max_words]).rstrip(",;:")


def lower_first(text: str) -> str:
    """Lower-case the first character unless the first word is an acronym or a lead name.

    ``"Broad R waves"`` -> ``"broad R waves"``, ``"A block"`` -> ``"a block"``; ``"QRS duration"``,
    ``"V1 ..."``, ``"ST elevation"``, ``"T wave inversion"``, ``"Mobitz type I"`` (eponyms) unchanged.
    """
    if not text:
        return text
    first = text.split(" ", 1)[0].strip(",.;:()\"'")
    if any(c.isupper() for c in first[1:]) or any(c.isdigit() for c in first):
        return text
    head = first.split("-", 1)[0]
    if len(head) == 1 and head.isupper() and first != "A":  # waves/leads: "T wave", "T-wave", "Q waves", "I, aVL"
        return text
    if head.lower() in _EPONYMS:
        return text
    return text[0].lower() + text[1:]


def split_synonyms(text: str) -> list[str]:
    """Split a ``"synonyms"`` passage into names.

    The knowledge base writes ``"<name> (<synonym>; <synonym>)"`` (``medzs.knowledge.kb``): this gives
    ``[<name>, <synonym>, <synonym>]``. Plain lists are split on ``;``, ``,``, ``|`` and newlines; an optional
    ``"Synonyms:"``/``"Also known as"`` prefix is removed.
    """
    text = _SYN_PREFIX.sub("", " ".join(str(text).split()))
    m = _NAME_PAREN.match(text)
    head: list[str] = []
    if m:
        head, text = [clean_text(m.group(1))], m.group(2)
    parts = [clean_text(s) for s in re.split(r"[;,|\n]", text)]
    return [s for s in head + parts if s]


def strip_name_prefix(text: str, names: Sequence[str]) -> str:
    """Remove a leading ``"<name>:"`` (case-insensitive) for any of ``names``.

    Knowledge-base passages are stored as ``"<entry name>: <definition or criterion>"`` so that they can be
    retrieved on their own (``medzs.knowledge.kb``); the writer adds the class name itself.
    """
    t = " ".join(str(text).split())
    for name in sorted({" ".join(str(n).split()) for n in names if n}, key=len, reverse=True):
        if t.lower().startswith(name.lower()) and t[len(name):].lstrip().startswith(":"):
            return t[len(name):].lstrip()[1:].strip()
    return t


def _hash(obj: Any) -> str:
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class GroundedWriter(PromptWriter):
    """Compose class prompts from the class name and retrieved passages only (no language model).

    Prompts, in this order (deterministic; passages are taken in
    :func:`~medzs.prompts.types.canonical_order`, duplicates removed case-insensitively):

    1. the class name (``template["name"]``), citing no passage;
    2. one prompt per definition sentence, ``"<name>: <sentence>"``;
    3. one prompt per criterion, ``"<name>, with <criterion>"``;
    4. one prompt per synonym, ``"<synonym>"``.

    A leading ``"<name>:"`` (the knowledge base's passage layout) is removed from definition and criterion
    passages. Passage text is whitespace-normalised, its first letter lower-cased (acronyms kept), its final full stop
    removed, and each prompt is kept to ``max_words`` words (cut at sentence boundaries) so it suits a
    sentence encoder. Each prompt records the id of the passage it uses.

    Args:
        max_prompts: Maximum number of prompts per class (>= 1); later prompts in the order above are
            dropped first (and reported in ``dropped``).
        template: Overrides of :data:`DEFAULT_TEMPLATE` (keys ``name``, ``definition``, ``criterion``,
            ``synonym``; placeholders ``{name}`` and ``{text}``).
        max_words: Maximum words per prompt (default 40).

    Raises:
        ValueError: unknown template keys, ``max_prompts < 1`` or ``max_words < 1``.
    """

    name = "grounded"

    def __init__(self, max_prompts: int = 16, template: Mapping[str, str] | None = None, max_words: int = 40):
        if max_prompts < 1:
            raise ValueError(f"max_prompts: expected >= 1, got {max_prompts}")
        if max_words < 1:
            raise ValueError(f"max_words: expected >= 1, got {max_words}")
        tpl = dict(DEFAULT_TEMPLATE)
        for key, value in (template or {}).items():
            if key not in DEFAULT_TEMPLATE:
                raise ValueError(f"template: unknown key {key!r}, expected one of {sorted(DEFAULT_TEMPLATE)}")
            tpl[key] = str(value)
        self.max_prompts = int(max_prompts)
        self.max_words = int(max_words)
        self.template = tpl

    @property
    def template_hash(self) -> str:
        """SHA-256 of the templates, limits and :data:`GROUNDED_VERSION`."""
        return _hash({"writer": self.name, "version": GROUNDED_VERSION, "template": self.template,
                      "max_prompts": self.max_prompts, "max_words": self.max_words})

    def _fill(self, key: str, name: str, text: str = "") -> str:
        return clean_text(truncate_words(self.template[key].format(name=name, text=text), self.max_words))

    def write_with_report(
        self, class_name: str, passages: Sequence[Any], *, entry_id: str | None = None
    ) -> tuple[list[Prompt], list[dict]]:
        """Write the prompts of one condition (see the class docstring).

        Args:
            class_name: Condition name.
            passages: Retrieved passages.
            entry_id: When given, passages of other entries are not used (reported in ``dropped``).

        Returns:
            ``(prompts, dropped)``; ``dropped`` lists ``{"passage_id" or "text", "reason"}``.

        Raises:
            TypeError: an item of ``passages`` is not a passage.
            ValueError: ``class_name`` is empty.
        """
        name = lower_first(clean_text(class_name))
        if not name:
            raise ValueError("class_name: expected a non-empty condition name")
        candidates: list[Prompt] = [Prompt(self._fill("name", name))]
        dropped: list[dict] = []
        for p in canonical_order(passages):
            pe = getattr(p, "entry_id", None)
            if entry_id is not None and pe is not None and pe != entry_id:
                dropped.append({"passage_id": p.id, "reason": f"passage of another entry ({pe})"})
                continue
            fld = str(getattr(p, "field", ""))
            meta = getattr(p, "metadata", None)
            body = strip_name_prefix(p.text, [class_name, meta.get("name", "") if isinstance(meta, Mapping) else ""])
            if fld == "definition":
                for sent in split_sentences(body):
                    candidates.append(Prompt(self._fill("definition", name, lower_first(clean_text(sent))), (p.id,)))
            elif fld == "criterion":
                text = lower_first(clean_text(body))
                if text:
                    candidates.append(Prompt(self._fill("criterion", name, text), (p.id,)))
            elif fld == "synonyms":
                for syn in split_synonyms(p.text):
                    candidates.append(Prompt(self._fill("synonym", name, syn), (p.id,)))
            else:
                dropped.append({"passage_id": p.id, "reason": f"unsupported field {fld!r}"})
        prompts: list[Prompt] = []
        seen: set[str] = set()
        for c in candidates:
            key = c.text.lower()
            if not c.text or key in seen:
                continue
            if len(prompts) >= self.max_prompts:
                dropped.append({"text": c.text, "reason": f"max_prompts={self.max_prompts} reached"})
                continue
            seen.add(key)
            prompts.append(c)
        logger.debug("grounded writer: %s -> %d prompts (%d dropped)", name, len(prompts), len(dropped))
        return prompts, dropped


class NamesOnlyWriter(PromptWriter):
    """Write only the class name (optionally inside a template): the no-knowledge control.

    Args:
        template: Format string with ``{name}``, e.g. ``"{name}"`` (default) or ``"an ECG showing {name}"``.

    Raises:
        ValueError: the template lacks ``{name}``.
    """

    name = "names"

    def __init__(self, template: str = "{name}"):
        if "{name}" not in template:
            raise ValueError(f"template: expected a '{{name}}' placeholder, got {template!r}")
        self.template = str(template)

    @property
    def template_hash(self) -> str:
        """SHA-256 of the template and :data:`GROUNDED_VERSION`."""
        return _hash({"writer": self.name, "version": GROUNDED_VERSION, "template": self.template})

    def write_with_report(
        self, class_name: str, passages: Sequence[Any] = (), *, entry_id: str | None = None
    ) -> tuple[list[Prompt], list[dict]]:
        """Return one prompt, the class name; passages are ignored.

        Raises:
            TypeError: an item of ``passages`` is not a passage.
            ValueError: ``class_name`` is empty.
        """
        check_passages(passages)
        name = clean_text(class_name)
        if not name:
            raise ValueError("class_name: expected a non-empty condition name")
        return [Prompt(self.template.format(name=name))], []
