"""Grounding validator: numbers and units, chatter, lexical and embedding support (real MiniLM), the log,
and its use inside the LLM writer (retry when no descriptor is supported)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medzs.errors import PromptError
from medzs.prompts import Prompt, TextPassage
from medzs.prompts.validator import (
    GroundingValidator,
    content_words,
    extract_quantities,
    is_chatter,
    read_validator_log,
    validator_log_path,
    write_validator_log,
)

LBBB = "ecg.scp.CLBBB"
NAME = "complete left bundle branch block"
PASSAGES = [
    TextPassage(f"{LBBB}#definition", LBBB,
                f"{NAME}: A conduction disturbance in which the left ventricle is activated late, through the right "
                "bundle. Septal activation runs from right to left.", "definition"),
    TextPassage(f"{LBBB}#criterion-0", LBBB, f"{NAME}: QRS duration of 120 ms or more in adults.", "criterion"),
    TextPassage(f"{LBBB}#criterion-1", LBBB, f"{NAME}: Broad notched or slurred R waves in I, aVL, V5 and V6.",
                "criterion"),
    TextPassage(f"{LBBB}#criterion-2", LBBB, f"{NAME}: Absent Q waves in two or more of leads I, V5 and V6.",
                "criterion"),
    TextPassage(f"{LBBB}#synonyms", LBBB, f"{NAME} (LBBB; complete LBBB)", "synonyms"),
]
C0, C1, C2 = (f"{LBBB}#criterion-{i}" for i in range(3))


@pytest.fixture(scope="module")
def validator() -> GroundingValidator:
    return GroundingValidator()


def _one(validator, text, ids, name=NAME):
    kept, dropped = validator.validate(name, [Prompt(text, tuple(ids))], PASSAGES)
    return kept, dropped


# ------------------------------------------------------------------------------------------------ numbers
def test_extract_quantities_units_ranges_directions_and_leads():
    def q(text, **kw):
        return [(x.value, x.unit, x.direction) for x in extract_quantities(text, **kw)]

    assert q("QRS duration of 120 ms or more in V1-V3") == [(120.0, "ms", "above")]
    assert q("QRS > 130 milliseconds on a 12-lead ECG") == [(130.0, "ms", "above")]
    assert q("PR interval under 0.2 s") == [(0.2, "s", "below")]
    assert q("110 to 119 ms") == [(110.0, "ms", None), (119.0, "ms", None)]
    assert q("ST elevation of 0.15-0.25 mV in V2 and V3") == [(0.15, "mV", None), (0.25, "mV", None)]
    assert q("axis between -45 and -90 degrees") == [(-45.0, "deg", None), (-90.0, "deg", None)]
    assert q("heart rate above 100 beats per minute") == [(100.0, "bpm", "above")]
    assert q("2nd degree block, 2:1 conduction") == [(2.0, None, None), (2.0, None, None), (1.0, None, None)]
    assert q("aVL, V5 and V6 on a 12 lead tracing") == []
    assert q("two or more leads", number_words=True) == [(2.0, None, None)]


def test_invented_numeric_criterion_is_dropped(validator):
    kept, dropped = _one(validator, "QRS duration above 130 ms", [C0])
    assert kept == []
    assert "130 ms" in dropped[0]["reason"] and "120 ms" in dropped[0]["reason"]
    assert dropped[0]["stage"] == "validator"


def test_supported_numeric_descriptor_is_kept(validator):
    kept, dropped = _one(validator, "a QRS duration of 120 milliseconds or longer in an adult", [C0])
    assert dropped == [] and len(kept) == 1


def test_number_resting_on_a_number_word_is_kept(validator):
    kept, dropped = _one(validator, "no Q waves in 2 or more of the leads I, V5 and V6", [C2])
    assert dropped == [], dropped


def test_unit_mismatch_and_reversed_comparison_are_dropped(validator):
    _, dropped = _one(validator, "QRS duration of 120 mV or more", [C0])
    assert dropped and dropped[0]["reason"].startswith("unit mismatch")
    _, dropped = _one(validator, "QRS duration under 120 ms", [C0])
    assert dropped and dropped[0]["reason"].startswith("comparison reversed")


def test_number_must_be_in_a_cited_passage_not_just_any_passage(validator):
    # 120 ms is in criterion-0, but the descriptor cites criterion-1 (a mis-citation)
    _, dropped = _one(validator, "broad notched R waves in V6 with QRS of 120 ms or more", [C1])
    assert dropped and "120 ms" in dropped[0]["reason"]
    kept, _ = _one(validator, "broad notched R waves in V6 with QRS of 120 ms or more", [C0, C1])
    assert len(kept) == 1


# ------------------------------------------------------------------------------------------------ chatter etc.
@pytest.mark.parametrize("text", [
    "Here are the descriptors for complete left bundle branch block",
    "Sure! Broad notched R waves in I, aVL, V5 and V6",
    "As an AI language model, I note broad notched R waves in V6",
    "Broad notched R waves in V6, according to the passages",
    "Descriptions:",
])
def test_chatter_is_dropped(validator, text):
    assert is_chatter(text)
    kept, dropped = _one(validator, text, [C1])
    assert kept == [] and dropped[0]["reason"] == "chatter, not a descriptor"


def test_citations_required_name_kept(validator):
    prompts = [Prompt(NAME), Prompt("broad notched R waves in V6"), Prompt("broad R waves", ("ecg.scp.X#criterion-9",))]
    kept, dropped = validator.validate(NAME, prompts, PASSAGES)
    assert kept == [Prompt(NAME)]
    assert [d["reason"] for d in dropped] == ["cites no passage", "unknown passage id(s): ['ecg.scp.X#criterion-9']"]


def test_unsupported_content_is_dropped_lexically(validator):
    kept, dropped = _one(validator, "elevated troponin with chest pain radiating to the left arm", [C1])
    assert kept == [] and dropped[0]["reason"].startswith("lexical support")
    assert dropped[0]["scores"]["lexical"] < 0.5


def test_content_words_ignore_filler_and_stem():
    assert content_words("The ECG typically shows broad notched R waves") == {"broad", "notch", "r", "wave"}


def test_embedding_support_uses_real_minilm(validator):
    text = "wide, notched or slurred R waves in leads I, aVL, V5 and V6"
    kept, dropped = _one(validator, text, [C1])
    assert len(kept) == 1
    score = validator.log[NAME]["checks"][-1]["kept"][0]["scores"]["cosine"]
    assert 0.6 < score < 1.0
    strict = GroundingValidator(min_cosine=0.99)
    kept, dropped = strict.validate(NAME, [Prompt(text, (C1,))], PASSAGES)
    assert kept == [] and dropped[0]["reason"].startswith("embedding support")


def test_synonym_descriptor_is_supported(validator):
    kept, dropped = _one(validator, "LBBB", [f"{LBBB}#synonyms"])
    assert dropped == [] and kept


def test_validator_is_deterministic_and_logs_every_decision():
    prompts = [Prompt(NAME), Prompt("QRS duration of 120 ms or more", (C0,)), Prompt("QRS above 140 ms", (C0,)),
               Prompt("Here are the attributes:", (C1,))]
    a, b = GroundingValidator(), GroundingValidator()
    ra, rb = a.validate(NAME, prompts, PASSAGES, entry_id=LBBB), b.validate(NAME, prompts, PASSAGES, entry_id=LBBB)
    assert ra == rb and a.log == b.log
    check = a.log[LBBB]["checks"][0]
    assert [k["text"] for k in check["kept"]] == [NAME, "QRS duration of 120 ms or more"]
    assert len(check["dropped"]) == 2 and all(d["reason"] for d in check["dropped"])


def test_config_hash_tracks_thresholds():
    assert GroundingValidator().config_hash == GroundingValidator().config_hash
    assert GroundingValidator(min_lexical=0.6).config_hash != GroundingValidator().config_hash
    assert GroundingValidator(min_cosine=0.4).config_hash != GroundingValidator().config_hash
    with pytest.raises(ValueError, match="min_lexical"):
        GroundingValidator(min_lexical=1.5)


def test_grounded_prompts_of_the_real_kb_pass(validator):
    """No false positives on text taken verbatim from the knowledge base (superclasses + every 6th entry)."""
    from medzs.knowledge.kb import passages_from_entry
    from medzs.knowledge.loader import load_entries
    from medzs.prompts import GroundedWriter

    entries = [e for e in load_entries(modality="ecg")]
    chosen = [e for e in entries if e.id.startswith("ecg.superclass.")] + entries[::6]
    assert len(chosen) >= 10
    writer = GroundedWriter()
    for e in chosen:
        passages = passages_from_entry(e)
        prompts = [p for p in writer.write(e.name, passages, entry_id=e.id)
                   if not any(i.endswith("#synonyms") for i in p.passage_ids)]
        kept, dropped = validator.validate(e.name, prompts, passages)
        assert dropped == [], (e.id, dropped)


# ------------------------------------------------------------------------------------------------ the log
def test_validator_log_file_merges_and_is_stable(tmp_path: Path):
    cache = tmp_path / "task.llm-m.json"
    log = validator_log_path(cache)
    assert log == tmp_path / "validator" / "task.llm-m.json"
    assert validator_log_path(tmp_path / "folder") == tmp_path / "folder" / "validator.json"
    v = GroundingValidator()
    assert write_validator_log(log, v) is None and not log.exists()
    v.validate(NAME, [Prompt("QRS above 130 ms", (C0,))], PASSAGES, entry_id=LBBB)
    write_validator_log(log, v, model="m", class_codes={LBBB: "CLBBB"})
    first = log.read_text()
    data = read_validator_log(log)
    assert data["classes"][LBBB]["class_code"] == "CLBBB"
    assert "130 ms" in data["classes"][LBBB]["checks"][0]["dropped"][0]["reason"]
    v2 = GroundingValidator()
    v2.validate("atrial fibrillation", [Prompt("atrial fibrillation")], PASSAGES, entry_id="ecg.scp.AFIB")
    write_validator_log(log, v2, model="m")
    data = read_validator_log(log)
    assert set(data["classes"]) == {LBBB, "ecg.scp.AFIB"}  # merged, the earlier class kept
    write_validator_log(log, v, model="m", class_codes={LBBB: "CLBBB"})
    write_validator_log(log, v2, model="m")
    assert json.loads(log.read_text())["classes"][LBBB] == json.loads(first)["classes"][LBBB]
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(ValueError, match="format"):
        read_validator_log(tmp_path / "bad.json")


# ------------------------------------------------------------------------------------------------ in the writer
def _fake_chat(responses):
    from langchain_core.language_models.fake_chat_models import FakeListChatModel

    return FakeListChatModel(responses=list(responses))


def _answer(*items):
    return json.dumps([{"text": t, "passage_ids": ids} for t, ids in items])


def test_llm_writer_runs_validator_and_records_drops(validator):
    from medzs.prompts.llm import LLMWriter

    answer = _answer(("QRS duration of 120 ms or more in adults", [C0]),
                     ("QRS duration above 130 ms", [C0]),
                     ("Here are the attributes of LBBB:", [C1]),
                     ("broad notched or slurred R waves in I, aVL, V5 and V6", [C1]))
    v = GroundingValidator()
    writer = LLMWriter(_fake_chat([answer]), validator=v)
    cp = writer.write_class("CLBBB", LBBB, NAME, PASSAGES)
    assert cp.texts == [NAME, "QRS duration of 120 ms or more in adults",
                        "broad notched or slurred R waves in I, aVL, V5 and V6"]
    reasons = {d["text"]: d["reason"] for d in cp.dropped}
    assert "130 ms" in reasons["QRS duration above 130 ms"]
    assert any("chatter" in r for r in reasons.values())
    assert LBBB in v.log
    assert LLMWriter(_fake_chat([answer])).template_hash != writer.template_hash


def test_llm_writer_retries_when_nothing_is_supported_then_keeps_the_name_and_the_reasons():
    from langchain_core.language_models.fake_chat_models import FakeListChatModel
    from langchain_core.messages import HumanMessage

    from medzs.prompts.llm import LLMWriter

    bad = _answer(("QRS duration above 150 ms", [C0]))
    good = _answer(("QRS duration of 120 ms or more", [C0]))
    writer = LLMWriter(_fake_chat([bad, good]), validator=GroundingValidator())
    assert writer.write(NAME, PASSAGES)[1].text == "QRS duration of 120 ms or more"

    seen: list[list] = []

    class Recording(FakeListChatModel):
        def invoke(self, messages, *args, **kwargs):
            seen.append(list(messages))
            return super().invoke(messages, *args, **kwargs)

    writer = LLMWriter(Recording(responses=[bad, bad, bad]), max_retries=2, validator=GroundingValidator())
    cp = writer.write_class("CLBBB", LBBB, NAME, PASSAGES)
    assert len(seen) == 3 and isinstance(seen[1][-1], HumanMessage) and "150 ms" in seen[1][-1].content
    assert cp.texts == [NAME]  # well-formed but unsupported: dropped with reasons, not silently
    assert len(cp.dropped) == 3 and all("150 ms" in d["reason"] for d in cp.dropped)
    # a malformed answer is still an error after the retries
    writer = LLMWriter(_fake_chat(["no JSON here"] * 3), max_retries=2, validator=GroundingValidator())
    with pytest.raises(PromptError, match=r"complete left bundle branch block.*3 attempt"):
        writer.write(NAME, PASSAGES)
