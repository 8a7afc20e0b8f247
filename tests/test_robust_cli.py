"""CLI niceties and bad-input handling: one line on stderr, exit code 2, before any work.

Covers ``medzs --version``, ``python -m medzs``, ``-v`` logs on stderr (JSON on stdout stays parseable), option
validation (train ecg, kb query/build/ingest, data ptbxl), 0-byte and unreadable checkpoints, file-size limits
checked before reading, a missing local LLM model, and ``prompts build`` saying whether it used its cache.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from medzs.errors import PromptError, RecordError, SpecError

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "ANONYMIZED_TELEMETRY": "False",
       "PYTHONPATH": str(REPO)}


def _medzs(*args: str, env: dict | None = None, timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "medzs", *args], env=env or ENV, capture_output=True, text=True,
                          timeout=timeout, cwd=REPO)


def test_version_and_python_m():
    from medzs import __version__

    proc = _medzs("--version")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"medzs {__version__}"


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["train", "ecg", "--max-records", "0"], "'--max-records'"),
        (["train", "ecg", "--epochs", "-1"], "'--epochs'"),
        (["train", "ecg", "--out", "{dir}"], "is a folder (expected a file path)"),
        (["kb", "query", "wide QRS", "-k", "-1"], "'-k'"),
        (["kb", "query", "wide QRS", "--path", "{file}"], "is a file (expected a folder)"),
        (["kb", "build", "--path", "{file}"], "is a file (expected a folder)"),
        (["kb", "ingest", "{file}", "--collection", "notes", "--store", "{file}"], "is a file (expected a folder)"),
        (["data", "ptbxl", "{dir}/ptbxl", "--ids", "abc"], "expected comma-separated positive integer ecg_ids"),
        (["data", "ptbxl", "{dir}/ptbxl", "--ids", "8,-9"], "expected comma-separated positive integer ecg_ids"),
        (["no-such-command"], "No such command"),
    ],
)
def test_bad_options_one_line_exit_2(tmp_path: Path, shared_data: Path, args: list[str], named: str):
    a_file = tmp_path / "E07500.hea"  # a real header, used where a folder is expected
    a_file.write_bytes((shared_data / "ecg/cinc-samples/cinc2021_georgia_chapman/E07500.hea").read_bytes())
    weights = REPO / "medzs" / "weights" / "ecg-resnet18.medzs-ptbxl.pt"
    before = hashlib.sha256(weights.read_bytes()).hexdigest() if weights.is_file() else None
    argv = [x.format(dir=tmp_path, file=a_file) for x in args]
    proc = _medzs(*argv)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("medzs: error: ") and named in lines[0]
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    assert not (tmp_path / "ptbxl").exists()  # nothing was started
    if before is not None:
        assert hashlib.sha256(weights.read_bytes()).hexdigest() == before


def test_verbose_logs_go_to_stderr_and_json_stays_parseable(tmp_path: Path, shared_data: Path):
    doc = tmp_path / "criteria.md"  # a document written from a real header's comment lines
    comments = [ln for ln in (shared_data / "ecg/cinc-samples/cinc2021_georgia_chapman/E07500.hea").read_text()
                .splitlines() if ln.startswith("#")]
    doc.write_text("# Local criteria\n\nLeft bundle branch block: QRS of 120 ms or more.\n\n" + "\n".join(
        c.lstrip("# ") for c in comments) + "\n")
    proc = _medzs("kb", "ingest", str(doc), "--collection", "notes", "--store", str(tmp_path / "chroma"), "-v",
                  timeout=240)
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads(proc.stdout)  # stdout is exactly the JSON summary
    assert summary["collection"] == "notes" and summary["passages"] >= 1
    assert "ingested criteria.md" in proc.stderr  # the -v log line went to stderr


def test_setup_logs_to_stderr(monkeypatch: pytest.MonkeyPatch):
    import logging

    from rich.logging import RichHandler

    from medzs.cli import _setup

    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", [])
    _setup(True)
    (h,) = [h for h in root.handlers if isinstance(h, RichHandler)]
    assert h.console.stderr is True


def test_empty_and_corrupt_checkpoints_are_spec_errors(tmp_path: Path, shared_data: Path):
    import dataclasses

    from medzs import registry

    config = dataclasses.replace(registry.get_config("ecg-resnet18.medzs-ptbxl"), sha256=None)
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    with pytest.raises(SpecError, match=r"empty\.pt is empty \(0 bytes; expected a torch checkpoint"):
        registry.load_checkpoint(None, config, empty)
    corrupt = tmp_path / "corrupt.pt"  # a real file that is not a checkpoint
    corrupt.write_bytes((shared_data / "ecg/formats/pydicom_waveform_ecg.dcm").read_bytes())
    with pytest.raises(SpecError, match=r"corrupt\.pt (cannot be read by torch\.load|: sha256)"):
        registry.load_checkpoint(None, config, corrupt)


def _sparse_copy(src: Path, dst: Path, size: int) -> Path:
    dst.write_bytes(src.read_bytes())
    os.truncate(dst, size)  # sparse: no disk used
    return dst


def test_size_limit_checked_before_reading(tmp_path: Path, shared_data: Path, monkeypatch: pytest.MonkeyPatch):
    from medzs.io.detect import read_ecg
    from medzs.io.wfdb import read_wfdb

    big = _sparse_copy(shared_data / "ecg/formats/pydicom_waveform_ecg.dcm", tmp_path / "huge.dcm", 2 * 2**30)
    with pytest.raises(RecordError, match=r"^huge\.dcm: file size 2,048 MiB \(expected at most 256 MiB for an ECG "
                                          r"file; set MEDZS_MAX_FILE_MB to raise the limit\)$"):
        read_ecg(big)
    src = shared_data / "ecg/ptbxl500/records500/00000/00001_hr"
    (tmp_path / "00001_hr.hea").write_bytes(src.with_suffix(".hea").read_bytes())
    _sparse_copy(src.with_suffix(".dat"), tmp_path / "00001_hr.dat", 300 * 2**20)
    with pytest.raises(RecordError, match=r"^00001_hr\.dat: file size 300 MiB"):
        read_wfdb(tmp_path / "00001_hr.hea")
    with pytest.raises(RecordError, match=r"00001_hr\.dat: file size 300 MiB"):
        read_ecg(tmp_path / "00001_hr.hea")
    # the limit is configurable; the real files pass under the default
    monkeypatch.setenv("MEDZS_MAX_FILE_MB", "0.1")
    with pytest.raises(RecordError, match=r"pydicom_waveform_ecg\.dcm: file size 0 MiB \(expected at most 0 MiB"):
        read_ecg(shared_data / "ecg/formats/pydicom_waveform_ecg.dcm")
    monkeypatch.delenv("MEDZS_MAX_FILE_MB")
    assert read_ecg(shared_data / "ecg/formats/pydicom_waveform_ecg.dcm")["signal"].shape[0] == 12


def test_missing_local_llm_says_how_to_get_one(tmp_path: Path):
    from medzs.prompts.gguf import check_gguf_file

    missing = tmp_path / "models" / "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"
    with pytest.raises(PromptError) as info:
        check_gguf_file(missing)
    msg = str(info.value)
    assert "huggingface.co/Qwen/Qwen2.5-Coder-1.5B-Instruct-GGUF" in msg and "--llm gguf:" in msg
    assert "shared" not in msg and "../" not in msg
    proc = _medzs("prompts", "build", "--task", "ptbxl-super", "--llm", f"gguf:{missing}",
                  env={**ENV, "MEDZS_HOME": str(tmp_path / "home")})
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "PromptError" in lines[0] and "Qwen2.5-Coder-1.5B-Instruct-GGUF" in lines[0]
    assert not (tmp_path / "home" / "chroma").exists()  # failed before building anything


def test_prompts_build_says_whether_it_used_the_cache(tmp_path: Path, medzs_home: Path):
    from typer.testing import CliRunner

    from medzs.cli import app
    from medzs.data.tasks import get_task
    from medzs.knowledge.kb import KnowledgeBase
    from medzs.knowledge.loader import load_entries

    task = get_task("ptbxl-super")
    wanted = set(task.kb_ids.values())
    KnowledgeBase().build([e for e in load_entries() if e.id in wanted])  # only the task's entries: fast
    cache = tmp_path / "prompts.json"
    runner = CliRunner()
    first = runner.invoke(app, ["prompts", "build", "--task", "ptbxl-super", "--cache", str(cache)])
    assert first.exit_code == 0, first.output
    assert f"cache: {cache} (created)" in first.output
    second = runner.invoke(app, ["prompts", "build", "--task", "ptbxl-super", "--cache", str(cache)])
    assert second.exit_code == 0, second.output
    assert f"cache: {cache} (used: every class came from the cache, nothing written)" in second.output


def test_models_listing_is_readable_at_80_columns(monkeypatch) -> None:
    """`medzs models` at 80 columns: every registered name appears whole (users copy them), grouped by modality."""
    from typer.testing import CliRunner

    from medzs import registry
    from medzs.cli import app

    monkeypatch.setenv("COLUMNS", "80")
    res = CliRunner().invoke(app, ["models"])
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    for name in [*registry.list_models(), *registry.list_scorers()]:
        assert any(line.strip().startswith(name + "  (") for line in lines), name
    assert max(len(line) for line in lines) <= 80
    assert lines.index("ECG") < lines.index("Chest radiographs") < lines.index("CT")
