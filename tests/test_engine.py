"""One engine for zeroshot and score: datasets (ptbxl, cinc2021, cpsc2018, folder), identical scores from both
commands, error records listed and left out of the AUROC, pipeline files validated before any work."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from medzs.errors import SpecError
from medzs.pipeline import load_pipeline, parse_pipeline, run_zeroshot

REPO = Path(__file__).resolve().parents[1]


def _pipeline(tmp_path: Path, **fields) -> Path:
    doc = {"name": "t", "model": "ecg-resnet18.medzs-ptbxl", "metrics": {"n_boot": 50, "seed": 0},
           "prompts": {"writer": "grounded", "cache": str(REPO / "knowledge/prompts/ptbxl-super.grounded.json")},
           "output": str(tmp_path / "out"), **fields}
    p = tmp_path / "p.yaml"
    p.write_text(yaml.safe_dump(doc))
    return p


@pytest.fixture(scope="module")
def cinc_root(shared_data: Path) -> Path:
    return shared_data / "ecg" / "cinc-samples" / "cinc2021_georgia_chapman"


def test_cinc2021_dataset_labels_exact_snomed(cinc_root: Path) -> None:
    from medzs.data.base import create_dataset
    from medzs.data.tasks import task_from_codes

    ds = create_dataset("cinc2021", cinc_root)
    refs = ds.records("all")
    assert len(refs) == 40 and {r.group for r in refs} == {"E", "JS"}
    assert ds.splits() == ["all", "E", "JS"]
    task = task_from_codes("t", ["427084000", "164909002"], "snomed_ct", dataset="cinc2021")
    assert task.kb_ids["427084000"] == "ecg.scp.STACH"
    # LBBB: the entry's two SNOMED CT concepts both count (CinC 2021 scores them as one class)
    assert set(task.label_codes["164909002"]) == {"164909002", "733534002"}
    y = ds.labels(task)
    assert y.shape == (40, 2) and int(y["427084000"].sum()) == 22
    assert y.loc["E07500"].tolist() == [0.0, 0.0]  # Dx 67741000119109,426177001


def test_task_from_codes_refuses_a_code_without_kb_entry() -> None:
    from medzs.data.tasks import task_from_codes

    with pytest.raises(SpecError, match="no knowledge-base entry lists snomed_ct code '999999999'"):
        task_from_codes("t", ["999999999"], "snomed_ct")


def test_cpsc2018_dataset_reads_merl_label_names(shared_data: Path) -> None:
    from medzs.data.base import create_dataset
    from medzs.data.tasks import task_from_codes

    ds = create_dataset("cpsc2018", shared_data / "ecg/cinc-samples/cpsc2018")
    assert ds.splits() == ["all", "test", "train", "val"]
    assert [r.id for r in ds.records("test")] == ["A1983", "A1984"]
    y = ds.labels(task_from_codes("c", ["Normal", "I-AVB", "RBBB"], "cpsc2018"))
    assert y.loc["A1982"].tolist() == [0.0, 1.0, 0.0] and y.loc["A1986"].tolist() == [0.0, 0.0, 1.0]


def test_zeroshot_cinc2021_and_score_give_identical_scores(tmp_path: Path, cinc_root: Path) -> None:
    from medzs.batch import score_files

    p = _pipeline(tmp_path, task={"name": "cinc", "system": "snomed_ct", "classes": ["427084000", "284470004"]},
                  dataset={"name": "cinc2021", "root": str(cinc_root), "split": "all"},
                  prompts={"writer": "names"})
    cfg = load_pipeline(p)
    res = run_zeroshot(cfg, progress=False)
    assert res["n_records"] == 40 and res["n_errors"] == 0
    table = res["table"].set_index("condition")
    assert table.loc["427084000", "n_pos"] == 22 and 0.0 <= table.loc["427084000", "auroc"] <= 1.0
    zs = pd.read_csv(res["files"]["scores"], dtype={"record_id": str}).set_index("record_id")
    # medzs score on the same files with the same prompts: the same numbers, record by record
    from medzs.data.tasks import task_from_codes
    from medzs.prompts.tasks import task_prompts

    task = task_from_codes("cinc", ["427084000", "284470004"], "snomed_ct")
    prompts = task_prompts(task, "names", None)
    out = tmp_path / "s.parquet"
    score_files([cinc_root], out, model="ecg-resnet18.medzs-ptbxl", task="ptbxl-super",
                class_prompts={"HYP": prompts["427084000"], "NORM": prompts["284470004"],
                               "MI": prompts["427084000"], "CD": prompts["284470004"],
                               "STTC": prompts["427084000"]}, progress=False)
    sc = pd.read_parquet(out).set_index("record_id")
    sc.index = [i.rsplit(".", 1)[0] for i in sc.index]
    score_col = [c for c in zs.columns if c.startswith("score_")] or ["427084000"]
    a = zs.loc[sc.index, score_col[0]].to_numpy(dtype=float)
    b = sc["score_HYP"].to_numpy(dtype=float)
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)


def test_folder_dataset_from_hospital_exports_lists_bad_file(tmp_path: Path, shared_data: Path) -> None:
    src = shared_data / "ecg" / "formats"
    root = tmp_path / "exports"
    root.mkdir()
    for name in ("ecg2dcm_guangxi_teaching_sinus_rhythm.dcm", "pydicom_waveform_ecg.dcm",
                 "ecg2dcm_guangxi_teaching_sinus_rhythm_GE-MUSE.xml", "spxml_129DYPRG_Philips-Sierra.xml"):
        shutil.copy(src / name, root / name)
    for stem in ("E07500", "E07501", "JS20001"):
        for ext in (".hea", ".mat"):
            f = shared_data / "ecg/cinc-samples/cinc2021_georgia_chapman" / f"{stem}{ext}"
            if f.is_file():
                shutil.copy(f, root / f.name)
    (root / "broken.xml").write_text("<RestingECG><Waveform>")  # truncated export
    labels = tmp_path / "labels.csv"
    labels.write_text("record_id,426783006,427084000\n"
                      "ecg2dcm_guangxi_teaching_sinus_rhythm,1,0\n"
                      "ecg2dcm_guangxi_teaching_sinus_rhythm_GE-MUSE,1,0\n"
                      "pydicom_waveform_ecg,0,1\n"
                      "spxml_129DYPRG_Philips-Sierra,0,\n"
                      "E07500,0,0\n"
                      "E07501,0,1\n"
                      "broken,1,0\n")
    p = _pipeline(tmp_path, task={"name": "h", "system": "snomed_ct", "classes": ["426783006", "427084000"]},
                  dataset={"name": "folder", "root": str(root), "labels": str(labels)},
                  prompts={"writer": "names"})
    res = run_zeroshot(load_pipeline(p), progress=False)
    assert res["n_errors"] == 1 and res["errors"][0]["record_id"] == "broken.xml"
    assert "broken.xml" in res["errors"][0]["error_message"]
    t = res["table"].set_index("condition")
    assert t.loc["426783006", "n_pos"] == 2 and t.loc["427084000", "n_pos"] == 2
    assert t.loc["427084000", "n"] == 5  # the Philips file has a blank (NaN) label for it


@pytest.mark.parametrize("fields, message", [
    ({"metrics": {"n_boot": "many"}}, "metrics.n_boot"),
    ({"metrics": {"seed": [1, 2]}}, "metrics.seed"),
    ({"dataset": {"name": "ptbxl", "split": 42}}, "dataset.split"),
    ({"output": ["a", "b"]}, "output"),
    ({"dataset": {"name": "ptbxl", "ecg_ids": "8,9"}}, "dataset.ecg_ids"),
    ({"scoring": {"softmax": "yes"}}, "scoring.softmax"),
    ({"dataset": {"name": "ptbxl", "splt": "test"}}, "dataset.splt"),
    ({"dataset": {"name": "nope"}}, "dataset.name"),
    ({"model": "no-such.model"}, "model.name"),
])
def test_pipeline_fields_checked_before_any_work(tmp_path: Path, fields: dict, message: str) -> None:
    base = {"name": "t", "task": "ptbxl-super", "dataset": {"name": "ptbxl"}, "model": "ecg-resnet18.medzs-ptbxl"}
    with pytest.raises(SpecError, match=message.replace(".", r"\.")):
        parse_pipeline({**base, **fields}, tmp_path / "p.yaml")


def test_invalid_yaml_is_one_line(tmp_path: Path) -> None:
    p = tmp_path / "bad.yaml"
    p.write_text("name: t\ntask: [unclosed\n")
    with pytest.raises(SpecError, match=r"invalid YAML at line \d+"):
        load_pipeline(p)


def test_engine_stream_equals_one_batch_and_bf16_close(shared_data: Path) -> None:
    from medzs import registry
    from medzs.batch import class_scorer
    from medzs.data.base import create_dataset
    from medzs.data.tasks import get_task
    from medzs.engine import Engine, Record
    from medzs.prompts.tasks import task_prompts

    ds = create_dataset("ptbxl", shared_data / "ecg" / "ptbxl500", fs=100)
    refs = ds.records("test")[:20]
    recs = [Record(i, r.path, r.id, r.format) for i, r in enumerate(refs)]
    model = registry.create_model("ecg-resnet18.medzs-ptbxl")
    task = get_task("ptbxl-super")
    cs = class_scorer(model, task_prompts(task, "names", None), list(task.classes))
    eng = Engine(model, cs)
    streamed = np.concatenate([[r["scores"] for r in rows] for rows in eng.stream(recs, batch_size=7)])
    whole = np.stack([r["scores"] for r in eng.score(recs)])
    np.testing.assert_allclose(streamed, whole, atol=1e-5)
    bf = np.stack([r["scores"] for r in Engine(model, cs, precision="bf16").score(recs)])
    assert np.abs(bf - whole).max() < 0.02
