"""Knowledge-criteria scorer (medzs.criteria): soft checks, lead aggregation, logic, the scorer on real PTB-XL
records, rank-average fusion, the registry entry and the pipeline branch."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from medzs.criteria import (
    CompiledRule,
    CriteriaScorer,
    combine,
    compile_entry,
    fuse_rank_average,
    rule_scale,
    soft_check,
)
from medzs.errors import SpecError
from medzs.knowledge.loader import load_entries
from medzs.knowledge.schema import MEASUREMENTS, Criterion, Entry, Rule
from medzs.measure.ecg import PER_LEAD, Measurements
from medzs.spec import STANDARD_12_LEADS

S = 1 / (1 + math.exp(-1))  # logistic(1) = 0.731


def _m(**values) -> Measurements:
    """Measurements with the given values (per-lead ones as dicts), NaN elsewhere."""
    vals = {k: ({lead: float("nan") for lead in STANDARD_12_LEADS} if k in PER_LEAD else float("nan"))
            for k in MEASUREMENTS}
    for k, v in values.items():
        if isinstance(v, dict):
            vals[k].update(v)
        else:
            vals[k] = float(v)
    return Measurements("test", vals, dict(MEASUREMENTS), {"qrs_duration": "QRS boundaries not found"})


def _rule(measurement, comparison, threshold, leads=(), agg="any", k=1) -> CompiledRule:
    r = Rule(measurement, comparison, threshold, MEASUREMENTS[measurement], tuple(leads), agg, k)
    return CompiledRule(r, "test criterion", rule_scale(r))


# -- soft checks ---------------------------------------------------------------------------------------------------
def test_soft_check_hand_values():
    assert soft_check(120.0, ">=", 120.0, 10.0) == pytest.approx(0.5)
    assert soft_check(130.0, ">", 120.0, 10.0) == pytest.approx(S)
    assert soft_check(110.0, "<", 120.0, 10.0) == pytest.approx(S)
    assert soft_check(140.0, "<=", 120.0, 10.0) == pytest.approx(1 - 1 / (1 + math.exp(-2)))
    assert soft_check(80.0, "between", (60.0, 100.0), 5.0) > 0.98
    assert soft_check(60.0, "between", (60.0, 100.0), 5.0) == pytest.approx(0.5, abs=1e-3)
    assert soft_check(3.0, "==", 3.0, 0.5) == pytest.approx(1.0)
    assert math.isnan(soft_check(float("nan"), ">", 1.0, 1.0))
    with pytest.raises(SpecError):
        soft_check(1.0, "~", 1.0, 1.0)


def test_scales_per_unit_and_measurement():
    assert rule_scale(Rule("qrs_duration", ">=", 120.0, "ms")) == 10.0
    assert rule_scale(Rule("heart_rate", ">", 100.0, "bpm")) == 5.0
    assert rule_scale(Rule("rr_cv", ">", 0.1, "1")) == 0.02
    assert rule_scale(Rule("st_deviation", "<=", -0.05, "mV")) == 0.025
    assert rule_scale(Rule("sokolow_lyon", ">=", 3.5, "mV")) == 0.1
    assert rule_scale(Rule("qrs_duration", ">=", 120.0, "ms"), {"ms": 5.0}) == 5.0


def test_combine_logic_and_nan_policy():
    assert combine("all_of", [0.9, 0.5]) == pytest.approx(0.45)
    assert combine("all_of", [0.9, 0.5], and_mode="min") == pytest.approx(0.5)
    assert combine("any_of", [0.2, 0.7]) == pytest.approx(0.7)
    assert combine("none_of", [0.2, 0.7]) == pytest.approx(0.3)
    assert combine("all_of", [0.9, float("nan")]) == pytest.approx(0.45)  # unmeasured counts 0.5
    assert combine("all_of", [0.9, float("nan")], nan_policy="skip") == pytest.approx(0.9)
    assert combine("any_of", [float("nan")]) == 0.5
    with pytest.raises(SpecError):
        combine("one_of", [0.5])


# -- lead aggregation ------------------------------------------------------------------------------------------------
def test_any_with_min_leads_is_the_kth_best_lead():
    st = {"II": -0.2, "III": -0.1, "aVF": 0.0}
    one = _rule("st_deviation", "<=", -0.05, ("II", "III", "aVF"), "any", 1).check(_m(st_deviation=st))
    two = _rule("st_deviation", "<=", -0.05, ("II", "III", "aVF"), "any", 2).check(_m(st_deviation=st))
    three = _rule("st_deviation", "<=", -0.05, ("II", "III", "aVF"), "any", 3).check(_m(st_deviation=st))
    assert one["check"] == pytest.approx(soft_check(-0.2, "<=", -0.05, 0.025))
    assert two["check"] == pytest.approx(soft_check(-0.1, "<=", -0.05, 0.025))
    assert three["check"] == pytest.approx(soft_check(0.0, "<=", -0.05, 0.025))
    assert one["check"] > two["check"] > 0.5 > three["check"]


def test_all_mean_max_min_aggregations():
    rpt = {"V5": 80.0, "V6": 50.0}
    assert _rule("r_peak_time", ">", 60.0, ("V5", "V6"), "all").check(_m(r_peak_time=rpt))["check"] == pytest.approx(
        soft_check(50.0, ">", 60.0, 10.0))
    mean = _rule("r_peak_time", ">", 60.0, ("V5", "V6"), "mean").check(_m(r_peak_time=rpt))
    assert mean["aggregate"] == 65.0 and mean["check"] == pytest.approx(soft_check(65.0, ">", 60.0, 10.0))
    assert _rule("r_peak_time", ">", 60.0, ("V5", "V6"), "max").check(_m(r_peak_time=rpt))["aggregate"] == 80.0
    assert _rule("r_peak_time", ">", 60.0, ("V5", "V6"), "min").check(_m(r_peak_time=rpt))["aggregate"] == 50.0


def test_unmeasured_leads_and_values_give_nan_with_reason():
    out = _rule("st_deviation", "<=", -0.05, ("II", "III", "aVF"), "any", 2).check(_m(st_deviation={"II": -0.2}))
    assert math.isnan(out["check"]) and "measured in 1 of 3 leads (need 2)" in out["reason"]
    rec = _rule("qrs_duration", ">=", 120.0).check(_m())
    assert math.isnan(rec["check"]) and rec["reason"] == "QRS boundaries not found"


# -- compilation ---------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def entries():
    return load_entries(modality="ecg")


def test_every_kb_rule_compiles_to_a_produced_measurement(entries):
    from medzs.measure.ecg import RECORD_LEVEL

    produced = set(PER_LEAD) | set(RECORD_LEVEL)
    n_rules = 0
    for e in entries:
        ce = compile_entry(e)
        assert ce.scorable == bool(e.rules)
        for cr in ce.rules:
            assert cr.rule.measurement in produced
            assert cr.scale > 0
            n_rules += 1
    assert n_rules > 100


def test_prose_only_entry_and_unknown_id_are_not_scorable(entries):
    prose = Entry("ecg.scp.XYZ", "ecg", "prose only", {"scp_ecg": ("XYZ",)}, "d", (Criterion("words only"),), ("s",))
    ce = compile_entry(prose)
    assert not ce.scorable and "not scorable by this scorer" in ce.reason
    scorer = CriteriaScorer(entries)
    ns = scorer.not_scorable({"A": "ecg.scp.AFIB", "B": "ecg.scp.NOPE", "P": "ecg.scp.PACE"})
    assert set(ns) == {"B", "P"} and "no KB entry" in ns["B"]


# -- the scorer on real records ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def db(ptbxl_root):
    from medzs.data.ptbxl import PTBXL

    return PTBXL(ptbxl_root)


@pytest.fixture(scope="module")
def scorer(entries):
    return CriteriaScorer(entries)


def _ids(db, want, n, avoid=(), only=None):
    out = []
    for eid in db.split("train"):
        codes = db.database.loc[eid, "scp_codes"]
        if want in codes and not any(a in codes for a in avoid) and (only is None or set(codes) <= set(only)):
            out.append(eid)
    assert out, want
    return out[:n]


def test_af_record_scores_af_and_not_sinus(db, scorer):
    af = _ids(db, "AFIB", 1, avoid=("AFLT", "PVC", "PACE"))
    sr = _ids(db, "SR", 6, only=("NORM", "SR"))
    res = scorer.run([db.load(e) for e in af + sr], "ptbxl-rhythm")
    j = {c: k for k, c in enumerate(res.classes)}
    s = res.scores
    assert s[0, j["AFIB"]] > 0.8
    for other in ("SR", "STACH", "SBRAD", "SARRH"):
        assert s[0, j["AFIB"]] > s[0, j[other]]
    assert s[0, j["AFIB"]] > s[1:, j["AFIB"]].max()  # the AF record tops the AFIB ranking
    assert s[1:, j["SR"]].min() > s[0, j["SR"]]
    assert np.isnan(s[:, j["PACE"]]).all() and "PACE" in res.not_scorable
    ex = res.explanations[0]["classes"]["AFIB"]
    assert [r["measurement"] for r in ex["rules"]] == ["rr_cv", "p_wave_fraction"]
    assert ex["rules"][0]["value"] > 0.1 and ex["driver"] in (0, 1)
    assert res.explanations[0]["units"]["rr_cv"] == "1"


def test_lbbb_record_scores_lbbb_above_normals(db, scorer):
    lbbb = _ids(db, "CLBBB", 1, only=("CLBBB", "SR"))
    norm = _ids(db, "NORM", 6, only=("NORM", "SR"))
    res = scorer.run([db.load(e) for e in lbbb + norm], "ptbxl-sub")
    j = {c: k for k, c in enumerate(res.classes)}
    assert res.scores[0, j["CLBBB"]] > 0.5
    assert res.scores[0, j["CLBBB"]] > res.scores[1:, j["CLBBB"]].max()
    assert res.scores[0, j["NORM"]] < res.scores[1:, j["NORM"]].min()
    rules = res.explanations[0]["classes"]["CLBBB"]["rules"]
    assert rules[0]["measurement"] == "qrs_duration" and rules[0]["value"] >= 120.0 and rules[0]["check"] > 0.9


def test_score_accepts_arrays_and_measurements(db, scorer):
    s = db.load(_ids(db, "SR", 1, only=("NORM", "SR"))[0])
    arr = s["signal"][None]  # (1, 12, 5000), rows in the standard order
    a = scorer.score(arr, "ptbxl-rhythm", fs=500)
    b = scorer.score(scorer.last_result.measurements, "ptbxl-rhythm")
    np.testing.assert_allclose(a, b)
    assert a.shape == (1, 12)


def test_explanations_json(tmp_path, db, scorer):
    res = scorer.run([db.load(_ids(db, "SR", 1, only=("NORM", "SR"))[0])], "ptbxl-rhythm")
    path = res.write_explanations(tmp_path, {"task": "ptbxl-rhythm"})
    doc = json.loads(path.read_text())
    assert path.name == "criteria_explanations.json"
    sr = doc["records"][0]["classes"]["SR"]
    assert doc["scorer"] == "ecg-criteria.kb"
    assert sr["score"] == pytest.approx(res.scores[0, res.classes.index("SR")], abs=1e-4)
    assert [r["measurement"] for r in sr["rules"]] == ["heart_rate", "p_wave_fraction", "rr_cv"]
    assert doc["not_scorable"]["PACE"]


# -- fusion ----------------------------------------------------------------------------------------------------------
def test_rank_average_fusion():
    emb = np.array([[0.1, 0.3], [0.2, 0.2], [0.3, 0.1]])
    crit = np.array([[0.9, np.nan], [0.5, np.nan], [0.1, np.nan]])
    fused = fuse_rank_average(emb, crit)
    np.testing.assert_allclose(fused[:, 0], [2 / 3, 2 / 3, 2 / 3])  # opposite rankings cancel
    np.testing.assert_allclose(fused[:, 1], [1.0, 2 / 3, 1 / 3])  # not scorable: embedding ranks only
    np.testing.assert_allclose(fuse_rank_average(emb, crit, weight=1.0)[:, 0], [1.0, 2 / 3, 1 / 3])
    with pytest.raises(ValueError):
        fuse_rank_average(emb, crit[:2])


# -- registry and pipeline -------------------------------------------------------------------------------------------
def test_registry_scorer():
    from medzs import registry

    assert "ecg-criteria.kb" in registry.list_scorers()
    assert registry.create_scorer("ecg-criteria.kb").name == "ecg-criteria.kb"
    with pytest.raises(KeyError, match="registered"):
        registry.create_scorer("nope")


def test_pipeline_criteria_branch(tmp_path, db):
    from medzs.pipeline import PipelineConfig, run_zeroshot

    ids = _ids(db, "AFIB", 2, avoid=("AFLT",)) + _ids(db, "SR", 6, only=("NORM", "SR"))
    cfg = PipelineConfig(name="t", task="ptbxl-rhythm", dataset={"name": "ptbxl", "root": str(db.root),
                                                                "ecg_ids": ids},
                         model={"name": "ecg-criteria.kb"}, metrics={"n_boot": 20, "seed": 0})
    res = run_zeroshot(cfg, out_dir=tmp_path, progress=False)
    table = res["table"].set_index("condition")
    assert table.loc["AFIB", "auroc"] == 1.0 and table.loc["SR", "auroc"] == 1.0
    assert math.isnan(table.loc["PACE", "auroc"])  # not scorable: no AUROC
    doc = json.loads((tmp_path / "criteria_explanations.json").read_text())
    assert len(doc["records"]) == len(ids) and {r["record_id"] for r in doc["records"]} == {str(i) for i in ids}
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert "PACE" in metrics["provenance"]["not_scorable"]
    assert metrics["provenance"]["model"]["name"] == "ecg-criteria.kb"


@pytest.mark.slow
def test_rhythm_macro_auroc_on_training_folds(db, scorer):
    """Done-when check on folds 1-8 (folds 9-10 are reported by benchmarks/criteria_vs_embedding.py)."""
    from medzs.metrics import evaluate

    codes = ["SR", "AFIB", "STACH", "SBRAD", "SARRH"]
    labels = db.labels("rhythm", drop_empty=True, v1_0_3_only=True)
    ids = [i for i in db.split("train") if i in labels.index]
    res = scorer.run([db.load(i) for i in ids], {c: f"ecg.scp.{c}" for c in codes})
    _, macro = evaluate(labels.loc[ids, codes].to_numpy(float), res.scores, codes, n_boot=0)
    assert macro["auroc"] >= 0.85


@pytest.mark.slow  # builds the Chroma knowledge base and the text tower (about 100 s on 2 cores)
def test_pipeline_hybrid_branch(tmp_path, db, medzs_home):
    """``model.hybrid``: embedding similarities (an untrained control model) fused with the criteria by rank."""
    from medzs.pipeline import PipelineConfig, run_zeroshot

    ids = _ids(db, "AFIB", 2, avoid=("AFLT",)) + _ids(db, "SR", 6, only=("NORM", "SR"))
    cfg = PipelineConfig(name="t", task="ptbxl-rhythm", dataset={"name": "ptbxl", "root": str(db.root),
                                                                "ecg_ids": ids},
                         model={"name": "ecg-resnet18.random", "hybrid": "ecg-criteria.kb"},
                         prompts={"writer": "names", "cache": None}, metrics={"n_boot": 0, "seed": 0})
    import pandas as pd

    run_zeroshot(cfg, out_dir=tmp_path, progress=False)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["provenance"]["hybrid"]["name"] == "ecg-criteria.kb"
    assert "PACE" in metrics["provenance"]["hybrid"]["not_scorable"]
    assert (tmp_path / "criteria_explanations.json").is_file()
    scores = pd.read_csv(tmp_path / "scores.csv")[["AFIB", "SR", "PACE"]].to_numpy()
    n = len(ids)
    assert np.all((scores > 0) & (scores <= 1))  # mean of two ranks / n
    np.testing.assert_allclose(scores * 4 * n, np.round(scores * 4 * n), atol=1e-3)
