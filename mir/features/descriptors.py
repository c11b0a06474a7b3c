"""Track descriptors: tempo (BPM), rhythm (tempogram ratio), key (tonic, mode, confidence), chroma profile,
integrated loudness (LUFS).

One implementation serves whole arrays and 3-hour streams: :class:`TrackAnalyzer` consumes blocks and
keeps only small state (one onset value per log-mel frame, a 12-bin chroma sum, one energy per 100 ms
and the filter/framing carry-over); :func:`describe`, :func:`tempo`, :func:`key` and :func:`loudness`
run it over a single block. Input is mono float audio at ``sr`` (``None``: ``get_config().analysis``).

Methods
- tempo: onset envelope = mean positive first difference of the log-mel frames, each frame floored
  80 dB under its peak (spectral flux); mean of per-window normalised autocorrelations (8 s Hann windows
  as in ``librosa.feature.tempo``, zero-padded; windows with under 0.5 dB mean flux count as having no onsets);
  period chosen under a log-normal prior (120 BPM, one octave) on a 3-lag-smoothed curve, then refined by
  parabolic interpolation of the peak and its multiples. Beyond ~180 BPM the prior reports half tempo.
- rhythm: the same mean autocorrelation read at the beat period divided by each of ``RHYTHM_FACTORS``
  (tempogram ratio, Peeters 2011): the metre's fingerprint, independent of tempo.
- key: chroma of a 4096-point STFT (at 22.05 kHz; A4 = 440 Hz, no tuning estimate), each frame scaled to
  max 1 and summed; Pearson correlation with the 24 rotated Albrecht & Shanahan (2013) profiles.
  ``confidence`` is the winning correlation (-1..1); 0.0 (reported as C major) means no tonal content.
  ``chroma`` is the summed chroma scaled to sum 1 (C first): scale and mode beyond the single best key.
- loudness: ITU-R BS.1770-4 integrated loudness for one channel: K-weighting (two biquads derived for
  any ``sr``), 400 ms blocks every 100 ms, absolute gate -70 LUFS, relative gate -10 LU.
  Silence, or audio shorter than one 400 ms block, gives ``-inf``.
"""
from __future__ import annotations

import functools
from collections.abc import Callable, Iterable

import librosa
import numpy as np
import scipy.signal
from numpy.lib.stride_tricks import sliding_window_view

from ..errors import ParameterError
from ._checks import check_audio, mel_params
from .keys import PITCH_CLASSES  # noqa: F401 (re-exported)
from .confidence import RHYTHM_FACTORS
from .logmel import FrameStream, LogMelStream, hann_window, power_spectrum

DESCRIPTORS = ("tempo", "key", "loudness")


# --- tempo -------------------------------------------------------------------------------------
def onset_envelope(S: np.ndarray, *, previous: np.ndarray | None = None, top_db: float = 80.0) -> np.ndarray:
    """Spectral flux of log-mel frames S [shape=(n_mels, t)] dB -> [shape=(t,)] float32 (dB per frame).

    Each frame is floored at its own maximum minus ``top_db`` (so leakage ripple far below the music,
    which log scaling would amplify, adds no flux), then the positive first differences are averaged over
    bands. ``previous`` [shape=(n_mels,)] is the frame before ``S[:, 0]`` (``None``: the first value is 0);
    passing the last frame of the previous block makes the envelope independent of block boundaries.
    """
    if S.shape[1] == 0:
        return np.zeros(0, dtype=np.float32)
    S = np.concatenate([S[:, :1] if previous is None else previous[:, None], S], axis=1)
    S = np.maximum(S, S.max(axis=0, keepdims=True) - np.float32(top_db))
    return np.maximum(np.diff(S, axis=1), 0).mean(axis=0, dtype=np.float64).astype(np.float32)


def mean_tempogram(env: np.ndarray, win_length: int, *, min_flux: float = 0.5, chunk: int = 256) -> np.ndarray:
    """Mean over frames of the centred, Hann-windowed, max-normalised autocorrelation of ``env``.

    Same windows as ``librosa.feature.tempogram`` but zero-padded (its linear ramp from the edge value
    turns an abrupt ending into a long fake onset), computed in chunks so a 3-hour envelope never needs
    the full ``(win_length, t)`` matrix. Windows whose mean flux is below ``min_flux`` dB hold no onsets
    (steady tones, silence) and contribute zero. Returns [shape=(win_length,)].
    """
    pad = win_length // 2
    padded = np.pad(env.astype(np.float64), pad)
    frames = sliding_window_view(padded, win_length)[: len(env)]
    window = librosa.filters.get_window("hann", win_length, fftbins=True)
    total = np.zeros(win_length)
    for s in range(0, len(frames), chunk):
        part = frames[s : s + chunk]
        part = part[part.mean(axis=1) >= min_flux]
        spec = np.fft.rfft(part * window, n=2 * win_length, axis=-1)
        ac = np.fft.irfft(spec.real**2 + spec.imag**2, n=2 * win_length, axis=-1)[:, :win_length]
        peak = np.abs(ac).max(axis=1, keepdims=True)
        total += (ac / np.where(peak > 1e-20, peak, 1.0)).sum(axis=0)
    return total / max(len(frames), 1)


def _parabolic_peak(x: np.ndarray, i: int) -> float:
    """Sub-sample position of a local maximum of ``x`` at index ``i`` (offset clamped to +-0.5)."""
    if 0 < i < len(x) - 1:
        a, b, c = x[i - 1], x[i], x[i + 1]
        curvature = a - 2 * b + c
        if curvature < 0:
            return i + float(np.clip(0.5 * (a - c) / curvature, -0.5, 0.5))
    return float(i)


def tempo_from_onset_envelope(
    env: np.ndarray, *, sr: int, hop_length: int, start_bpm: float = 120.0, std_bpm: float = 1.0,
    max_tempo: float = 320.0, ac_size: float = 8.0,
) -> float:
    """Global tempo in BPM of an onset envelope [shape=(t,)] sampled every ``hop_length / sr`` s.

    Returns 0.0 when no window holds onsets (silence, steady tones).
    """
    return rhythm_from_onset_envelope(env, sr=sr, hop_length=hop_length, start_bpm=start_bpm, std_bpm=std_bpm,
                                      max_tempo=max_tempo, ac_size=ac_size)[0]


def tempogram_ratio(tg: np.ndarray, period: float, factors: Iterable[float] = RHYTHM_FACTORS) -> np.ndarray:
    """Mean tempogram ``tg`` [shape=(lags,)] read at lag ``period / f`` for each tempo factor ``f``.

    Peeters' tempogram ratio (as ``librosa.feature.tempogram_ratio``): how strongly the music repeats at
    multiples and fractions of its beat period (``period`` in frames), so it tells 6/8 from 9/8 and duple
    from triple metre whatever the tempo. Linear interpolation between lags; lags outside ``tg`` read 0.
    """
    lags = period / np.asarray(tuple(factors), dtype=np.float64)
    if not period > 0:
        return np.zeros(len(lags))
    return np.interp(lags, np.arange(len(tg), dtype=np.float64), tg, left=0.0, right=0.0)


def rhythm_from_onset_envelope(
    env: np.ndarray, *, sr: int, hop_length: int, start_bpm: float = 120.0, std_bpm: float = 1.0,
    max_tempo: float = 320.0, ac_size: float = 8.0,
) -> tuple[float, np.ndarray]:
    """``(tempo in BPM, tempogram ratio [shape=(len(RHYTHM_FACTORS),)])`` of an onset envelope [shape=(t,)].

    See :func:`tempo_from_onset_envelope` and :func:`tempogram_ratio`; no onsets give ``(0.0, zeros)``.
    """
    win = max(int(round(ac_size * sr / hop_length)), 4)
    tg = mean_tempogram(env, win)
    if not np.max(tg[1:], initial=0.0) > 1e-6:
        return 0.0, np.zeros(len(RHYTHM_FACTORS))
    frames_per_minute = 60.0 * sr / hop_length
    lags = np.arange(win, dtype=np.float64)
    with np.errstate(divide="ignore"):
        bpm = frames_per_minute / lags
        logprior = -0.5 * ((np.log2(bpm) - np.log2(start_bpm)) / std_bpm) ** 2
    logprior[bpm >= max_tempo] = -np.inf
    salience = np.convolve(np.maximum(tg, 0.0), np.ones(3), mode="same")  # split peaks count whole
    best = int(np.argmax(np.log1p(1e6 * salience) + logprior))
    # refine the period: interpolated maxima of tg within k * (best +- 1), k = 1..4, weighted by k
    estimates, weights = [], []
    for k in range(1, 5):
        lo, hi = max(1, k * (best - 1)), min(k * (best + 1), win - 1)
        if k > 1 and hi < k * (best + 1):  # multiple beyond the window
            break
        j = lo + int(np.argmax(tg[lo : hi + 1]))
        estimates.append(_parabolic_peak(tg, j) / k)
        weights.append(k)
    period = float(np.average(estimates, weights=weights))
    return float(frames_per_minute / period), tempogram_ratio(tg, period)


class _TempoState:
    """Onset envelope of streamed log-mel frames (4 bytes per frame); tempo at the end."""

    def __init__(self, sr: int, hop_length: int):
        self.sr, self.hop_length = sr, hop_length
        self._env: list[np.ndarray] = []
        self._last: np.ndarray | None = None

    def update(self, S: np.ndarray) -> None:
        if S.shape[1]:
            self._env.append(onset_envelope(S, previous=self._last))
            self._last = S[:, -1].copy()

    def result(self) -> tuple[float, np.ndarray]:
        env = np.concatenate(self._env) if self._env else np.zeros(1, np.float32)
        return rhythm_from_onset_envelope(env, sr=self.sr, hop_length=self.hop_length)


# --- key ---------------------------------------------------------------------------------------
# Albrecht & Shanahan (2013) key profiles, tonic first.
_MAJOR = np.array([0.238, 0.006, 0.111, 0.006, 0.137, 0.094, 0.016, 0.214, 0.009, 0.080, 0.008, 0.081])
_MINOR = np.array([0.220, 0.006, 0.104, 0.123, 0.019, 0.103, 0.012, 0.214, 0.062, 0.022, 0.061, 0.052])


def _centred_unit(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """``x`` minus its mean, divided by its norm, along ``axis`` (a dot product of two such is Pearson's r)."""
    x = x - x.mean(axis=axis, keepdims=True)
    return x / np.linalg.norm(x, axis=axis, keepdims=True)


@functools.lru_cache(maxsize=1)
def key_templates() -> np.ndarray:
    """24 centred unit-norm profiles [shape=(24, 12)]: rows 0-11 major on C..B, rows 12-23 minor."""
    rows = [np.roll(p, t) for p in (_MAJOR, _MINOR) for t in range(12)]
    return _centred_unit(np.array(rows))


def key_from_chroma(chroma: np.ndarray) -> tuple[str, str, float]:
    """Krumhansl–Schmuckler key finding: (tonic, "major"|"minor", Pearson r) for chroma [shape=(12,)] (C first)."""
    chroma = np.asarray(chroma, dtype=np.float64)
    centred = chroma - chroma.mean()
    scale = np.abs(chroma).max()
    if not scale > 0 or np.linalg.norm(centred) <= 1e-9 * scale:  # silent or flat: no tonal content
        return "C", "major", 0.0
    r = key_templates() @ (centred / np.linalg.norm(centred))
    best = int(np.argmax(r))
    return PITCH_CLASSES[best % 12], ("major", "minor")[best // 12], float(r[best])


def chroma_fft_size(sr: int) -> int:
    """Power of two closest to 186 ms (4096 at 22.05 kHz): fine enough to separate bass semitones."""
    return int(2 ** round(np.log2(sr * 4096 / 22050)))


@functools.lru_cache(maxsize=8)
def _chroma_basis(sr: int, n_fft: int) -> np.ndarray:
    return librosa.filters.chroma(sr=sr, n_fft=n_fft, tuning=0.0, n_chroma=12, dtype=np.float64)


def chroma_frames(frames: np.ndarray, *, sr: int) -> np.ndarray:
    """Chroma of frames [shape=(k, n_fft)] -> [shape=(12, k)] (C first), each frame scaled to max 1 (silent: 0)."""
    n_fft = frames.shape[1]
    C = _chroma_basis(sr, n_fft) @ power_spectrum(frames, hann_window(n_fft))
    peak = C.max(axis=0, keepdims=True)
    return np.where(peak > 1e-10, C / np.maximum(peak, 1e-10), 0.0)


class _KeyState:
    """Sum of frame chroma over the stream (12 floats) plus the framing carry-over."""

    def __init__(self, sr: int, on_chroma: Callable[[np.ndarray], object] | None = None):
        self.sr = sr
        n_fft = chroma_fft_size(sr)
        self._frames = FrameStream(n_fft, n_fft // 2)
        self._sum = np.zeros(12)
        self.on_chroma = on_chroma

    def update(self, block: np.ndarray) -> None:
        self._add(self._frames.push(block))

    def _add(self, frames: np.ndarray) -> None:
        for s in range(0, len(frames), 64):  # chunks keep the float64 FFT buffers in cache
            C = chroma_frames(frames[s : s + 64], sr=self.sr)
            self._sum += C.sum(axis=1)
            if self.on_chroma is not None:
                self.on_chroma(C)

    def result(self) -> tuple[str, str, float, np.ndarray]:
        """``(tonic, mode, confidence, chroma profile [12] summing to 1, or zeros when silent)``."""
        self._add(self._frames.close())
        total = self._sum.sum()
        return (*key_from_chroma(self._sum), self._sum / total if total > 0 else np.zeros(12))


# --- loudness ----------------------------------------------------------------------------------
@functools.lru_cache(maxsize=8)
def k_weighting_sos(sr: int) -> np.ndarray:
    """BS.1770-4 K-weighting as second-order sections [shape=(2, 6)] for any ``sr``.

    Pre-filter (high shelf, +4 dB) and RLB high-pass, from their analogue prototypes by the bilinear
    transform (libebur128's derivation); at 48 kHz this reproduces the coefficients tabled in BS.1770.
    """
    f0, gain_db, q = 1681.974450955533, 3.999843853973347, 0.7071752369554196
    k = np.tan(np.pi * f0 / sr)
    vh = 10.0 ** (gain_db / 20.0)
    vb = vh**0.4996667741545416
    a0 = 1.0 + k / q + k * k
    shelf = [(vh + vb * k / q + k * k) / a0, 2.0 * (k * k - vh) / a0, (vh - vb * k / q + k * k) / a0,
             1.0, 2.0 * (k * k - 1.0) / a0, (1.0 - k / q + k * k) / a0]
    f0, q = 38.13547087602444, 0.5003270373238773
    k = np.tan(np.pi * f0 / sr)
    a0 = 1.0 + k / q + k * k
    highpass = [1.0, -2.0, 1.0, 1.0, 2.0 * (k * k - 1.0) / a0, (1.0 - k / q + k * k) / a0]
    sos = np.array([shelf, highpass])
    sos.flags.writeable = False
    return sos


def gated_loudness(step_energy: np.ndarray, *, steps_per_block: int = 4) -> float:
    """Integrated loudness (LUFS) from the mean square of the K-weighted signal over each 100 ms step.

    ``step_energy`` [shape=(n_steps,)]; a 400 ms gating block is ``steps_per_block`` consecutive steps
    (75 % overlap). Gates: absolute -70 LUFS, then relative -10 LU below the absolute-gated mean.
    """
    if len(step_energy) < steps_per_block:
        return float("-inf")
    z = np.convolve(step_energy, np.ones(steps_per_block), mode="valid") / steps_per_block
    with np.errstate(divide="ignore"):
        level = -0.691 + 10.0 * np.log10(z)
    kept = z[level > -70.0]
    if not len(kept):
        return float("-inf")
    relative_gate = -0.691 + 10.0 * np.log10(kept.mean()) - 10.0
    kept = z[(level > -70.0) & (level > relative_gate)]
    return float(-0.691 + 10.0 * np.log10(kept.mean()))


class _LoudnessState:
    """K-filter state, the unfinished 100 ms step, and one energy per finished step (8 bytes / 100 ms)."""

    def __init__(self, sr: int):
        self.sr = sr
        self.step = max(int(round(0.1 * sr)), 1)
        self._sos = k_weighting_sos(sr).copy()  # sosfilt needs a writable array
        self._zi = np.zeros((self._sos.shape[0], 2))
        self._carry = np.zeros(0)
        self._energy: list[np.ndarray] = []

    def update(self, block: np.ndarray) -> None:
        if not len(block):
            return
        filtered, self._zi = scipy.signal.sosfilt(self._sos, block.astype(np.float64), zi=self._zi)
        x = np.concatenate([self._carry, filtered])
        n = len(x) // self.step * self.step
        if n:
            steps = x[:n].reshape(-1, self.step)
            self._energy.append(np.einsum("ij,ij->i", steps, steps))
        self._carry = x[n:]

    def result(self) -> float:
        sums = np.concatenate(self._energy) if self._energy else np.zeros(0)
        return gated_loudness(sums / self.step)


# --- the analyzer ------------------------------------------------------------------------------
class TrackAnalyzer:
    """Descriptors (and log-mel frames) of one mono track fed block by block, in bounded memory.

    >>> an = TrackAnalyzer(sr=22050, on_frames=frames.append)      # doctest: +SKIP
    >>> for block in blocks:
    ...     an.update(block)                                        # any lengths, 0 included
    >>> desc = an.finalize()    # {"duration", "tempo", "rhythm", "key", "mode", "key_confidence", "chroma", "loudness"}

    ``on_frames(S)`` receives each new batch of log-mel frames S [shape=(n_mels, k)] float32 dB, k >= 1;
    their concatenation equals :func:`~mir.features.log_mel` of the whole signal. ``include`` selects
    descriptors (subset of ``("tempo", "key", "loudness")``); ``duration`` is always reported.
    ``on_chroma(C)`` (with "key") receives the key's chroma frames C [shape=(12, k)] (hop: half of
    :func:`chroma_fft_size`), as the beats stage needs them.
    Results do not depend on how the signal is split into blocks (key confidence up to float rounding, ~1e-12).
    """

    def __init__(self, *, sr=None, n_fft=None, hop_length=None, n_mels=None, fmin=None, fmax=None,
                 on_frames: Callable[[np.ndarray], object] | None = None, include: Iterable[str] = DESCRIPTORS,
                 on_chroma: Callable[[np.ndarray], object] | None = None):
        include = tuple(include)
        unknown = set(include) - set(DESCRIPTORS)
        if unknown:
            raise ParameterError(f"unknown descriptor(s) {sorted(unknown)} in include; known: {list(DESCRIPTORS)}")
        if on_frames is not None and not callable(on_frames):
            raise ParameterError(f"on_frames must be callable, got {type(on_frames).__name__}")
        p = mel_params(sr, n_fft, hop_length, n_mels, fmin, fmax)
        self.sr = p.sr
        self.on_frames = on_frames
        self.n_samples = 0
        self._mel = LogMelStream(sr=p.sr, n_fft=p.n_fft, hop_length=p.hop_length, n_mels=p.n_mels,
                                 fmin=p.fmin, fmax=p.fmax) if ("tempo" in include or on_frames) else None
        self._tempo = _TempoState(p.sr, p.hop_length) if "tempo" in include else None
        self._key = _KeyState(p.sr, on_chroma) if "key" in include else None
        self._loudness = _LoudnessState(p.sr) if "loudness" in include else None
        self._finalized = False

    def update(self, block: np.ndarray) -> None:
        """Consume the next ``block`` [shape=(samples,)] of the track (float, finite, any length)."""
        if self._finalized:
            raise ParameterError("TrackAnalyzer.update() after finalize(); create a new analyzer per track")
        self._update(check_audio(block, name="block", mono=True, allow_empty=True))

    def _update(self, block: np.ndarray) -> None:
        self.n_samples += len(block)
        if self._mel is not None:
            self._frames(self._mel._push(block))
        for state in (self._key, self._loudness):
            if state is not None:
                state.update(block)

    def _frames(self, S: np.ndarray) -> None:
        if not S.shape[1]:
            return
        if self._tempo is not None:
            self._tempo.update(S)
        if self.on_frames is not None:
            self.on_frames(S)

    def finalize(self) -> dict:
        """Flush the last frames and return ``{"duration": s, "tempo": BPM, "rhythm": [13 floats], "key": tonic,
        "mode", "key_confidence", "chroma": [12 floats], "loudness": LUFS}`` (those ``include`` asks for)."""
        if self._finalized:
            raise ParameterError("TrackAnalyzer.finalize() called twice; create a new analyzer per track")
        if self.n_samples == 0:
            raise ParameterError("TrackAnalyzer received no samples (total length 0); there is nothing to analyse")
        self._finalized = True
        if self._mel is not None:
            self._frames(self._mel.finalize())
        out: dict = {"duration": self.n_samples / self.sr}
        if self._tempo is not None:
            out["tempo"], rhythm = self._tempo.result()
            out["rhythm"] = [float(v) for v in rhythm]
        if self._key is not None:
            out["key"], out["mode"], out["key_confidence"], chroma = self._key.result()
            out["chroma"] = [float(v) for v in chroma]
        if self._loudness is not None:
            out["loudness"] = self._loudness.result()
        return out


def _analyze(y: np.ndarray, sr, include: tuple[str, ...]) -> dict:
    analyzer = TrackAnalyzer(sr=sr, include=include)
    analyzer._update(check_audio(y, mono=True))
    return analyzer.finalize()


def describe_with_logmel(y: np.ndarray, *, sr=None, n_fft=None, hop_length=None, n_mels=None, fmin=None, fmax=None,
                         include: Iterable[str] = DESCRIPTORS) -> tuple[np.ndarray, dict]:
    """``(S, descriptors)`` of a mono signal y [shape=(samples,)] from one pass: S [shape=(n_mels, t)] equals
    :func:`~mir.features.log_mel` with these parameters, the dict is :func:`describe`'s (``include`` only)."""
    frames: list[np.ndarray] = []
    analyzer = TrackAnalyzer(sr=sr, n_fft=n_fft, hop_length=hop_length, n_mels=n_mels, fmin=fmin, fmax=fmax,
                             on_frames=frames.append, include=include)
    analyzer._update(check_audio(y, mono=True))
    desc = analyzer.finalize()
    return np.concatenate(frames, axis=1), desc


def describe(y: np.ndarray, *, sr: int | None = None) -> dict:
    """All descriptors of a mono signal y [shape=(samples,)]: duration (s), tempo (BPM), rhythm (tempogram
    ratio, list of 13), key (tonic), mode ("major"|"minor"), key_confidence (Pearson r), chroma (profile, list
    of 12), loudness (LUFS, ``-inf`` for silence)."""
    return _analyze(y, sr, DESCRIPTORS)


def tempo(y: np.ndarray, *, sr: int | None = None) -> float:
    """Global tempo in BPM of a mono signal y [shape=(samples,)]; 0.0 when there is no pulse."""
    return _analyze(y, sr, ("tempo",))["tempo"]


def key(y: np.ndarray, *, sr: int | None = None) -> tuple[str, str, float]:
    """(tonic such as "A", "major" | "minor", confidence = Pearson r) of a mono signal y [shape=(samples,)]."""
    out = _analyze(y, sr, ("key",))
    return out["key"], out["mode"], out["key_confidence"]


def loudness(y: np.ndarray, *, sr: int | None = None) -> float:
    """BS.1770-4 integrated loudness in LUFS of a mono signal y [shape=(samples,)] (``-inf``: silent or < 400 ms)."""
    return _analyze(y, sr, ("loudness",))["loudness"]
