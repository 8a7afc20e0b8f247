"""Batch scoring (medzs.batch) with the knowledge-criteria scorer ``ecg-criteria.kb``, alone and as a hybrid.

Real shared records: six PTB-XL ``records500`` records (one AFIB, five NORM + SR), the GE MUSE XML export, and a
non-ECG file (an error row). The criteria scorer needs no weights; the hybrid uses the registry's embedding model
with class-name prompts (no knowledge base needed).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from medzs.batch import METADATA_KEY, fuse_per_record, score_files, shard_name
from medzs.data.tasks import get_task
from medzs.errors import SpecError

SCORER = "ecg-criteria.kb"
TASK = "ptbxl-rhythm"
AFIB_ID = 330  # {'NORM': 50, 'AFIB': 0}: the first AFIB train record without AFLT/PVC/PACE
SR_IDS = (3, 4, 5, 6, 7)  # NORM + SR only
WEIGHTS = Path(__file__).resolve().parents[1] / "medzs" / "weights" / "ecg-resnet18.medzs-ptbxl.pt"
MODEL = "ecg-resnet18.medzs-ptbxl" if WEIGHTS.is_file() else "ecg-resnet18.random"


def _names_prompts() -> dict[str, list[str]]:
    t = get_task(TASK)
    return {c: [t.display_names[c]] for c in t.classes}


@pytest.fixture(scope="module")
def inputs(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    rec = shared_data / "ecg" / "ptbxl500" / "records500" / "00000"
    bad = tmp_path_factory.mktemp("bad") / "not_an_ecg.xml"
    bad.write_text("<?xml version='1.0'?><nothing/>")
    return [str(rec / f"{i:05d}_hr.hea") for i in (AFIB_ID, *SR_IDS)] + [
        str(shared_data / "ecg" / "formats" / "ecg2dcm_guangxi_teaching_sinus_rhythm_GE-MUSE.xml"), str(bad)]


@pytest.fixture(scope="module")
def criteria_run(inputs: list[str], tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("crit") / "scores.parquet"
    res = score_files(inputs, out, model=SCORER, task=TASK, shard_size=3, batch_size=2, keep_shards=True,
                      progress=False)
    return res, out, pd.read_parquet(out)


def test_fuse_per_record_hand_values() -> None:
    e = np.array([[1.0, -1.0, 0.2]])
    c = np.array([[0.0, 1.0, np.nan]])
    np.testing.assert_allclose(fuse_per_record(e, c), [[0.5, 0.5, 0.6]])
    np.testing.assert_allclose(fuse_per_record(np.array([[0.3, 0.7, 0.0]]), c, softmax=True), [[0.15, 0.85, 0.0]])
    with pytest.raises(ValueError):
        fuse_per_record(e, c[:, :2])


def test_criteria_scorer_rows_scores_and_errors(criteria_run, inputs: list[str]) -> None:
    res, out, df = criteria_run
    classes = list(get_task(TASK).classes)
    assert res.n_records == len(inputs) == len(df) and res.n_ok == len(inputs) - 1 and res.n_shards == 3
    assert df["record_index"].tolist() == list(range(len(inputs)))
    assert df["source_format"].tolist()[:7] == ["wfdb"] * 6 + ["muse"]
    assert df["status"].tolist() == ["ok"] * 7 + ["error"] and df["error_class"].iat[7] == "RecordError"
    assert set(df["model"]) == {SCORER} and list(df.columns[7:7 + len(classes)]) == [f"score_{c}" for c in classes]
    ok = df[df["status"] == "ok"]
    for c in ("SR", "AFIB", "STACH", "SBRAD", "SARRH"):
        assert np.isfinite(ok[f"score_{c}"]).all() and ok[f"score_{c}"].between(0, 1).all()
    for c in ("PACE", "SVARR"):  # no structured criteria in the KB: not scorable, NaN
        assert df[f"score_{c}"].isna().all()
    assert df.iloc[7, 6:6 + len(classes)].isna().all()
    afib = ok["score_AFIB"].to_numpy()
    assert afib[0] > 0.5 and afib[0] > afib[1:6].max()  # the AF record above every sinus record
    assert ok["score_SR"].iloc[1:6].min() > ok["score_SR"].iloc[0]
    meta = json.loads(pq.read_schema(out).metadata[METADATA_KEY])
    assert meta["criteria"]["name"] == SCORER and meta["prompts_sha256"] is None


def test_criteria_scores_match_the_scorer_on_the_same_files(criteria_run, inputs: list[str]) -> None:
    from medzs.io.detect import read_ecg
    from medzs.registry import create_scorer

    _, _, df = criteria_run
    direct = create_scorer(SCORER).score([read_ecg(p) for p in inputs[:7]], TASK)
    got = df.iloc[:7, 7:7 + direct.shape[1]].to_numpy(dtype=np.float64)
    np.testing.assert_allclose(got, direct, atol=1e-6, equal_nan=True)


def test_criteria_rerun_and_resume(criteria_run, inputs: list[str], tmp_path: Path) -> None:
    res, out, df = criteria_run
    again = score_files(inputs, out, model=SCORER, task=TASK, shard_size=3, keep_shards=True, progress=False)
    assert again.already_complete and again.run_key == res.run_key
    out2 = tmp_path / "resumed.parquet"
    shutil.copytree(f"{out}.shards", f"{out2}.shards")
    Path(f"{out2}.shards", shard_name(3, 6)).unlink()
    resumed = score_files(inputs, out2, model=SCORER, task=TASK, shard_size=3, progress=False)
    assert resumed.n_shards_resumed == 2 and resumed.run_key == res.run_key
    pd.testing.assert_frame_equal(pd.read_parquet(out2), df)


def test_scorer_option_errors(inputs: list[str], tmp_path: Path) -> None:
    out = tmp_path / "x.parquet"
    with pytest.raises(SpecError, match="hybrid"):
        score_files(inputs, out, model=SCORER, task=TASK, hybrid=SCORER, progress=False)
    with pytest.raises(SpecError, match="weights"):
        score_files(inputs, out, model=SCORER, task=TASK, weights=WEIGHTS, progress=False)
    with pytest.raises(SpecError, match="registered scorer"):
        score_files(inputs, out, model=MODEL, task=TASK, hybrid="nope.kb", progress=False)


def test_hybrid_is_the_per_record_mean(criteria_run, inputs: list[str], tmp_path: Path) -> None:
    _, _, crit = criteria_run
    classes = list(get_task(TASK).classes)
    cols = [f"score_{c}" for c in classes]
    kw = {"model": MODEL, "task": TASK, "class_prompts": _names_prompts(), "shard_size": 4, "batch_size": 4,
          "torch_threads": 1, "progress": False}
    emb = pd.read_parquet(score_files(inputs, tmp_path / "emb.parquet", **kw).out)
    res = score_files(inputs, tmp_path / "hyb.parquet", hybrid=SCORER, **kw)
    hyb = pd.read_parquet(res.out)
    assert len(hyb) == len(inputs) and res.n_ok == len(inputs) - 1
    assert set(hyb["model"]) == {f"{MODEL}+{SCORER}"}
    h = hyb.loc[hyb["status"] == "ok", cols].to_numpy(dtype=np.float64)
    assert h.shape == (len(inputs) - 1, len(classes)) and np.isfinite(h).all() and (h >= 0).all() and (h <= 1).all()
    e = emb.loc[emb["status"] == "ok", cols].to_numpy(dtype=np.float64)
    c = crit.loc[crit["status"] == "ok", cols].to_numpy(dtype=np.float64)
    np.testing.assert_allclose(h, np.where(np.isfinite(c), 0.25 * (e + 1) + 0.5 * c, (e + 1) / 2), atol=1e-5)
    assert hyb.loc[hyb["status"] == "error", cols].isna().all().all()


def test_cli_models_lists_scorers_and_score_takes_one(inputs: list[str], tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from medzs.cli import app

    monkeypatch.setenv("COLUMNS", "250")
    res = CliRunner().invoke(app, ["models"])
    assert res.exit_code == 0, res.output
    assert SCORER in res.output and "scorer" in res.output and "embedding" in res.output
    out = tmp_path / "cli.parquet"
    res = CliRunner().invoke(app, ["score", "--model", SCORER, "--task", TASK, *inputs[5:], "--out", str(out),
                                   "--no-progress"])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.output[res.output.index("{"):])
    assert summary["n_records"] == 3 and summary["n_ok"] == 2 and summary["n_error"] == 1


@pytest.mark.slow  # starts a local Ray instance (about 20-40 s on 2 cores)
def test_ray_engine_criteria_matches_local(criteria_run, inputs: list[str], tmp_path: Path) -> None:
    pytest.importorskip("ray.data")
    _, _, df = criteria_run
    res = score_files(inputs, tmp_path / "ray.parquet", model=SCORER, task=TASK, engine="ray", shard_size=3,
                      batch_size=2, progress=False, ray_actors=1, ray_num_cpus=1)
    got = pd.read_parquet(res.out)
    cols = [c for c in df.columns if c.startswith("score_")]
    assert got["status"].tolist() == df["status"].tolist()
    np.testing.assert_allclose(got[cols].to_numpy(np.float64), df[cols].to_numpy(np.float64), atol=1e-6,
                               equal_nan=True)
