"""Rendering: cut the chosen segments from their tracks, fit them to the tempo and key, join, level.

Signals are ``[channels, samples]`` float32 arrays (mono is one channel).

- A *run* is a stretch of output beats whose sources are consecutive beats of one track; it is cut as one
  piece of audio, so only real seams (run boundaries) are crossfaded.
- Time: each run lands exactly on its span of the target grid (``m`` beats of ``60 / tempo`` s).
  ``pedalboard`` (the default): Rubber Band's library in-process (``pedalboard.time_stretch``, its R2
  engine, as the command line tool's default), one call per run at the run's mean ratio; the pitch
  shift is done by stretching ``2 ** (semitones / 12)`` times longer and resampling that away (soxr),
  and a run within 1 % of the grid without a shift is only resampled. ``rubberband``: the ``rubberband``
  command line tool through ``pyrubberband``, the same ratio per run (one process each; its output ends
  early, so ``TAIL`` s more source is stretched and dropped). ``librosa``: its phase vocoder, beat by beat.
- Seams: every chunk starts ``xfade`` seconds before its first beat and ends on the beat after its last,
  so neighbouring chunks overlap by ``xfade`` just before the beat: equal-power (sine/cosine) fades that
  end on the beat, so the outgoing source's next onset is not heard under the incoming one's.
- Key: :func:`fit_shifts` picks one transposition per source track (-6..+5 semitones) so that the
  chroma the piece is made of reads as the target key (Albrecht & Shanahan profiles, as mir's key estimate).
- Level: each run gains ``target - its track's loudness`` (BS.1770, within +-12 dB); the piece is then
  brought to the target integrated loudness (of the channel mean, as mir measures tracks) and limited
  (look-ahead gain linked across channels: minimum filter + moving average, never above ``ceiling``),
  repeated until within 0.5 LU or three passes.
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass

import numpy as np
import soxr
from scipy.ndimage import minimum_filter1d, uniform_filter1d

from ..audio.load import fix_length
from ..errors import ParameterError

CEILING_DB = -1.0  # peak ceiling, dBFS
MAX_GAIN_DB = 12.0
STRETCHERS = ("pedalboard", "rubberband", "librosa")
RESAMPLE_ONLY = 0.01  # a run this close to the grid (and not shifted) is resampled, not stretched
TAIL = 0.1  # s of source the command line tool stretches past a run (its output ends early), then dropped


def _have_pedalboard() -> bool:
    try:
        import pedalboard  # noqa: F401
    except ImportError:
        return False
    return True


def _have_rubberband_cli() -> bool:
    if shutil.which("rubberband") is None:
        return False
    try:
        import pyrubberband  # noqa: F401
    except ImportError:
        return False
    return True


def stretcher_name(kind: str = "auto") -> str:
    """'pedalboard', 'rubberband' or 'librosa' for ``kind`` in auto/pedalboard/rubberband/librosa
    (auto: the first available of the three)."""
    if kind == "auto":
        return "pedalboard" if _have_pedalboard() else "rubberband" if _have_rubberband_cli() else "librosa"
    if kind not in STRETCHERS:
        raise ParameterError(f"unknown stretcher {kind!r}; use auto, {', '.join(STRETCHERS)}")
    if kind == "rubberband" and not _have_rubberband_cli():
        raise ParameterError("--stretch rubberband needs the rubberband command line tool "
                             "(Debian: apt-get install rubberband-cli) and pyrubberband")
    if kind == "pedalboard" and not _have_pedalboard():
        raise ParameterError("--stretch pedalboard needs the pedalboard package (pip install pedalboard)")
    return kind


@dataclass
class Run:
    """One chunk: a track's beat times (s, ``m + 1`` of them) from its first to past its last beat, the
    target's first beat index, the transposition and the gain."""

    track_id: str
    beats: np.ndarray
    first_beat: int
    semitones: int
    gain_db: float


def _cut(y: np.ndarray, sr: int, t0: float, t1: float) -> np.ndarray:
    """Samples of ``y`` [channels, n] in [t0, t1) s, zero-padded where the span leaves the signal."""
    a, b = int(round(t0 * sr)), int(round(t1 * sr))
    out = np.zeros((y.shape[0], max(b - a, 1)), np.float32)
    lo, hi = max(a, 0), min(b, y.shape[1])
    if hi > lo:
        out[:, lo - a:hi - a] = y[:, lo:hi]
    return out


def _fit(y: np.ndarray, n: int) -> np.ndarray:
    return fix_length(np.ascontiguousarray(y, dtype=np.float32), n)


def _resample(y: np.ndarray, in_rate: float, out_rate: float) -> np.ndarray:
    """soxr HQ of ``y`` [channels, n] (rates may be fractional: the pitch shift uses ``sr * factor``)."""
    return soxr.resample(np.ascontiguousarray(y.T), in_rate, out_rate, quality="HQ").T


def render_run(y: np.ndarray, sr: int, run: Run, period: float, xfade: float, stretcher: str) -> np.ndarray:
    """The run fitted to the grid: ``[channels, xfade + m * period]`` s of audio from ``y`` [channels, n], its
    first beat ``xfade`` s in (the fade-in ends on the beat) and its end on the beat after its last."""
    b = run.beats
    m = len(b) - 1
    n_out = int(round((xfade + m * period) * sr))
    factor = 2.0 ** (run.semitones / 12)  # pitch: stretch by the factor more, then resample it away
    if stretcher == "pedalboard":
        ratio = (b[-1] - b[0]) / (m * period)  # source seconds per target second, the run's mean
        src = _cut(y, sr, b[0] - xfade * ratio, b[-1])
        speed = src.shape[1] / (n_out * factor)
        if not run.semitones and abs(speed - 1) <= RESAMPLE_ONLY:
            return _fit(_resample(src, src.shape[1], n_out), n_out)
        import pedalboard

        out = pedalboard.time_stretch(src, float(sr), float(speed), 0.0, high_quality=False)
        if run.semitones:
            out = _resample(out, sr * factor, sr)
        return _fit(out, n_out)
    if stretcher == "rubberband":
        import pyrubberband

        # one ratio per run, as above; the tool's output ends short, so TAIL s more is stretched and dropped
        ratio = (b[-1] - b[0]) / (m * period)
        src = _cut(y, sr, b[0] - xfade * ratio, b[-1] + TAIL)
        args = {"--pitch": run.semitones} if run.semitones else {}
        out = np.asarray(pyrubberband.time_stretch(src.T, sr, ratio, rbargs=args), np.float32)
        return _fit(out[None, :] if out.ndim == 1 else out.T, n_out)
    import librosa  # only this stretcher needs it (its import, with numba's, costs seconds)

    pieces = []  # librosa: beat by beat
    for i in range(m):
        lead = xfade * (b[i + 1] - b[i]) / period
        seg = _cut(y, sr, b[i] - lead, b[i + 1])
        want = int(round((period + xfade) * sr))
        rate = seg.shape[1] / max(want, 1) / factor
        if abs(rate - 1) > 1e-3:
            seg = librosa.effects.time_stretch(seg, rate=rate)
        if run.semitones:
            seg = _resample(seg, sr * factor, sr)
        pieces.append(_fit(seg, want))
    return overlap_add(pieces, [int(round(i * period * sr)) for i in range(m)], int(round(xfade * sr)), n_out)


def equal_power(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Fade-in and fade-out curves of ``n`` samples with sin^2 + cos^2 = 1."""
    u = (np.arange(n) + 0.5) / max(n, 1)
    return np.sin(0.5 * np.pi * u).astype(np.float32), np.cos(0.5 * np.pi * u).astype(np.float32)


def overlap_add(chunks: list[np.ndarray], starts: list[int], fade: int, length: int) -> np.ndarray:
    """Sum ``chunks`` [channels, n_i] placed at ``starts`` (samples), each faded in and out over ``fade`` samples."""
    out = np.zeros((chunks[0].shape[0] if chunks else 1, length), np.float32)
    for c, s in zip(chunks, starts):
        c = c.copy()
        f = min(fade, c.shape[1] // 2)
        if f:
            fin, fout = equal_power(f)
            c[:, :f] *= fin
            c[:, -f:] *= fout
        e = min(s + c.shape[1], length)
        out[:, s:e] += c[:, : e - s]
    return out


def limit(y: np.ndarray, sr: int, *, ceiling_db: float = CEILING_DB, window: float = 0.005) -> np.ndarray:
    """Peak limiter for ``y`` [shape=(n,) or (channels, n)]: one smooth gain for all channels that keeps every |sample| <= ceiling
    (look-ahead ``window`` s)."""
    ceiling = 10 ** (ceiling_db / 20)
    need = np.minimum(1.0, ceiling / np.maximum(np.abs(np.atleast_2d(y)).max(axis=0), 1e-12))
    if need.min() >= 1.0:
        return y
    w = max(int(window * sr), 1)
    gain = uniform_filter1d(minimum_filter1d(need, size=2 * w + 1, mode="nearest"), size=w, mode="nearest")
    return np.clip(y * np.minimum(gain, need), -ceiling, ceiling).astype(np.float32)


def mix_loudness(y: np.ndarray, sr: int) -> float:
    """Integrated loudness (LUFS) of ``y`` [channels, n] as mir measures a track: of the channel mean."""
    from ..features import loudness

    return float(loudness(y.mean(axis=0), sr=sr))


def level(y: np.ndarray, sr: int, target_lufs: float) -> np.ndarray:
    """Gain ``y`` [channels, n] to ``target_lufs`` integrated loudness, then limit; repeated (3 passes at most)."""
    for _ in range(3):
        now = mix_loudness(y, sr)
        if not np.isfinite(now):
            return y
        delta = target_lufs - now
        if abs(delta) <= 0.5:
            break
        y = limit((y * 10 ** (np.clip(delta, -MAX_GAIN_DB, MAX_GAIN_DB) / 20)).astype(np.float32), sr)
    return y


def fit_shifts(chroma: np.ndarray, weights: np.ndarray, tonic: str, mode: str, *, passes: int = 3) -> np.ndarray:
    """One transposition (-6..+5 semitones) per source so that the weighted sum of the transposed chroma
    reads as ``tonic mode`` to mir's key estimate.

    ``chroma`` [shape=(sources, 12), C first]: each source's chroma as the piece uses it (the sum of its
    chosen segments' chroma); ``weights`` [shape=(sources,)]: how much of the piece each source makes.
    Each source starts at the shift that best fits the target profile alone; then, source by source, the
    shift that most widens the margin of the target key over the best other key in the mix is kept
    (coordinate ascent, ``passes`` rounds). A source with no pitch content keeps 0. Returns int [sources].
    """
    from ..features.descriptors import PITCH_CLASSES, key_templates

    def _centred_unit(x):  # rows minus their mean, over their norm (0 for a flat row)
        x = x - x.mean(axis=-1, keepdims=True)
        norm = np.linalg.norm(x, axis=-1, keepdims=True)
        return np.divide(x, norm, out=np.zeros_like(x), where=norm > 1e-12)

    tpl = key_templates()
    target = PITCH_CLASSES.index(tonic) + (12 if mode == "minor" else 0)
    shifts_all = np.arange(-6, 6)
    c = np.asarray(chroma, np.float64)
    c = c / np.maximum(c.sum(axis=1, keepdims=True), 1e-12) * np.asarray(weights, np.float64)[:, None]
    rolled = np.stack([np.roll(c, s, axis=1) for s in shifts_all], axis=1)  # [sources, 12 shifts, 12]
    tonal = np.ptp(c, axis=1) > 1e-9
    alone = np.einsum("ksp,p->ks", _centred_unit(rolled), tpl[target])
    pick = np.where(tonal, np.argmax(alone, axis=1), 6)  # index into shifts_all; 6 = no shift

    def margin(mix: np.ndarray) -> float:
        r = tpl @ _centred_unit(mix)
        return float(r[target] - np.delete(r, target).max())

    for _ in range(passes):
        changed = False
        for k in np.flatnonzero(tonal):
            rest = rolled[np.arange(len(c)), pick].sum(axis=0) - rolled[k, pick[k]]
            best = max(range(len(shifts_all)), key=lambda j: (margin(rest + rolled[k, j]), -abs(shifts_all[j])))
            changed |= best != pick[k]
            pick[k] = best
        if not changed:
            break
    return shifts_all[pick].astype(int)
