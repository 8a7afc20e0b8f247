"""Knowledge base: entry validation, loader cross-checks, and the real Chroma store with the real local model."""

from __future__ import annotations

import copy
import csv
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from medzs.errors import KnowledgeBaseError
from medzs.knowledge.kb import KnowledgeBase, Passage, passages_from_entry, sha256_text
from medzs.knowledge.loader import (
    KNOWLEDGE_DIR_ENV,
    ancestors,
    kb_stats,
    knowledge_dir,
    load_entries,
    load_sources,
)
from medzs.knowledge.schema import Criterion

REPO = Path(__file__).resolve().parents[1]
KNOWLEDGE = REPO / "knowledge"
SUPERCLASSES = ("NORM", "MI", "STTC", "CD", "HYP")
SUBCLASSES = {"ISCA": "STTC", "ISCI": "STTC", "STTC": "STTC", "LAFB_LPFB": "CD", "_AVB": "CD"}


@pytest.fixture(scope="module")
def entries():
    return load_entries(KNOWLEDGE)


@pytest.fixture(scope="module")
def class_entries(entries):
    """The PTB-XL superclass and subclass entries (a small, stable set for incremental-build tests)."""
    return [e for e in entries if e.id.startswith(("ecg.superclass.", "ecg.subclass."))]


# ----------------------------------------------------------------------------------------------- entries
def test_committed_entries_validate(entries):
    ids = [e.id for e in entries]
    assert len(ids) == len(set(ids))
    known = set(load_sources(KNOWLEDGE))
    for e in entries:
        assert e.codes and e.criteria and e.sources and e.definition, e.id
        assert set(e.sources) <= known, e.id
        assert Path(e.path).stem == e.id, f"{e.path}: file name must be the id"
    for code in SUPERCLASSES:
        e = next(x for x in entries if x.id == f"ecg.superclass.{code}")
        assert e.codes["ptbxl_class"] == (code,)
        assert e.parents == ()
        assert e.rules, f"{e.id} should have measurement rules"
    for code, sup in SUBCLASSES.items():
        e = next(x for x in entries if x.id == f"ecg.subclass.{code}")
        assert e.parents == (f"ecg.superclass.{sup}",)
        assert e.codes["ptbxl_subclass"] == (code.replace("LAFB_LPFB", "LAFB/LPFB"),)
    cd = next(x for x in entries if x.id == "ecg.superclass.CD")
    assert any(r.measurement == "qrs_duration" and r.comparison == ">=" and r.threshold == 120 for r in cd.rules)
    avb = next(x for x in entries if x.id == "ecg.subclass._AVB")
    assert any(r.measurement == "pr_interval" and r.comparison == ">" and r.threshold == 200 for r in avb.rules)
    hyp = next(x for x in entries if x.id == "ecg.superclass.HYP")
    assert any(r.measurement == "sokolow_lyon" and r.threshold == 3.5 and r.unit == "mV" for r in hyp.rules)


def test_class_entry_snomed_codes_are_in_the_cinc_mapping(class_entries, shared_data):
    with (shared_data / "ecg" / "cinc-samples" / "challenge2021_dx_mapping.csv").open() as fh:
        known = {row["snomed_code"] for row in csv.DictReader(fh)}
    codes = {c for e in class_entries for c in e.codes.get("snomed_ct", ())}
    assert codes, "expected at least one SNOMED CT code among the class entries"
    assert codes <= known, codes - known


def test_kb_stats(entries):
    stats = kb_stats(entries)
    assert stats["entries"] == len(entries) == sum(m["entries"] for m in stats["modalities"].values())
    assert stats["modalities"]["ecg"]["entries"] == sum(1 for e in entries if e.modality == "ecg")
    assert stats["with_rules"] == sum(1 for e in entries if e.rules)
    for system in ("ptbxl_class", "ptbxl_subclass"):
        assert stats["code_systems"][system] == sum(1 for e in entries if e.codes.get(system)) >= 5


def test_knowledge_dir(monkeypatch, tmp_path):
    monkeypatch.delenv(KNOWLEDGE_DIR_ENV, raising=False)
    assert knowledge_dir() == KNOWLEDGE
    monkeypatch.setenv(KNOWLEDGE_DIR_ENV, str(tmp_path))
    assert knowledge_dir() == tmp_path
    monkeypatch.setenv(KNOWLEDGE_DIR_ENV, str(tmp_path / "missing"))
    with pytest.raises(KnowledgeBaseError, match="missing"):
        knowledge_dir()


# ----------------------------------------------------------------------------------------------- malformed
@pytest.fixture()
def kroot(tmp_path):
    """A private knowledge folder with the real bibliography and one valid entry (CD)."""
    root = tmp_path / "knowledge"
    (root / "ecg").mkdir(parents=True)
    shutil.copy(KNOWLEDGE / "sources.yaml", root / "sources.yaml")
    shutil.copy(KNOWLEDGE / "ecg" / "ecg.superclass.CD.yaml", root / "ecg" / "ecg.superclass.CD.yaml")
    return root


def _valid_raw():
    return yaml.safe_load((KNOWLEDGE / "ecg" / "ecg.subclass._AVB.yaml").read_text())


def _write(root, name, raw):
    path = root / "ecg" / name
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def test_valid_private_root_loads(kroot):
    _write(kroot, "ecg.subclass._AVB.yaml", _valid_raw())
    assert [e.id for e in load_entries(kroot)] == ["ecg.subclass._AVB", "ecg.superclass.CD"]
    assert load_entries(kroot, modality="cxr") == []


def _drop(key):
    def f(raw):
        del raw[key]
    return f


def _set(path, value):
    def f(raw):
        obj = raw
        for k in path[:-1]:
            obj = obj[k]
        obj[path[-1]] = value
    return f


MALFORMED = {
    "missing criteria": (_drop("criteria"), "criteria"),
    "empty criteria": (_set(["criteria"], []), "criteria"),
    "missing sources": (_drop("sources"), "sources"),
    "missing codes": (_drop("codes"), "codes"),
    "codes without any code": (_set(["codes"], {"scp_ecg": []}), "codes"),
    "bad unit": (_set(["criteria", 0, "rule", "unit"], "s"), "rule.unit"),
    "unknown measurement": (_set(["criteria", 0, "rule", "measurement"], "pr_length"), "rule.measurement"),
    "unknown source": (_set(["sources"], ["ptbxl-2020", "wikipedia"]), "sources"),
    "unknown parent": (_set(["parents"], ["ecg.superclass.NOPE"]), "parents"),
    "bad lead name": (_set(["criteria", 0, "rule", "leads"], ["V7x"]), "rule.leads"),
    "between low > high": (_set(["criteria", 0, "rule"], {"measurement": "pr_interval", "comparison": "between",
                                                          "threshold": [300, 200], "unit": "ms"}), "threshold"),
    "unquoted YAML boolean code": (_set(["codes", "scp_ecg"], [False]), "codes.scp_ecg"),
    "wrong modality folder": (_set(["id"], "cxr.subclass._AVB"), "modality"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_entry_is_rejected_naming_file_and_field(kroot, case):
    mutate, fld = MALFORMED[case]
    raw = copy.deepcopy(_valid_raw())
    mutate(raw)
    if case == "wrong modality folder":
        raw["modality"] = "cxr"
    path = _write(kroot, "ecg.subclass._AVB.yaml", raw)
    with pytest.raises(KnowledgeBaseError) as err:
        load_entries(kroot)
    msg = str(err.value)
    assert str(path) in msg, msg
    assert fld in msg, msg


def test_invalid_yaml_is_rejected(kroot):
    path = kroot / "ecg" / "ecg.subclass._AVB.yaml"
    path.write_text("id: [unclosed\n")
    with pytest.raises(KnowledgeBaseError, match="YAML") as err:
        load_entries(kroot)
    assert str(path) in str(err.value)


def test_duplicate_id_names_both_files(kroot):
    raw = _valid_raw()
    first = _write(kroot, "ecg.subclass._AVB.yaml", raw)
    second = _write(kroot, "ecg.subclass._AVB-copy.yaml", raw)
    with pytest.raises(KnowledgeBaseError, match="duplicate") as err:
        load_entries(kroot)
    assert str(first) in str(err.value) and str(second) in str(err.value)


def test_parent_cycle_is_rejected(kroot):
    a, b = _valid_raw(), _valid_raw()
    a["parents"] = ["ecg.subclass.B"]
    b["id"], b["parents"] = "ecg.subclass.B", ["ecg.subclass._AVB"]
    _write(kroot, "ecg.subclass._AVB.yaml", a)
    _write(kroot, "ecg.subclass.B.yaml", b)
    with pytest.raises(KnowledgeBaseError, match="cycle"):
        load_entries(kroot)


# ----------------------------------------------------------------------------------------------- passages
def test_passages_from_entry(class_entries):
    cd = next(e for e in class_entries if e.id == "ecg.superclass.CD")
    ps = passages_from_entry(cd)
    ids = [p.id for p in ps]
    assert ids[0] == "ecg.superclass.CD#definition"
    assert ids[1:1 + len(cd.criteria)] == [f"ecg.superclass.CD#criterion-{i}" for i in range(len(cd.criteria))]
    assert ids[-1] == "ecg.superclass.CD#synonyms"
    for p in ps:
        assert p.text.startswith(cd.name)
        assert p.metadata["content_hash"] == p.sha256 == sha256_text(p.text)
        assert p.metadata["codes"] == "ptbxl_class:CD"
        assert p.sources == cd.sources and p.metadata["sources"] == ";".join(cd.sources)
        assert all(isinstance(v, (str, int, float, bool)) for v in p.metadata.values())
    assert ps[1].metadata["rule"] == "qrs_duration >= 120 ms"


# ----------------------------------------------------------------------------------------------- embedding
def test_embedding_function_is_local_and_reconstructible():
    import numpy as np

    from medzs.knowledge.embedding import (
        EF_NAME,
        embedding_function,
        embedding_function_class,
    )

    ef = embedding_function()
    assert ef.name() == EF_NAME and ef.default_space() == "cosine"
    assert not ef.is_legacy()
    clone = embedding_function_class().build_from_config(ef.get_config())
    assert clone.get_config() == ef.get_config() and clone.get_config()["model_path"] is None
    v = np.asarray(ef(["left bundle branch block", "normal ECG"]))
    assert v.shape == (2, 384)
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(np.asarray(clone(["normal ECG"]))[0], v[1], atol=1e-6)
    assert ef.n_embedded == 2


# ----------------------------------------------------------------------------------------------- Chroma
_REOPEN = textwrap.dedent(
    """
    import json, sys, warnings
    warnings.simplefilter("always")
    with warnings.catch_warnings(record=True) as caught:
        from medzs.knowledge.kb import KnowledgeBase
        kb = KnowledgeBase(create=False)
        out = {"count": kb.count(),
               "get": [[p.id, p.text, list(p.sources)] for p in kb.get(json.loads(sys.argv[1]))],
               "top": [p.entry_id for p in kb.query(sys.argv[2], k=3)]}
        import chromadb
        from chromadb.config import Settings
        raw = chromadb.PersistentClient(path=str(kb.path), settings=Settings(anonymized_telemetry=False,
                                                                               allow_reset=False))
        col = raw.get_collection("medzs-ecg")  # no embedding function given: rebuilt from the stored config
        out["ef"] = type(col.configuration.get("embedding_function")).__name__
        out["raw_top"] = col.query(query_texts=[sys.argv[2]], n_results=1)["metadatas"][0][0]["entry_id"]
    out["warnings"] = [str(w.message) for w in caught
                       if "embedding" in str(w.message).lower() or "legacy" in str(w.message).lower()]
    print("RESULT" + json.dumps(out))
    """
)


def test_build_query_and_reopen_in_new_process(entries, medzs_home):
    # The class entries plus every conduction-disturbance statement (the hard negatives for the query:
    # CRBBB, ILBBB, IRBBB...). Embedding the whole KB would only make the test slower.
    entries = [e for e in entries
               if e.id.startswith(("ecg.superclass.", "ecg.subclass."))
               or "ecg.superclass.CD" in ancestors(e.id, entries)]
    kb = KnowledgeBase()
    assert kb.path == medzs_home / "chroma"
    report = kb.build(entries)
    n = sum(len(passages_from_entry(e)) for e in entries)
    assert kb.count() == n == len(report.added) == kb.embedding_function.n_embedded
    assert kb.entry_ids() == sorted(e.id for e in entries)

    have_clbbb = any(e.id == "ecg.scp.CLBBB" for e in entries)
    query, expected = (
        ("complete left bundle branch block", "ecg.scp.CLBBB") if have_clbbb
        else ("conduction disturbance", "ecg.superclass.CD")
    )
    hits = kb.query(query, k=5)
    assert len(hits) == 5
    assert hits[0].entry_id == expected, [(h.id, h.score) for h in hits]
    assert all(h.sources and h.id.startswith(h.entry_id + "#") for h in hits)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert kb.query(query, k=3, modality="cxr") == []

    ids = [hits[0].id, "ecg.superclass.CD#definition"]
    env = {**os.environ, "MEDZS_HOME": str(medzs_home), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "ANONYMIZED_TELEMETRY": "False"}
    proc = subprocess.run([sys.executable, "-c", _REOPEN, json.dumps(ids), query], env=env,
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT"))
    out = json.loads(line[len("RESULT"):])
    assert out["count"] == n
    assert out["get"] == [[p.id, p.text, list(p.sources)] for p in kb.get(ids)]
    assert out["top"][0] == expected
    assert out["ef"] == "MedzsEmbeddingFunction"
    assert out["raw_top"] == expected
    assert out["warnings"] == []


def test_incremental_build_and_retrieval(class_entries, medzs_home):
    kb = KnowledgeBase()
    first = kb.build(class_entries)
    all_ids = sorted(p.id for e in class_entries for p in passages_from_entry(e))
    assert sorted(first.added) == all_ids and kb.embedding_function.n_embedded == len(all_ids)

    # Unchanged rebuild in a fresh instance: nothing is embedded, hashes are the passages' sha256.
    kb2 = KnowledgeBase()
    again = kb2.build(class_entries)
    assert again.embedded == [] and again.deleted == [] and again.metadata_only == []
    assert sorted(again.unchanged) == all_ids
    assert kb2.embedding_function.n_embedded == 0
    stored = kb2.get(all_ids)
    assert all(p.metadata["content_hash"] == p.sha256 for p in stored)

    # Change one criterion text, one entry's sources (metadata only), and drop one entry.
    by_id = {e.id: e for e in class_entries}
    cd = by_id["ecg.superclass.CD"]
    crit = list(cd.criteria)
    crit[2] = Criterion("PR interval above 200 ms, i.e. delayed atrioventricular conduction.", crit[2].rule)
    by_id["ecg.superclass.CD"] = dataclasses.replace(cd, criteria=tuple(crit))
    hyp = by_id["ecg.superclass.HYP"]
    by_id["ecg.superclass.HYP"] = dataclasses.replace(hyp, sources=hyp.sources[:-1])
    dropped = by_id.pop("ecg.subclass.ISCI")
    kb3 = KnowledgeBase()
    changed = kb3.build(list(by_id.values()))
    assert changed.embedded == ["ecg.superclass.CD#criterion-2"]
    assert kb3.embedding_function.n_embedded == 1
    assert sorted(changed.metadata_only) == sorted(p.id for p in passages_from_entry(by_id["ecg.superclass.HYP"]))
    assert changed.deleted == sorted(p.id for p in passages_from_entry(dropped))
    assert kb3.count() == len(all_ids) - len(changed.deleted)
    (p,) = kb3.get(["ecg.superclass.CD#criterion-2"])
    assert p.text == "conduction disturbance: PR interval above 200 ms, i.e. delayed atrioventricular conduction."
    assert kb3.get(["ecg.superclass.HYP#definition"])[0].sources == hyp.sources[:-1]
    with pytest.raises(KnowledgeBaseError, match="ecg.subclass.ISCI"):
        kb3.retrieve("ecg.subclass.ISCI")
    with pytest.raises(KnowledgeBaseError, match="not found"):
        kb3.get(["ecg.subclass.ISCI#definition"])

    # retrieve: exact entry filter, canonical order without k, similarity order with a query.
    avb = by_id["ecg.subclass._AVB"]
    everything = kb3.retrieve(avb.id, k=None)
    assert [p.id for p in everything] == [p.id for p in passages_from_entry(avb)]
    assert all(p.entry_id == avb.id and p.score is None for p in everything)
    ranked = kb3.retrieve(avb.id, "PR interval longer than 200 ms", k=2)
    assert ranked[0].id == "ecg.subclass._AVB#criterion-0" and len(ranked) == 2
    assert ranked[0].score >= ranked[1].score
    by_name = kb3.retrieve("ecg.superclass.CD", k=3)
    assert all(p.entry_id == "ecg.superclass.CD" for p in by_name) and len(by_name) == 3
    assert kb3.query("conduction disturbance", k=1)[0].entry_id == "ecg.superclass.CD"

    # A full rebuild re-embeds everything.
    full = kb3.build(list(by_id.values()), rebuild=True)
    assert sorted(full.added) == sorted(p.id for e in by_id.values() for p in passages_from_entry(e))


def test_separate_named_collection(class_entries, medzs_home):
    kb = KnowledgeBase()
    kb.build(class_entries[:1])
    docs = KnowledgeBase(collection="medzs-user-docs")
    assert docs.count() == 0
    mine = [
        Passage("guide#p1", "guide", "A QRS wider than 120 ms suggests a bundle branch block.", "document",
                ("user-guide",), metadata={"modality": "ecg"}),
        Passage("guide#p2", "guide", "Atrial fibrillation shows an irregularly irregular rhythm.", "document",
                ("user-guide",), metadata={"modality": "ecg"}),
    ]
    assert sorted(docs.add_passages(mine).added) == ["guide#p1", "guide#p2"]
    assert docs.add_passages(mine).embedded == []
    assert docs.count() == 2 and kb.count() == len(passages_from_entry(class_entries[0]))
    top = docs.query("irregular rhythm without P waves", k=1)[0]
    assert top.id == "guide#p2" and top.sources == ("user-guide",)
