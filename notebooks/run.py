"""Execute the notebooks with nbclient and save them with their outputs, so they read without running.

    python notebooks/run.py [NAME.ipynb ...]     # default: every notebook in this folder
    MIR_NOTEBOOK_MUSIC=FOLDER MIR_NOTEBOOK_ADAPT_STEPS=30 python notebooks/run.py your_library.ipynb

Each runs in a fresh temporary folder with ``MIR_NOTEBOOK_DIR=work`` (a relative path), so the saved
outputs name no folder of this machine; a notebook whose outputs still contain the temporary folder
or the repository's path is not saved. A folder in ``MIR_NOTEBOOK_MUSIC`` (the music of
your_library.ipynb) is copied into the temporary folder and passed on as the relative ``music``.
"""
from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

HERE = Path(__file__).resolve().parent


def run(path: Path, timeout: int = 1200) -> float:
    nb = nbformat.read(path, as_version=4)
    music = os.environ.get("MIR_NOTEBOOK_MUSIC")
    with tempfile.TemporaryDirectory(prefix="mir-nb-") as tmp:
        os.environ["MIR_NOTEBOOK_DIR"] = "work"
        os.environ["PYTHONWARNINGS"] = "ignore:IProgress not found"  # tqdm.auto without ipywidgets: names the venv
        if music:
            _copy_files(Path(music).expanduser(), Path(tmp) / "music")
            os.environ["MIR_NOTEBOOK_MUSIC"] = "music"
        try:
            t0 = time.monotonic()
            NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": tmp}}).execute()
            seconds = time.monotonic() - t0
        finally:
            if music:
                os.environ["MIR_NOTEBOOK_MUSIC"] = music
        text = nbformat.writes(nb)
        for leak in {tmp, os.path.realpath(tmp), str(HERE.parent), str(Path.home()), sys.prefix, "/tmp/"}:
            if leak in text:
                raise SystemExit(f"{path.name}: the outputs name {leak}; not saved")
    nbformat.write(nb, path)
    return seconds


def _copy_files(src: Path, dst: Path) -> None:
    """The files under ``src`` (contents only: a read-only source stays removable here)."""
    for f in sorted(src.rglob("*")):
        if f.is_file():
            (dst / f.relative_to(src)).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(f, dst / f.relative_to(src))


def main(names: list[str]) -> None:
    paths = [HERE / n for n in names] if names else sorted(HERE.glob("*.ipynb"))
    for p in paths:
        print(f"{p.name}: executed and saved in {run(p):.0f} s")


if __name__ == "__main__":
    main(sys.argv[1:])
