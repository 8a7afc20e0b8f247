"""The committed prompt caches (knowledge/prompts/*.json) must match the knowledge base they were written from.

A changed passage (definition, criterion or synonyms of an entry) changes its passages hash; this test then
fails until the cache is rebuilt (`medzs prompts build --task <task>`).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medzs.knowledge.kb import passages_from_entry
from medzs.knowledge.loader import load_entries
from medzs.prompts.grounded import GroundedWriter
from medzs.prompts.types import passages_hash

CACHES = sorted((Path(__file__).resolve().parents[1] / "knowledge" / "prompts").glob("*.json"))


@pytest.fixture(scope="module")
def entries():
    return {e.id: e for e in load_entries()}


def test_demo_task_caches_are_committed():
    names = {p.name for p in CACHES}
    for task in ("super", "sub", "form", "rhythm"):
        assert f"ptbxl-{task}.grounded.json" in names


@pytest.mark.parametrize("path", CACHES, ids=[p.name for p in CACHES])
def test_committed_cache_is_fresh(path, entries):
    records = json.loads(path.read_text())["entries"]
    assert records
    stale = []
    for rec in records.values():
        entry = entries.get(rec["entry_id"])
        if entry is None:
            stale.append(f"{rec['class_code']}: entry {rec['entry_id']} no longer exists")
            continue
        if passages_hash(passages_from_entry(entry)) != rec["passages_hash"]:
            stale.append(f"{rec['class_code']}: passages of {rec['entry_id']} changed")
        for prompt in rec["prompts"]:
            known = {p.id for p in passages_from_entry(entry)}
            assert set(prompt["passage_ids"]) <= known, (rec["class_code"], prompt)
        if rec["writer"] == "grounded":
            assert rec["template_hash"] == GroundedWriter().template_hash, f"{rec['class_code']}: template changed"
    assert not stale, f"{path.name} is stale; rebuild it with `medzs prompts build`: {stale}"


def test_a_changed_passage_is_detected(entries):
    """The freshness check can fail: editing one criterion changes exactly that entry's hash."""
    from dataclasses import replace

    cd = entries["ecg.superclass.CD"]
    edited = replace(cd, criteria=(replace(cd.criteria[0], text=cd.criteria[0].text + " (edited)"),) + cd.criteria[1:])
    assert passages_hash(passages_from_entry(edited)) != passages_hash(passages_from_entry(cd))
