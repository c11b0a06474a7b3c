"""The notebooks in notebooks/ run top to bottom (code cells executed in order, in one namespace)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


@pytest.mark.slow  # ~80 s each: both build, analyse and tag the tiny demo collection
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(path, tmp_path, monkeypatch):
    monkeypatch.setenv("MIR_NOTEBOOK_DIR", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    cells = [c for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]
    assert cells, f"{path.name} has no code cells"
    namespace: dict = {"__name__": "__main__"}
    for n, cell in enumerate(cells, 1):
        source = "".join(cell["source"])
        try:
            exec(compile(source, f"{path.name}[code cell {n}]", "exec"), namespace)
        except Exception as exc:  # name the cell that broke
            raise AssertionError(f"{path.name}, code cell {n} failed: {type(exc).__name__}: {exc}\n{source}") from exc


def test_the_notebooks_are_the_documented_ones():
    assert [p.name for p in NOTEBOOKS] == ["generation.ipynb", "quickstart.ipynb"]  # a new notebook: add it here and to the docs


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_saved_with_outputs_that_name_no_machine_path(path):
    """Committed executed (`python notebooks/run.py`), so they read on a code host without running."""
    cells = [c for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]
    assert all(c["execution_count"] for c in cells), f"{path.name}: run `python notebooks/run.py {path.name}`"
    outputs = json.dumps([c["outputs"] for c in cells])
    for machine in ("/tmp/", "/work/", "/home/", "/root/", "/Users/", "\\\\Users\\\\"):
        assert machine not in outputs, f"{path.name}'s saved outputs name {machine}"
