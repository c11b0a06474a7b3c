"""Execute the notebooks with nbclient and save them with their outputs, so they read without running.

    python notebooks/run.py [NAME.ipynb ...]     # default: every notebook in this folder

Each runs in a fresh temporary folder with ``MIR_NOTEBOOK_DIR=work`` (a relative path), so the saved
outputs name no folder of this machine; a notebook whose outputs still contain the temporary folder
or the repository's path is not saved.
"""
from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

HERE = Path(__file__).resolve().parent


def run(path: Path, timeout: int = 1200) -> float:
    nb = nbformat.read(path, as_version=4)
    with tempfile.TemporaryDirectory(prefix="mir-nb-") as tmp:
        os.environ["MIR_NOTEBOOK_DIR"] = "work"
        os.environ["PYTHONWARNINGS"] = "ignore:IProgress not found"  # tqdm.auto without ipywidgets: names the venv
        t0 = time.monotonic()
        NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": tmp}}).execute()
        seconds = time.monotonic() - t0
        text = nbformat.writes(nb)
        for leak in {tmp, os.path.realpath(tmp), str(HERE.parent), str(Path.home()), sys.prefix, "/tmp/"}:
            if leak in text:
                raise SystemExit(f"{path.name}: the outputs name {leak}; not saved")
    nbformat.write(nb, path)
    return seconds


def main(names: list[str]) -> None:
    paths = [HERE / n for n in names] if names else sorted(HERE.glob("*.ipynb"))
    for p in paths:
        print(f"{p.name}: executed and saved in {run(p):.0f} s")


if __name__ == "__main__":
    main(sys.argv[1:])
