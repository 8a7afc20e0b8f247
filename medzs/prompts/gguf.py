"""A local GGUF chat model (llama.cpp through ``xllamacpp``) as a langchain-core ``BaseChatModel``.

:class:`ChatGGUF` runs a GGUF model file in-process with llama.cpp's native server engine (``xllamacpp.Server``,
prebuilt wheels, no compiler needed), so :class:`~medzs.prompts.llm.LLMWriter` can write class descriptors
offline:

- **offline**: the model is a file the user points to (e.g. Qwen2.5-Coder 1.5B instruct Q4_K_M,
  :data:`RECOMMENDED_GGUF`, put in ``$MEDZS_HOME/models/``); nothing is downloaded (``offline=True``). The engine opens its HTTP
  endpoint on ``127.0.0.1`` with a random port (xllamacpp always starts it), protected by a random API key
  that is never stored or shown, so other local users cannot query it; medzs calls the engine in-process
  (``handle_chat_completions``).
- **deterministic**: greedy decoding (temperature 0, ``top_k`` 1), a fixed seed, and no KV-cache reuse between
  requests (``cache_prompt=False``), so one request gives the same answer whatever was asked before it.
- **structured output**: an optional JSON schema constrains decoding (llama.cpp grammar / LLGuidance), e.g.
  :data:`medzs.prompts.backends.DESCRIPTOR_SCHEMA` (a JSON array of ``{"text", "passage_ids"}``).

The engine is loaded on first use and shared per process by (path, context, threads, seed); ``xllamacpp`` is
imported lazily.

Example:
    >>> from medzs.prompts.gguf import ChatGGUF
    >>> chat = ChatGGUF(model_path="~/.cache/medzs/models/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf")  # doctest: +SKIP
    >>> chat.invoke("Name one ECG lead.").content  # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, ChatMessage, HumanMessage, SystemMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from pydantic import ConfigDict, Field

from medzs.errors import PromptError

logger = logging.getLogger(__name__)

__all__ = ["RECOMMENDED_GGUF", "ChatGGUF", "check_gguf_file", "load_server", "missing_model_hint"]

#: The recommended local model file, its upstream home and sha256 (about 1.1 GB; Qwen team, Apache-2.0).
RECOMMENDED_GGUF = {
    "file": "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
    "url": "https://huggingface.co/Qwen/Qwen2.5-Coder-1.5B-Instruct-GGUF",
    "sha256": "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
}


def missing_model_hint() -> str:
    """One sentence telling a user how to get a local GGUF model and where to put it."""
    from medzs.knowledge.kb import medzs_home

    dest = medzs_home() / "models" / RECOMMENDED_GGUF["file"]
    return (f"get one on a machine with network access: download {RECOMMENDED_GGUF['file']} from "
            f"{RECOMMENDED_GGUF['url']} (sha256 {RECOMMENDED_GGUF['sha256'][:12]}...) to {dest}, then pass "
            f"--llm gguf:{dest} (docs/prompts.md, 'A local model')")


#: Default seed of the local model (any fixed value gives reproducible output).
DEFAULT_SEED = 1234

_SERVERS: dict[tuple[str, int, int, int], Any] = {}
_SERVERS_LOCK = threading.Lock()
_CALL_LOCKS: dict[tuple[str, int, int, int], threading.Lock] = {}


def check_gguf_file(path: str | Path) -> Path:
    """Check that ``path`` is a readable GGUF file (magic bytes ``GGUF``).

    llama.cpp may abort the whole process on a malformed file, so the header is checked first.

    Args:
        path: The model file.

    Returns:
        The resolved path.

    Raises:
        PromptError: missing file, or not a GGUF file (the message names the path and what was found).
    """
    p = Path(path).expanduser()
    if not p.is_file():
        raise PromptError(f"{p}: GGUF model file not found; {missing_model_hint()}")
    with open(p, "rb") as fh:
        magic = fh.read(4)
    if magic != b"GGUF":
        raise PromptError(f"{p}: not a GGUF model file (expected magic bytes b'GGUF', got {magic!r})")
    return p.resolve()


def load_server(model_path: str | Path, n_ctx: int = 4096, n_threads: int = 2, seed: int = DEFAULT_SEED) -> Any:
    """Load (once per process and settings) an ``xllamacpp.Server`` for a GGUF file.

    Args:
        model_path: The ``.gguf`` file.
        n_ctx: Context window in tokens (prompt + answer).
        n_threads: CPU threads for generation and prompt processing.
        seed: Sampling seed.

    Returns:
        The shared ``xllamacpp.Server``.

    Raises:
        PromptError: the file is not a GGUF file, ``xllamacpp`` is missing, or llama.cpp cannot load the model.
    """
    path = check_gguf_file(model_path)
    key = (str(path), int(n_ctx), int(n_threads), int(seed))
    with _SERVERS_LOCK:
        server = _SERVERS.get(key)
        if server is not None:
            return server
        try:
            import xllamacpp as xlc
        except ImportError as exc:
            raise PromptError("GGUF backend: package 'xllamacpp' is not installed (pip install 'medzs[llm]' "
                              "or pip install xllamacpp)") from exc
        params = xlc.CommonParams()
        params.model.path = str(path)
        params.n_ctx = int(n_ctx)
        params.n_parallel = 1
        params.cpuparams.n_threads = int(n_threads)
        params.cpuparams_batch.n_threads = int(n_threads)
        params.sampling.temp = 0.0
        params.sampling.top_k = 1
        params.sampling.seed = int(seed)
        params.offline = True
        params.warmup = False
        params.ui = False
        params.hostnames = ["127.0.0.1"]
        params.port = 0
        params.api_keys = [secrets.token_hex(16)]  # the HTTP endpoint is not ours to share
        params.verbosity = 0
        t0 = time.perf_counter()
        logger.info("loading GGUF model %s (n_ctx=%d, threads=%d)", path.name, n_ctx, n_threads)
        try:
            server = xlc.Server(params)
        except Exception as exc:
            raise PromptError(f"{path}: llama.cpp could not load the model ({type(exc).__name__}: {exc})") from exc
        logger.info("GGUF model %s loaded in %.1f s", path.name, time.perf_counter() - t0)
        _SERVERS[key] = server
        _CALL_LOCKS[key] = threading.Lock()
        return server


def _role(message: BaseMessage) -> str:
    if isinstance(message, SystemMessage):
        return "system"
    if isinstance(message, HumanMessage):
        return "user"
    if isinstance(message, AIMessage):
        return "assistant"
    if isinstance(message, ChatMessage):
        return message.role
    raise PromptError(f"GGUF backend: unsupported message type {type(message).__name__} (expected system, "
                      "human or AI messages)")


def _content(message: BaseMessage) -> str:
    content = message.content
    if isinstance(content, list):
        return "".join(b if isinstance(b, str) else str(b.get("text", "")) for b in content)
    return str(content)


class ChatGGUF(BaseChatModel):
    """Chat with a local GGUF model through ``xllamacpp``, deterministically and offline.

    Attributes:
        model_path: The ``.gguf`` file.
        n_ctx: Context window (tokens), default 4096.
        n_threads: CPU threads, default 2.
        seed: Sampling seed (fixed; default :data:`DEFAULT_SEED`).
        temperature: Sampling temperature; 0 = greedy (default).
        max_tokens: Maximum tokens per answer.
        json_schema: JSON schema that constrains the answer (grammar-constrained decoding), or None.
        model_name: Name recorded in provenance and prompt caches; default the file name without ``.gguf``.

    Raises:
        PromptError: on first use, when the file is not a GGUF model or cannot be loaded, or when llama.cpp
            reports an error for a request.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    model_path: str
    n_ctx: int = 4096
    n_threads: int = 2
    seed: int = DEFAULT_SEED
    temperature: float = 0.0
    max_tokens: int = 768
    json_schema: dict[str, Any] | None = None
    model_name: str = Field(default="")

    def model_post_init(self, __context: Any) -> None:  # noqa: D102 - pydantic hook
        if not self.model_name:
            self.model_name = Path(self.model_path).name.removesuffix(".gguf")

    @property
    def _llm_type(self) -> str:
        return "xllamacpp-gguf"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model_name": self.model_name, "n_ctx": self.n_ctx, "seed": self.seed,
                "temperature": self.temperature, "max_tokens": self.max_tokens,
                "json_schema": self.json_schema}

    def _server(self) -> tuple[Any, threading.Lock]:
        server = load_server(self.model_path, self.n_ctx, self.n_threads, self.seed)
        path = str(check_gguf_file(self.model_path))
        return server, _CALL_LOCKS[(path, int(self.n_ctx), int(self.n_threads), int(self.seed))]

    def request_body(self, messages: Sequence[BaseMessage], stop: list[str] | None = None) -> dict[str, Any]:
        """The chat-completion request sent to llama.cpp (OpenAI format plus llama.cpp options)."""
        body: dict[str, Any] = {
            "messages": [{"role": _role(m), "content": _content(m)} for m in messages],
            "max_tokens": int(self.max_tokens),
            "temperature": float(self.temperature),
            "top_k": 1 if self.temperature == 0 else 40,
            "seed": int(self.seed),
            "cache_prompt": False,
            "stream": False,
        }
        if stop:
            body["stop"] = list(stop)
        if self.json_schema is not None:
            body["json_schema"] = self.json_schema
        return body

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        server, lock = self._server()
        body = self.request_body(messages, stop)
        t0 = time.perf_counter()
        with lock:  # one request at a time per engine (n_parallel = 1)
            try:
                result = server.handle_chat_completions(body)
            except Exception as exc:
                raise PromptError(f"GGUF backend ({self.model_name}): request failed "
                                  f"({type(exc).__name__}: {exc})") from exc
        if isinstance(result, (str, bytes)):
            result = json.loads(result)
        if not isinstance(result, dict) or "error" in result or not result.get("choices"):
            err = result.get("error") if isinstance(result, dict) else result
            raise PromptError(f"GGUF backend ({self.model_name}): llama.cpp returned an error: {err}")
        choice = result["choices"][0]
        text = str((choice.get("message") or {}).get("content") or "")
        usage = result.get("usage") or {}
        logger.debug("GGUF %s: %s prompt + %s answer tokens in %.1f s (finish: %s)", self.model_name,
                     usage.get("prompt_tokens"), usage.get("completion_tokens"), time.perf_counter() - t0,
                     choice.get("finish_reason"))
        meta = {"finish_reason": choice.get("finish_reason"), "model_name": self.model_name,
                "token_usage": usage}
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content=text, response_metadata=meta),
                                                      generation_info=meta)],
                          llm_output={"model_name": self.model_name, "token_usage": usage})
