"""Beats, downbeats and beat-synchronous segment features of one track.

The ``beats`` analysis stage stores, per track, beat times, each beat's position in its bar and one
feature vector per segment (a segment runs from one beat to the next). :class:`BeatState` collects
what it needs while :class:`~mir.features.TrackAnalyzer` streams a track (one onset value, ``N_BANDS``
band levels and one energy per log-mel frame; one chroma vector per chroma frame), and
:func:`beat_segments` turns it into the stage's result.

Methods
- beats: ``librosa.beat.beat_track`` (Ellis 2007 dynamic programming) on mir's onset envelope
  (:func:`~mir.features.descriptors.onset_envelope`), with the tempo fixed to the track's descriptor
  tempo, so beat spacing agrees with the stored tempo. Beat ``i`` is at frame ``f`` -> ``f * hop / sr`` s.
- metre (beats per bar): 3 when the beats' accents (peak frame loudness from 1 frame before to 3 after
  each beat) correlate more at a lag of three beats than of four (and positively), else 4. A simple
  estimate: it cannot tell 2/4 from 4/4, and hears 6/8 as 3 or 4 depending on the beat level tracked.
- downbeats: the bar phase whose beats carry the largest mean accent (louder first beats);
  ``bar_pos[i]`` is beat ``i``'s position in its bar, 0 on a downbeat.
- segment features (``SEGMENT_FEATURES``): mean level of ``N_BANDS`` equal groups of mel bands (dB),
  mean chroma (frame chroma scaled to max 1, C first), loudness (dB of the mean mel power; relative,
  not LUFS) and mean onset strength (dB per frame).
"""
from __future__ import annotations

import librosa
import numpy as np

from .descriptors import onset_envelope

N_BANDS = 16
SEGMENT_FEATURES = tuple([f"band{i}" for i in range(N_BANDS)] + [f"chroma{i}" for i in range(12)]
                         + ["loudness", "onset"])
CHROMA_SLICE = slice(N_BANDS, N_BANDS + 12)
LOUDNESS_COLUMN = N_BANDS + 12


class BeatState:
    """What the beats stage keeps while a track streams (about 45 bytes per log-mel frame)."""

    def __init__(self):
        self._env: list[np.ndarray] = []
        self._bands: list[np.ndarray] = []
        self._energy: list[np.ndarray] = []
        self._chroma: list[np.ndarray] = []
        self._last: np.ndarray | None = None

    def frames(self, S: np.ndarray) -> None:
        """Log-mel frames S [shape=(n_mels, k)] dB, in stream order."""
        if not S.shape[1]:
            return
        self._env.append(onset_envelope(S, previous=self._last))
        self._last = S[:, -1].copy()
        self._bands.append(band_levels(S).astype(np.float16))  # 1/32 dB steps at most (|level| < 128 dB)
        power = librosa.db_to_power(S.astype(np.float64))
        self._energy.append((10.0 * np.log10(power.mean(axis=0) + 1e-10)).astype(np.float32))

    def chroma(self, C: np.ndarray) -> None:
        """Chroma frames C [shape=(12, k)], in stream order."""
        if C.shape[1]:
            self._chroma.append(C.astype(np.float16))

    def result(self, *, sr: int, hop_length: int, chroma_hop: int, tempo: float) -> dict:
        """:func:`beat_segments` of everything seen."""
        def cat(parts: list, shape: tuple) -> np.ndarray:
            out = np.concatenate(parts, axis=-1) if parts else np.zeros(shape, np.float32)
            parts.clear()  # the blocks go as soon as they are joined
            return out

        env = cat(self._env, (0,))
        frames = track_beats(env, sr=sr, hop_length=hop_length, tempo=tempo)  # before the other joins: lower peak
        return beat_segments(env, cat(self._bands, (N_BANDS, 0)), cat(self._energy, (0,)), cat(self._chroma, (12, 0)),
                             sr=sr, hop_length=hop_length, chroma_hop=chroma_hop, tempo=tempo, frames=frames)


def band_levels(S: np.ndarray, n_bands: int = N_BANDS) -> np.ndarray:
    """Mean dB of ``n_bands`` near-equal groups of mel bands: S [shape=(n_mels, t)] -> [shape=(n_bands, t)]."""
    groups = np.array_split(np.arange(S.shape[0]), n_bands)
    return np.stack([S[g].mean(axis=0, dtype=np.float64) for g in groups]).astype(np.float32)


def track_beats(env: np.ndarray, *, sr: int, hop_length: int, tempo: float) -> np.ndarray:
    """Beat frames [shape=(n,)] int of an onset envelope, at the given ``tempo`` (BPM; 0: none found)."""
    if not tempo > 0 or len(env) < 4 or not np.any(env > 0):
        return np.zeros(0, dtype=np.int64)
    _, beats = librosa.beat.beat_track(onset_envelope=env.astype(np.float64), sr=sr, hop_length=hop_length,
                                       bpm=float(tempo), trim=True, units="frames")
    return np.asarray(beats, dtype=np.int64)


def warm_up() -> None:
    """Compile librosa's numba beat tracker in this process, which writes numba's on-disk cache.

    Processes that compile it for the first time at the same moment (worker pools, parallel test
    runs) can corrupt that cache and then crash with a segmentation fault; mir compiles it once
    before it starts workers, and they load the cache.
    """
    t = np.arange(2048)
    env = (np.sin(2 * np.pi * t / 43.0) > 0.95).astype(np.float64) + 0.01
    track_beats(env, sr=22050, hop_length=512, tempo=60.0)


def meter_from_strength(strength: np.ndarray) -> int:
    """Beats per bar from the beats' accents [shape=(n,)]: 3 or 4 (see module doc)."""
    s = np.asarray(strength, dtype=np.float64)
    s = s - s.mean() if len(s) else s
    if len(s) < 8 or not np.any(s):
        return 4
    ac = {lag: float(np.dot(s[:-lag], s[lag:]) / (len(s) - lag)) for lag in (3, 4)}
    return 3 if ac[3] > max(ac[4], 0.0) else 4


def bar_positions(strength: np.ndarray, meter: int) -> np.ndarray:
    """Each beat's position in its bar [shape=(n,)] from the beats' accents: the downbeat phase is the loudest on average."""
    n = len(strength)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    means = [strength[p::meter].mean() if len(strength[p::meter]) else -np.inf for p in range(meter)]
    phase = int(np.argmax(means))
    return (np.arange(n) - phase) % meter


def segment_means(values: np.ndarray, bounds: np.ndarray) -> np.ndarray:
    """Mean of ``values`` [shape=(d, t)] over consecutive column spans ``[bounds[i], bounds[i + 1])`` ->
    [shape=(len(bounds) - 1, d)] float32 (an empty span takes its first column). No copy of ``values``."""
    d, t = values.shape
    n = len(bounds) - 1
    if t == 0 or n <= 0:
        return np.zeros((max(n, 0), d), np.float32)
    b = np.clip(np.asarray(bounds, np.int64), 0, t)
    b = np.maximum.accumulate(b)
    starts = np.minimum(b[:-1], t - 1)
    stop = max(b[-1], starts[-1] + 1)
    sums = np.stack([np.add.reduceat(row[:stop], starts, dtype=np.float64) for row in values])  # one row at a time
    count = b[1:] - b[:-1]
    return (sums / np.maximum(count, 1)).T.astype(np.float32)


def beat_segments(env: np.ndarray, bands: np.ndarray, energy: np.ndarray, chroma: np.ndarray, *, sr: int,
                  hop_length: int, chroma_hop: int, tempo: float, frames: np.ndarray | None = None) -> dict:
    """Beats, bar positions and segment features of one track.

    env [shape=(t,)], bands [shape=(N_BANDS, t)], energy [shape=(t,)]: per log-mel frame (hop ``hop_length``);
    chroma [shape=(12, u)]: per chroma frame (hop ``chroma_hop``). Returns ``{"beats": [n] s, "bar_pos": [n] int,
    "meter": int, "features": [n - 1, len(SEGMENT_FEATURES)] float32}``: segment ``i`` spans beats ``i`` to ``i + 1``.
    ``frames``: beat frames already found by :func:`track_beats` (None: found here).
    """
    if frames is None:
        frames = track_beats(env, sr=sr, hop_length=hop_length, tempo=tempo)
    if len(frames) < 2:
        return {"beats": np.zeros(0), "bar_pos": np.zeros(0, np.int64), "meter": 4,
                "features": np.zeros((0, len(SEGMENT_FEATURES)), np.float32)}
    lo, hi = np.maximum(frames - 1, 0), np.minimum(frames + 4, len(energy))
    strength = np.array([energy[a:b].max() if b > a else 0.0 for a, b in zip(lo, hi)])
    meter = meter_from_strength(strength)
    c_frames = np.round(frames * hop_length / chroma_hop).astype(np.int64)
    feats = np.concatenate([
        segment_means(bands, frames),
        segment_means(chroma, c_frames),
        segment_means(energy[None, :], frames),
        segment_means(env[None, :], frames),
    ], axis=1)
    return {"beats": frames * hop_length / sr, "bar_pos": bar_positions(strength, meter), "meter": meter,
            "features": feats.astype(np.float32)}
