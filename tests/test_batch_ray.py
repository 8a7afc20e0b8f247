"""The Ray engine (medzs.batch_ray) on a real local Ray instance: same rows and scores as the local engine."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("ray.data", reason="Ray Data not installed (pip install 'medzs[ray]')")

from test_batch import MODEL, TASK, assert_same_output, build_inputs, names_prompts, read_out

from medzs.batch import score_files, shard_name

pytestmark = pytest.mark.slow  # a Ray instance and two actors loading the model: ~30-60 s on 2 cores


@pytest.fixture(scope="module")
def ray_local():
    """One local Ray instance (2 CPUs, no dashboard) for the module; the engine reuses it."""
    import ray

    from medzs.batch_ray import init_ray

    started = init_ray(num_cpus=2)
    yield
    if started:
        ray.shutdown()


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory, shared_data: Path):
    root = tmp_path_factory.mktemp("ray")
    inputs, n = build_inputs(root, shared_data, 12, cinc=False)
    inputs.insert(1, str(shared_data / "ecg" / "cinc-samples" / "cpsc2018"))
    return {"root": root, "inputs": inputs, "n": n + 10}


def _kw(**extra):
    return {"model": MODEL, "task": TASK, "class_prompts": names_prompts(), "batch_size": 4, "shard_size": 6,
            "progress": False, **extra}


def test_ray_matches_local_and_resumes_local_shards(ray_local, inputs, tmp_path: Path) -> None:
    salt = "ray-salt"
    local = score_files(inputs["inputs"], tmp_path / "local.parquet", engine="local", hash_ids=True, salt=salt,
                        keep_shards=True, torch_threads=1, **_kw())
    ray_out = tmp_path / "ray.parquet"
    res = score_files(inputs["inputs"], ray_out, engine="ray", hash_ids=True, salt=salt, ray_actors=2, **_kw())
    assert res.engine == "ray" and res.n_records == inputs["n"] and res.run_key == local.run_key
    a, b = read_out(local.out), read_out(ray_out)
    assert len(b) == inputs["n"] and b["record_index"].tolist() == list(range(inputs["n"]))
    assert (b["status"] == "error").sum() == 2 and set(b["source_format"].dropna()) >= {"wfdb", "cpsc2018", "dicom"}
    assert_same_output(a, b, atol=1e-5)  # same ids, statuses, error classes/messages; scores within 1e-5
    assert not Path(f"{ray_out}.shards").exists()

    # Resume under Ray from the local engine's shards with two of them missing: only those are recomputed.
    resumed = tmp_path / "resumed.parquet"
    shards = Path(f"{resumed}.shards")
    shutil.copytree(Path(f"{local.out}.shards"), shards)
    n = inputs["n"]
    for s in (6, 18):
        (shards / shard_name(s, min(s + 6, n))).unlink()
    res2 = score_files(inputs["inputs"], resumed, engine="ray", hash_ids=True, salt=salt, ray_actors=1, **_kw())
    assert res2.n_shards_resumed == res2.n_shards - 2
    assert_same_output(read_out(resumed), a, atol=1e-5)


def test_ray_softmax_scores_are_probabilities(ray_local, inputs, tmp_path: Path) -> None:
    res = score_files(inputs["inputs"][:2], tmp_path / "sm.parquet", engine="ray", softmax=True, ray_actors=1,
                      **_kw())
    df = read_out(res.out)
    sc = df[[c for c in df.columns if c.startswith("score_")]].to_numpy(float)
    ok = (df["status"] == "ok").to_numpy()
    assert ok.sum() == 22
    np.testing.assert_allclose(sc[ok].sum(axis=1), 1.0, atol=1e-5)
