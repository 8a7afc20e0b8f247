"""Prompt writers (grounded, names-only, LLM via langchain-core fake chat models) and the prompt cache."""

from __future__ import annotations

import hashlib
import inspect
import json
import random
import re
import subprocess
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from medzs.errors import PromptError
from medzs.prompts import (
    ClassPrompts,
    GroundedWriter,
    NamesOnlyWriter,
    Prompt,
    PromptCache,
    TextPassage,
    build_task_prompts,
    passages_hash,
    prompts_hash,
)
from medzs.prompts.grounded import lower_first, split_sentences, split_synonyms, truncate_words


@dataclass(frozen=True)
class KBPassage:
    """Shaped like medzs.knowledge.kb.Passage (the writers are duck-typed on these attributes)."""

    id: str
    entry_id: str
    text: str
    field: str
    sources: tuple[str, ...] = ("aha-iii-2009",)
    score: float | None = None

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()


LBBB = "ecg.scp.CLBBB"
LBBB_NAME = "complete left bundle branch block"
LBBB_PASSAGES = [
    KBPassage(f"{LBBB}#definition", LBBB,
              "A conduction disturbance in which the left ventricle is activated late, e.g. through the right "
              "bundle. Septal activation runs from right to left.", "definition"),
    KBPassage(f"{LBBB}#criterion-0", LBBB, "QRS duration of 120 ms or more in adults.", "criterion"),
    KBPassage(f"{LBBB}#criterion-1", LBBB, "Broad notched or slurred R waves in I, aVL, V5 and V6.", "criterion"),
    KBPassage(f"{LBBB}#criterion-2", LBBB, "Absent Q waves in leads I, V5 and V6.", "criterion"),
    KBPassage(f"{LBBB}#synonyms", LBBB, "LBBB; complete LBBB", "synonyms"),
]
AF = "ecg.scp.AFIB"
AF_NAME = "atrial fibrillation"
AF_PASSAGES = [
    KBPassage(f"{AF}#definition", AF, "A supraventricular arrhythmia with uncoordinated atrial activation.",
              "definition"),
    KBPassage(f"{AF}#criterion-0", AF, "Irregularly irregular RR intervals.", "criterion"),
    KBPassage(f"{AF}#criterion-1", AF, "No distinct P waves.", "criterion"),
]
KB = {LBBB: LBBB_PASSAGES, AF: AF_PASSAGES}


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z0-9]+", text.lower()))


# --------------------------------------------------------------------------------------------- text utils
def test_split_sentences_keeps_abbreviations_and_decimals():
    text = "ST elevation of 0.1 mV, e.g. in V2. T waves invert. Q waves appear!  Then R waves fall."
    assert split_sentences(text) == ["ST elevation of 0.1 mV, e.g. in V2.", "T waves invert.", "Q waves appear!",
                                     "Then R waves fall."]
    assert split_sentences("   ") == []


def test_truncate_words_cuts_at_sentence_boundary_or_hard():
    text = "One two three four. Five six seven eight nine. Ten."
    assert truncate_words(text, 6) == "One two three four."
    assert truncate_words(text, 9) == "One two three four. Five six seven eight nine."
    assert truncate_words(text, 10) == text
    assert truncate_words("a b c d e f, g h", 6) == "a b c d e f"  # one long sentence: hard cut, comma removed
    with pytest.raises(ValueError, match="max_words"):
        truncate_words(text, 0)


def test_lower_first_keeps_acronyms_waves_and_leads():
    assert lower_first("Broad R waves") == "broad R waves"
    assert lower_first("A block") == "a block"
    for keep in ("QRS duration", "T wave inversion", "V1 to V3", "I, aVL and V6", "ST elevation", "Mobitz type I",
                 "T-wave inversion", "Q-waves"):
        assert lower_first(keep) == keep
    assert split_synonyms("Synonyms: LBBB; complete LBBB, left BBB.") == ["LBBB", "complete LBBB", "left BBB"]
    # the knowledge base's format: "<name> (<synonym>; <synonym>)"
    assert split_synonyms("complete left bundle branch block (LBBB; complete LBBB)") == [
        "complete left bundle branch block", "LBBB", "complete LBBB"]


def test_grounded_writer_with_kb_synonym_passage_format():
    kb_syn = KBPassage(f"{LBBB}#synonyms", LBBB, "left bundle branch block, complete (LBBB; complete LBBB)",
                       "synonyms")
    texts = [p.text for p in GroundedWriter().write(LBBB_NAME, [kb_syn])]
    assert texts == [LBBB_NAME, "left bundle branch block, complete", "LBBB", "complete LBBB"]
    same_name = replace(kb_syn, text=f"{LBBB_NAME} (LBBB)")
    assert [p.text for p in GroundedWriter().write(LBBB_NAME, [same_name])] == [LBBB_NAME, "LBBB"]


# --------------------------------------------------------------------------------------------- grounded
def test_grounded_writer_composes_only_from_name_and_passages():
    w = GroundedWriter()
    prompts = w.write(LBBB_NAME, LBBB_PASSAGES, entry_id=LBBB)
    texts = [p.text for p in prompts]
    assert texts == [
        "complete left bundle branch block",
        "complete left bundle branch block: a conduction disturbance in which the left ventricle is activated "
        "late, e.g. through the right bundle",
        "complete left bundle branch block: septal activation runs from right to left",
        "complete left bundle branch block, with QRS duration of 120 ms or more in adults",
        "complete left bundle branch block, with broad notched or slurred R waves in I, aVL, V5 and V6",
        "complete left bundle branch block, with absent Q waves in leads I, V5 and V6",
        "LBBB",
        "complete LBBB",
    ]
    assert [p.passage_ids for p in prompts] == [
        (), (f"{LBBB}#definition",), (f"{LBBB}#definition",), (f"{LBBB}#criterion-0",), (f"{LBBB}#criterion-1",),
        (f"{LBBB}#criterion-2",), (f"{LBBB}#synonyms",), (f"{LBBB}#synonyms",),
    ]
    by_id = {p.id: p for p in LBBB_PASSAGES}
    template_words = {"with"}
    for p in prompts:
        allowed = _words(LBBB_NAME) | template_words
        for pid in p.passage_ids:
            allowed |= _words(by_id[pid].text)
        assert _words(p.text) <= allowed, (p.text, _words(p.text) - allowed)
        assert len(p.text.split()) <= 40


def test_grounded_writer_is_deterministic_and_order_independent():
    w = GroundedWriter()
    shuffled = LBBB_PASSAGES[:]
    random.Random(3).shuffle(shuffled)
    assert shuffled != LBBB_PASSAGES
    assert w.write(LBBB_NAME, shuffled) == w.write(LBBB_NAME, LBBB_PASSAGES)
    # criterion-10 sorts after criterion-2 (numeric, not lexical)
    extra = KBPassage(f"{LBBB}#criterion-10", LBBB, "Late intrinsicoid deflection in V6.", "criterion")
    texts = [p.text for p in w.write(LBBB_NAME, [extra, *LBBB_PASSAGES])]
    assert texts.index(f"{LBBB_NAME}, with late intrinsicoid deflection in V6") == texts.index(
        f"{LBBB_NAME}, with absent Q waves in leads I, V5 and V6") + 1


def test_grounded_writer_limits_truncates_and_reports_dropped():
    long_crit = KBPassage(f"{LBBB}#criterion-0", LBBB,
                          "The QRS complex is wide and the terminal forces point to the left and backwards in most "
                          "adults. " + " ".join(["More words here."] * 20), "criterion")
    w = GroundedWriter(max_prompts=3, max_words=25)
    prompts, dropped = w.write_with_report(LBBB_NAME, [*LBBB_PASSAGES[:1], long_crit, *AF_PASSAGES], entry_id=LBBB)
    assert len(prompts) == 3
    crit = [p for p in prompts if p.passage_ids == (f"{LBBB}#criterion-0",)]
    assert crit == [] or len(crit[0].text.split()) <= 25
    reasons = {d.get("passage_id", d.get("text")): d["reason"] for d in dropped}
    assert reasons[f"{AF}#definition"].startswith("passage of another entry")
    assert any("max_prompts=3" in r for r in reasons.values())
    # the long criterion alone is cut at its first sentence
    w2 = GroundedWriter(max_words=24)  # 7 words of template + 16 of the first sentence fit, +3 would not
    crit2 = [p for p in w2.write(LBBB_NAME, [long_crit]) if p.passage_ids][0]
    assert crit2.text == (f"{LBBB_NAME}, with the QRS complex is wide and the terminal forces point to the left "
                          "and backwards in most adults")


def test_grounded_template_hash_tracks_template_and_limits():
    a, b = GroundedWriter(), GroundedWriter()
    assert a.template_hash == b.template_hash and len(a.template_hash) == 64
    assert GroundedWriter(template={"criterion": "{name} showing {text}"}).template_hash != a.template_hash
    assert GroundedWriter(max_prompts=4).template_hash != a.template_hash
    assert NamesOnlyWriter().template_hash != a.template_hash
    with pytest.raises(ValueError, match="unknown key"):
        GroundedWriter(template={"bogus": "{name}"})


def test_names_only_writer():
    assert NamesOnlyWriter().write("Normal ECG", LBBB_PASSAGES) == [Prompt("Normal ECG")]
    assert NamesOnlyWriter("an ECG showing {name}").write("sinus rhythm", []) == [Prompt("an ECG showing sinus rhythm")]
    with pytest.raises(ValueError, match="name"):
        NamesOnlyWriter("an ECG")


def test_grounded_writer_on_knowledge_base_passage_layout():
    """KB passages read "<name>: <text>" and "<name> (<synonym>; ...)"; the name is not repeated."""
    from medzs.knowledge.kb import passages_from_entry
    from medzs.knowledge.schema import Criterion, Entry

    entry = Entry(id="ecg.scp.2AVB", modality="ecg", name="second-degree atrioventricular block",
                  codes={"scp_ecg": ("2AVB",)}, definition="Intermittent failure of AV conduction. Some P waves "
                  "are not conducted.", criteria=(Criterion("Mobitz type I - the PR interval lengthens."),
                                                  Criterion("P waves not followed by a QRS complex.")),
                  sources=("acc-brady-2018",), synonyms=("2AVB", "Mobitz II"))
    passages = passages_from_entry(entry)
    assert passages[0].text.startswith("second-degree atrioventricular block: ")  # the layout this test is about
    prompts = GroundedWriter().write("Second-degree AV block", passages, entry_id=entry.id)
    assert [p.text for p in prompts] == [
        "second-degree AV block",
        "second-degree AV block: intermittent failure of AV conduction",
        "second-degree AV block: some P waves are not conducted",
        "second-degree AV block, with Mobitz type I - the PR interval lengthens",
        "second-degree AV block, with P waves not followed by a QRS complex",
        "second-degree atrioventricular block",
        "2AVB",
        "Mobitz II",
    ]
    assert prompts[4].passage_ids == ("ecg.scp.2AVB#criterion-1",)
    assert prompts[5].passage_ids == ("ecg.scp.2AVB#synonyms",)


def test_class_prompts_json_round_trip():
    cp = GroundedWriter().write_class("CLBBB", LBBB, LBBB_NAME, LBBB_PASSAGES)
    assert cp.writer == "grounded" and cp.model is None
    assert cp.passages_hash == passages_hash(LBBB_PASSAGES)
    assert ClassPrompts.from_json(cp.to_json()) == cp
    assert cp.passage_ids == tuple(sorted(p.id for p in LBBB_PASSAGES))


def test_passages_hash_changes_with_text_not_order_or_score():
    h = passages_hash(LBBB_PASSAGES)
    assert passages_hash(list(reversed(LBBB_PASSAGES))) == h
    assert passages_hash([replace(p, score=0.5) for p in LBBB_PASSAGES]) == h
    changed = [replace(LBBB_PASSAGES[0], text=LBBB_PASSAGES[0].text + " More.")] + LBBB_PASSAGES[1:]
    assert passages_hash(changed) != h


def test_text_passage_is_a_passage():
    from medzs.prompts import PassageLike

    tp = TextPassage(f"{AF}#criterion-1", AF, "No distinct P waves.", "criterion")
    assert isinstance(tp, PassageLike) and isinstance(AF_PASSAGES[0], PassageLike)
    assert len(tp.sha256) == 64
    assert GroundedWriter().write(AF_NAME, [tp])[1] == Prompt(f"{AF_NAME}, with no distinct P waves", (tp.id,))


def test_writers_reject_records_as_passages():
    sample = {"signal": [[0.0]], "id": "00042_hr", "meta": {"identifiers": {"name": "Canary McTestface"}}}
    with pytest.raises(TypeError, match=r"passages\[0\]"):
        GroundedWriter().write(LBBB_NAME, [sample])


# --------------------------------------------------------------------------------------------- cache
class CountingWriter(GroundedWriter):
    def __init__(self, **kw):
        super().__init__(**kw)
        self.calls: list[str] = []

    def write_with_report(self, class_name, passages, *, entry_id=None):
        self.calls.append(class_name)
        return super().write_with_report(class_name, passages, entry_id=entry_id)


@pytest.mark.parametrize("name", ["prompts.json", "prompts_dir"])
def test_cache_provenance_hit_and_invalidation(tmp_path: Path, name: str):
    cache = PromptCache(tmp_path / name)
    writer = CountingWriter()
    task = {"CLBBB": (LBBB, LBBB_NAME), "AFIB": (AF, AF_NAME)}
    kb = {k: list(v) for k, v in KB.items()}

    def retrieve(entry_id, query):
        return kb[entry_id]

    first = build_task_prompts(task, retrieve, writer, cache)
    assert list(first) == ["CLBBB", "AFIB"]
    assert writer.calls == [LBBB_NAME, AF_NAME]
    records = {r["class_code"]: r for r in cache.records()}
    assert set(records) == {"CLBBB", "AFIB"}
    rec = records["CLBBB"]
    assert rec["writer"] == "grounded" and rec["model"] is None
    assert rec["template_hash"] == writer.template_hash
    assert rec["passages_hash"] == passages_hash(LBBB_PASSAGES)
    assert rec["passage_ids"] == sorted(p.id for p in LBBB_PASSAGES)
    assert rec["prompts"][3] == {"text": f"{LBBB_NAME}, with QRS duration of 120 ms or more in adults",
                                 "passage_ids": [f"{LBBB}#criterion-0"]}
    assert rec["medzs_version"] and re.match(r"\d{4}-\d\d-\d\dT", rec["created"])

    snapshot = {p: p.read_bytes() for p in sorted((tmp_path / name).parent.rglob("*.json"))}
    second = build_task_prompts(task, retrieve, writer, cache)
    assert writer.calls == [LBBB_NAME, AF_NAME]  # cache hit: writer not called again
    assert second == first
    assert {p: p.read_bytes() for p in snapshot} == snapshot  # nothing rewritten on a hit

    kb[AF] = [replace(AF_PASSAGES[1], text="Irregular RR intervals without a pattern.")] + [AF_PASSAGES[0],
                                                                                          AF_PASSAGES[2]]
    third = build_task_prompts(task, retrieve, writer, cache)
    assert writer.calls == [LBBB_NAME, AF_NAME, AF_NAME]  # exactly the changed class is re-written
    assert third["CLBBB"] == first["CLBBB"]
    assert f"{AF_NAME}, with irregular RR intervals without a pattern" in third["AFIB"].texts
    assert len(cache) == 2  # the stale AFIB entry was replaced, not kept alongside
    assert prompts_hash(third) != prompts_hash(first)

    other = CountingWriter(max_prompts=2)  # another writer configuration: its own entries
    fourth = build_task_prompts(task, retrieve, other, cache)
    assert other.calls == [LBBB_NAME, AF_NAME] and len(fourth["CLBBB"].prompts) == 2
    assert len(cache) == 4


def test_cache_file_is_sorted_deterministic_json(tmp_path: Path):
    a, b = PromptCache(tmp_path / "a.json"), PromptCache(tmp_path / "b.json")
    a.get_or_write("CLBBB", LBBB, LBBB_NAME, LBBB_PASSAGES, GroundedWriter())
    a.get_or_write("AFIB", AF, AF_NAME, AF_PASSAGES, GroundedWriter())
    b.get_or_write("AFIB", AF, AF_NAME, AF_PASSAGES, GroundedWriter())
    b.get_or_write("CLBBB", LBBB, LBBB_NAME, LBBB_PASSAGES, GroundedWriter())
    strip = re.compile(r'"created": "[^"]+"')
    ta, tb = (strip.sub("", p.read_text()) for p in (a.path, b.path))
    assert ta == tb  # insertion order does not matter
    data = json.loads(a.path.read_text())
    assert data["format"] == "medzs-prompt-cache"
    assert list(data["entries"]) == sorted(data["entries"])
    assert not list(tmp_path.glob(".*.tmp"))  # atomic write left no temporary file
    assert a.file_hash() != PromptCache(tmp_path / "empty.json").file_hash()


def test_cache_corrupt_file_raises(tmp_path: Path):
    bad = tmp_path / "p.json"
    bad.write_text("{not json")
    with pytest.raises(PromptError, match="p.json"):
        PromptCache(bad).get_or_write("CLBBB", LBBB, LBBB_NAME, LBBB_PASSAGES, GroundedWriter())


def test_in_memory_cache_hits_without_writing_files(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cache, w = PromptCache(None), CountingWriter()
    task = {"CLBBB": (LBBB, LBBB_NAME)}
    a = build_task_prompts(task, lambda e, q: KB[e], w, cache)
    b = build_task_prompts(task, lambda e, q: KB[e], w, cache)
    assert a == b and w.calls == [LBBB_NAME] and len(cache) == 1
    assert list(tmp_path.iterdir()) == []
    c = build_task_prompts(task, lambda e, q: KB[e], w, None)  # no cache at all: writes every time
    assert c["CLBBB"].texts == a["CLBBB"].texts and w.calls == [LBBB_NAME, LBBB_NAME]


def test_refresh_rewrites(tmp_path: Path):
    cache, w = PromptCache(tmp_path / "p.json"), CountingWriter()
    cache.get_or_write("CLBBB", LBBB, LBBB_NAME, LBBB_PASSAGES, w)
    cache.get_or_write("CLBBB", LBBB, LBBB_NAME, LBBB_PASSAGES, w, refresh=True)
    assert w.calls == [LBBB_NAME, LBBB_NAME]


# --------------------------------------------------------------------------------------------- LLM writer
def _recording_model(responses):
    from langchain_core.callbacks import BaseCallbackHandler
    from langchain_core.language_models.fake_chat_models import FakeListChatModel

    class Recorder(BaseCallbackHandler):
        def __init__(self):
            self.calls = []

        def on_chat_model_start(self, serialized, messages, **kwargs):
            self.calls.append([m.content for m in messages[0]])

    rec = Recorder()
    return FakeListChatModel(responses=responses, callbacks=[rec]), rec


CHATTY = """Sure! Here are the attributes you asked for:

```json
[
  {"text": "Here are the attributes of complete left bundle branch block:", "passage_ids": []},
  {"text": "A wide QRS complex lasting at least 120 ms.", "passage_ids": ["ecg.scp.CLBBB#criterion-0"]},
  {"text": "Notched R waves in the lateral leads I, aVL, V5 and V6", "passage_ids": ["ecg.scp.CLBBB#criterion-1"]},
  {"text": "Delta waves before the QRS", "passage_ids": ["ecg.scp.WPW#criterion-0"]},
  {"text": "", "passage_ids": ["ecg.scp.CLBBB#criterion-2"]},
  {"text": "No septal Q waves in I, V5 and V6",
   "passage_ids": ["ecg.scp.CLBBB#criterion-2", "ecg.scp.CLBBB#definition"]}
]
```
I hope this helps!"""


def test_llm_writer_parses_chatty_fenced_json_and_drops_bad_items():
    from medzs.prompts.llm import LLMWriter

    model, rec = _recording_model([CHATTY])
    w = LLMWriter(model, n_descriptors=5)
    cp = w.write_class("CLBBB", LBBB, LBBB_NAME, LBBB_PASSAGES)
    assert cp.texts == [LBBB_NAME, "A wide QRS complex lasting at least 120 ms",
                        "Notched R waves in the lateral leads I, aVL, V5 and V6", "No septal Q waves in I, V5 and V6"]
    assert cp.prompts[3].passage_ids == (f"{LBBB}#criterion-2", f"{LBBB}#definition")
    reasons = {d["text"]: d["reason"] for d in cp.dropped}
    assert reasons["Delta waves before the QRS"].startswith("unknown passage id")
    assert reasons["Here are the attributes of complete left bundle branch block:"] == "chatter, not a descriptor"
    assert reasons[""] == "empty text"
    assert cp.writer == "llm" and cp.model == "fake-list-chat-model" and len(rec.calls) == 1


def test_llm_writer_retries_malformed_then_succeeds():
    from medzs.prompts.llm import LLMWriter

    good = '[{"text": "Irregularly irregular RR intervals", "passage_ids": ["ecg.scp.AFIB#criterion-0"]}]'
    model, rec = _recording_model(["I cannot answer in JSON, sorry.", good])
    prompts = LLMWriter(model, max_retries=2, include_name=False).write(AF_NAME, AF_PASSAGES)
    assert prompts == [Prompt("Irregularly irregular RR intervals", (f"{AF}#criterion-0",))]
    assert len(rec.calls) == 2
    assert "could not be used (no JSON array found" in rec.calls[1][-1]  # the retry says what was wrong


def test_llm_writer_malformed_after_retries_raises_naming_condition():
    from medzs.prompts.llm import LLMWriter

    bad = ["no json here", '[{"text": "uncited claim"}]', '{"text": "x", "passage_ids": ["nope#1"]', "[1, 2]"]
    model, rec = _recording_model(bad)
    with pytest.raises(PromptError, match=r"condition 'atrial fibrillation'.*3 attempt"):
        LLMWriter(model, max_retries=2).write(AF_NAME, AF_PASSAGES)
    assert len(rec.calls) == 3
    with pytest.raises(PromptError, match="no knowledge-base passages"):
        LLMWriter(_recording_model(["[]"])[0]).write(AF_NAME, [])


def test_llm_writer_tolerates_wrapped_and_trailing_comma_answers():
    from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
    from langchain_core.messages import AIMessage

    from medzs.prompts.llm import LLMWriter, parse_descriptors

    wrapped = '{"descriptors": [{"description": "No distinct P waves", "passage_ids": "ecg.scp.AFIB#criterion-1"}]}'
    model = GenericFakeChatModel(messages=iter([AIMessage(content=wrapped)]))
    assert LLMWriter(model, include_name=False).write(AF_NAME, AF_PASSAGES) == [
        Prompt("No distinct P waves", (f"{AF}#criterion-1",))]
    trailing = ('Answer: [{"text": "Irregular RR intervals", "passage_ids": ["ecg.scp.AFIB#criterion-0"]},\n'
                ' {"text": "No P waves", "passage_ids": ["ecg.scp.AFIB#criterion-1"]},]')
    prompts, dropped, err = parse_descriptors(trailing, {p.id for p in AF_PASSAGES})
    assert err is None and [p.text for p in prompts] == ["Irregular RR intervals", "No P waves"]


def test_llm_messages_hold_only_condition_name_and_passages():
    from medzs.prompts.llm import LLMWriter

    canary = "Canary McTestface"
    sample = {
        "signal": [[0.0, 0.1]], "leads": ["I"], "fs": 500.0, "id": "00042_hr", "path": "records500/00000/00042_hr",
        "meta": {"identifiers": {"patient_name": canary, "patient_id": "P-778899", "dob": "1950-01-01"},
                 "age": 71, "sex": "F"},
    }
    good = '[{"text": "Irregularly irregular RR intervals", "passage_ids": ["ecg.scp.AFIB#criterion-0"]}]'
    model, rec = _recording_model([good])
    w = LLMWriter(model)
    # the writer API has no parameter through which a sample could arrive
    for fn in (w.write, w.build_messages):
        assert list(inspect.signature(fn).parameters)[:2] == ["class_name", "passages"]
    assert set(inspect.signature(w.write).parameters) == {"class_name", "passages", "entry_id"}
    msgs = w.build_messages(AF_NAME, AF_PASSAGES)
    assert [m.type for m in msgs] == ["system", "human"]
    blob = "\n".join(m.content for m in msgs)
    for p in AF_PASSAGES:
        assert f"[{p.id}] {p.text.rstrip('.')}" in blob
    assert AF_NAME in blob and "12-lead ECG" in blob
    for secret in (canary, "P-778899", "1950-01-01", "00042_hr", "records500"):
        assert secret not in blob
    w.write(AF_NAME, AF_PASSAGES)
    assert all(canary not in c for call in rec.calls for c in call)
    # a sample handed over by mistake is refused before anything reaches the model
    with pytest.raises(TypeError, match="passages"):
        w.write(AF_NAME, [*AF_PASSAGES, sample])
    with pytest.raises(TypeError):
        w.build_messages(AF_NAME, [sample])
    assert len(rec.calls) == 1


def test_llm_writer_with_cache_records_model(tmp_path: Path):
    from medzs.prompts.llm import LLMWriter

    good = '[{"text": "No distinct P waves", "passage_ids": ["ecg.scp.AFIB#criterion-1"]}]'
    model, rec = _recording_model([good, good])
    cache, w = PromptCache(tmp_path / "llm"), LLMWriter(model)
    a = cache.get_or_write("AFIB", AF, AF_NAME, AF_PASSAGES, w)
    b = cache.get_or_write("AFIB", AF, AF_NAME, AF_PASSAGES, w)
    assert a == b and len(rec.calls) == 1
    (record,) = cache.records()
    assert record["model"] == "fake-list-chat-model" and record["writer"] == "llm"
    assert record["template_hash"] == w.template_hash
    assert LLMWriter(model, n_descriptors=3).template_hash != w.template_hash


def test_import_is_cheap():
    code = ("import sys, medzs.prompts, medzs.scoring, medzs.metrics, medzs.report; "
            "heavy = [m for m in sys.modules if m.split('.')[0] in ('langchain_core', 'torch', 'matplotlib')]; "
            "assert not heavy, heavy")
    subprocess.run([sys.executable, "-c", code], check=True)
