"""LLM-written, passage-grounded class descriptors.

:class:`LLMWriter` asks a chat model (anything implementing langchain-core's ``BaseChatModel``: a local
llama.cpp/Ollama model, an OpenAI-compatible endpoint, or a fake model in tests) for short visual/ signal
descriptors of a condition, *given only the condition name and the retrieved knowledge-base passages*, each
descriptor citing the ids of the passages it rests on (descriptor prompting: Menon & Vondrick, ICLR 2023,
arXiv:2210.07183; LLM-generated ECG class knowledge: Liu et al., MERL, ICML 2024, arXiv:2403.06659).

Privacy: the messages are built by :meth:`LLMWriter.build_messages` from the condition name and passage
texts only. The writer API never receives records, signals or their metadata.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Sequence
from typing import Any

from medzs.errors import PromptError
from medzs.prompts.grounded import clean_text, truncate_words
from medzs.prompts.types import Prompt, PromptWriter, canonical_order, check_passages

logger = logging.getLogger(__name__)

__all__ = ["HUMAN_TEMPLATE", "LLMWriter", "SYSTEM_PROMPT", "parse_descriptors"]

#: Bump when the prompt wording or the parsing rules change.
LLM_WRITER_VERSION = "1"

SYSTEM_PROMPT = (
    "You are a clinical knowledge assistant helping to build a zero-shot classifier. "
    "You write short, factual descriptions of how a condition appears in {modality_phrase}, "
    "using ONLY the knowledge-base passages you are given. Do not add facts that are not in the passages. "
    "Answer with a JSON array only, no other text."
)

HUMAN_TEMPLATE = (
    "Condition: {name}\n\n"
    "Knowledge-base passages (cite them by id):\n{passages}\n\n"
    "Write {n} distinct descriptions of what {name} looks like in {modality_phrase}. "
    "Each description is one sentence of at most {max_words} words and must be supported by the passages. "
    'Return a JSON array of objects of the form {{"text": "<description>", "passage_ids": ["<id>", ...]}}, '
    "where passage_ids lists the ids of the passages the description rests on."
)

_RETRY_MESSAGE = (
    "Your previous answer could not be used ({reason}). Reply with ONLY a JSON array of objects "
    '{{"text": ..., "passage_ids": [...]}} citing only the passage ids given above.'
)

_MODALITY_PHRASES = {"ecg": "a 12-lead ECG", "cxr": "a chest X-ray", "ct": "a CT scan"}
_FENCE = re.compile(r"```[a-zA-Z0-9_-]*")
_CHATTER = re.compile(
    r"^\s*(here (are|is)|sure\b|certainly\b|of course\b|below (are|is)|the following|as requested|"
    r"i (have|hope|can)|let me know)",
    re.IGNORECASE,
)
_TEXT_KEYS = ("text", "description", "descriptor", "attribute")
_ID_KEYS = ("passage_ids", "passages", "ids", "sources", "citations")


def _model_name(chat_model: Any) -> str:
    for attr in ("model_name", "model", "model_id", "deployment_name", "model_path"):
        value = getattr(chat_model, attr, None)
        if isinstance(value, str) and value:
            return value
    llm_type = getattr(chat_model, "_llm_type", None)
    if isinstance(llm_type, str) and llm_type:
        return llm_type
    return type(chat_model).__name__


def _first_json_list(answer: str) -> list | None:
    """Find the descriptor list in an answer.

    Code fences are stripped; the first JSON array holding an object or a string is used, or a JSON object
    whose only list value is such an array. Failing that (e.g. an array with a trailing comma), the decodable
    ``{"text": ...}`` objects found in the answer are collected. None when there is nothing.
    """
    text = _FENCE.sub("", answer)
    decoder = json.JSONDecoder()

    def usable(obj: Any) -> bool:
        return isinstance(obj, list) and any(isinstance(x, (dict, str)) for x in obj)

    loose: list[dict] = []
    end = -1
    for m in re.finditer(r"[\[{]", text):
        if m.start() < end:  # inside a value decoded already
            continue
        try:
            obj, stop = decoder.raw_decode(text, m.start())
        except ValueError:
            continue
        end = stop
        if usable(obj):
            return obj
        if isinstance(obj, dict):
            lists = [v for v in obj.values() if isinstance(v, list)]
            if not any(k in obj for k in _TEXT_KEYS) and len(lists) == 1 and usable(lists[0]):
                return lists[0]
            if any(k in obj for k in _TEXT_KEYS):
                loose.append(obj)
    return loose or None


def parse_descriptors(
    answer: str, known_ids: set[str], *, max_words: int = 40, require_citation: bool = True
) -> tuple[list[Prompt], list[dict], str | None]:
    """Parse an LLM answer into prompts.

    The first JSON array in the answer is used (code fences and chatter around it are tolerated; a JSON
    object whose only list value is the array is accepted too). Items are objects with ``text`` and
    ``passage_ids`` (plain strings are accepted as uncited text). An item is dropped when its text is empty or
    chatter ("Here are the attributes ..."), when it cites an unknown passage id, or (with
    ``require_citation``) when it cites none. Texts are shortened to ``max_words`` words; duplicates removed.

    Args:
        answer: The raw model answer.
        known_ids: Ids of the passages that were given to the model.
        max_words: Maximum words per descriptor.
        require_citation: Drop items that cite no passage.

    Returns:
        ``(prompts, dropped, error)``; ``error`` says why the answer is unusable (no JSON array, or no valid
        item), else None.
    """
    items = _first_json_list(answer)
    if items is None:
        return [], [], "no JSON array found in the answer"
    prompts: list[Prompt] = []
    dropped: list[dict] = []
    seen: set[str] = set()
    for item in items:
        if isinstance(item, str):
            text, ids = item, []
        elif isinstance(item, dict):
            text = next((item[k] for k in _TEXT_KEYS if isinstance(item.get(k), str)), "")
            raw_ids = next((item[k] for k in _ID_KEYS if k in item), [])
            ids = [raw_ids] if isinstance(raw_ids, str) else list(raw_ids) if isinstance(raw_ids, list) else []
        else:
            dropped.append({"text": str(item), "reason": "not an object with 'text'"})
            continue
        raw = " ".join(str(text).split())
        text = clean_text(raw)
        ids = [str(i).strip() for i in ids if str(i).strip()]
        if not text:
            dropped.append({"text": "", "reason": "empty text"})
        elif _CHATTER.match(text) or raw.endswith(":"):
            dropped.append({"text": raw, "reason": "chatter, not a descriptor"})
        elif unknown := sorted(set(ids) - known_ids):
            dropped.append({"text": text, "reason": f"unknown passage id(s): {unknown}"})
        elif require_citation and not ids:
            dropped.append({"text": text, "reason": "cites no passage"})
        elif text.lower() in seen:
            dropped.append({"text": text, "reason": "duplicate"})
        else:
            seen.add(text.lower())
            prompts.append(Prompt(clean_text(truncate_words(text, max_words)), tuple(dict.fromkeys(ids))))
    if not prompts:
        return [], dropped, f"no valid descriptor among {len(items)} item(s)"
    return prompts, dropped, None


class LLMWriter(PromptWriter):
    """Passage-grounded descriptors from a langchain-core chat model.

    Args:
        chat_model: A ``langchain_core.language_models.BaseChatModel`` (only ``invoke(messages)`` is used).
        n_descriptors: Number of descriptors to ask for (and keep at most).
        max_retries: Extra attempts after a malformed answer (or a model error).
        include_name: Put the bare class name first (citing no passage), as the grounded writer does.
        max_words: Maximum words per descriptor.
        require_citation: Drop descriptors that cite no passage.
        modality: ``"ecg"``, ``"cxr"`` or ``"ct"``; None derives it from the passages' entry ids.
        validator: A grounding validator (``validate(class_name, prompts, passages, entry_id=...) ->
            (kept, dropped)`` and ``config_hash``, e.g. :class:`medzs.prompts.validator.GroundingValidator`),
            run on each parsed answer; an answer none of whose descriptors it keeps is retried like a
            malformed one, and when the last attempt is unsupported too, only the condition name is kept (the
            rejected descriptors are in ``dropped`` with their reasons). None = no validation.

    Raises:
        ValueError: ``n_descriptors < 1`` or ``max_retries < 0``.
    """

    name = "llm"

    def __init__(
        self,
        chat_model: Any,
        n_descriptors: int = 5,
        max_retries: int = 2,
        *,
        include_name: bool = True,
        max_words: int = 40,
        require_citation: bool = True,
        modality: str | None = None,
        validator: Any | None = None,
    ):
        if n_descriptors < 1:
            raise ValueError(f"n_descriptors: expected >= 1, got {n_descriptors}")
        if max_retries < 0:
            raise ValueError(f"max_retries: expected >= 0, got {max_retries}")
        self.chat_model = chat_model
        self.n_descriptors = int(n_descriptors)
        self.max_retries = int(max_retries)
        self.include_name = bool(include_name)
        self.max_words = int(max_words)
        self.require_citation = bool(require_citation)
        self.modality = modality
        self.validator = validator

    @property
    def model(self) -> str:
        """The chat model's name (``model_name``/``model``/``model_id`` attribute, else its ``_llm_type``)."""
        return _model_name(self.chat_model)

    @property
    def template_hash(self) -> str:
        """SHA-256 of the message templates, the request settings and :data:`LLM_WRITER_VERSION`."""
        blob = json.dumps(
            {"writer": self.name, "version": LLM_WRITER_VERSION, "system": SYSTEM_PROMPT, "human": HUMAN_TEMPLATE,
             "retry": _RETRY_MESSAGE, "n": self.n_descriptors, "include_name": self.include_name,
             "max_words": self.max_words, "require_citation": self.require_citation, "modality": self.modality,
             **({"validator": self.validator.config_hash} if self.validator is not None else {})},
            sort_keys=True, separators=(",", ":"),
        )
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()

    def _modality_phrase(self, passages: Sequence[Any]) -> str:
        mod = self.modality
        if mod is None:
            prefixes = {str(getattr(p, "entry_id", "") or p.id).split(".", 1)[0] for p in passages}
            mod = prefixes.pop() if len(prefixes) == 1 else None
        return _MODALITY_PHRASES.get(mod or "", "a medical recording")

    def build_messages(self, class_name: str, passages: Sequence[Any]) -> list[Any]:
        """Build the chat messages: a system message and a human message.

        The human message contains the condition name and, one per line, ``[<passage id>] <passage text>``
        (passages in canonical order) — nothing else.

        Args:
            class_name: Condition name.
            passages: Retrieved passages.

        Returns:
            ``[SystemMessage, HumanMessage]`` (langchain-core messages).

        Raises:
            TypeError: an item of ``passages`` is not a passage (e.g. a record dict).
        """
        from langchain_core.messages import HumanMessage, SystemMessage

        passages = canonical_order(check_passages(passages))
        name = clean_text(class_name)
        phrase = self._modality_phrase(passages)
        lines = "\n".join(f"[{p.id}] {clean_text(p.text)}" for p in passages)
        return [
            SystemMessage(content=SYSTEM_PROMPT.format(modality_phrase=phrase)),
            HumanMessage(content=HUMAN_TEMPLATE.format(name=name, passages=lines, n=self.n_descriptors,
                                                       max_words=self.max_words, modality_phrase=phrase)),
        ]

    def write_with_report(
        self, class_name: str, passages: Sequence[Any], *, entry_id: str | None = None
    ) -> tuple[list[Prompt], list[dict]]:
        """Ask the model for descriptors, retrying on malformed answers.

        Args:
            class_name: Condition name.
            passages: Retrieved passages (at least one when citations are required).
            entry_id: Unused (all given passages may be cited).

        Returns:
            ``(prompts, dropped)``: the name prompt (if ``include_name``) then at most ``n_descriptors``
            descriptors; ``dropped`` lists rejected items with the reason.

        Raises:
            TypeError: an item of ``passages`` is not a passage.
            medzs.errors.PromptError: no passages (with citations required), or no usable answer after
                ``1 + max_retries`` attempts; the message names the condition.
        """
        from langchain_core.messages import AIMessage, HumanMessage

        passages = check_passages(passages)
        name = clean_text(class_name)
        if not name:
            raise ValueError("class_name: expected a non-empty condition name")
        if self.require_citation and not passages:
            raise PromptError(f"LLM writer: condition '{name}': no knowledge-base passages to ground descriptors on")
        known = {p.id for p in passages}
        messages = self.build_messages(name, passages)
        all_dropped: list[dict] = []
        reason = "no attempt"
        for attempt in range(1 + self.max_retries):
            try:
                reply = self.chat_model.invoke(messages)
            except Exception as exc:  # a remote model may fail transiently; retry, then report
                reason = f"model error: {type(exc).__name__}: {exc}"
                logger.warning("LLM writer: condition '%s', attempt %d: %s", name, attempt + 1, reason)
                continue
            content = reply.content if hasattr(reply, "content") else reply
            if isinstance(content, list):  # content blocks
                content = "".join(b if isinstance(b, str) else str(b.get("text", "")) for b in content)
            content = str(content)
            prompts, dropped, error = parse_descriptors(
                content, known, max_words=self.max_words, require_citation=self.require_citation
            )
            all_dropped.extend(dropped)
            if error is None and self.validator is not None:
                prompts, rejected = self.validator.validate(name, prompts, passages, entry_id=entry_id)
                all_dropped.extend(rejected)
                if not prompts:
                    error = "no descriptor is supported by the cited passages: " + "; ".join(
                        f"{d['text']!r}: {d['reason']}" for d in rejected[:3])
                    if attempt == self.max_retries:  # well-formed but unsupported: dropped, and logged as such
                        logger.warning("LLM writer: condition '%s': no supported descriptor after %d attempt(s); "
                                       "keeping the condition name only", name, attempt + 1)
                        return ([Prompt(name)] if self.include_name else []), all_dropped
            if error is None:
                if len(prompts) < self.n_descriptors:
                    logger.info("LLM writer: condition '%s': %d of %d descriptors usable", name, len(prompts),
                                self.n_descriptors)
                prompts = prompts[: self.n_descriptors]
                if self.include_name and name.lower() not in {p.text.lower() for p in prompts}:
                    prompts = [Prompt(name), *prompts]
                return prompts, all_dropped
            reason = error
            logger.warning("LLM writer: condition '%s', attempt %d: unusable answer (%s)", name, attempt + 1, error)
            retry = HumanMessage(content=_RETRY_MESSAGE.format(reason=error))
            messages = [*messages, AIMessage(content=content), retry]
        raise PromptError(
            f"LLM writer ({self.model}): condition '{name}': no usable descriptors after "
            f"{1 + self.max_retries} attempt(s): {reason}"
        )
