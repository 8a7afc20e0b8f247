"""LLM backends: setting strings, the OpenAI-compatible backend against a loopback stub server (full prompts build,
privacy canary, malformed/chatty answers), Ollama/GGUF construction, and the real local GGUF model (``llm``)."""

from __future__ import annotations

import json
import os
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from medzs.errors import PromptError
from medzs.prompts.backends import (
    DESCRIPTOR_SCHEMA,
    DUMMY_API_KEY,
    LLMSetting,
    make_chat_model,
    make_llm_writer,
    model_slug,
    parse_llm_setting,
)

CANARY = "Zebedee Quixote-Canary 4711"
_HOME = Path(os.environ.get("MEDZS_HOME") or Path.home() / ".cache" / "medzs")
GGUF = Path(os.environ.get("MEDZS_TEST_GGUF") or _HOME / "models" / "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf")


# ----------------------------------------------------------------------------------------- the stub server
class StubLLM:
    """An OpenAI-compatible chat-completions server on 127.0.0.1 (random free port) for tests.

    ``responder(body) -> (status, content)`` makes each answer; every request body is recorded raw. After
    ``max_requests`` requests the server answers 503 (so a runaway retry loop cannot hang a test).
    """

    def __init__(self, responder, max_requests: int = 20):
        self.responder = responder
        self.max_requests = max_requests
        self.bodies: list[bytes] = []
        self.paths: list[str] = []
        self.headers: list[dict] = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep pytest output clean
                pass

            def do_POST(self):  # noqa: N802 - http.server API
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                stub.bodies.append(raw)
                stub.paths.append(self.path)
                stub.headers.append(dict(self.headers))
                if len(stub.bodies) > stub.max_requests:
                    return self._send(503, {"error": {"message": "stub: request limit reached"}})
                status, content = stub.responder(json.loads(raw))
                if status != 200:
                    return self._send(status, {"error": {"message": content, "type": "server_error"}})
                body = json.loads(raw)
                self._send(200, {
                    "id": f"chatcmpl-{len(stub.bodies)}", "object": "chat.completion", "created": 0,
                    "model": body.get("model", "stub"),
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                                 "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
                })

            def _send(self, status, obj):
                data = json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def requests(self) -> list[dict]:
        return [json.loads(b) for b in self.bodies]

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


_LINE = re.compile(r"^\[(?P<id>[^\]]+)\] (?P<text>.+)$", re.MULTILINE)


def faithful_answer(body: dict) -> str:
    """What a well-behaved model answers: each criterion passage restated and cited, plus one chatter item and
    one invented numeric criterion (both must be dropped)."""
    user = next(m["content"] for m in body["messages"] if m["role"] == "user")
    items = []
    for m in _LINE.finditer(user):
        pid, text = m.group("id"), m.group("text")
        if "#criterion-" in pid:
            items.append({"text": text.split(": ", 1)[-1], "passage_ids": [pid]})
    first = next(m.group("id") for m in _LINE.finditer(user) if "#criterion-" in m.group("id"))
    items.append({"text": "Here are the descriptions you asked for:", "passage_ids": [first]})
    items.append({"text": "QRS duration above 987 ms in every lead", "passage_ids": [first]})
    return "Sure! " + json.dumps(items) + "\nLet me know if you need more."


# ----------------------------------------------------------------------------------------- settings
def test_parse_llm_setting():
    assert parse_llm_setting(None) is None and parse_llm_setting("none") is None and parse_llm_setting(" ") is None
    assert parse_llm_setting("openai:qwen2.5:1.5b@http://10.0.0.5:8000/v1") == LLMSetting(
        "openai", "qwen2.5:1.5b", "http://10.0.0.5:8000/v1")
    assert parse_llm_setting("openai:gpt-x") == LLMSetting("openai", "gpt-x", None)
    assert parse_llm_setting("ollama:llama3.2") == LLMSetting("ollama", "llama3.2", None)
    assert parse_llm_setting("ollama:llama3.2@http://gpu:11434").base_url == "http://gpu:11434"
    s = parse_llm_setting("gguf:~/m/Qwen2.5-1.5B.gguf")
    assert s.kind == "gguf" and s.model == "Qwen2.5-1.5B" and s.path == str(Path.home() / "m" / "Qwen2.5-1.5B.gguf")
    assert model_slug(s) == "qwen2.5-1.5b" and model_slug("openai:org/My Model@http://x") == "org-my-model"
    for bad, match in [("llama:x", "unknown backend"), ("openai:", "missing the model"), ("gguf:", "missing"),
                       ("openai:m@ftp://x", "http"), ("qwen", "unknown backend")]:
        with pytest.raises(PromptError, match=match):
            parse_llm_setting(bad)


def test_make_chat_model_openai_settings(monkeypatch):
    from langchain_openai import ChatOpenAI

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("MEDZS_LLM_API_KEY", raising=False)
    chat = make_chat_model("openai:m1@http://127.0.0.1:9/v1")
    assert isinstance(chat, ChatOpenAI)
    assert chat.model_name == "m1" and chat.openai_api_base == "http://127.0.0.1:9/v1"
    assert chat.temperature == 0 and chat.seed is not None
    assert chat.openai_api_key.get_secret_value() == DUMMY_API_KEY
    monkeypatch.setenv("MEDZS_LLM_API_KEY", "sk-hospital")
    assert make_chat_model("openai:m1@http://127.0.0.1:9/v1").openai_api_key.get_secret_value() == "sk-hospital"
    assert make_chat_model("none") is None


def test_make_chat_model_ollama_settings():
    from langchain_ollama import ChatOllama

    chat = make_chat_model("ollama:qwen2.5:1.5b@http://127.0.0.1:9")
    assert isinstance(chat, ChatOllama)
    assert chat.model == "qwen2.5:1.5b" and chat.base_url == "http://127.0.0.1:9"
    assert chat.temperature == 0 and chat.seed is not None and chat.format == DESCRIPTOR_SCHEMA


def test_gguf_backend_rejects_missing_and_non_gguf_files(tmp_path: Path):
    with pytest.raises(PromptError, match="not found"):
        make_chat_model(f"gguf:{tmp_path / 'absent.gguf'}")
    fake = tmp_path / "fake.gguf"
    fake.write_bytes(b"PK\x03\x04 not a model")
    with pytest.raises(PromptError, match="not a GGUF"):
        make_chat_model(f"gguf:{fake}")


def test_gguf_chat_model_is_built_lazily_with_deterministic_settings(tmp_path: Path):
    fake = tmp_path / "tiny.gguf"
    fake.write_bytes(b"GGUF" + b"\0" * 64)  # header only: nothing is loaded until the first request
    chat = make_chat_model(f"gguf:{fake}")
    assert chat.model_name == "tiny" and chat.temperature == 0 and chat.n_threads == 2
    from langchain_core.messages import HumanMessage, SystemMessage

    body = chat.request_body([SystemMessage(content="s"), HumanMessage(content="u")])
    assert body["messages"] == [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}]
    assert body["temperature"] == 0 and body["top_k"] == 1 and body["seed"] == chat.seed
    assert body["cache_prompt"] is False and body["json_schema"] == DESCRIPTOR_SCHEMA


# ----------------------------------------------------------------------------------------- the stub backend
@pytest.fixture(scope="module")
def two_class_kb(tmp_path_factory):
    """A Chroma store holding the real entries of two PTB-XL statements."""
    from medzs.knowledge.kb import KnowledgeBase
    from medzs.knowledge.loader import load_entries

    path = tmp_path_factory.mktemp("kb") / "chroma"
    entries = [e for e in load_entries(modality="ecg") if e.id in ("ecg.scp.CLBBB", "ecg.scp.AFIB")]
    assert len(entries) == 2
    KnowledgeBase(path).build(entries)
    return path, {e.id: e for e in entries}


def _task():
    from medzs.data.tasks import Task

    return Task("stub-2", "ptbxl", "all", ("CLBBB", "AFIB"),
                {"CLBBB": "ecg.scp.CLBBB", "AFIB": "ecg.scp.AFIB"},
                {"CLBBB": "complete left bundle branch block", "AFIB": "atrial fibrillation"})


def test_openai_backend_full_build_only_names_and_passages_reach_the_llm(tmp_path, two_class_kb, shared_data):
    from medzs.io.wfdb import read_wfdb
    from medzs.knowledge.kb import KnowledgeBase
    from medzs.pipeline import task_prompts
    from medzs.prompts import PromptCache
    from medzs.prompts.llm import LLMWriter
    from medzs.prompts.validator import read_validator_log, validator_log_path
    from medzs.spec import ECGInputSpec
    from medzs.transforms.ecg import preprocess

    kb_path, _ = two_class_kb
    # A real record with a canary patient name in its metadata, live in this process during the build.
    sample = read_wfdb(shared_data / "ecg" / "ptbxl500" / "records500" / "00000" / "00001_hr")
    sample["meta"].setdefault("identifiers", {})["patient_name"] = CANARY
    x = preprocess(sample, ECGInputSpec())
    assert x.shape == (12, 5000)
    task = _task()
    cache = tmp_path / "stub-2.llm-stub-model.json"
    with StubLLM(lambda body: (200, faithful_answer(body))) as stub:
        prompts = task_prompts(task, "llm", cache, kb_path=kb_path, llm=f"openai:stub-model@{stub.url}")
        n_first = len(stub.bodies)
        t0 = time.perf_counter()
        again = task_prompts(task, "llm", cache, kb_path=kb_path, llm=f"openai:stub-model@{stub.url}")
        rebuild_s = time.perf_counter() - t0
    assert n_first == 2 and len(stub.bodies) == 2  # one request per class; the rebuild is a cache hit
    assert rebuild_s < 1.0, rebuild_s
    assert {k: v.texts for k, v in again.items()} == {k: v.texts for k, v in prompts.items()}
    assert all(p == "/v1/chat/completions" for p in stub.paths)

    # The canary never reaches a request, the cache or the validator log.
    for raw in stub.bodies:
        assert CANARY.encode() not in raw and b"Quixote" not in raw
    assert CANARY not in cache.read_text() and CANARY not in validator_log_path(cache).read_text()

    # Each request holds exactly the writer's messages: the condition name and its passages, nothing else.
    kb = KnowledgeBase(kb_path)
    ref = LLMWriter(None)
    allowed_keys = {"messages", "model", "temperature", "seed", "max_tokens", "max_completion_tokens", "stream", "n"}
    for body, code in zip(stub.requests(), task.classes):
        assert set(body) <= allowed_keys, set(body) - allowed_keys
        assert body["model"] == "stub-model" and body["temperature"] == 0
        passages = kb.retrieve(task.kb_ids[code], k=None)
        expected = [{"role": "system" if m.type == "system" else "user", "content": m.content}
                    for m in ref.build_messages(task.display_names[code], passages)]
        assert body["messages"] == expected
        assert task.display_names[code] in body["messages"][1]["content"]
        other = [c for c in task.classes if c != code][0]
        assert task.display_names[other] not in json.dumps(body)

    # Passage ids per descriptor; chatter and the invented criterion dropped and recorded with reasons.
    for code, cp in prompts.items():
        assert cp.writer == "llm" and cp.model == "stub-model"
        assert cp.texts[0] == task.display_names[code]
        assert len(cp.prompts) >= 3 and all(p.passage_ids for p in cp.prompts[1:])
        assert all(i.startswith(task.kb_ids[code] + "#") for p in cp.prompts for i in p.passage_ids)
        reasons = " | ".join(d["reason"] for d in cp.dropped)
        assert "chatter" in reasons and "987 ms" in reasons
    records = PromptCache(cache).records()
    assert len(records) == 2 and all(r["dropped"] for r in records)
    log = read_validator_log(validator_log_path(cache))
    assert set(log["classes"]) == {"ecg.scp.CLBBB", "ecg.scp.AFIB"} and log["model"] == "stub-model"
    assert any("987 ms" in d["reason"] for c in log["classes"].values() for d in c["checks"][0]["dropped"])


def _writer(url: str, **kw):
    return make_llm_writer(f"openai:stub-model@{url}", **kw)


def _lbbb(two_class_kb):
    from medzs.knowledge.kb import passages_from_entry

    _, entries = two_class_kb
    e = entries["ecg.scp.CLBBB"]
    return e.name, passages_from_entry(e)


def test_openai_backend_malformed_then_good_answer_is_retried(two_class_kb):
    name, passages = _lbbb(two_class_kb)
    answers = iter(["I'm sorry, I can only describe it in words: the QRS is wide.", None])

    def responder(body):
        a = next(answers)
        return 200, a if a is not None else faithful_answer(body)

    with StubLLM(responder) as stub:
        prompts = _writer(stub.url).write(name, passages, entry_id="ecg.scp.CLBBB")
    assert len(stub.bodies) == 2
    second = stub.requests()[1]["messages"]
    assert second[-2]["role"] == "assistant" and "I'm sorry" in second[-2]["content"]
    assert "could not be used" in second[-1]["content"] and "no JSON array" in second[-1]["content"]
    assert len(prompts) >= 3


def test_openai_backend_malformed_answers_raise_prompt_error(two_class_kb):
    name, passages = _lbbb(two_class_kb)
    with StubLLM(lambda body: (200, "Sure! Here are the attributes: wide QRS, notched R."), max_requests=10) as stub:
        with pytest.raises(PromptError, match=r"complete left bundle branch block.*3 attempt\(s\).*no JSON array"):
            _writer(stub.url, max_retries=2).write(name, passages)
    assert len(stub.bodies) == 3


def test_openai_backend_chatty_only_answer_is_reported_not_dropped_silently(two_class_kb):
    name, passages = _lbbb(two_class_kb)
    chatty = json.dumps([{"text": "Here are the descriptors:", "passage_ids": [passages[1].id]},
                         {"text": "As an AI language model I cannot give medical advice", "passage_ids": []}])
    with StubLLM(lambda body: (200, chatty)) as stub:
        with pytest.raises(PromptError, match="no valid descriptor"):
            _writer(stub.url, max_retries=1).write(name, passages)
    assert len(stub.bodies) == 2


def test_openai_backend_server_errors_are_retried_then_reported(two_class_kb):
    name, passages = _lbbb(two_class_kb)
    with StubLLM(lambda body: (500, "model overloaded"), max_requests=20) as stub:
        with pytest.raises(PromptError, match="model error"):
            _writer(stub.url, max_retries=1).write(name, passages)
    assert 2 <= len(stub.bodies) <= 8  # bounded: writer attempts x client retries


# ----------------------------------------------------------------------------------------- the real local model
needs_gguf = pytest.mark.skipif(not GGUF.is_file(), reason=(
    f"local GGUF model not found at {GGUF}: run ../shared/tools/get-local-llm qwen0.5b (or set MEDZS_TEST_GGUF)"))


@pytest.mark.llm
@needs_gguf
def test_gguf_model_writes_grounded_descriptors_offline_and_deterministically(tmp_path, two_class_kb):
    """The real local model (default: Qwen2.5-coder 0.5B instruct Q4_K_M) through the writer, the validator and
    the cache; then the engine's determinism (greedy, fixed seed, no KV-cache reuse between requests)."""
    pytest.importorskip("xllamacpp")
    from langchain_core.messages import HumanMessage

    from medzs.prompts import PromptCache
    from medzs.prompts.gguf import ChatGGUF

    name, passages = _lbbb(two_class_kb)
    t0 = time.perf_counter()
    writer = make_llm_writer(f"gguf:{GGUF}", n_descriptors=3)
    cache = PromptCache(tmp_path / "gguf.json")
    cp = cache.get_or_write("CLBBB", "ecg.scp.CLBBB", name, passages, writer)
    first_s = time.perf_counter() - t0
    ids = {p.id for p in passages}
    assert cp.writer == "llm" and cp.model == GGUF.name.removesuffix(".gguf")
    assert cp.texts[0] == name and len(cp.prompts) >= 2
    assert all(p.passage_ids and set(p.passage_ids) <= ids for p in cp.prompts[1:])
    assert all(d.get("reason") for d in cp.dropped)
    t0 = time.perf_counter()
    hit = PromptCache(tmp_path / "gguf.json").get_or_write("CLBBB", "ecg.scp.CLBBB", name, passages, writer)
    assert hit.texts == cp.texts and time.perf_counter() - t0 < 1.0

    # the engine's loopback HTTP endpoint (always started by xllamacpp) refuses requests without its random key
    import urllib.error
    import urllib.request

    from medzs.prompts.gguf import load_server

    server = load_server(GGUF)
    req = urllib.request.Request(f"{server.listening_address}/v1/chat/completions", method="POST",
                                 data=b'{"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}',
                                 headers={"Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError, match="401"):
        urllib.request.urlopen(req, timeout=30)

    short = ChatGGUF(model_path=str(GGUF), max_tokens=24)  # same engine (same path/context/threads/seed)
    q1, q2 = [HumanMessage(content="Name two ECG leads.")], [HumanMessage(content="What does QRS stand for?")]
    a1 = short.invoke(q1).content
    short.invoke(q2)
    assert short.invoke(q1).content == a1 and a1
    print(f"\nGGUF {GGUF.name}: writer (3 descriptors, incl. retries) {first_s:.1f} s")
