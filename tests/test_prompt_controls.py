"""Prompt controls and variants (medzs.prompts.controls): templates, random words, CHiLS, pos/neg.

Prompt generation is tested on the real knowledge base (passages built from the YAML entries, no Chroma); one
small real run scores 40 real PTB-XL records (training folds) with every variant.
"""

from __future__ import annotations

import re
import zlib
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from medzs.data.tasks import get_task
from medzs.errors import SpecError
from medzs.knowledge.kb import passages_from_entry
from medzs.knowledge.loader import ancestors, load_entries
from medzs.prompts.cache import build_task_prompts
from medzs.prompts.controls import (
    ECG_TEMPLATES,
    POSNEG_TEMPLATES,
    VARIANTS,
    ExpandedClassPrompts,
    PosNegClassPrompts,
    RandomWordsWriter,
    TemplateEnsembleWriter,
    chils_task_prompts,
    default_word_list,
    is_normal_name,
    kb_descendants,
    map_max,
    negative_phrase,
    posneg_scores,
    posneg_task_prompts,
    score_prompts,
    split_descriptor,
    variant_provenance,
    variant_task_prompts,
)
from medzs.prompts.grounded import GroundedWriter, NamesOnlyWriter
from medzs.prompts.types import ClassPrompts, Prompt
from medzs.scoring import class_embeddings, similarity

ECG_TASKS = ("ptbxl-super", "ptbxl-sub", "ptbxl-form", "ptbxl-rhythm", "ptbxl-all")


@pytest.fixture(scope="module")
def entries():
    return load_entries(modality="ecg")


@pytest.fixture(scope="module")
def retrieve(entries):
    by_id = {e.id: e for e in entries}
    return lambda entry_id, name: passages_from_entry(by_id[entry_id])


def _task_classes(task):
    return {c: (task.kb_ids[c], task.display_names[c]) for c in task.classes}


# ----------------------------------------------------------------------------------------------- templates
def test_templates_contain_the_class_name_once_per_template():
    w = TemplateEnsembleWriter()
    assert 6 <= len(ECG_TEMPLATES) <= 10
    prompts = w.write("Complete left bundle branch block", [])
    assert len(prompts) == len(ECG_TEMPLATES)
    assert all("complete left bundle branch block" in p.text for p in prompts)
    assert prompts[0].text == "complete left bundle branch block"
    assert prompts[1].text == "an ECG showing complete left bundle branch block"
    assert all(p.passage_ids == () for p in prompts)
    assert w.template_hash == TemplateEnsembleWriter().template_hash != TemplateEnsembleWriter(["{name}"]).template_hash
    with pytest.raises(ValueError, match="placeholder"):
        TemplateEnsembleWriter(["an ECG"])
    for code, cp in variant_task_prompts(get_task("ptbxl-form"), "templates").items():
        assert all(cp.class_name.lower()[:5] in t.lower() for t in cp.texts), code


# -------------------------------------------------------------------------------------------- random words
@pytest.mark.parametrize("entry_id,name", [
    ("ecg.superclass.HYP", "hypertrophy"),
    ("ecg.superclass.CD", "conduction disturbance"),
    ("ecg.scp.CLBBB", "complete left bundle branch block"),
    ("ecg.subclass._AVB", "atrioventricular block"),
])
def test_random_words_mimic_the_grounded_prompts(retrieve, entry_id, name):
    passages = retrieve(entry_id, name)
    src = GroundedWriter().write(name, passages, entry_id=entry_id)
    rnd = RandomWordsWriter(seed=0).write(name, passages, entry_id=entry_id)
    words = set(default_word_list())
    assert len(src) >= 5 and len(rnd) == len(src)
    assert rnd[0].text == src[0].text == name  # the bare name is kept
    n_words = 0
    for s, r in zip(src[1:], rnd[1:]):
        assert r.text.startswith(name)  # prefixed by the class name
        s_prefix, s_body = split_descriptor(s.text, name)
        r_prefix, r_body = split_descriptor(r.text, name)
        assert r_prefix in (s_prefix, f"{name}:")
        s_words, r_words = s_body.split(), r_body.split()
        assert len(r_words) == len(s_words) > 0  # same word count
        for a, b in zip(s_words, r_words):
            assert b in words and b.lower() != a.lower()  # a different word of the list ...
            assert len(b) == min(max(1, sum(ch.isalnum() for ch in a)), 18)  # ... of the same length
        assert r.passage_ids == ()  # random words rest on no passage
        n_words += len(s_words)
    assert n_words > 50


def test_random_words_are_seeded(retrieve):
    name, eid = "myocardial infarction", "ecg.superclass.MI"
    passages = retrieve(eid, name)
    a = [p.text for p in RandomWordsWriter(seed=0).write(name, passages)]
    b = [p.text for p in RandomWordsWriter(seed=0).write(name, passages)]
    c = [p.text for p in RandomWordsWriter(seed=1).write(name, passages)]
    assert a == b
    assert a[0] == c[0] and all(x != y for x, y in zip(a[1:], c[1:]))
    assert RandomWordsWriter(seed=0).template_hash != RandomWordsWriter(seed=1).template_hash
    # Independent of the other classes of the task (seeded by the class name, not by call order).
    task = get_task("ptbxl-super")
    full = variant_task_prompts(task, "random-words", retrieve=retrieve)
    assert full["MI"].texts == a


def test_split_descriptor():
    assert split_descriptor("hypertrophy, with tall R", "hypertrophy") == ("hypertrophy,", "with tall R")
    assert split_descriptor("hypertrophy: thick wall", "hypertrophy") == ("hypertrophy:", "thick wall")
    assert split_descriptor("hypertrophy", "hypertrophy") == ("hypertrophy", "")
    assert split_descriptor("atrial enlargement", "hypertrophy") == ("", "atrial enlargement")


# --------------------------------------------------------------------------------------------------- CHiLS
def test_kb_descendants_follow_the_hierarchy(entries):
    cd = kb_descendants("ecg.superclass.CD", entries)
    assert {"ecg.scp.CLBBB", "ecg.scp.CRBBB", "ecg.subclass._AVB", "ecg.scp.1AVB", "ecg.scp.LAFB"} <= set(cd)
    assert "ecg.superclass.CD" not in cd and "ecg.scp.NORM" not in cd and "ecg.scp.LVH" not in cd
    assert cd == sorted(cd)
    assert kb_descendants("ecg.superclass.NORM", entries) == ["ecg.scp.NORM"]
    assert kb_descendants("ecg.scp.CLBBB", entries) == []
    by_id = {e.id: e for e in entries}
    for parent in ("ecg.superclass.MI", "ecg.superclass.STTC", "ecg.subclass.ISCA"):
        for d in kb_descendants(parent, entries):  # the inverse of the loader's ancestors()
            assert parent in ancestors(d, entries), (parent, d)
        assert {e.id for e in entries if parent in ancestors(e.id, entries)} == set(kb_descendants(parent, entries))
    assert "ecg.scp.ISCAL" in kb_descendants("ecg.subclass.ISCA", entries) and by_id["ecg.scp.ISCAL"]
    with pytest.raises(SpecError, match="not a knowledge-base entry"):
        kb_descendants("ecg.superclass.XYZ", entries)


def test_kb_descendants_are_recursive_on_a_toy_hierarchy():
    e = lambda i, *p: SimpleNamespace(id=i, parents=list(p))
    toy = [e("A"), e("B", "A"), e("C", "B"), e("D", "C", "A"), e("X"), e("Y", "X")]
    assert kb_descendants("A", toy) == ["B", "C", "D"]
    assert kb_descendants("B", toy) == ["C", "D"]
    assert kb_descendants("D", toy) == []


def test_map_max_on_a_hand_made_matrix():
    s = np.array([[0.1, 0.5, 0.3, -0.2],
                  [0.9, -0.1, 0.2, 0.4],
                  [0.0, 0.0, 0.7, 0.8]])
    out = map_max(s, [[0, 2], [1], [3, 1], [0, 1, 2, 3]])
    expected = np.array([[0.3, 0.5, 0.5, 0.5],
                         [0.9, -0.1, 0.4, 0.9],
                         [0.7, 0.0, 0.8, 0.8]])
    np.testing.assert_array_equal(out, expected)
    with pytest.raises(ValueError, match="at least one member"):
        map_max(s, [[0], []])
    with pytest.raises(ValueError, match="out of range"):
        map_max(s, [[4]])


def test_chils_prompts_expand_each_class_into_itself_and_its_descendants(entries, retrieve):
    task = get_task("ptbxl-super")
    ps = variant_task_prompts(task, "chils", entries=entries, retrieve=retrieve)
    assert list(ps) == list(task.classes)
    grounded = GroundedWriter()
    for code, cp in ps.items():
        assert isinstance(cp, ExpandedClassPrompts)
        ids = [m.entry_id for m in cp.members]
        assert ids == [task.kb_ids[code], *kb_descendants(task.kb_ids[code], entries)]
        # The class itself is the first member, with exactly its grounded prompts.
        assert cp.members[0].texts == [p.text for p in grounded.write(task.display_names[code], retrieve(
            ids[0], ""), entry_id=ids[0])]
        assert len(cp.prompts) == sum(len(m.prompts) for m in cp.members)
    assert "ecg.scp.CLBBB" in [m.entry_id for m in ps["CD"].members]
    clbbb = next(m for m in ps["CD"].members if m.entry_id == "ecg.scp.CLBBB")
    assert clbbb.class_name == "complete left bundle branch block"
    assert all(i.startswith("ecg.scp.CLBBB#") for p in clbbb.prompts for i in p.passage_ids)
    prov = variant_provenance(ps)
    assert prov["variant"] == "chils" and prov["members"]["NORM"] == ["ecg.superclass.NORM", "ecg.scp.NORM"]


# ------------------------------------------------------------------------------------------------- pos/neg
_DOUBLE_NEG = re.compile(r"\b(no|not|without|non-?)\s+(normal|no|without|unremarkable)\b|\bno\s+no\b",
                         re.IGNORECASE)


@pytest.mark.parametrize("task_name", ECG_TASKS)
def test_posneg_never_double_negates(task_name):
    task = get_task(task_name)
    ps = posneg_task_prompts(_task_classes(task))
    for code, cp in ps.items():
        assert isinstance(cp, PosNegClassPrompts)
        assert len(cp.negatives) == len(cp.prompts) == len(POSNEG_TEMPLATES)
        for pos, neg in zip(cp.texts, (p.text for p in cp.negatives)):
            assert not _DOUBLE_NEG.search(neg), (code, neg)
            assert pos != neg
        if is_normal_name(task.display_names[code]):
            assert all("abnormal" in p.text for p in cp.negatives), code
        else:
            assert cp.negatives[0].text == f"no {cp.texts[0]}"
    if "NORM" in task.classes:
        assert ps["NORM"].negatives[0].text == "abnormal ECG"


def test_negative_phrase_rules():
    assert negative_phrase("normal ECG") == "abnormal ECG"
    assert negative_phrase("No Finding") == "abnormal findings"
    assert negative_phrase("unremarkable") == "abnormal findings"
    assert negative_phrase("normal sinus rhythm") == "abnormal sinus rhythm"
    assert negative_phrase("Atrial fibrillation") == "no atrial fibrillation"
    assert negative_phrase("abnormal QRS") == "no abnormal QRS"
    assert not is_normal_name("non-specific ST changes") and not is_normal_name("sinus rhythm")


# ------------------------------------------------------------------------------------------------- scoring
def _fake_encoder(dim: int = 16):
    def enc(texts):
        out = []
        for t in texts:
            rng = np.random.default_rng(zlib.crc32(t.encode()))
            out.append(rng.normal(size=dim))
        return np.array(out)
    return enc


def test_score_prompts_matches_the_definitions():
    enc = _fake_encoder()
    rng = np.random.default_rng(0)
    sig = rng.normal(size=(6, 16))
    plain = [ClassPrompts("A", "a", "a", (Prompt("a1"), Prompt("a2"))), ClassPrompts("B", "b", "b", (Prompt("b1"),))]
    np.testing.assert_allclose(score_prompts(enc, sig, plain), similarity(sig, class_embeddings(enc, plain)))
    np.testing.assert_allclose(score_prompts(enc, sig, plain, softmax=True),
                               similarity(sig, class_embeddings(enc, plain), softmax=True))
    # CHiLS: max over members' cosines.
    m = {k: ClassPrompts(k, k, k, (Prompt(k + "1"), Prompt(k + "2"))) for k in "abcd"}
    exp = [ExpandedClassPrompts("A", "a", "a", (), members=(m["a"], m["b"])),
           ExpandedClassPrompts("C", "c", "c", (), members=(m["c"], m["b"], m["d"]))]
    cos = similarity(sig, class_embeddings(enc, [m[k] for k in "abcd"]))
    got = score_prompts(enc, sig, exp)
    np.testing.assert_allclose(got, np.stack([cos[:, [0, 1]].max(1), cos[:, [2, 1, 3]].max(1)], 1))
    # pos/neg: pairwise softmax of positive vs negative class embeddings.
    pn = list(posneg_task_prompts({"X": ("x", "atrial fibrillation"), "N": ("n", "normal ECG")}).values())
    cp_ = similarity(sig, class_embeddings(enc, [c.texts for c in pn]))
    cn_ = similarity(sig, class_embeddings(enc, [[p.text for p in c.negatives] for c in pn]))
    got = score_prompts(enc, sig, pn)
    np.testing.assert_allclose(got, 1 / (1 + np.exp(-(cp_ - cn_) / 0.07)))
    assert np.all((got > 0) & (got < 1))
    np.testing.assert_allclose(posneg_scores([0.3], [0.3]), [0.5])
    with pytest.raises(SpecError, match="softmax"):
        score_prompts(enc, sig, pn, softmax=True)
    with pytest.raises(SpecError, match="mix"):
        score_prompts(enc, sig, [plain[0], pn[0]])


def test_unknown_variant_is_rejected():
    with pytest.raises(SpecError, match="prompts.writer"):
        variant_task_prompts(get_task("ptbxl-super"), "waffle")


# --------------------------------------------------------------------------------- one small real scoring run
@pytest.fixture(scope="module")
def real_run(ptbxl_root):
    """40 real PTB-XL records of training folds, embedded once with the embedded model (random if not trained)."""
    import torch

    from medzs import registry
    from medzs.data.ptbxl import PTBXL
    from medzs.pipeline import embed_ptbxl

    torch.manual_seed(0)
    name = "ecg-resnet18.medzs-ptbxl"
    if not Path(registry.get_config(name).weights).is_file():
        name = "ecg-resnet18.random"
    model = registry.create_model(name)
    model.eval()
    ds = PTBXL(ptbxl_root)
    labels = ds.labels("super", drop_empty=True, v1_0_3_only=True)
    ids = [i for i in ds.split("train") if i in labels.index][:40]
    emb = embed_ptbxl(model, ds, ids)

    def encode(texts):
        with torch.no_grad():
            return model.encode_text(list(texts))

    return SimpleNamespace(model=model, ids=ids, emb=emb, encode=encode, root=ptbxl_root)


def test_every_variant_scores_real_records(real_run, entries, retrieve):
    task = get_task("ptbxl-super")
    scores = {}
    for variant in (*VARIANTS, "grounded"):
        if variant == "grounded":
            ps = build_task_prompts(_task_classes(task), retrieve, GroundedWriter())
        elif variant == "chils":  # members named only, to keep the text encoding small (grounded members above)
            ps = chils_task_prompts(_task_classes(task), entries, retrieve, writer=NamesOnlyWriter())
        else:
            ps = variant_task_prompts(task, variant, entries=entries, retrieve=retrieve)
        s = score_prompts(real_run.encode, real_run.emb, [ps[c] for c in task.classes])
        assert s.shape == (40, 5) and np.all(np.isfinite(s)), variant
        assert np.ptp(s, axis=0).min() > 0, variant  # scores vary over records
        scores[variant] = s
    assert np.all((scores["posneg"] > 0) & (scores["posneg"] < 1))
    assert np.all(np.abs(scores["templates"]) <= 1 + 1e-9)
    # CHiLS includes the class itself: never below its names score, above it where a descendant wins.
    assert np.all(scores["chils"] >= scores["names"] - 1e-5)  # float32 text batches differ slightly
    assert np.any(scores["chils"] > scores["names"] + 1e-3)
    by_id = {e.id: e for e in entries}
    cd_names = ["conduction disturbance", *(by_id[d].name for d in kb_descendants("ecg.superclass.CD", entries))]
    by_hand = score_prompts(real_run.encode, real_run.emb, [[n] for n in cd_names]).max(axis=1)
    np.testing.assert_allclose(scores["chils"][:, list(task.classes).index("CD")], by_hand, atol=1e-5)
    assert not np.allclose(scores["random-words"], scores["grounded"])
    assert not np.allclose(scores["templates"], scores["names"])


def test_pipeline_runs_a_variant_end_to_end(real_run, tmp_path):
    import json

    from medzs.pipeline import PipelineConfig, run_zeroshot

    cfg = PipelineConfig(name="posneg-smoke", task="ptbxl-super",
                         dataset={"name": "ptbxl", "root": str(real_run.root), "ecg_ids": real_run.ids},
                         model={"name": real_run.model.config.name}, prompts={"writer": "posneg", "cache": None},
                         metrics={"n_boot": 20, "seed": 0})
    res = run_zeroshot(cfg, out_dir=tmp_path / "run", progress=False)
    assert res["n_records"] == 40
    meta = json.loads(Path(res["files"]["metrics"]).read_text())
    negatives = meta["provenance"]["prompts"]["variant"]["negatives"]
    assert negatives["NORM"][0] == "abnormal ECG" and negatives["MI"][0] == "no myocardial infarction"
    assert meta["provenance"]["prompts"]["classes"]["MI"][0] == "myocardial infarction"
    assert 0.0 <= res["macro"]["auroc"] <= 1.0
