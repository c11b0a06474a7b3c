"""The notebooks in notebooks/ run top to bottom (code cells executed in order, in one namespace)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import save_debug_model, write_clip

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))
DEMO = [p for p in NOTEBOOKS if p.name != "your_library.ipynb"]  # build the demo collection themselves


@pytest.mark.slow  # ~80 s each: both build, analyse and tag the tiny demo collection
@pytest.mark.parametrize("path", DEMO, ids=[p.stem for p in DEMO])
def test_notebook_runs(path, tmp_path, monkeypatch):
    monkeypatch.setenv("MIR_NOTEBOOK_DIR", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    run_cells(path)


def test_your_library_runs_on_a_folder_with_a_debug_model(tmp_path, monkeypatch):
    """your_library.ipynb on 4 generated clips, a debug model (no music gate) and 2 adaptation steps."""
    for i in range(4):
        write_clip(tmp_path / "music" / f"clip{i}.wav", seed=i, seconds=5.0)
    model_id = save_debug_model(tmp_path / "debug.pt")
    monkeypatch.setenv("MIR_NOTEBOOK_DIR", str(tmp_path / "work"))
    monkeypatch.setenv("MIR_NOTEBOOK_MUSIC", str(tmp_path / "music"))
    monkeypatch.setenv("MIR_NOTEBOOK_MODEL", str(tmp_path / "debug.pt"))
    monkeypatch.setenv("MIR_NOTEBOOK_ADAPT_STEPS", "2")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.chdir(tmp_path)
    ns = run_cells(NOTEBOOKS[[p.name for p in NOTEBOOKS].index("your_library.ipynb")])
    assert ns["BEFORE"] == model_id and ns["AFTER"] != model_id
    assert ns["music"] is None and ns["result"].steps == 2
    assert sorted(ns["nn_after"].index) == [f"clip{i}" for i in range(4)]
    assert -1.0 <= ns["nn_before"].min() and ns["nn_before"].max() <= 1.0 + 1e-6


def run_cells(path: Path) -> dict:
    """Execute ``path``'s code cells in order in one namespace; returns the namespace."""
    cells = [c for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]
    assert cells, f"{path.name} has no code cells"
    namespace: dict = {"__name__": "__main__"}
    for n, cell in enumerate(cells, 1):
        source = "".join(cell["source"])
        try:
            exec(compile(source, f"{path.name}[code cell {n}]", "exec"), namespace)
        except Exception as exc:  # name the cell that broke
            raise AssertionError(f"{path.name}, code cell {n} failed: {type(exc).__name__}: {exc}\n{source}") from exc
    return namespace


def test_the_notebooks_are_the_documented_ones():
    assert [p.name for p in NOTEBOOKS] == ["generation.ipynb", "quickstart.ipynb", "your_library.ipynb"]  # a new notebook: add it here and to the docs


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_saved_with_outputs_that_name_no_machine_path(path):
    """Committed executed (`python notebooks/run.py`), so they read on a code host without running."""
    cells = [c for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]
    assert all(c["execution_count"] for c in cells), f"{path.name}: run `python notebooks/run.py {path.name}`"
    outputs = json.dumps([c["outputs"] for c in cells])
    for machine in ("/tmp/", "/work/", "/home/", "/root/", "/Users/", "\\\\Users\\\\"):
        assert machine not in outputs, f"{path.name}'s saved outputs name {machine}"
