"""Chat-model backends for :class:`~medzs.prompts.llm.LLMWriter`, chosen by one setting string.

=====================================  ==========================================================================
setting                                backend
=====================================  ==========================================================================
``none`` (or empty / None)             no LLM: the deterministic grounded writer is used
``openai:MODEL@BASE_URL``              any OpenAI-compatible endpoint (vLLM, llama.cpp server, Ollama's ``/v1``,
                                       a hospital-hosted model) through ``langchain-openai`` ``ChatOpenAI``;
                                       ``openai:MODEL`` alone uses the library default (``OPENAI_BASE_URL`` or
                                       api.openai.com)
``ollama:MODEL[@URL]``                 Ollama's native API through ``langchain-ollama`` ``ChatOllama``
                                       (default URL: ``OLLAMA_HOST`` or http://127.0.0.1:11434)
``gguf:PATH``                          a local GGUF file run offline in-process by ``xllamacpp``
                                       (:class:`~medzs.prompts.gguf.ChatGGUF`)
=====================================  ==========================================================================

Every backend is asked for temperature 0 and a fixed seed where it supports them. The OpenAI key comes from
``MEDZS_LLM_API_KEY``, else ``OPENAI_API_KEY``, else a dummy value (local servers do not check it). The GGUF and
Ollama backends constrain decoding to :data:`DESCRIPTOR_SCHEMA`; OpenAI-compatible servers differ in what
structured-output options they accept, so their answers are parsed robustly instead (and retried when
malformed, see :class:`~medzs.prompts.llm.LLMWriter`).

The backend packages are imported only when their backend is built.

Example:
    >>> parse_llm_setting("openai:qwen2.5-1.5b@http://127.0.0.1:8000/v1")
    LLMSetting(kind='openai', model='qwen2.5-1.5b', base_url='http://127.0.0.1:8000/v1', path=None)
    >>> parse_llm_setting("gguf:~/models/q.gguf").kind
    'gguf'
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medzs.errors import PromptError

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_SEED",
    "DESCRIPTOR_SCHEMA",
    "LLMSetting",
    "make_chat_model",
    "make_llm_writer",
    "model_slug",
    "parse_llm_setting",
]

#: Seed passed to every backend that accepts one.
DEFAULT_SEED = 1234
#: Dummy key for OpenAI-compatible servers that do not check keys (vLLM, llama.cpp server, Ollama).
DUMMY_API_KEY = "sk-no-key-required"
#: JSON schema of the writer's answer: an array of descriptors, each citing passage ids.
#: At least 3 items, so that a small model does not pack every criterion into one long descriptor.
DESCRIPTOR_SCHEMA: dict[str, Any] = {
    "type": "array",
    "minItems": 3,
    "maxItems": 8,
    "items": {
        "type": "object",
        "properties": {
            "text": {"type": "string", "minLength": 3, "maxLength": 280},
            "passage_ids": {"type": "array", "minItems": 1, "maxItems": 4, "items": {"type": "string"}},
        },
        "required": ["text", "passage_ids"],
        "additionalProperties": False,
    },
}
_KINDS = ("openai", "ollama", "gguf")
_SLUG = re.compile(r"[^a-z0-9._-]+")


@dataclass(frozen=True)
class LLMSetting:
    """A parsed backend setting.

    Attributes:
        kind: ``"openai"``, ``"ollama"`` or ``"gguf"``.
        model: Model name (for ``gguf``: the file name without ``.gguf``).
        base_url: Endpoint URL, or None for the backend default.
        path: The GGUF file (``gguf`` only), user-expanded.
    """

    kind: str
    model: str
    base_url: str | None = None
    path: str | None = None


def parse_llm_setting(setting: str | None) -> LLMSetting | None:
    """Parse ``openai:MODEL@BASE_URL``, ``ollama:MODEL[@URL]``, ``gguf:PATH`` or ``none``.

    The model name ends at the first ``@`` (the URL may contain ``@``, model names may contain ``:``).

    Args:
        setting: The setting string; None, ``""`` or ``"none"`` mean no LLM.

    Returns:
        The parsed setting, or None for no LLM.

    Raises:
        PromptError: unknown backend, or a missing model name / path / URL (the message shows the forms).
    """
    if setting is None or not str(setting).strip() or str(setting).strip().lower() == "none":
        return None
    s = str(setting).strip()
    forms = "expected 'openai:MODEL@BASE_URL', 'ollama:MODEL[@URL]', 'gguf:PATH' or 'none'"
    kind, sep, rest = s.partition(":")
    kind = kind.strip().lower()
    if not sep or kind not in _KINDS:
        raise PromptError(f"--llm {s!r}: unknown backend {kind!r} ({forms})")
    rest = rest.strip()
    if kind == "gguf":
        if not rest:
            raise PromptError(f"--llm {s!r}: missing the model file ({forms})")
        path = str(Path(rest).expanduser())
        return LLMSetting("gguf", Path(path).name.removesuffix(".gguf"), None, path)
    model, at, url = rest.partition("@")
    model, url = model.strip(), url.strip()
    if not model:
        raise PromptError(f"--llm {s!r}: missing the model name ({forms})")
    if at and not re.match(r"^https?://", url):
        raise PromptError(f"--llm {s!r}: base URL {url!r} must start with http:// or https:// ({forms})")
    return LLMSetting(kind, model, url or None, None)


def model_slug(setting: LLMSetting | str) -> str:
    """A file-name-safe model name, e.g. ``"qwen2.5-coder-1.5b-instruct-q4_k_m"`` (used in cache file names)."""
    s = parse_llm_setting(setting) if isinstance(setting, str) else setting
    if s is None:
        return "none"
    return _SLUG.sub("-", s.model.lower()).strip("-") or s.kind


def _api_key() -> str:
    return os.environ.get("MEDZS_LLM_API_KEY") or os.environ.get("OPENAI_API_KEY") or DUMMY_API_KEY


def make_chat_model(
    setting: str | LLMSetting | None,
    *,
    seed: int = DEFAULT_SEED,
    temperature: float = 0.0,
    max_tokens: int = 768,
    timeout_s: float = 300.0,
    n_ctx: int = 4096,
    n_threads: int = 2,
    structured: bool = True,
) -> Any:
    """Build the langchain-core chat model named by a setting string.

    Args:
        setting: ``openai:MODEL@BASE_URL``, ``ollama:MODEL[@URL]``, ``gguf:PATH``, ``none``/None, or a parsed
            :class:`LLMSetting`.
        seed: Sampling seed (OpenAI-compatible servers that support ``seed``, Ollama, GGUF).
        temperature: Sampling temperature (0 = greedy).
        max_tokens: Maximum answer tokens.
        timeout_s: Request timeout for remote backends, seconds.
        n_ctx: Context window of the GGUF (and Ollama) model, tokens (4096: the prompt of a condition is about
            600 tokens, so two retries with the previous answers fit).
        n_threads: CPU threads of the GGUF model.
        structured: Constrain GGUF / Ollama answers to :data:`DESCRIPTOR_SCHEMA`.

    Returns:
        A ``langchain_core.language_models.BaseChatModel``, or None for ``none``.

    Raises:
        PromptError: a malformed setting, a missing backend package, or (GGUF) a missing/non-GGUF file.
    """
    s = parse_llm_setting(setting) if not isinstance(setting, LLMSetting) else setting
    if s is None:
        return None
    if s.kind == "openai":
        try:
            from langchain_openai import ChatOpenAI
        except ImportError as exc:
            raise PromptError("--llm openai:...: package 'langchain-openai' is not installed "
                              "(pip install 'medzs[llm]')") from exc
        kwargs: dict[str, Any] = {}
        if s.base_url:
            kwargs["base_url"] = s.base_url
        return ChatOpenAI(model=s.model, api_key=_api_key(), temperature=temperature, seed=seed,
                          max_tokens=max_tokens, timeout=timeout_s, max_retries=1, **kwargs)
    if s.kind == "ollama":
        try:
            from langchain_ollama import ChatOllama
        except ImportError as exc:
            raise PromptError("--llm ollama:...: package 'langchain-ollama' is not installed "
                              "(pip install 'medzs[llm]')") from exc
        kwargs = {"base_url": s.base_url} if s.base_url else {}
        if structured:
            kwargs["format"] = DESCRIPTOR_SCHEMA
        return ChatOllama(model=s.model, temperature=temperature, seed=seed, num_predict=max_tokens,
                          num_ctx=n_ctx, top_k=1 if temperature == 0 else None,
                          client_kwargs={"timeout": timeout_s}, **kwargs)
    from medzs.prompts.gguf import ChatGGUF, check_gguf_file

    check_gguf_file(s.path or "")
    return ChatGGUF(model_path=str(s.path), n_ctx=n_ctx, n_threads=n_threads, seed=seed, temperature=temperature,
                    max_tokens=max_tokens, json_schema=DESCRIPTOR_SCHEMA if structured else None,
                    model_name=s.model)


def make_llm_writer(setting: str | LLMSetting, *, validate: bool = True, n_descriptors: int = 5,
                    max_retries: int = 2, **backend_kwargs: Any) -> Any:
    """An :class:`~medzs.prompts.llm.LLMWriter` on the backend named by ``setting``, with the grounding validator.

    Args:
        setting: ``openai:MODEL@BASE_URL``, ``ollama:MODEL[@URL]`` or ``gguf:PATH`` (not ``none``).
        validate: Attach a :class:`~medzs.prompts.validator.GroundingValidator` (default thresholds).
        n_descriptors: Descriptors asked for per condition.
        max_retries: Extra attempts after a malformed (or wholly unsupported) answer.
        **backend_kwargs: Passed to :func:`make_chat_model` (``seed``, ``max_tokens``, ``n_threads``...).

    Returns:
        The writer; its ``validator`` attribute holds the validator (or None).

    Raises:
        PromptError: ``setting`` is ``none`` or malformed, or the backend cannot be built.
    """
    from medzs.prompts.llm import LLMWriter

    chat = make_chat_model(setting, **backend_kwargs)
    if chat is None:
        raise PromptError("LLM writer: expected an LLM setting ('gguf:PATH', 'openai:MODEL@BASE_URL' or "
                          f"'ollama:MODEL[@URL]'), got {setting!r}")
    validator = None
    if validate:
        from medzs.prompts.validator import GroundingValidator

        validator = GroundingValidator()
    return LLMWriter(chat, n_descriptors=n_descriptors, max_retries=max_retries, validator=validator)
