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


# --- a debug tagger and the clips it tags (test_tagging, test_similar, test_api) ------------------------------
SR = 22050
TAGS = [f"tag{i}" for i in range(8)]
GENRES = ["folk", "jazz", "rock", "pop"]


def synth(seed: int, seconds: float) -> np.ndarray:
    """A tonal clip with a slow loudness swell, different for every seed, peaking at 0.8."""
    g = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    y = sum(0.2 * np.sin(2 * np.pi * f * t) for f in g.uniform(110, 880, 3))
    y = y * (0.6 + 0.4 * np.sin(2 * np.pi * g.uniform(0.5, 3) * t) ** 2) + 0.02 * g.standard_normal(t.size)
    return (0.8 * y / np.abs(y).max()).astype(np.float32)


def save_debug_model(path: Path, *, seed: int = 0, thresholds=None) -> str:
    """A debug checkpoint over TAGS and GENRES with non-trivial batch-norm statistics; returns its model id."""
    import dataclasses

    import torch

    from mir.config import get_config
    from mir.models import build_model, debug, save_checkpoint

    torch.manual_seed(seed)
    config = debug(n_tags=len(TAGS), n_genres=len(GENRES))
    model = build_model(config)
    with torch.no_grad():  # non-trivial batch-norm statistics, as after training
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-1, 1)
                m.running_var.uniform_(0.5, 2)
        model.input_norm.running_mean.fill_(-40.0)
        model.input_norm.running_var.fill_(400.0)
    thresholds = np.linspace(0.3, 0.7, len(TAGS)) if thresholds is None else thresholds
    return save_checkpoint(path, model, config=config, tags=TAGS, genres=GENRES, thresholds=thresholds,
                           metrics={}, analysis=dataclasses.asdict(get_config().analysis))


# --- a tiny recommendation world with obvious answers (test_recommend, test_recommend_batch) -------------------
TRACK_GENRES = ["rock", "jazz", "folk"]


def tiny_tracks(n_per_genre: int = 5, seed: int = 0):
    """Tracks t00..: genre g = i // n_per_genre; embeddings near one axis per genre; two artists per genre."""
    from mir.recommend import TrackSet

    g = np.random.default_rng(seed)
    n = n_per_genre * len(TRACK_GENRES)
    genre = np.arange(n) // n_per_genre
    emb = np.eye(8)[genre] + 0.05 * g.standard_normal((n, 8))
    return TrackSet(track_ids=[f"t{i:02d}" for i in range(n)], embeddings=emb,
                    genre=[TRACK_GENRES[k] for k in genre],
                    artist=[f"{TRACK_GENRES[k]}-{i % 2}" for k, i in zip(genre, range(n))],
                    tags=[("fast",) if i % 2 else ("slow",) for i in range(n)],
                    tempo=np.linspace(80, 150, n), key=["C major", "A minor", "G major"] * (n // 3) + ["D minor"] * (n % 3))


def two_groups(tracks, n_users=24):
    """Users u00-u11 play rock t00-t04, u12-u23 play jazz t05-t09; each misses one track of their group."""
    rows = []
    for u in range(n_users):
        base = 0 if u < n_users // 2 else 5
        for j in range(5):
            if j != u % 5:
                rows.append((f"u{u:02d}", f"t{base + j:02d}", j, 1 + j % 2))
    return rows


BATCH_SPEC = {"method": "hybrid", "k": 4}


def batch_world():
    """30 users over the tiny catalogue and a fitted hybrid (deterministic), for the batch-job tests."""
    import pandas as pd

    from mir.recommend import Collaborative, Hybrid, Interactions, clean_events

    tracks = tiny_tracks()
    rows = two_groups(tracks, n_users=28) + [("new1", "t10", 0, 1), ("new2", "t12", 0, 2)]
    clean, _ = clean_events(pd.DataFrame(rows, columns=["user", "track", "timestamp", "plays"]))
    X = Interactions.from_events(clean, tracks.track_ids)
    model = Hybrid(collaborative=Collaborative(factors=4, iterations=5, num_threads=1), weight=0.6,
                   cold_offset=-0.5).fit(X, tracks)
    return tracks, X, model


def clicks(bpm: float, seconds: float, *, meter: int = 4, pitch: float = 220.0, first: float = 0.25,
           seed: int = 0) -> np.ndarray:
    """A tone with noise clicks on every beat from ``first`` s, the first beat of each bar louder."""
    g = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    y = 0.1 * np.sin(2 * np.pi * pitch * t) + 0.05 * np.sin(2 * np.pi * pitch * 1.5 * t)
    n = int(0.03 * SR)
    for i, b in enumerate(np.arange(first, seconds - 0.1, 60.0 / bpm)):
        s = int(b * SR)
        y[s:s + n] += (1.0 if i % meter == 0 else 0.35) * g.standard_normal(n)[: len(y[s:s + n])] * np.exp(-np.arange(n) / (0.005 * SR))[: len(y[s:s + n])]
    return (0.8 * y / np.abs(y).max()).astype(np.float32)
