"""The notebooks in notebooks/ are executed (CI runs this)."""

from __future__ import annotations

from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs(path, medzs_home):
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}).execute()
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors


def test_there_are_notebooks():
    assert NOTEBOOKS


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebooks_are_committed_with_their_outputs(path):
    """Every code cell was executed in order and kept its output (a reader sees results without running it); no
    error output, and no absolute path of the machine that ran it."""
    import nbformat

    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code
    assert [c.execution_count for c in code] == list(range(1, len(code) + 1))
    assert all(c.outputs for c in code), [c.source[:40] for c in code if not c.outputs]
    assert not [o for c in code for o in c.outputs if o.get("output_type") == "error"]
    text = path.read_text(encoding="utf-8")
    assert "/work/" not in text and "/home/" not in text


def test_all_extra_installs_what_the_notebooks_need():
    """`pip install -e ".[all]"` brings the notebook runner and kernel, and the readers/measurements they call."""
    import tomllib

    pyproject = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())
    extras = pyproject["project"]["optional-dependencies"]
    names = {d.split("[")[0].split(">")[0].split("=")[0].strip().lower() for d in pyproject["project"]["dependencies"]}
    all_extras = extras["all"][0].split("[", 1)[1].rstrip("]").split(",")
    for extra in all_extras:
        names |= {d.split("[")[0].split(">")[0].split("=")[0].strip().lower() for d in extras[extra]}
    for needed in ("nbclient", "nbformat", "ipykernel", "matplotlib", "scikit-learn", "pydicom", "sierraecg",
                   "neurokit2"):
        assert needed in names, needed
