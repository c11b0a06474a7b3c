"""Shared fixtures: a seeded RNG, the real recordings in ../shared/audio, the tiny demo collection, one torch
thread per test process (builders: tests/helpers.py)."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

SHARED_AUDIO = Path(os.environ.get("MIR_SHARED_AUDIO", Path(__file__).resolve().parents[1].parent / "shared" / "audio"))
MUSIC = ["brahms", "nutcracker", "vibeace", "fishin", "trumpet", "choice", "pistachio", "sweetwaltz"]
NON_MUSIC = ["speech1", "speech2", "speech3", "robin", "humpback", "pibble"]


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20261128)


@pytest.fixture(scope="session")
def shared_audio() -> Path:
    """Folder of the 14 real recordings; tests that need it skip loudly when it is absent."""
    if not SHARED_AUDIO.is_dir():
        pytest.skip(f"real recordings not found at {SHARED_AUDIO} (set MIR_SHARED_AUDIO)")
    return SHARED_AUDIO


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread():
    """One torch thread per test process: `make test` runs 2 processes on 2 cores, where a second
    thread per op only waits for a busy core (11 steps of the debug model under load: 62 s with
    2 threads, 2.8 s with 1)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def one_faiss_thread():
    """One OpenMP thread for FAISS (``pytestmark = pytest.mark.usefixtures("one_faiss_thread")``): on a
    shared 2-core machine its spinning threads otherwise stall."""
    import faiss

    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    yield
    faiss.omp_set_num_threads(before)


@pytest.fixture(scope="session")
def score_cache(tmp_path_factory) -> Path:
    """Parsed-score cache shared by the session's dataset builds."""
    return tmp_path_factory.mktemp("score-cache")


@pytest.fixture(scope="session")
def mirdemo_tiny(tmp_path_factory, score_cache):
    """The tiny demo collection (84 clips of 6 s, seed 0, TimGM6mb only: the same on machines with and
    without Debian's soundfonts), built once per test process.

    Read-only: a test that writes into it copies it first (``shutil.copytree(mirdemo_tiny.path, ...)``).
    """
    from mir.datasets import build

    out = tmp_path_factory.mktemp("tiny") / "mirdemo"
    return build("mirdemo", "tiny", out, seed=0, workers=1, progress=False, cache_dir=score_cache,
                 soundfonts=("TimGM6mb",))



def pytest_configure(config):
    """Compile librosa's numba beat tracker once, before any test process starts: test processes
    that compile it at the same moment corrupt numba's on-disk cache (a segmentation fault)."""
    if not hasattr(config, "workerinput"):  # the controller of a parallel run, or a plain run
        from mir.features.beats import warm_up

        warm_up()


@pytest.fixture(scope="module")
def browser():
    """A headless chromium for the web page's tests (``browser.chromium``), one per test module."""
    from browser import chromium

    with chromium() as driver:
        yield driver
