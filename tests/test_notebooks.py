"""The notebooks in notebooks/ run top to bottom (code cells executed in order, in one namespace)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


@pytest.mark.slow  # ~80 s: the quickstart builds and trains on the tiny demo collection
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
    assert [p.name for p in NOTEBOOKS] == ["quickstart.ipynb"]  # a new notebook: add it here and to the docs
