"""Training smoke run, the shipped default model and the end-to-end zero-shot pipeline on real PTB-XL."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from medzs import registry

REPO = Path(__file__).resolve().parents[1]
DEFAULT = "ecg-resnet18.medzs-ptbxl"


def test_training_smoke_writes_a_loadable_checkpoint(tmp_path, ptbxl_root):
    from medzs.recipes import train_ptbxl_default

    out = tmp_path / "smoke.pt"
    card = train_ptbxl_default(out=out, root=ptbxl_root, epochs=1, max_records=24, progress=False)
    assert out.is_file() and out.with_suffix(".json").is_file()
    assert card["sha256"] == registry.sha256_file(out)
    assert card["n_train"] == 24
    assert np.isfinite(card["history"][0]["loss"])
    # only folds 1-8 are ever trained on
    from medzs.data.ptbxl import PTBXL

    folds = PTBXL(ptbxl_root).folds
    assert set(folds[card["data"]["ecg_ids"]]) <= set(range(1, 9))
    model = registry.create_model(DEFAULT, weights=out, sha256=card["sha256"])
    assert model.encode_text(["sinus rhythm"]).shape == (1, 256)
    assert card["torch_threads"] == 2 and card["torch_version"] and card["deterministic"]


def test_training_is_deterministic_and_never_overwrites_the_shipped_weights(tmp_path, ptbxl_root):
    from medzs.recipes import shipped_weights_path, train_ecg

    kw = {"epochs": 1, "max_records": 12, "text_mode": "kb", "progress": False, "batch_size": 6}
    a = train_ecg(ptbxl_root, tmp_path / "a.pt", **kw)
    b = train_ecg(ptbxl_root, tmp_path / "sub" / "b.pt", **kw)
    assert a["sha256"] == b["sha256"]  # same torch build and thread count: bit-identical file
    with pytest.raises(FileExistsError, match="replace_default=True"):
        train_ecg(ptbxl_root, shipped_weights_path(), **kw)


def test_knowledge_grounded_training_text(ptbxl_root):
    from medzs.data.ptbxl import PTBXL
    from medzs.recipes import PTBXLTexts

    ds = PTBXL(ptbxl_root)
    ids = [i for i in ds.split("train") if "IMI" in ds.database.loc[i, "scp_codes"]][:3]
    assert ids
    statements = PTBXLTexts(ds, ids, "statements")
    names = PTBXLTexts(ds, ids, "names")
    kb = PTBXLTexts(ds, ids, "kb")
    rng = np.random.default_rng(0)
    assert "inferior myocardial infarction" in statements(0, rng)
    assert "myocardial infarction" in names.fixed(0).split(". ")  # the superclass entry's name
    drawn = {kb(0, rng) for _ in range(200)}
    assert len(drawn) > 10  # sampled anew at each draw
    joined = " | ".join(drawn)
    # definitions, criteria and synonyms of the IMI entry (knowledge/ecg/ecg.scp.IMI.yaml) all appear
    assert "inferior myocardial infarction, with pathological Q waves" in joined
    assert "inferior myocardial infarction: myocardial infarction, acute or healed" in joined
    assert "diaphragmatic infarction" in joined
    again = np.random.default_rng(0)
    rng = np.random.default_rng(0)
    assert [kb(0, rng) for _ in range(20)] == [kb(0, again) for _ in range(20)]


def test_shipped_default_model_card_and_size():
    cfg = registry.get_config(DEFAULT)
    weights = Path(cfg.weights)
    assert weights.is_file(), "the embedded default checkpoint must be committed"
    assert weights.stat().st_size <= 20 * 1024 * 1024
    card = json.loads(weights.with_suffix(".json").read_text())
    assert card["sha256"] == registry.sha256_file(weights)
    assert card["n_train"] >= 300
    assert card["data"]["folds"] == "strat_fold 1-8"


def test_default_model_never_saw_the_reported_folds(ptbxl_root):
    from medzs.data.ptbxl import PTBXL

    card = json.loads(Path(registry.get_config(DEFAULT).weights).with_suffix(".json").read_text())
    reported = set(PTBXL(ptbxl_root).split("test9-10"))
    assert reported and not reported & set(card["data"]["ecg_ids"])


@pytest.mark.slow
def test_zeroshot_ptbxl_super_end_to_end(tmp_path, medzs_home, ptbxl_root):
    """README command 1's job, in-process: AUROC per condition on folds 9-10 with the shipped model."""
    from medzs.pipeline import load_pipeline, run_zeroshot

    cfg = load_pipeline(REPO / "pipelines" / "ptbxl-super.yaml")
    cfg.dataset["root"] = str(ptbxl_root)
    res = run_zeroshot(cfg, out_dir=tmp_path / "run", progress=False)
    table, macro = res["table"], res["macro"]
    assert list(table["condition"]) == ["HYP", "NORM", "MI", "CD", "STTC"]  # MERL column order
    assert res["n_records"] == 134  # folds 9-10 with a superclass label (v1.0.3 ids)
    assert (table["n_pos"] > 0).all() and int(table["n_pos"].sum()) >= 134
    assert macro["auroc"] >= 0.70
    assert macro["ci_low"] < macro["auroc"] < macro["ci_high"]
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["provenance"]["model"]["sha256"] == registry.sha256_file(registry.get_config(DEFAULT).weights)
    html = (tmp_path / "run" / "report.html").read_text()
    assert "data:image/png;base64" in html and "PTB-XL" in html


def test_cli_lists_models():
    import os

    out = subprocess.run([sys.executable, "-m", "medzs.cli", "models"], capture_output=True, text=True,
                         check=True, cwd=REPO, env={**os.environ, "COLUMNS": "250"})
    assert DEFAULT in out.stdout and "1000 @ 100 Hz" in out.stdout


def test_pipeline_typo_in_a_nested_field_fails_naming_it(tmp_path):
    from medzs.errors import SpecError
    from medzs.pipeline import load_pipeline

    text = (REPO / "pipelines" / "ptbxl-super.yaml").read_text().replace("softmax: false", "softmx: false")
    bad = tmp_path / "typo.yaml"
    bad.write_text(text)
    with pytest.raises(SpecError, match=r"typo.yaml: unknown field 'scoring.softmx'"):
        load_pipeline(bad)


def test_cli_user_error_is_one_line_exit_2(tmp_path):
    out = subprocess.run([sys.executable, "-m", "medzs.cli", "zeroshot", str(tmp_path / "missing.yaml")],
                         capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 2
    assert out.stderr.strip() == f"medzs: error: FileNotFoundError: pipeline {tmp_path / 'missing.yaml'} not found"
