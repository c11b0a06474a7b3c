"""Random views of a waveform for contrastive training: the degradations a real library holds.

Each view of a crop goes through, independently: gain, an EQ tilt (low and high shelves),
reverb, a speed change of up to ±1 semitone (pitch and tempo together, ±6 %, one resampling),
band-limiting through 8, 11.025 or 16 kHz, additive noise at 10–40 dB SNR, and a lossy codec
(Ogg Vorbis or MP3). Shelves and reverb come from ``pedalboard`` (Spotify's effects library);
resampling from ``soxr``; codecs from :func:`mir.audio.codec.reencode`.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pedalboard
import soxr

from ..audio.codec import reencode
from ..errors import ParameterError

BAND_RATES = (8000, 11025, 16000)


@dataclass(frozen=True)
class Views:
    """Strengths and probabilities of each degradation (0 turns one off)."""

    gain_db: float = 12.0  # uniform gain in ±gain_db
    eq_db: float = 6.0  # each shelf (250 Hz low, 4 kHz high) in ±eq_db
    reverb: float = 0.3  # probability of a room reverb
    semitones: float = 1.0  # speed change of up to ± this many semitones
    band_limit: float = 0.3  # probability of band-limiting through one of BAND_RATES
    noise: float = 0.5  # probability of white noise at 10–40 dB SNR
    codec: float = 0.1  # probability of an Ogg or MP3 round trip

    def __post_init__(self):
        for name in ("reverb", "band_limit", "noise", "codec"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ParameterError(f"{name} is a probability, got {getattr(self, name)!r}")
        for name in ("gain_db", "eq_db", "semitones"):
            if getattr(self, name) < 0:
                raise ParameterError(f"{name} must be ≥ 0, got {getattr(self, name)!r}")

    @classmethod
    def off(cls) -> "Views":
        return cls(gain_db=0, eq_db=0, reverb=0, semitones=0, band_limit=0, noise=0, codec=0)

    def to_dict(self) -> dict:
        return asdict(self)

    def speed(self, rng: np.random.Generator) -> float:
        """Playback-rate factor of one view (1 = unchanged); read ``factor × n`` samples for ``n`` out."""
        return float(2.0 ** (rng.uniform(-self.semitones, self.semitones) / 12.0)) if self.semitones else 1.0

    def __call__(self, y: np.ndarray, sr: int, n: int, rng: np.random.Generator, *, speed: float = 1.0) -> np.ndarray:
        """One view of ``y`` [≥ speed·n samples] float32: exactly ``n`` samples, degraded."""
        x = np.asarray(y, dtype=np.float32)
        if speed != 1.0:
            x = soxr.resample(x, sr * speed, sr, quality="LQ")
        x = _fit(x, n)
        if self.eq_db:
            lo, hi = rng.uniform(-self.eq_db, self.eq_db, size=2)
            board = pedalboard.Pedalboard([pedalboard.LowShelfFilter(250.0, float(lo)),
                                           pedalboard.HighShelfFilter(4000.0, float(hi))])
            x = board(x[None, :], sr)[0]
        if rng.random() < self.reverb:
            x = pedalboard.Reverb(room_size=float(rng.uniform(0.1, 0.8)), wet_level=float(rng.uniform(0.1, 0.4)),
                                  dry_level=0.8)(x[None, :], sr)[0]
        if rng.random() < self.band_limit:
            rate = int(rng.choice(BAND_RATES))
            x = _fit(soxr.resample(soxr.resample(x, sr, rate), rate, sr), n)
        if rng.random() < self.noise:
            power = float(np.mean(x.astype(np.float64) ** 2)) + 1e-12
            snr = rng.uniform(10.0, 40.0)
            x = x + rng.standard_normal(n).astype(np.float32) * np.float32(np.sqrt(power / 10 ** (snr / 10)))
        if self.gain_db:
            x = x * np.float32(10 ** (rng.uniform(-self.gain_db, self.gain_db) / 20))
        if rng.random() < self.codec:
            x = reencode(x, sr, codec="ogg" if rng.random() < 0.5 else "mp3")
        return np.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0).astype(np.float32, copy=False)


def _fit(x: np.ndarray, n: int) -> np.ndarray:
    """``x`` cut or zero-padded to ``n`` samples."""
    if len(x) >= n:
        return x[:n]
    return np.pad(x, (0, n - len(x)))
