"""Shared fixtures: a seeded RNG, the real recordings in ../shared/audio, tiny generated audio."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

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


def tone(freq: float = 440.0, seconds: float = 2.0, sr: int = 22050, amp: float = 0.3) -> np.ndarray:
    """A float32 sine tone, the simplest known-content test signal."""
    t = np.arange(int(seconds * sr)) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def write_clip(path: Path, seed: int, seconds: float = 2.0, sr: int = 22050, channels: int = 1) -> Path:
    """A distinct little piece of audio: a few tones plus noise, different for every seed."""
    g = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    y = sum(0.1 * np.sin(2 * np.pi * f * t) for f in g.uniform(110, 1760, size=3)) + 0.01 * g.standard_normal(t.size)
    y = np.stack([y] * channels, axis=1) if channels > 1 else y
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, y.astype(np.float32), sr)
    return path
