"""The README's Python API snippet works when pasted into a script with no ``__main__`` guard, and a
worker that re-runs its parent's script is told so instead of "another mir process"."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import soundfile as sf

import mir

REPO = Path(mir.__file__).resolve().parents[1]  # the checkout whose mir is under test


def write_clip(path: Path, seed: int, seconds: float = 2.0, sr: int = 22050) -> None:
    g = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    y = sum(0.1 * np.sin(2 * np.pi * f * t) for f in g.uniform(110, 1760, size=3)) + 0.01 * g.standard_normal(t.size)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, y.astype(np.float32), sr)


def readme_snippet() -> str:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("## Python API", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def run_script(path: Path, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, str(path)], cwd=cwd, env=env, capture_output=True, text=True, timeout=240)


def test_the_readme_python_api_snippet_runs_as_a_script(tmp_path):
    for i in range(3):
        write_clip(tmp_path / "music" / f"clip{i}.wav", seed=i, seconds=3.0)
    write_clip(tmp_path / "song.flac", seed=9)
    snippet = readme_snippet()
    assert 'lib.scan(["~/Music"])' in snippet and "workers=2" in snippet  # what a user pastes
    # the snippet's own paths, pointed at the generated audio; nothing else changes
    script = snippet.replace("~/Music", str(tmp_path / "music")).replace('"song.flac"', repr(str(tmp_path / "song.flac")))
    script += textwrap.dedent("""
        print("tracks", len(lib.descriptors()), "mel", S.shape[0], "samples", y.size)
    """)
    (tmp_path / "snippet.py").write_text(script)
    proc = run_script(tmp_path / "snippet.py", tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "tracks 3 mel 128 samples 44100" in proc.stdout
    assert "BrokenProcessPool" not in proc.stderr and "another mir process" not in proc.stderr


LOCKED_BY_PARENT = """
import multiprocessing as mp, sys
from mir.catalog import Library
from mir.errors import CatalogError

def child(root, queue):
    try:
        with Library(root).lock():
            queue.put("locked")
    except CatalogError as exc:
        queue.put(str(exc))

if __name__ == "__main__":
    lib = Library.open_or_create(sys.argv[1])
    with lib.lock():
        ctx = mp.get_context("spawn")
        queue = ctx.Queue()
        p = ctx.Process(target=child, args=(sys.argv[1], queue))
        p.start()
        print(queue.get(timeout=120))
        p.join()
        with open(lib.root / ".lock") as fh:
            print("holder", fh.read())
"""


def test_a_worker_blocked_by_its_own_parent_is_told_what_happened(tmp_path):
    (tmp_path / "locked.py").write_text(LOCKED_BY_PARENT)
    proc = subprocess.run([sys.executable, str(tmp_path / "locked.py"), str(tmp_path / "lib")], cwd=tmp_path,
                          env=dict(os.environ, PYTHONPATH=str(REPO)), capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    message = proc.stdout.splitlines()[0]
    assert "held by this worker's own parent, process" in message and "locked.py" in message
    assert 'if __name__ == "__main__":' in message and "another mir process" not in message
    assert '"pid"' in proc.stdout  # the holder wrote who it is
