"""`medzs benchmark merl`: both protocols end to end through the CLI on the local records (engine, split files,
CKEPE prompts or a published-format prompt file), results.json and report.html written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from medzs import registry
from medzs.cli import app

WORDS = ["atrial", "fibrillation", "normal", "ecg", "sinus", "rhythm", "block", "bundle", "branch", "left", "right",
         "st", "elevation", "depression", "premature", "complex", "degree", "first", "av", "ventricular"]


@pytest.fixture(scope="module")
def merl_release(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A tiny local BERT folder and random weights written in MERL's released full-checkpoint layout."""
    from dataclasses import replace

    from transformers import BertConfig, BertModel, BertTokenizer

    d = tmp_path_factory.mktemp("bert")
    (d / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]) + "\n")
    BertTokenizer(str(d / "vocab.txt")).save_pretrained(str(d))
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=len(WORDS) + 5, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                         intermediate_size=64, max_position_embeddings=300)).save_pretrained(str(d))
    cfg = replace(registry.get_config("merl-resnet18.release"), text_model=str(d))
    ckpt = d / "res18_bestZeroShotAll_ckpt.pth"
    torch.save(registry.build_model(cfg, seed=3).state_dict(), ckpt)
    return d, ckpt


def test_benchmark_merl_faithful_with_a_release_layout_checkpoint(tmp_path: Path, merl_release) -> None:
    bert, ckpt = merl_release
    prompts = tmp_path / "prompts.json"
    prompts.write_text(json.dumps({c: f"{c.lower()} ecg" for c in
                                   ["AFIB", "VPC", "NORM", "1AVB", "CRBBB", "STE", "PAC", "CLBBB", "STD"]}))
    res = CliRunner().invoke(app, ["benchmark", "merl", "--protocol", "faithful", "--model", "merl-resnet18.release",
                                   "--weights", str(ckpt), "--text-model", str(bert), "--prompts-file",
                                   str(prompts), "--benchmarks", "cpsc2018,chapman", "--n-boot", "20",
                                   "--out", str(tmp_path / "out")])
    assert res.exit_code == 0, res.output
    doc = json.loads((tmp_path / "out" / "results.json").read_text())
    rows = {r["benchmark"]: r for r in doc["rows"]}
    assert rows["cpsc2018"]["found"] == 2 and rows["cpsc2018"]["expected"] == 1376
    assert rows["chapman"]["status"] == "no test records found locally"
    assert "cpsc2018" in res.output and "2/1376" in res.output
    assert (tmp_path / "out" / "report.html").read_text().count("<tr>") == 3


def test_benchmark_merl_corrected_refuses_faithful_on_a_100hz_model(tmp_path: Path) -> None:
    res = CliRunner().invoke(app, ["benchmark", "merl", "--protocol", "faithful", "--model",
                                   "ecg-resnet18.medzs-ptbxl", "--out", str(tmp_path / "o")])
    assert res.exit_code != 0
    assert "use --protocol corrected" in str(res.exception) + res.output


def test_benchmark_merl_corrected_embedded_model_ckepe_prompts(tmp_path: Path) -> None:
    res = CliRunner().invoke(app, ["benchmark", "merl", "--protocol", "corrected", "--benchmarks", "ptbxl-form",
                                   "--n-boot", "20", "--out", str(tmp_path / "out")])
    assert res.exit_code == 0, res.output
    doc = json.loads((tmp_path / "out" / "results.json").read_text())
    row = doc["rows"][0]
    assert row["found"] == 76 and row["n_test"] == 76
    assert set(row["n_pos"]) <= {"STD", "NDT", "NST", "ABQRS", "PVC"} and all(n >= 10 for n in row["n_pos"].values())
    assert 0.0 < row["auroc"] < 1.0 and "PAC" in row["dropped"]
    assert "CKEPE" in doc["prompts"]
