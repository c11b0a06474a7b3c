"""Rendering: cut the chosen segments from their tracks, fit them to the tempo and key, join, level.

- A *run* is a stretch of output beats whose sources are consecutive beats of one track; it is cut as one
  piece of audio, so only real seams (run boundaries) are crossfaded.
- Time: each source beat is mapped onto the target beat grid (period ``60 / tempo``). With Rubber Band
  (``pyrubberband`` + the ``rubberband`` command line tool) each run is stretched by one time map, pitch
  shift in the same call (one process per run); without it, each beat by librosa's phase vocoder
  (``librosa.effects.time_stretch``, by the pitch factor more, then resampled by it to shift the pitch).
- Seams: every chunk carries ``xfade / 2`` seconds of extra audio on each side, so neighbouring chunks
  overlap by ``xfade`` centred on the beat; equal-power (sine/cosine) fades.
- Level: each run gains ``target - its track's loudness`` (BS.1770, within +-12 dB); the piece is then
  brought to the target integrated loudness and limited (look-ahead gain: minimum filter + moving
  average, never above ``ceiling``), repeated until within 0.5 LU or three passes.
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass

import librosa
import numpy as np
from scipy.ndimage import minimum_filter1d, uniform_filter1d

from ..errors import ParameterError

CEILING_DB = -1.0  # peak ceiling, dBFS
MAX_GAIN_DB = 12.0


def stretcher_name(kind: str = "auto") -> str:
    """'rubberband' or 'librosa' for ``kind`` in auto/rubberband/librosa."""
    have = shutil.which("rubberband") is not None
    if kind == "auto":
        if not have:
            return "librosa"
        try:
            import pyrubberband  # noqa: F401
        except ImportError:
            return "librosa"
        return "rubberband"
    if kind == "rubberband" and not have:
        raise ParameterError("--stretch rubberband needs the rubberband command line tool "
                             "(Debian: apt-get install rubberband-cli) and pyrubberband")
    if kind not in ("rubberband", "librosa"):
        raise ParameterError(f"unknown stretcher {kind!r}; use auto, rubberband or librosa")
    return kind


@dataclass
class Run:
    """One chunk: source audio ``y`` of a track, its beat times (s, ``m + 1`` of them) and the target's first beat index."""

    track_id: str
    beats: np.ndarray
    first_beat: int
    semitones: int
    gain_db: float


def _cut(y: np.ndarray, sr: int, t0: float, t1: float) -> np.ndarray:
    """Samples of ``y`` in [t0, t1) s, zero-padded where the span leaves the signal."""
    a, b = int(round(t0 * sr)), int(round(t1 * sr))
    out = np.zeros(max(b - a, 1), np.float32)
    lo, hi = max(a, 0), min(b, len(y))
    if hi > lo:
        out[lo - a:hi - a] = y[lo:hi]
    return out


def render_run(y: np.ndarray, sr: int, run: Run, period: float, xfade: float, stretcher: str) -> np.ndarray:
    """The run fitted to the grid: [xfade/2 + m * period + xfade/2] s of audio."""
    pad_t = xfade / 2
    b = run.beats
    m = len(b) - 1
    pad0 = pad_t * (b[1] - b[0]) / period
    pad1 = pad_t * (b[-1] - b[-2]) / period
    n_out = int(round((2 * pad_t + m * period) * sr))
    if stretcher == "rubberband":
        import pyrubberband

        src = _cut(y, sr, b[0] - pad0, b[-1] + pad1)
        points = np.r_[0.0, pad0 + (b - b[0]), len(src) / sr]
        target = np.r_[0.0, pad_t + period * np.arange(m + 1), n_out / sr]
        tmap = [(int(round(s * sr)), int(round(t * sr))) for s, t in zip(points, target)]
        tmap[-1] = (len(src), n_out)
        args = {"--pitch": run.semitones} if run.semitones else {}
        out = pyrubberband.timemap_stretch(src, sr, tmap, rbargs=args).astype(np.float32)
        return librosa.util.fix_length(out, size=n_out)
    pieces = []
    for i in range(m):
        seg = _cut(y, sr, b[i] - pad0, b[i + 1] + pad1)
        want = int(round((period + 2 * pad_t) * sr))
        factor = 2.0 ** (run.semitones / 12)  # pitch: stretch by the factor more, then resample it away
        rate = len(seg) / max(want, 1) / factor
        if abs(rate - 1) > 1e-3:
            seg = librosa.effects.time_stretch(seg, rate=rate)
        if run.semitones:
            seg = librosa.resample(seg, orig_sr=sr * factor, target_sr=sr, res_type="soxr_hq")
        pieces.append(librosa.util.fix_length(seg.astype(np.float32), size=want))
    return overlap_add(pieces, [int(round(i * period * sr)) for i in range(m)], int(round(xfade * sr)), n_out)


def equal_power(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Fade-in and fade-out curves of ``n`` samples with sin^2 + cos^2 = 1."""
    u = (np.arange(n) + 0.5) / max(n, 1)
    return np.sin(0.5 * np.pi * u).astype(np.float32), np.cos(0.5 * np.pi * u).astype(np.float32)


def overlap_add(chunks: list[np.ndarray], starts: list[int], fade: int, length: int) -> np.ndarray:
    """Sum ``chunks`` placed at ``starts`` (samples), each faded in and out over ``fade`` samples."""
    out = np.zeros(length, np.float32)
    fin, fout = equal_power(fade)
    for c, s in zip(chunks, starts):
        c = c.copy()
        f = min(fade, len(c) // 2)
        if f:
            c[:f] *= fin[:f] if f == fade else equal_power(f)[0]
            c[-f:] *= fout[:f] if f == fade else equal_power(f)[1]
        e = min(s + len(c), length)
        out[s:e] += c[: e - s]
    return out


def limit(y: np.ndarray, sr: int, *, ceiling_db: float = CEILING_DB, window: float = 0.005) -> np.ndarray:
    """Peak limiter: a smooth gain that keeps every |sample| <= ceiling (look-ahead ``window`` s)."""
    ceiling = 10 ** (ceiling_db / 20)
    need = np.minimum(1.0, ceiling / np.maximum(np.abs(y), 1e-12))
    if need.min() >= 1.0:
        return y
    w = max(int(window * sr), 1)
    gain = uniform_filter1d(minimum_filter1d(need, size=2 * w + 1, mode="nearest"), size=w, mode="nearest")
    return np.clip(y * np.minimum(gain, need), -ceiling, ceiling).astype(np.float32)


def level(y: np.ndarray, sr: int, target_lufs: float) -> np.ndarray:
    """Gain to ``target_lufs`` integrated loudness, then limit; repeated (3 passes at most)."""
    from ..features import loudness

    for _ in range(3):
        now = loudness(y, sr=sr)
        if not np.isfinite(now):
            return y
        delta = target_lufs - now
        if abs(delta) <= 0.5:
            break
        y = limit((y * 10 ** (np.clip(delta, -MAX_GAIN_DB, MAX_GAIN_DB) / 20)).astype(np.float32), sr)
    return y


def semitone_shift(src_key: str | None, src_mode: str | None, dst_key: str, dst_mode: str) -> int:
    """Transposition (-6..5 semitones) taking a source key to the target: tonic to tonic in the same
    mode, relative major to relative major otherwise; 0 when the source key is unknown."""
    from ..features.descriptors import PITCH_CLASSES

    if src_key not in PITCH_CLASSES or src_mode not in ("major", "minor"):
        return 0
    s = PITCH_CLASSES.index(src_key) + (3 if src_mode == "minor" and dst_mode != "minor" else 0)
    d = PITCH_CLASSES.index(dst_key) + (3 if dst_mode == "minor" and src_mode != "minor" else 0)
    return int((d - s + 6) % 12 - 6)
