"""MERL benchmark data, faithful preprocessing, corrected Chapman labels, prompt files, linear probe and the runner,
on the real split files (../shared/data/benchmarks/merl-splits) and real records of the shared mirror."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from medzs.benchmarks.merl import (
    MERL_FAITHFUL_SPEC,
    cpsc_first_2500,
    merl_faithful_array,
    pre_transform_for,
    run_merl_benchmark,
)
from medzs.data.merl import (
    BENCHMARKS,
    chapman_exact_labels,
    chapman_substring_labels,
    load_benchmark,
)
from medzs.errors import SpecError
from medzs.io.detect import read_ecg


@pytest.fixture(scope="module")
def splits_root(shared_data: Path) -> Path:
    return shared_data / "benchmarks" / "merl-splits"


def _by_hand(x_leads_first: np.ndarray) -> np.ndarray:
    """MERL's recipe written out in numpy: first 5000 samples, global min-max (+1e-8), rows 4 and 5 swapped."""
    x = np.asarray(x_leads_first, dtype=np.float64)[:, :5000]
    x = (x - x.min()) / (x.max() - x.min() + 1e-8)
    x[[4, 5]] = x[[5, 4]]
    return x


# -- faithful preprocessing ---------------------------------------------------------------------------------------
def test_faithful_preprocessing_of_a_ptbxl_record_matches_the_recipe_by_hand(shared_data) -> None:
    import wfdb

    rec = shared_data / "ecg" / "ptbxl2k" / "records500" / "00000" / "00009_hr"
    raw, fields = wfdb.rdsamp(str(rec))  # (5000, 12) in mV, leads I..V6 (aVL before aVF)
    assert fields["sig_name"][4:6] == ["AVL", "AVF"]
    expected = _by_hand(raw.T)
    got = merl_faithful_array(read_ecg(str(rec) + ".hea"), "ptbxl-super")
    assert got.shape == (12, 5000) and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, atol=2e-6)
    assert got.min() == 0.0 and got.max() == pytest.approx(1.0, abs=1e-6)
    # one global min-max, not per lead: most leads do not reach 0 or 1
    assert sum(np.isclose(row.max(), 1.0, atol=1e-6) for row in got) == 1
    assert MERL_FAITHFUL_SPEC.leads[4:6] == ("aVF", "aVL")


def test_faithful_preprocessing_of_a_cpsc_record_cuts_to_2500_then_pads(shared_data) -> None:
    import scipy.io

    path = shared_data / "ecg" / "cinc-samples" / "cpsc2018" / "A1983.mat"  # MERL ICBEB test split, 15 s
    data = np.asarray(scipy.io.loadmat(str(path), simplify_cells=True)["ECG"]["data"], dtype=np.float64)
    assert data.shape == (12, 7500)
    padded = np.pad(data[:, :2500], ((0, 0), (0, 2500)))
    expected = _by_hand(padded)
    got = merl_faithful_array(read_ecg(path), "cpsc2018")
    np.testing.assert_allclose(got, expected, atol=2e-6)
    # the padded half is one constant value: where 0 mV lands after the global min-max
    zero = (0 - padded.min()) / (padded.max() - padded.min())
    np.testing.assert_allclose(got[:, 2500:], zero, atol=2e-6)
    assert pre_transform_for("cpsc2018", "faithful") is cpsc_first_2500
    assert pre_transform_for("cpsc2018", "corrected") is None and pre_transform_for("ptbxl-super", "faithful") is None


def test_faithful_preprocessing_of_a_chapman_record_uses_raw_adc_like_merl(shared_data) -> None:
    import scipy.io

    path = shared_data / "ecg" / "cinc-samples" / "cinc2021_georgia_chapman" / "JS20001"
    val = scipy.io.loadmat(str(path) + ".mat")["val"].astype(np.float32)  # MERL reads raw ADC units
    got = merl_faithful_array(read_ecg(str(path) + ".hea"), "chapman")  # medzs reads mV; min-max is scale-free
    np.testing.assert_allclose(got, _by_hand(val), atol=2e-6)


# -- split files and labels ---------------------------------------------------------------------------------------
def test_split_files_classes_and_local_coverage(splits_root) -> None:
    sizes = {"ptbxl-super": (5, 2158), "ptbxl-sub": (23, 2158), "ptbxl-form": (19, 880), "ptbxl-rhythm": (12, 2098),
             "cpsc2018": (9, 1376), "chapman": (38, 4620)}
    for name, (n_classes, n_test) in sizes.items():
        b = load_benchmark(name, splits_root=splits_root)
        assert len(b.classes) == n_classes and len(b.ids("test")) == n_test
        assert b.labels("test").shape == (n_test, n_classes)
    sup = load_benchmark("ptbxl-super", splits_root=splits_root)
    assert sup.classes == ["HYP", "NORM", "MI", "CD", "STTC"]
    assert sup.coverage("test") == {"expected": 2158, "found": 251, "found_native": 64}
    refs = sup.records("test", native_only=True)
    assert len(refs) == 64 and refs[0].id == "9" and refs[0].path.endswith("records500/00000/00009_hr.hea")
    assert refs[0].group == "18792" and refs[0].format == "wfdb"
    cpsc = load_benchmark("cpsc2018", splits_root=splits_root)
    assert cpsc.coverage("test") == {"expected": 1376, "found": 2, "found_native": 2}
    assert [r.id for r in cpsc.records("test")] == ["A1983", "A1984"]
    # the split file's own labels for the two local test records (the mirror's CSV says NORM and STD)
    y = cpsc.labels("test").loc[["A1983", "A1984"]]
    assert y.loc["A1983", "NORM"] == 1 and y.loc["A1984", "STD"] == 1 and y.to_numpy().sum() == 2
    chap = load_benchmark("chapman", splits_root=splits_root)
    assert chap.coverage("test") == {"expected": 4620, "found": 0, "found_native": 0}
    assert chap.coverage("train")["found"] == 8
    with pytest.raises(SpecError, match="split file .* not found"):
        load_benchmark("chapman", splits_root=splits_root / "nowhere").ids("test")


#: (short class, longer code containing it) for every substring defect of the published Chapman columns.
DEFECTS = [("AF", "AFIB"), ("ST", "STTC"), ("ST", "STE"), ("ST", "STDD"), ("ST", "STTU"), ("SA", "LVQRSAL"),
           ("VB", "1AVB"), ("AVB", "1AVB"), ("VB", "2AVB"), ("AVB", "2AVB"), ("2AVB", "2AVB1"), ("CR", "CCR")]


@pytest.mark.parametrize("short,long", DEFECTS)
def test_corrected_chapman_labels_fix_each_substring_defect(splits_root, short, long) -> None:
    b = load_benchmark("chapman", splits_root=splits_root)
    t = b.table("train")
    toks = t["diagnose"].astype(str).str.split(",")
    only_long = toks.apply(lambda ts: long in ts and short not in ts)
    with_short = toks.apply(lambda ts: short in ts)
    assert only_long.sum() > 0 and with_short.sum() > 0
    ids = np.array(b.ids("train"))
    faithful, corrected = b.labels("train", "faithful"), b.labels("train", "corrected")
    # published: the short class is positive for records that only carry the longer code ...
    assert (faithful.loc[ids[only_long.to_numpy()], short] == 1).all()
    # ... corrected: negative there, still positive where the code itself is listed
    assert (corrected.loc[ids[only_long.to_numpy()], short] == 0).all()
    assert (corrected.loc[ids[with_short.to_numpy()], short] == 1).all()
    assert chapman_substring_labels(long, [short, long]) == [1, 1]
    assert chapman_exact_labels(long, [short, long]) == [0, 1]


def test_published_chapman_columns_are_the_substring_rule_and_headers_agree_with_corrected(splits_root) -> None:
    b = load_benchmark("chapman", splits_root=splits_root)
    t = b.table("test")
    rule = np.array([chapman_substring_labels(d, b.classes) for d in t["diagnose"]])
    np.testing.assert_array_equal(rule, b.labels("test", "faithful").to_numpy())
    changes = b.label_changes("test")
    assert changes.groupby("class").size().to_dict() == {"2AVB": 1, "AF": 297, "AVB": 130, "CR": 38, "SA": 141,
                                                          "ST": 251, "VB": 169}
    assert (changes["published"] == 1).all() and (changes["corrected"] == 0).all()
    # the 8 local train records: labels from their own SNOMED CT header codes == the corrected rule
    h = b.header_labels("train")
    assert len(h) == 8
    np.testing.assert_array_equal(h.to_numpy(), b.labels("train", "corrected").loc[h.index].to_numpy())
    # PTB-XL / CPSC columns are exact codes already
    s = load_benchmark("ptbxl-form", splits_root=splits_root)
    assert s.labels("test", "corrected").equals(s.labels("test", "faithful"))


# -- prompt files -------------------------------------------------------------------------------------------------
def test_prompt_file_in_the_published_format(tmp_path) -> None:
    from medzs.prompts.prompt_file import read_prompt_file

    p = tmp_path / "prompts.json"
    p.write_text(json.dumps({"AFIB": "atrial fibrillation, irregularly irregular rhythm, absent P waves",
                             "NORM": "normal ECG, normal sinus rhythm", "LAO/LAE": "left atrial enlargement"}))
    assert read_prompt_file(p)["AFIB"] == ["atrial fibrillation, irregularly irregular rhythm, absent P waves"]
    split = read_prompt_file(p, classes=["NORM", "AFIB"], split=True)
    assert list(split) == ["NORM", "AFIB"]
    assert split["AFIB"] == ["atrial fibrillation", "irregularly irregular rhythm", "absent P waves"]
    with pytest.raises(SpecError, match=r"prompts\.json: class 'STTC' missing"):
        read_prompt_file(p, classes=["NORM", "STTC"])
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"NORM": 3}))
    with pytest.raises(SpecError, match=r"bad\.json: class 'NORM'"):
        read_prompt_file(bad)
    bad.write_text("[1, 2]")
    with pytest.raises(SpecError, match="expected a JSON object"):
        read_prompt_file(bad)


# -- linear probe on real embeddings ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ptbxl_super_embeddings(splits_root):
    """Embeddings of the locally found ptbxl-super records by the embedded medzs model (100 Hz spec)."""
    import torch

    from medzs import registry
    from medzs.transforms.ecg import preprocess

    model = registry.create_model("ecg-resnet18.medzs-ptbxl")
    spec = model.config.input_spec
    b = load_benchmark("ptbxl-super", splits_root=splits_root)
    out = {}
    for split in ("train", "val", "test"):
        refs = b.records(split)[:400] if split == "train" else b.records(split)
        x = np.stack([preprocess(read_ecg(r.path), spec) for r in refs])
        with torch.no_grad():
            e = torch.cat([model.encode_signal(torch.from_numpy(x[i:i + 128])) for i in range(0, len(x), 128)])
        out[split] = (refs, e.numpy(), b.labels(split).loc[[r.id for r in refs]].to_numpy())
    return b.classes, out


def test_linear_probe_on_real_embeddings(ptbxl_super_embeddings) -> None:
    from sklearn.metrics import roc_auc_score

    from medzs.linear_probe import DEFAULT_CS, linear_probe, subsample_indices

    classes, d = ptbxl_super_embeddings
    (_, xtr, ytr), (_, xva, yva), (_, xte, yte) = d["train"], d["val"], d["test"]
    assert xtr.shape == (400, 256) and xte.shape[0] == 251
    res = linear_probe(xtr, ytr, xva, yva, xte, classes, fractions=(0.1, 1.0), seed=0)
    assert [r.n_train for r in res] == [40, 400]
    np.testing.assert_array_equal(subsample_indices(400, 0.1, 0), subsample_indices(400, 0.1, 0))
    full = res[1]
    assert set(full.chosen_c) == set(classes) and set(full.chosen_c.values()) <= set(DEFAULT_CS)
    auc = {c: roc_auc_score(yte[:, j], full.scores[:, j]) for j, c in enumerate(classes)}
    assert auc["NORM"] > 0.85 and np.mean(list(auc.values())) > 0.75
    # nothing is chosen on test: the same fit with the test rows permuted gives permuted scores
    perm = np.random.default_rng(1).permutation(len(xte))
    again = linear_probe(xtr, ytr, xva, yva, xte[perm], classes, fractions=(1.0,), seed=0)[0]
    assert again.chosen_c == full.chosen_c
    np.testing.assert_allclose(again.scores, full.scores[perm], atol=1e-9)
    # a class with one label value in the training subsample is skipped, not fitted
    ytr1 = ytr.copy()
    ytr1[:, 0] = 0
    skipped = linear_probe(xtr, ytr1, xva, yva, xte, classes, fractions=(1.0,))[0]
    assert skipped.skipped == [classes[0]] and np.isnan(skipped.scores[:, 0]).all()


# -- the runner ---------------------------------------------------------------------------------------------------
def test_run_merl_benchmark_builds_the_table(splits_root, ptbxl_super_embeddings) -> None:
    classes_sup, emb = ptbxl_super_embeddings
    by_id = {r.id: e for split in emb.values() for r, e in zip(split[0], split[1])}
    calls = []
    rng = np.random.default_rng(0)
    directions = rng.standard_normal((64, 256))

    def score(records, classes, prompts, *, pre_transform, input_spec):
        calls.append((len(records), tuple(classes), pre_transform, input_spec))
        # a real, weak scorer: the embedded model's embeddings on fixed random directions (one per class)
        if records[0].id in by_id:
            x = np.stack([by_id[r.id] for r in records])
            return x @ directions[: len(classes)].T
        return np.zeros((len(records), len(classes)))

    def embed(records, *, pre_transform, input_spec):
        return np.stack([by_id.get(r.id, np.zeros(256)) for r in records])

    prompts = lambda classes: {c: [c.lower()] for c in classes}
    out = run_merl_benchmark("faithful", score, prompts, splits_root=splits_root, n_boot=50,
                             benchmarks=["ptbxl-super", "cpsc2018", "chapman"])
    rows = {r["benchmark"]: r for r in out["rows"]}
    assert rows["ptbxl-super"]["found"] == 251 and rows["ptbxl-super"]["expected"] == 2158
    assert rows["ptbxl-super"]["n_pos"]["NORM"] == int(emb["test"][2][:, 1].sum())
    assert 0 < rows["ptbxl-super"]["auroc"] < 1 and rows["ptbxl-super"]["ci_low"] <= rows["ptbxl-super"]["auroc"]
    assert rows["chapman"]["status"] == "no test records found locally" and np.isnan(rows["chapman"]["auroc"])
    # 2 local CPSC test records (NORM, STD): only those two classes have both label values; constant scores -> 0.5
    assert rows["cpsc2018"]["n_test"] == 2 and len(rows["cpsc2018"]["excluded"]) == 7
    assert rows["cpsc2018"]["auroc"] == 0.5
    assert calls[0][2] is None and calls[0][3] is MERL_FAITHFUL_SPEC
    assert calls[1][2] is cpsc_first_2500
    assert out["n_benchmarks_in_mean"] == 2
    assert out["mean_auroc"] == pytest.approx((rows["ptbxl-super"]["auroc"] + 0.5) / 2)

    out = run_merl_benchmark("corrected", score, prompts, embed=embed, linear_probe=(1.0,), splits_root=splits_root,
                             benchmarks=["ptbxl-super"], n_boot=50, min_test_positives=30)
    row = out["rows"][0]
    pos = {c: int(emb["test"][2][:, j].sum()) for j, c in enumerate(classes_sup)}
    assert row["dropped"] == {c: n for c, n in pos.items() if n < 30}
    assert set(row["n_pos"]) == {c for c in classes_sup if pos[c] >= 30}
    probe = row["linear_probe"][1.0]
    assert probe["n_train_found"] == 1464 and probe["n_val_found"] == 229 and 0 < probe["auroc"] < 1
    assert calls[-1][3] is None  # corrected: the model's own preprocessing
    from medzs.spec import ECGInputSpec

    with pytest.raises(SpecError, match="faithful protocol feeds 12 x 5000 .* expects 12 x 1000 @ 100 Hz"):
        run_merl_benchmark("faithful", score, prompts, splits_root=splits_root, model="m",
                           model_input_spec=ECGInputSpec(fs=100.0))
    with pytest.raises(SpecError, match="no prompts for class"):
        run_merl_benchmark("faithful", score, {"NORM": ["normal"]}, splits_root=splits_root,
                           benchmarks=["ptbxl-super"], n_boot=10)
    assert set(BENCHMARKS) == {"ptbxl-super", "ptbxl-sub", "ptbxl-form", "ptbxl-rhythm", "cpsc2018", "chapman"}


def test_merl_dataset_adapter_follows_the_dataset_protocol(splits_root) -> None:
    from medzs.data.base import Dataset
    from medzs.data.merl import MERLDataset

    ds = MERLDataset(benchmark="chapman", protocol="corrected", splits_root=splits_root)
    assert isinstance(ds, Dataset) and ds.partial and ds.modality == "ecg"
    assert [r.id for r in ds.records("test")] == [] and len(ds.records("all")) == 8
    y = ds.labels(["AF", "AFIB", "ST"])
    assert y.shape == (16546 + 1860 + 4620, 3)
    assert y.loc["JS20001"].tolist() == [0.0, 0.0, 1.0]  # "APB,ST,IDC"
    with pytest.raises(SpecError, match="class 'XYZ' not labelled"):
        ds.labels(["XYZ"])
    sup = MERLDataset(benchmark="ptbxl-super", native_only=True, splits_root=splits_root)
    assert len(sup.records("test")) == 64


def test_records_are_found_in_nested_cinc_layouts(tmp_path, splits_root, shared_data) -> None:
    """CPSC2018 as PhysioNet/CinC 2020 lays it out (training/cpsc_2018/g1/A1983.hea+.mat) and the original .mat."""
    import shutil

    cinc = shared_data / "ecg" / "cinc-samples" / "cinc2021_georgia_chapman"
    g1 = tmp_path / "cpsc" / "training" / "cpsc_2018" / "g1"
    g1.mkdir(parents=True)
    shutil.copy(shared_data / "ecg" / "cinc-samples" / "cpsc2018" / "A1984.mat", tmp_path / "cpsc" / "A1984.mat")
    # a CinC-format record under the CPSC name (content is irrelevant to the lookup)
    shutil.copy(cinc / "JS20001.mat", g1 / "A1983.mat")
    (g1 / "A1983.hea").write_text((cinc / "JS20001.hea").read_text().replace("JS20001", "A1983"))
    b = load_benchmark("cpsc2018", splits_root=splits_root, records_root=tmp_path / "cpsc")
    refs = {r.id: r for r in b.records("test")}
    assert refs["A1983"].format == "cinc" and refs["A1983"].path.endswith("g1/A1983.hea")
    assert refs["A1984"].format == "cpsc2018"
    assert b.coverage("test") == {"expected": 1376, "found": 2, "found_native": 2}
    assert read_ecg(refs["A1983"].path, format="cinc")["signal"].shape == (12, 5000)


def test_model_callables_score_real_records_end_to_end(splits_root) -> None:
    """Reference engine: the embedded medzs model scores the two local CPSC2018 test records (corrected protocol)."""
    from medzs import registry
    from medzs.benchmarks.merl import model_callables

    model = registry.create_model("ecg-resnet18.medzs-ptbxl")
    embed, score = model_callables(model)
    out = run_merl_benchmark("corrected", score, lambda cl: {c: [f"{c} on the ECG"] for c in cl},
                             splits_root=splits_root, benchmarks=["cpsc2018"], min_test_positives=1, n_boot=20,
                             model="ecg-resnet18.medzs-ptbxl", model_input_spec=model.config.input_spec)
    row = out["rows"][0]
    assert row["n_test"] == 2 and set(row["n_pos"]) == {"NORM", "STD"} and len(row["dropped"]) == 7
    assert row["auroc"] in (0.0, 0.5, 1.0)  # two records: each class AUROC is 0 or 1
    refs = load_benchmark("cpsc2018", splits_root=splits_root).records("test")
    e = embed(refs, pre_transform=cpsc_first_2500, input_spec=None)
    assert e.shape == (2, 256) and np.allclose(np.linalg.norm(e, axis=1), 1, atol=1e-5)
    with pytest.raises(SpecError, match="faithful protocol feeds"):
        run_merl_benchmark("faithful", score, {}, splits_root=splits_root, model_input_spec=model.config.input_spec)
