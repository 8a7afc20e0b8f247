"""Class embeddings, cosine scoring, AUROC per condition with bootstrap CIs, macro AUROC."""

from __future__ import annotations

import logging
import time

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from medzs.errors import PromptError
from medzs.metrics import (
    COLUMNS,
    _weighted_auc,
    auc_table,
    auroc_per_condition,
    evaluate,
    macro_auroc,
    macro_ci,
)
from medzs.prompts import ClassPrompts, Prompt
from medzs.scoring import class_embeddings, similarity

# A tiny hand-written text -> vector table standing in for a text encoder's output (D = 3).
VECTORS = {
    "a1": [1.0, 0.0, 0.0],
    "a2": [0.0, 2.0, 0.0],   # not unit norm: must be normalised before averaging
    "b1": [0.0, 0.0, 1.0],
    "shared": [1.0, 1.0, 0.0],
}


def encode(texts):
    return np.array([VECTORS[t] for t in texts])


def cp(code, *texts):
    return ClassPrompts(code, f"ecg.scp.{code}", code, tuple(Prompt(t) for t in texts), writer="test")


# ------------------------------------------------------------------------------------------- scoring
def test_class_embeddings_normalised_mean_of_normalised_prompts():
    calls = []

    def enc(texts):
        calls.append(list(texts))
        return encode(texts)

    emb = class_embeddings(enc, {"A": cp("A", "a1", "a2", "shared"), "B": cp("B", "b1", "shared")})
    assert emb.shape == (2, 3)
    s2 = 1 / np.sqrt(2)
    a = np.array([1 + s2, 1 + s2, 0.0])  # (1,0,0) + (0,1,0) + (s2,s2,0)
    b = np.array([s2, s2, 1.0])
    np.testing.assert_allclose(emb[0], a / np.linalg.norm(a))
    np.testing.assert_allclose(emb[1], b / np.linalg.norm(b))
    assert calls == [["a1", "a2", "shared", "b1"]]  # one call, each distinct text once
    # a sequence works the same, and a model object with .encode_text too
    seq = class_embeddings(encode, [cp("A", "a1", "a2", "shared"), cp("B", "b1", "shared")])
    np.testing.assert_allclose(seq, emb)

    class Model:
        def encode_text(self, texts):
            return encode(texts)

    np.testing.assert_allclose(class_embeddings(Model(), [cp("A", "a1", "a2", "shared"), cp("B", "b1", "shared")]),
                               emb)


def test_class_embeddings_accepts_torch_and_rejects_bad_input():
    torch = pytest.importorskip("torch")
    emb = class_embeddings(lambda t: torch.tensor(encode(t), dtype=torch.float32, requires_grad=True),
                           [cp("A", "a1"), cp("B", "b1")])
    np.testing.assert_allclose(emb, [[1, 0, 0], [0, 0, 1]], atol=1e-7)
    with pytest.raises(PromptError, match="class B"):
        class_embeddings(encode, [cp("A", "a1"), cp("B")])
    with pytest.raises(ValueError, match="expected shape"):
        class_embeddings(lambda t: encode(t)[:1], [cp("A", "a1"), cp("B", "b1")])


def test_similarity_cosine_and_softmax():
    sig = np.array([[2.0, 0.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, -3.0]])
    cls = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    cos = similarity(sig, cls)
    np.testing.assert_allclose(cos, [[1.0, 0.0], [1 / np.sqrt(2), 0.0], [0.0, -1.0]], atol=1e-12)
    p = similarity(sig, cls, softmax=True, temperature=0.5)
    np.testing.assert_allclose(p.sum(axis=1), 1.0)
    np.testing.assert_allclose(p[0], np.exp([2.0, 0.0]) / np.exp([2.0, 0.0]).sum())
    assert (p.argmax(axis=1) == cos.argmax(axis=1)).all()
    with pytest.raises(ValueError, match="embedding sizes differ"):
        similarity(sig, cls[:, :2])
    with pytest.raises(ValueError, match="temperature"):
        similarity(sig, cls, softmax=True, temperature=0)
    with pytest.raises(ValueError, match="zero norm"):
        similarity(np.zeros((1, 3)), cls)


# ------------------------------------------------------------------------------------------- metrics
def _synthetic(n, c=3, seed=0, signal=1.0, prevalence=0.3):
    rng = np.random.default_rng(seed)
    y = (rng.random((n, c)) < prevalence).astype(float)
    s = signal * y + rng.normal(size=(n, c))
    return y, s


def test_auroc_matches_sklearn_with_missing_labels_excluded():
    y = np.array([[1, 0], [0, np.nan], [1, 1], [0, 0], [1, np.nan], [0, 1], [0, 0]], dtype=float)
    s = np.array([[0.9, 0.2], [0.1, 0.99], [0.8, 0.7], [0.3, 0.1], [0.4, 0.5], [0.5, 0.6], [0.4, 0.65]])
    t = auroc_per_condition(y, s, ["NORM", "MI"], n_boot=200, seed=1)
    assert list(t.columns) == COLUMNS
    assert t["condition"].tolist() == ["NORM", "MI"]
    assert t.loc[0, "auroc"] == pytest.approx(roc_auc_score(y[:, 0], s[:, 0]))
    m = ~np.isnan(y[:, 1])
    assert t.loc[1, "auroc"] == pytest.approx(roc_auc_score(y[m, 1], s[m, 1]))
    # by hand: positives {0.7, 0.6} vs negatives {0.2, 0.1, 0.65}: 5 of 6 pairs ordered
    assert t.loc[1, "auroc"] == pytest.approx(5 / 6)
    assert t[["n_pos", "n_neg", "n"]].values.tolist() == [[3, 4, 7], [2, 3, 5]]
    # DataFrame input, columns selected by name and in the order of `classes`
    df_y, df_s = pd.DataFrame(y, columns=["NORM", "MI"]), pd.DataFrame(s, columns=["NORM", "MI"])
    t2 = auc_table(df_y, df_s, ["MI", "NORM"], n_boot=0)
    assert t2["auroc"].tolist() == pytest.approx([t.loc[1, "auroc"], t.loc[0, "auroc"]])
    assert t2["ci_low"].isna().all()  # n_boot=0: no CI


def test_single_class_condition_gives_nan_and_macro_stays_finite(caplog):
    y, s = _synthetic(80, c=3, seed=2)
    y[:, 1] = 0.0  # no positive of condition 1
    y[:5, 2] = np.nan
    with caplog.at_level(logging.INFO, logger="medzs.metrics"):
        table, macro = evaluate(y, s, ["A", "B", "C"], n_boot=300, seed=0)
    assert np.isnan(table.loc[1, "auroc"]) and np.isnan(table.loc[1, "ci_low"])
    assert table.loc[1, "n_pos"] == 0 and table.loc[1, "n_neg"] == 80
    assert any("condition B: only one label value" in r.getMessage() for r in caplog.records)
    value, used = macro_auroc(table, return_count=True)
    assert used == 2 and np.isfinite(value)
    assert value == pytest.approx(np.mean([table.loc[0, "auroc"], table.loc[2, "auroc"]]))
    assert macro["auroc"] == pytest.approx(value) and macro["n_conditions"] == 2
    assert macro["excluded"] == ["B"] and macro["n_conditions_total"] == 3
    assert macro["ci_low"] < value < macro["ci_high"]
    assert (macro["ci_low"], macro["ci_high"]) == pytest.approx(macro_ci(y, s, ["A", "B", "C"], n_boot=300, seed=0))
    all_nan = table.assign(auroc=np.nan)
    assert np.isnan(macro_auroc(all_nan))


def test_bootstrap_ci_contains_estimate_narrows_and_is_seeded():
    y_small, s_small = _synthetic(60, seed=3)
    y_big, s_big = _synthetic(600, seed=3)
    small = auroc_per_condition(y_small, s_small, list("ABC"), n_boot=500, seed=0)
    big = auroc_per_condition(y_big, s_big, list("ABC"), n_boot=500, seed=0)
    for t in (small, big):
        assert ((t["ci_low"] <= t["auroc"]) & (t["auroc"] <= t["ci_high"])).all()
        assert (t["ci_low"] < t["ci_high"]).all()
    w_small = (small["ci_high"] - small["ci_low"]).to_numpy()
    w_big = (big["ci_high"] - big["ci_low"]).to_numpy()
    assert (w_big < 0.7 * w_small).all()  # ~1/sqrt(10) expected
    again = auroc_per_condition(y_small, s_small, list("ABC"), n_boot=500, seed=0)
    pd.testing.assert_frame_equal(again, small)
    other = auroc_per_condition(y_small, s_small, list("ABC"), n_boot=500, seed=1)
    assert not np.allclose(other["ci_low"], small["ci_low"])


def test_vectorised_bootstrap_auc_equals_sklearn_on_resamples():
    rng = np.random.default_rng(5)
    n = 40
    y = (rng.random(n) < 0.4).astype(float)
    s = np.round(y * 0.5 + rng.normal(size=n), 1)  # rounded: many ties
    idx = rng.integers(0, n, size=(25, n))
    w = np.stack([np.bincount(i, minlength=n) for i in idx]).astype(float)
    got = _weighted_auc(y, s, w)
    want = [roc_auc_score(y[i], s[i]) if 0 < y[i].sum() < n else np.nan for i in idx]
    np.testing.assert_allclose(got, want, rtol=1e-12)
    assert np.isnan(_weighted_auc(y, s, (y == 1)[None].astype(float)))[0]  # positives only: skipped


def test_bootstrap_speed():
    y, s = _synthetic(150, c=20, seed=7, prevalence=0.15)
    t0 = time.perf_counter()
    table = auroc_per_condition(y, s, [f"c{i}" for i in range(20)], n_boot=1000, seed=0)
    elapsed = time.perf_counter() - t0
    assert elapsed < 2.0, elapsed
    assert table["auroc"].notna().all()


def test_metrics_input_validation():
    y, s = _synthetic(10, c=2)
    with pytest.raises(ValueError, match="same shape"):
        auroc_per_condition(y, s[:, :1], ["A", "B"])
    with pytest.raises(ValueError, match="1, 0 or NaN"):
        auroc_per_condition(y * 2, s, ["A", "B"])
    s_bad = s.copy()
    s_bad[0, 1] = np.nan
    y_ok = y.copy()
    y_ok[0, 1] = 1.0
    with pytest.raises(ValueError, match=r"\['B'\]"):
        auroc_per_condition(y_ok, s_bad, ["A", "B"])
    y_ok[0, 1] = np.nan  # an unlabelled record may have any score
    auroc_per_condition(y_ok, s_bad, ["A", "B"], n_boot=10)
    with pytest.raises(ValueError, match="ci"):
        auroc_per_condition(y, s, ["A", "B"], ci=95)


def test_a_condition_without_scores_is_reported_with_its_label_counts():
    """A scorer that cannot score a condition (all NaN) gets NaN AUROC, its n_pos, and a 'not_scored' note."""
    from medzs.metrics import evaluate

    rng = np.random.default_rng(0)
    y = np.stack([rng.integers(0, 2, 60), rng.integers(0, 2, 60)], axis=1).astype(float)
    s = np.stack([y[:, 0] + rng.normal(0, 0.5, 60), np.full(60, np.nan)], axis=1)
    table, macro = evaluate(y, s, ["A", "B"], n_boot=50)
    b = table.set_index("condition").loc["B"]
    assert np.isnan(b["auroc"]) and b["n_pos"] == int(y[:, 1].sum()) > 0
    assert macro["not_scored"] == ["B"] and macro["excluded"] == ["B"] and macro["n_conditions"] == 1
    assert np.isfinite(macro["auroc"])
    # a single NaN score of a scored, labelled record is still an error
    s[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN/inf"):
        evaluate(y, s, ["A", "B"], n_boot=0)
