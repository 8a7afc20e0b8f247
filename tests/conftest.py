"""Shared fixtures: the real data mirror in ../shared/data (read-only)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

REPO = Path(__file__).resolve().parents[1]


def _shared_data() -> Path:
    env = os.environ.get("MEDZS_SHARED_DATA")
    if env:
        return Path(env)
    return REPO.parent / "shared" / "data"


SHARED_DATA = _shared_data()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Root of the read-only shared data mirror (``../shared/data``)."""
    if not SHARED_DATA.is_dir():
        pytest.fail(f"shared data mirror not found at {SHARED_DATA}; set MEDZS_SHARED_DATA")
    return SHARED_DATA


@pytest.fixture(scope="session")
def ptbxl_root(shared_data: Path) -> Path:
    """The 500-record PTB-XL mirror in the official PhysioNet layout."""
    return shared_data / "ecg" / "ptbxl500"


@pytest.fixture()
def medzs_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private MEDZS_HOME (cache, Chroma store) for one test."""
    home = tmp_path / "medzs-home"
    monkeypatch.setenv("MEDZS_HOME", str(home))
    return home
