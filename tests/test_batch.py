"""Batch scoring (medzs.batch) on the real shared ECG files of every format, plus corrupt files made here.

The model is ``ecg-resnet18.random`` (untrained, seeded: deterministic); class prompts are the class names
(no knowledge base needed) except in the CLI test, which builds the task's part of the real knowledge base.
"""

from __future__ import annotations

import json
import logging
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from medzs.batch import (
    Record,
    discover_records,
    hash_id,
    identifier_pattern,
    records_fingerprint,
    score_files,
    shard_name,
)
from medzs.data.tasks import get_task
from medzs.errors import SpecError

MODEL = "ecg-resnet18.random"
TASK = "ptbxl-super"
WEIGHTS = Path(__file__).resolve().parents[1] / "medzs" / "weights" / "ecg-resnet18.medzs-ptbxl.pt"
if WEIGHTS.is_file():  # the trained model when it has been built (`medzs train ecg`), else the seeded random one
    MODEL = "ecg-resnet18.medzs-ptbxl"
N_PTBXL = 30


# ------------------------------------------------------------------------------------------------ helpers
def names_prompts(task: str = TASK) -> dict[str, list[str]]:
    """Class-name prompts: scoring without a knowledge base."""
    t = get_task(task)
    return {c: [t.display_names[c]] for c in t.classes}


def ptbxl_headers(shared: Path, n: int) -> list[Path]:
    return sorted((shared / "ecg" / "ptbxl500" / "records500" / "00000").glob("*_hr.hea"))[:n]


def make_corrupt(folder: Path, shared: Path) -> dict[str, Path]:
    """A truncated WFDB record (``.hea`` + half its ``.dat``) and a truncated GE MUSE XML export."""
    folder.mkdir(parents=True, exist_ok=True)
    src = shared / "ecg" / "ptbxl500" / "records500" / "00000" / "00001_hr"
    (folder / "trunc01.hea").write_text(src.with_suffix(".hea").read_text().replace("00001_hr", "trunc01"))
    data = src.with_suffix(".dat").read_bytes()
    (folder / "trunc01.dat").write_bytes(data[: len(data) // 2])
    muse = (shared / "ecg" / "formats" / "ecg2dcm_guangxi_teaching_sinus_rhythm_GE-MUSE.xml").read_bytes()
    (folder / "export_cut.xml").write_bytes(muse[: len(muse) // 3])
    return {"wfdb": folder / "trunc01.hea", "xml": folder / "export_cut.xml"}


def make_manifest(path: Path, files: list[Path]) -> Path:
    rel = [os.path.relpath(f, path.parent) for f in files]
    pd.DataFrame({"path": rel}).to_csv(path, index=False)
    return path


def build_inputs(root: Path, shared: Path, n_ptbxl: int, cinc: bool = True) -> tuple[list[str], int]:
    """Inputs mixing every format: PTB-XL (manifest), CinC Georgia/Chapman + CPSC (folder), hospital exports
    (folder: DICOM, GE MUSE, Philips), two corrupt files (folder). Returns (inputs, expected record count)."""
    make_corrupt(root / "corrupt", shared)
    manifest = make_manifest(root / "ptbxl.csv", ptbxl_headers(shared, n_ptbxl))
    inputs = [str(manifest), str(shared / "ecg" / "formats"), str(root / "corrupt")]
    n = n_ptbxl + 4 + 2
    if cinc:
        inputs.insert(1, str(shared / "ecg" / "cinc-samples"))
        n += 40 + 10
    return inputs, n


def read_out(path: Path) -> pd.DataFrame:
    return pq.read_table(path).to_pandas()


def assert_same_output(a: pd.DataFrame, b: pd.DataFrame, atol: float = 1e-6) -> None:
    assert list(a.columns) == list(b.columns)
    assert len(a) == len(b)
    for col in ("record_id", "record_index", "source_format", "status", "error_class", "error_message", "model",
                "task"):
        assert a[col].tolist() == b[col].tolist(), col
    sc = [c for c in a.columns if c.startswith("score_")]
    np.testing.assert_allclose(a[sc].to_numpy(float), b[sc].to_numpy(float), atol=atol, rtol=0, equal_nan=True)


def identifier_strings(records: list[Record]) -> set[str]:
    """Every way a record could be named: paths, file names, stems, source ids."""
    out: set[str] = set()
    for r in records:
        for s in (r.path, os.path.realpath(r.path), r.source_id):
            out |= {s, os.path.basename(s), os.path.basename(s).split(".", 1)[0], os.path.dirname(s)}
    return {s for s in out if len(s) >= 4 and s not in ("/work",)}


@pytest.fixture(scope="module")
def mixed(tmp_path_factory: pytest.TempPathFactory, shared_data: Path):
    """The full mixed-format input set and its uninterrupted local run."""
    root = tmp_path_factory.mktemp("mixed")
    inputs, n = build_inputs(root, shared_data, N_PTBXL)
    out = root / "scores.parquet"
    res = score_files(inputs, out, model=MODEL, task=TASK, class_prompts=names_prompts(), torch_threads=1,
                      batch_size=16, shard_size=32, progress=False)
    return {"root": root, "inputs": inputs, "n": n, "out": out, "result": res, "df": read_out(out)}


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory, shared_data: Path):
    """A small mixed set (12 PTB-XL, 4 exports, 2 corrupt) for resume/hash tests."""
    root = tmp_path_factory.mktemp("small")
    inputs, n = build_inputs(root, shared_data, 12, cinc=False)
    return {"root": root, "inputs": inputs, "n": n}


# ------------------------------------------------------------------------------------------------ discovery
def test_discovery_formats_companions_and_order(shared_data: Path, tmp_path: Path) -> None:
    ecg = shared_data / "ecg"
    recs = discover_records([ecg / "cinc-samples", ecg / "wfdb-samples", ecg / "formats"])
    ids = [r.source_id for r in recs]
    # CinC: one record per .hea (the .mat companion is skipped); CPSC .mat has no header and counts once.
    assert sum(i.startswith("cinc2021_georgia_chapman/") for i in ids) == 40
    assert all(i.endswith(".hea") for i in ids if i.startswith("cinc2021_georgia_chapman/"))
    assert sum(i.startswith("cpsc2018/") and i.endswith(".mat") for i in ids) == 10
    # WFDB samples: 100.{hea,dat,atr} and s0010_re.{hea,dat,xyz} are two records.
    assert [i for i in ids if i.startswith("sample-data/")] == ["sample-data/100.hea", "sample-data/s0010_re.hea"]
    # Export folder: DICOM x2, MUSE, Philips; the attribution .md and licence .txt are not ECGs.
    assert sorted(i for i in ids if "/" not in i) == sorted(p.name for p in (ecg / "formats").iterdir()
                                                          if p.suffix in (".dcm", ".xml"))
    assert len(recs) == 40 + 10 + 2 + 4
    assert [r.index for r in recs] == list(range(len(recs)))
    # Deterministic and sorted within an input; the same file reached twice is taken once.
    again = discover_records([ecg / "cinc-samples", ecg / "wfdb-samples", ecg / "formats",
                              ecg / "formats" / "pydicom_waveform_ecg.dcm"])
    assert records_fingerprint(again) == records_fingerprint(recs)
    cinc = [i for i in ids if i.startswith("cinc2021")]
    assert cinc == sorted(cinc)
    # A glob of the .mat files alone keeps them (their headers are not part of the input).
    mats = discover_records([str(ecg / "cinc-samples" / "cinc2021_georgia_chapman" / "*.mat")])
    assert len(mats) == 40 and all(r.source_id.endswith(".mat") for r in mats)
    # A recursive glob over everything: each WFDB record once, by its header.
    allfiles = discover_records([str(ecg / "wfdb-samples" / "**" / "*")])
    assert sorted(r.source_id for r in allfiles) == ["LICENSE", "sample-data/100.hea", "sample-data/s0010_re.hea"]


def test_discovery_manifest_and_errors(shared_data: Path, tmp_path: Path) -> None:
    heas = ptbxl_headers(shared_data, 3)
    m = make_manifest(tmp_path / "m.csv", [heas[1], heas[0], heas[1]])
    recs = discover_records([m])
    assert [r.path for r in recs] == [str(heas[1]), str(heas[0]), str(heas[1])]  # file order, repeats kept
    assert recs[0].source_id == os.path.relpath(heas[1], tmp_path)
    pd.DataFrame({"path": [str(heas[2])], "record_id": ["site-A/42"]}).to_csv(tmp_path / "ids.csv", index=False)
    assert discover_records([tmp_path / "ids.csv"])[0].source_id == "site-A/42"
    pd.DataFrame({"file": ["x"]}).to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(SpecError, match="column 'path' missing"):
        discover_records([tmp_path / "bad.csv"])
    with pytest.raises(SpecError, match="no such file"):
        discover_records([tmp_path / "nope"])
    with pytest.raises(SpecError, match="matches no file"):
        discover_records([str(tmp_path / "*.nothing")])


def test_identifier_pattern_redacts_paths_names_and_stems() -> None:
    rec = Record(3, "/data/site/Smith_J/00042_hr.hea", "Smith_J/00042_hr.hea")
    pat = identifier_pattern(rec)
    msg = ("/data/site/Smith_J/00042_hr.hea: bad; /data/site/Smith_J/00042_hr.dat short; 00042_hr: NaN; "
           "Smith_J/00042_hr.hea; 100042_hr stays")
    red = pat.sub("X", msg)
    assert "Smith" not in red and "00042_hr:" not in red and "/data/site" not in red
    assert red.startswith("X: bad; X short; X: NaN; X;") and "100042_hr stays" in red
    assert hash_id("a", "s") != hash_id("a", "t") and len(hash_id("a", "s")) == 64
    with pytest.raises(SpecError):
        hash_id("a", "")


# ------------------------------------------------------------------------------------------------ scoring
def test_score_mixed_formats_one_row_per_input(mixed) -> None:
    df, n = mixed["df"], mixed["n"]
    assert len(df) == n == mixed["result"].n_records
    assert df["record_index"].tolist() == list(range(n))
    assert df["record_id"].is_unique
    assert list(df.columns[:6]) == ["record_id", "record_index", "source_format", "status", "error_class",
                                    "error_message"]
    classes = get_task(TASK).classes
    assert [c for c in df.columns if c.startswith("score_")] == [f"score_{c}" for c in classes]
    assert set(df["model"]) == {MODEL} and set(df["task"]) == {TASK}
    # Exactly the two corrupt files are error rows, with their class and a message naming the file.
    err = df[df["status"] == "error"]
    assert sorted(err["record_id"]) == ["export_cut.xml", "trunc01.hea"]
    assert err["error_class"].notna().all() and (err["error_class"] != "").all()
    for _, row in err.iterrows():
        assert row["record_id"].split(".")[0] in row["error_message"]
        assert np.isnan(row[[f"score_{c}" for c in classes]].to_numpy(float)).all()
    ok = df[df["status"] == "ok"]
    assert ok["error_class"].isna().all() and ok["error_message"].isna().all()
    scores = ok[[f"score_{c}" for c in classes]].to_numpy(float)
    assert np.isfinite(scores).all() and (np.abs(scores) <= 1.0 + 1e-6).all()
    assert scores.std(axis=0).min() > 0  # different records give different scores
    fmts = ok["source_format"].value_counts().to_dict()
    assert fmts == {"wfdb": N_PTBXL, "cinc": 40, "cpsc2018": 10, "dicom": 2, "muse": 1, "philips": 1}
    assert mixed["result"].error_classes and mixed["result"].n_error == 2
    assert not Path(f"{mixed['out']}.shards").exists()  # removed after the merge


def test_scores_match_direct_encoding(mixed) -> None:
    """The batch scores equal read_ecg -> preprocess -> encoder -> similarity done by hand."""
    import torch

    from medzs import registry
    from medzs.io.detect import read_ecg
    from medzs.scoring import class_embeddings, similarity
    from medzs.transforms.ecg import preprocess

    df = mixed["df"]
    recs = discover_records(mixed["inputs"])
    pick = [0, N_PTBXL, N_PTBXL + 45, len(recs) - 4]  # PTB-XL, CinC, CPSC, an export
    model = registry.create_model(MODEL)
    classes = get_task(TASK).classes
    with torch.inference_mode():
        cls = class_embeddings(lambda t: model.encode_text(list(t)), [names_prompts()[c] for c in classes])
        x = np.stack([preprocess(read_ecg(recs[i].path), model.config.input_spec) for i in pick])
        expected = similarity(model.encode_signal(torch.from_numpy(x)), cls)
    got = df.iloc[pick][[f"score_{c}" for c in classes]].to_numpy(float)
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_rerun_is_noop_and_changed_inputs_are_refused(small, tmp_path: Path, shared_data: Path) -> None:
    out = tmp_path / "s.parquet"
    kw = {"model": MODEL, "task": TASK, "class_prompts": names_prompts(), "torch_threads": 1, "batch_size": 4,
          "shard_size": 4, "progress": False}
    first = score_files(small["inputs"], out, keep_shards=True, **kw)
    assert first.n_records == small["n"] and first.n_shards == 5 and not first.already_complete
    again = score_files(small["inputs"], out, keep_shards=True, **kw)
    assert again.already_complete and again.run_key == first.run_key
    # A different input set must not be mixed with these shards.
    out.unlink()
    more = small["inputs"] + [str(shared_data / "ecg" / "wfdb-samples")]
    with pytest.raises(SpecError, match="different run"):
        score_files(more, out, **kw)
    res = score_files(more, out, overwrite=True, **kw)
    assert res.n_records == small["n"] + 2 and res.n_shards_resumed == 0


def test_resume_skips_complete_shards_and_redoes_broken_ones(small, tmp_path: Path) -> None:
    kw = {"model": MODEL, "task": TASK, "class_prompts": names_prompts(), "torch_threads": 1, "batch_size": 4,
          "shard_size": 4, "progress": False}
    ref_out = tmp_path / "ref.parquet"
    score_files(small["inputs"], ref_out, **kw)
    out = tmp_path / "s.parquet"
    score_files(small["inputs"], out, keep_shards=True, **kw)
    shards = Path(f"{out}.shards")
    names = sorted(p.name for p in shards.glob("part-*.parquet"))
    assert names == [shard_name(s, min(s + 4, small["n"])) for s in range(0, small["n"], 4)]
    # The states a kill can leave behind: a missing shard, a half-written temporary file, no final file.
    # (A truncated shard under its final name cannot occur with os.replace, but is redone if found.)
    out.unlink()
    (shards / names[1]).unlink()
    (shards / f".{names[1]}.12345.tmp").write_bytes(b"PAR1 half written")
    data = (shards / names[3]).read_bytes()
    (shards / names[3]).write_bytes(data[: len(data) // 2])
    (tmp_path / ".s.parquet.999.tmp").write_bytes(b"half merged")
    res = score_files(small["inputs"], out, **kw)
    assert res.n_shards_resumed == 3 and not res.already_complete
    assert not list(tmp_path.glob(".*.tmp")) and not shards.exists()
    assert_same_output(read_out(out), read_out(ref_out), atol=0)


def test_hash_ids_no_identifier_in_output_or_logs(small, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    salt = "pepper-for-tests"
    out = tmp_path / "hashed.parquet"
    records = discover_records(small["inputs"])
    caplog.set_level(logging.DEBUG)
    res = score_files(small["inputs"], out, model=MODEL, task=TASK, class_prompts=names_prompts(), torch_threads=1,
                      batch_size=4, shard_size=8, hash_ids=True, salt=salt, keep_shards=True, progress=False)
    df = read_out(out)
    assert df["record_id"].tolist() == [hash_id(r.source_id, salt) for r in records]
    err = df[df["status"] == "error"]
    assert len(err) == 2 and res.n_error == 2
    for _, row in err.iterrows():  # the path is replaced by the hashed id, the reason stays
        assert row["error_message"].startswith(row["record_id"]) or row["record_id"] in row["error_message"]
    forbidden = identifier_strings(records) | {str(small["root"]), str(Path(small["inputs"][1]).parent)}
    files = [out, *Path(f"{out}.shards").iterdir()]
    for f in files:
        blob = f.read_bytes()
        for s in forbidden:
            assert s.encode() not in blob, f"identifier in {f.name}"
    logs = caplog.text
    for s in forbidden:
        assert s not in logs, "identifier in logs"
    assert "record #" in logs  # reader logs were emitted (and redacted): the check above is not vacuous
    # Without hashing the ids are the source identifiers.
    plain = score_files(small["inputs"], tmp_path / "plain.parquet", model=MODEL, task=TASK,
                        class_prompts=names_prompts(), torch_threads=1, batch_size=4, shard_size=8, progress=False)
    dp = read_out(plain.out)
    assert dp["record_id"].tolist() == [r.source_id for r in records]
    sc = [c for c in df.columns if c.startswith("score_")]
    np.testing.assert_allclose(dp[sc].to_numpy(float), df[sc].to_numpy(float), atol=0, equal_nan=True)


def test_hash_ids_requires_salt(small, tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="salt"):
        score_files(small["inputs"], tmp_path / "x.parquet", model=MODEL, task=TASK, class_prompts=names_prompts(),
                    hash_ids=True, salt=None, progress=False)


# ------------------------------------------------------------------------------------------------ kill -9
_DRIVER = """
import json, sys
from medzs.batch import score_files
a = json.loads(sys.argv[1])
score_files(a["inputs"], a["out"], model=a["model"], task=a["task"], class_prompts=a["prompts"],
            batch_size=2, shard_size=2, progress=False, torch_threads=1)
"""


def _check_shards_complete(shards: Path) -> int:
    n = 0
    for p in shards.glob("part-*.parquet"):
        s, e = (int(x) for x in p.stem.split("-")[1:])
        assert pq.read_metadata(p).num_rows == e - s  # every shard under its final name is complete
        n += 1
    return n


@pytest.mark.slow
def test_kill9_at_random_points_then_resume_equals_uninterrupted(mixed, tmp_path: Path) -> None:
    """SIGKILL the scorer 10 times at seeded random points; restarts finish with the uninterrupted run's rows."""
    inputs, n = mixed["inputs"], mixed["n"]
    out = tmp_path / "killed.parquet"
    shards = Path(f"{out}.shards")
    args = json.dumps({"inputs": inputs, "out": str(out), "model": MODEL, "task": TASK, "prompts": names_prompts()})
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "ANONYMIZED_TELEMETRY": "False"}
    n_shards = -(-n // 2)
    rng = random.Random(20241129)
    kills, mid_run = 0, 0
    while kills < 10:
        before = len(list(shards.glob("part-*.parquet")))
        with open(tmp_path / "stderr.txt", "wb") as err:
            proc = subprocess.Popen([sys.executable, "-c", _DRIVER, args], env=env, stdout=subprocess.DEVNULL,
                                    stderr=err)
            if kills % 3 == 0:  # anywhere from the start (startup, discovery, model loading), at most one shard on
                deadline = time.monotonic() + rng.uniform(0.3, 6.0)
                while (time.monotonic() < deadline and proc.poll() is None
                       and len(list(shards.glob("part-*.parquet"))) <= before):
                    time.sleep(0.005)
            else:  # while scoring: once the next shard has landed, after a random delay (mid-batch or mid-write)
                while proc.poll() is None and len(list(shards.glob("part-*.parquet"))) <= before:
                    time.sleep(0.005)
                time.sleep(rng.uniform(0.0, 0.15))
            if proc.poll() is not None:
                pytest.fail(f"run finished before kill {kills + 1}: {(tmp_path / 'stderr.txt').read_text()[-2000:]}")
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        kills += 1
        done = _check_shards_complete(shards) if shards.exists() else 0
        mid_run += 0 < done < n_shards
        assert not out.exists()
    assert mid_run >= 6, mid_run
    final = subprocess.run([sys.executable, "-c", _DRIVER, args], env=env, capture_output=True, timeout=300,
                           check=False)
    assert final.returncode == 0, final.stderr.decode()[-2000:]
    got = read_out(out)
    assert len(got) == n and got["record_index"].tolist() == list(range(n))
    assert_same_output(got, mixed["df"])
    assert not shards.exists()


# ------------------------------------------------------------------------------------------------ CLI
def test_cli_score_with_knowledge_base_prompts(small, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from medzs.cli import app
    from medzs.knowledge.kb import KnowledgeBase
    from medzs.knowledge.loader import load_entries

    monkeypatch.setenv("MEDZS_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TEST_SALT", "cli-salt")
    # The real knowledge base, limited to the task's entries (building all of it takes minutes on 2 cores).
    wanted = set(get_task(TASK).kb_ids.values())
    KnowledgeBase().build([e for e in load_entries() if e.id in wanted])
    out = tmp_path / "cli.parquet"
    argv = ["score", "--model", MODEL, "--task", TASK, *small["inputs"], "--out", str(out), "--shard-size", "8",
            "--batch-size", "8", "--prompts-writer", "names", "--prompts-cache", str(tmp_path / "prompts.json"),
            "--threads", "1", "--hash-ids", "--salt-env", "TEST_SALT", "--no-progress"]
    res = CliRunner().invoke(app, argv)
    assert res.exit_code == 0, res.output
    summary = json.loads(res.output[res.output.index("{"):])
    assert summary["n_records"] == small["n"] and summary["n_error"] == 2
    df = read_out(out)
    recs = discover_records(small["inputs"])
    assert df["record_id"].tolist() == [hash_id(r.source_id, "cli-salt") for r in recs]
    assert (df["status"] == "ok").sum() == small["n"] - 2
    monkeypatch.delenv("TEST_SALT")
    res = CliRunner().invoke(app, [*argv[:-1], "--out", str(tmp_path / "o2.parquet")])
    assert res.exit_code != 0 and "TEST_SALT" in res.output
    shutil.rmtree(tmp_path / "home", ignore_errors=True)
