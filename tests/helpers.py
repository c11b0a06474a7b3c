"""Builders shared by several test files (fixtures live in conftest.py; import these with ``from helpers import``)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf


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
