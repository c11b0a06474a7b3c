"""mir.features: log-mel against librosa (numpy, torch, streaming) and descriptors against known truths."""
from __future__ import annotations

import tracemalloc
import warnings

import librosa
import numpy as np
import pytest
import torch

from mir.errors import ParameterError
from mir.features import (
    LogMel, LogMelStream, TrackAnalyzer, describe, describe_with_logmel, key, log_mel, loudness, mel_filterbank, tempo,
)
from mir.features.descriptors import PITCH_CLASSES, RHYTHM_FACTORS, k_weighting_sos

from helpers import tone

SR = 22050
DEFAULTS = dict(sr=SR, n_fft=1024, hop_length=512, n_mels=128)

# Tolerances (dB) against librosa run in float64 on the same float32 samples.
# numpy path (float64 FFT and mel sums): every bin, measured max 1.7e-5 dB.
NUMPY_TOL = 1e-4
# torch float32: float32 FFT rounding sits ~140 dB under a frame's peak, so only bands near the
# peak can agree closely. Measured: <= 1.1e-3 dB within 80 dB of the item's peak, <= 1e-2 dB within
# 100 dB; over all bins up to 1.4 dB (full-scale tone, bands ~148 dB under the peak).
TORCH_TOL_80, TORCH_TOL_100 = 2e-3, 2e-2
# torch float64 (module.double(), float32-rounded buffers): measured <= 7.4e-4 dB within 100 dB.
TORCH64_TOL_100 = 2e-3


def librosa_db(y, top_db=None, **params):
    p = {**DEFAULTS, **params}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "n_fft too large" for very short inputs
        S = librosa.feature.melspectrogram(y=np.asarray(y, np.float64), power=2.0, center=True, pad_mode="constant", **p)
    return librosa.power_to_db(S, ref=1.0, amin=1e-10, top_db=top_db)


def within(ref, top):
    """Mask of bins no more than ``top`` dB under the item's peak."""
    return ref >= ref.max() - top


def synthetic(name: str, rng) -> np.ndarray:
    t = np.arange(3 * SR) / SR
    signals = {
        "tone": lambda: tone(440.0, 3.0, amp=0.3),
        "full_scale_tone": lambda: tone(3000.0, 3.0, amp=1.0),
        "noise": lambda: 0.1 * rng.standard_normal(len(t)),
        "chirp": lambda: 0.5 * np.sin(2 * np.pi * (50 * t + (8000 - 50) / 6 * t**2)),
        "silence": lambda: np.zeros(len(t)),  # every bin at the amin floor (-100 dB)
        "quiet_tone": lambda: tone(1000.0, 3.0, amp=1e-4),
        "short": lambda: 0.3 * rng.standard_normal(700),
    }
    return signals[name]().astype(np.float32)


SYNTHETIC = ["tone", "full_scale_tone", "noise", "chirp", "silence", "quiet_tone", "short"]


@pytest.fixture(scope="module")
def real(shared_audio):
    """Two real recordings, the first 20 s at most (decoding dominates the cost)."""
    return {n: librosa.load(shared_audio / f"{n}.ogg", sr=SR, duration=20.0)[0] for n in ("brahms", "trumpet")}


# --- filterbank --------------------------------------------------------------------------------
def test_mel_filterbank_equals_librosa_cached_and_read_only():
    fb = mel_filterbank(sr=SR, n_fft=1024, n_mels=128, fmin=0.0, fmax=None)
    np.testing.assert_array_equal(fb, librosa.filters.mel(sr=SR, n_fft=1024, n_mels=128, htk=False, norm="slaney"))
    assert fb.shape == (128, 513) and fb.dtype == np.float32
    assert mel_filterbank(sr=SR, n_fft=1024, n_mels=128, fmin=0.0, fmax=SR / 2) is fb
    with pytest.raises(ValueError, match="read-only"):
        fb[0, 0] = 1.0


# --- numpy log-mel -----------------------------------------------------------------------------
@pytest.mark.parametrize("name", SYNTHETIC)
def test_log_mel_matches_librosa_synthetic(name, rng):
    y = synthetic(name, rng)
    ref, S = librosa_db(y), log_mel(y, **DEFAULTS)
    assert S.dtype == np.float32 and S.shape == ref.shape
    assert np.abs(S - ref).max() <= NUMPY_TOL


def test_log_mel_matches_librosa_real(real):
    for y in real.values():
        assert np.abs(log_mel(y, **DEFAULTS) - librosa_db(y)).max() <= NUMPY_TOL


def test_log_mel_other_parameters_and_top_db(rng):
    y = synthetic("chirp", rng)
    p = dict(sr=16000, n_fft=2048, hop_length=256, n_mels=64, fmin=30.0, fmax=7000.0)
    np.testing.assert_allclose(log_mel(y, **p, top_db=60.0), librosa_db(y, top_db=60.0, **p), atol=NUMPY_TOL, rtol=0)


def test_log_mel_defaults_come_from_config(rng):
    y = synthetic("noise", rng)
    np.testing.assert_array_equal(log_mel(y), log_mel(y, **DEFAULTS, fmin=0.0, fmax=SR / 2))


def test_log_mel_float64_input_gives_float32(rng):
    y = synthetic("noise", rng)
    np.testing.assert_array_equal(log_mel(y.astype(np.float64)), log_mel(y))


@pytest.mark.parametrize("n", [1, 511, 512, 513, 1023, 1024, 22050])
def test_log_mel_shapes(n, rng):
    y = (0.1 * rng.standard_normal(n)).astype(np.float32)
    expected = (128, 1 + n // 512)
    assert log_mel(y).shape == expected == librosa_db(y).shape
    assert LogMel()(torch.from_numpy(y)).shape == expected
    assert log_mel(np.stack([y, y, y]).reshape(3, 1, n)).shape == (3, 1, *expected)


def test_log_mel_batch_equals_stacked_items_with_per_item_top_db(rng):
    loud, quiet = synthetic("chirp", rng), 1e-3 * synthetic("noise", rng)
    batch = log_mel(np.stack([loud, quiet]), top_db=80.0)
    for item, y in zip(batch, (loud, quiet)):
        np.testing.assert_array_equal(item, log_mel(y, top_db=80.0))
        np.testing.assert_allclose(item, librosa_db(y, top_db=80.0), atol=NUMPY_TOL, rtol=0)
        assert item.min() >= item.max() - 80.0 - 1e-4  # clipped at its own peak, not the batch's


# --- torch -------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", SYNTHETIC)
def test_torch_module_matches_librosa_synthetic(name, rng):
    y = synthetic(name, rng)
    ref = librosa_db(y)
    out = LogMel(**DEFAULTS)(torch.from_numpy(y)[None])[0].numpy()
    err = np.abs(out - ref)
    assert err[within(ref, 80)].max() <= TORCH_TOL_80
    assert err[within(ref, 100)].max() <= TORCH_TOL_100
    out64 = LogMel(**DEFAULTS).double()(torch.from_numpy(y).double()[None])[0].numpy()
    assert np.abs(out64 - ref)[within(ref, 100)].max() <= TORCH64_TOL_100


def test_torch_module_matches_librosa_real(real):
    module = LogMel(**DEFAULTS)
    for y in real.values():
        ref = librosa_db(y)
        err = np.abs(module(torch.from_numpy(y)[None])[0].numpy() - ref)
        assert err[within(ref, 80)].max() <= TORCH_TOL_80
        assert err[within(ref, 100)].max() <= TORCH_TOL_100


def test_torch_batch_equals_items_and_top_db_is_per_item(rng):
    ys = [synthetic("chirp", rng), 1e-3 * synthetic("noise", rng), synthetic("silence", rng)]
    module = LogMel(top_db=80.0)
    batch = module(torch.from_numpy(np.stack(ys)))
    assert batch.shape == (3, 128, 130) and batch.dtype == torch.float32
    for item, y in zip(batch, ys):
        single = module(torch.from_numpy(y)[None])[0]
        torch.testing.assert_close(item, single, atol=1e-5, rtol=0)  # measured: identical
        np.testing.assert_allclose(item.numpy(), log_mel(y, top_db=80.0), atol=TORCH_TOL_80, rtol=0)
        assert item.min() >= item.max() - 80.0 - 1e-4


def test_torch_module_buffers():
    module = LogMel(n_mels=64)
    state = module.state_dict()
    assert set(state) == {"window", "mel_fb"}
    assert state["mel_fb"].shape == (64, 513)
    torch.testing.assert_close(state["window"], torch.hann_window(1024, periodic=True), atol=3e-7, rtol=0)


def test_torch_module_rejects_bad_input():
    module = LogMel()
    with pytest.raises(ParameterError, match="floating-point tensor"):
        module(torch.zeros(2, 100, dtype=torch.int16))
    with pytest.raises(ParameterError, match=r"shape \(batch, samples\)"):
        module(torch.zeros(2, 3, 100))
    with pytest.raises(ParameterError, match=r"samples > 0"):
        module(torch.zeros(2, 0))
    with pytest.raises(ParameterError, match="NaN"):
        module(torch.tensor([[0.0, float("nan")]]))
    with pytest.raises(ParameterError, match="torch.Tensor"):
        module(np.zeros(100, np.float32))


# --- streaming ---------------------------------------------------------------------------------
def random_blocks(y, rng, n_cuts=30):
    """Split y at random points, with some empty and one-sample blocks."""
    cuts = np.sort(np.concatenate([rng.integers(0, len(y), n_cuts), [5, 5, 6, len(y)]]))
    return np.split(y, cuts)


@pytest.mark.parametrize("n", [1, 700, 3 * SR])
def test_log_mel_stream_equals_whole(n, rng):
    y = (0.2 * rng.standard_normal(n)).astype(np.float32)
    stream = LogMelStream()
    parts = [stream.update(b) for b in random_blocks(y, rng)] + [stream.finalize()]
    assert all(p.shape[0] == 128 for p in parts)
    np.testing.assert_array_equal(np.concatenate(parts, axis=1), log_mel(y))
    assert stream.n_frames == 1 + n // 512 and stream.n_samples == n


def test_log_mel_stream_misuse():
    stream = LogMelStream()
    with pytest.raises(ParameterError, match="no samples"):
        stream.finalize()
    with pytest.raises(ParameterError, match=r"block must be mono .* shape \(2, 10\)"):
        stream.update(np.zeros((2, 10), np.float32))
    stream.update(np.zeros(10, np.float32))
    stream.finalize()
    with pytest.raises(ParameterError, match="already finalized"):
        stream.update(np.zeros(10, np.float32))


# --- validation --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "y, match",
    [
        (np.array([0.0, np.nan, 0.0], np.float32), "NaN or infinity"),
        (np.array([0.0, np.inf], np.float64), "NaN or infinity"),
        (np.zeros(0, np.float32), "empty"),
        (np.zeros((2, 0), np.float32), "empty"),
        (np.zeros(100, np.int16), "floating-point.*int16"),
        (np.zeros(100, np.complex64), "floating-point.*complex64"),
        (np.array(0.5, np.float32), "0-d"),
        ([0.0, 0.1], "numpy array, got list"),
    ],
)
def test_log_mel_rejects_bad_audio(y, match):
    with pytest.raises(ParameterError, match=match):
        log_mel(y)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(n_fft=0), "n_fft must be a positive number, got 0"),
        (dict(hop_length=1.5), "hop_length must be an integer, got 1.5"),
        (dict(sr=-1), "sr must be a positive number, got -1"),
        (dict(fmax=20000.0), r"fmax <= sr/2 = 11025.0"),
        (dict(fmin=5000.0, fmax=4000.0), "fmin=5000.0, fmax=4000.0"),
        (dict(amin=0.0), "amin must be a positive number, got 0.0"),
        (dict(top_db=-3), "top_db must be a positive number, got -3"),
    ],
)
def test_log_mel_rejects_bad_parameters(kwargs, match):
    with pytest.raises(ParameterError, match=match):
        log_mel(np.zeros(1000, np.float32), **kwargs)


# --- synthetic music with known descriptors ----------------------------------------------------
def clicks(bpm: float, seconds: float = 15.0, sr: int = SR) -> np.ndarray:
    """A metronome: 20 ms decaying 1 kHz blips every beat."""
    y = np.zeros(int(seconds * sr), np.float32)
    t = np.arange(int(0.02 * sr)) / sr
    blip = (0.5 * np.sin(2 * np.pi * 1000 * t) * np.exp(-300 * t)).astype(np.float32)
    for start in np.arange(0, seconds - 0.05, 60.0 / bpm):
        i = int(round(start * sr))
        y[i : i + len(blip)] += blip
    return y


def note(midi: int, seconds: float, sr: int = SR) -> np.ndarray:
    """A plucked harmonic tone (6 partials, 1/k amplitudes)."""
    t = np.arange(int(seconds * sr)) / sr
    f = 440.0 * 2 ** ((midi - 69) / 12)
    x = sum(np.sin(2 * np.pi * k * f * t) / k for k in range(1, 7) if k * f < sr / 2)
    return x * np.minimum(1, t / 0.01) * np.exp(-1.5 * t)


def progression(root_midi: int, chords, seconds: float = 0.5, repeats: int = 2) -> np.ndarray:
    """Chords given as semitones above ``root_midi``, each with its root doubled an octave below."""
    out = [sum(note(root_midi + i, seconds) for i in ch) + note(root_midi + ch[0] - 12, seconds)
           for _ in range(repeats) for ch in chords]
    y = np.concatenate(out)
    return (0.3 * y / np.abs(y).max()).astype(np.float32)


MAJOR_CADENCE = [(0, 4, 7), (5, 9, 12), (7, 11, 14), (0, 4, 7)]  # I-IV-V-I
MINOR_CADENCE = [(0, 3, 7), (5, 8, 12), (7, 11, 14), (0, 3, 7)]  # i-iv-V-i (harmonic minor: raised 7th)


@pytest.mark.parametrize("bpm", [60, 90, 120, 140, 170])
def test_tempo_of_click_tracks(bpm):
    assert tempo(clicks(bpm), sr=SR) == pytest.approx(bpm, abs=2.0)


def test_tempo_without_pulse_is_zero():
    assert tempo(np.zeros(5 * SR, np.float32), sr=SR) == 0.0
    assert tempo(tone(440.0, 10.0), sr=SR) == 0.0
    assert tempo(tone(3000.0, 10.0, amp=1.0), sr=SR) == 0.0
    assert tempo(tone(261.6, 10.0) + tone(329.6, 10.0) + tone(392.0, 10.0), sr=SR) == 0.0


@pytest.mark.parametrize(
    "root, chords, expected",
    [
        (57, MINOR_CADENCE, ("A", "minor")),  # Am-Dm-E-Am
        (60, MAJOR_CADENCE, ("C", "major")),  # C-F-G-C
        (54, MAJOR_CADENCE, ("F#", "major")),
        (62, MINOR_CADENCE, ("D", "minor")),
        (63, MINOR_CADENCE, ("D#", "minor")),
    ],
)
def test_key_of_cadences(root, chords, expected):
    tonic, mode, confidence = key(progression(root, chords), sr=SR)
    assert (tonic, mode) == expected
    assert 0.5 < confidence <= 1.0


def test_key_of_c_major_scale():
    scale = np.concatenate([note(60 + s, 0.4) for s in (0, 2, 4, 5, 7, 9, 11, 12, 7, 4, 0)]).astype(np.float32)
    assert key(0.3 * scale, sr=SR)[:2] == ("C", "major")


def test_key_of_silence_has_zero_confidence():
    assert key(np.zeros(SR, np.float32), sr=SR) == ("C", "major", 0.0)


def test_k_weighting_reproduces_bs1770_table_at_48k():
    table = [[1.53512485958697, -2.69169618940638, 1.19839281085285, 1.0, -1.69065929318241, 0.73248077421585],
             [1.0, -2.0, 1.0, 1.0, -1.99004745483398, 0.99007225036621]]
    np.testing.assert_allclose(k_weighting_sos(48000), table, atol=1e-13, rtol=0)


@pytest.mark.parametrize("sr", [48000, 44100, SR])
def test_loudness_of_sines(sr):
    t = np.arange(10 * sr) / sr
    # BS.1770: a 0 dBFS 997 Hz sine reads -3.01 LUFS (measured -3.010 at 48k, -2.981 at 22.05k:
    # the bilinear transform bends the shelf a little at low rates).
    assert loudness(np.sin(2 * np.pi * 997 * t).astype(np.float32), sr=sr) == pytest.approx(-3.01, abs=0.1)
    assert loudness(0.5 * np.sin(2 * np.pi * 1000 * t).astype(np.float32), sr=sr) == pytest.approx(-9.03, abs=0.1)


@pytest.mark.parametrize("sr", [SR, 48000])
def test_loudness_equals_pyloudnorm_with_the_same_filter_design(sr, rng):
    """pyloudnorm as the reference: with the "DeMan" filters (the same bilinear-transform design) it
    reads the same LUFS (measured: within 2e-8 LU); its default "K-weighting" filters read ~0.09 LU lower."""
    import pyloudnorm

    t = np.arange(12 * sr) / sr
    y = 0.2 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 0.3 * t)) + 0.02 * rng.standard_normal(len(t))
    y[3 * sr : 5 * sr] *= 1e-3  # a quiet stretch for the gates to drop
    expected = pyloudnorm.Meter(sr, filter_class="DeMan").integrated_loudness(y)
    assert loudness(y.astype(np.float32), sr=sr) == pytest.approx(expected, abs=1e-4)


def test_loudness_gates():
    loud = tone(1000.0, 10.0, amp=0.5)
    alone = loudness(loud, sr=SR)
    # 40 dB quieter half: under the relative gate, so it does not count (ungated it would cost 3 dB);
    # only the 3 blocks straddling the step pull the mean down, by 10*log10(98.5/100) = -0.066 dB
    assert loudness(np.concatenate([loud, 0.01 * loud]), sr=SR) == pytest.approx(alone - 0.066, abs=0.01)
    # 3 dB quieter half: above the gate, so it counts (mean energy of both halves)
    both = loudness(np.concatenate([loud, loud / np.sqrt(2)]), sr=SR)
    assert both == pytest.approx(alone + 10 * np.log10(0.75), abs=0.01)
    assert loudness(np.zeros(5 * SR, np.float32), sr=SR) == float("-inf")
    assert loudness(tone(1000.0, 0.3), sr=SR) == float("-inf")  # shorter than one 400 ms block


# --- describe and the streaming analyzer -------------------------------------------------------
def test_describe_keys_and_values():
    y = progression(57, MINOR_CADENCE, seconds=0.5, repeats=4) + clicks(120, seconds=8.0)
    d = describe(y, sr=SR)
    assert set(d) == {"duration", "tempo", "rhythm", "key", "mode", "key_confidence", "chroma", "loudness"}
    assert d["duration"] == pytest.approx(8.0)
    assert d["tempo"] == pytest.approx(120, abs=2)
    assert (d["key"], d["mode"]) == ("A", "minor")
    assert -40 < d["loudness"] < 0
    assert all(isinstance(d[k], float) for k in ("duration", "tempo", "key_confidence", "loudness"))
    assert len(d["rhythm"]) == len(RHYTHM_FACTORS) and d["rhythm"][RHYTHM_FACTORS.index(1.0)] > 0.5
    assert len(d["chroma"]) == 12 and sum(d["chroma"]) == pytest.approx(1.0)
    assert PITCH_CLASSES[int(np.argmax(d["chroma"]))] in ("A", "C", "E")  # the A-minor triad dominates


def test_describe_with_logmel_is_log_mel_and_describe_in_one_pass():
    y = progression(57, MINOR_CADENCE, seconds=0.5, repeats=4) + clicks(120, seconds=8.0)
    S, d = describe_with_logmel(y, sr=SR)
    np.testing.assert_array_equal(S, log_mel(y, sr=SR))
    assert d == describe(y, sr=SR)
    assert set(describe_with_logmel(y, sr=SR, include=("key",))[1]) == {"duration", "key", "mode", "key_confidence", "chroma"}


def test_rhythm_tells_triple_from_duple_metre():
    """Accented clicks every 3 beats vs every 2: the tempogram ratio at 3 beats (factor 1/3) and at
    2 beats (factor 1/2) swap order, while the beat itself (factor 1) is strong in both."""
    def accented(every):
        beat = int(SR * 0.4)  # 150 BPM
        y = np.zeros(SR * 16, np.float32)
        for i, start in enumerate(range(0, len(y) - 200, beat)):
            y[start : start + 200] = (1.0 if i % every == 0 else 0.05) * np.hanning(200)
        return y

    third, half = RHYTHM_FACTORS.index(1 / 3), RHYTHM_FACTORS.index(0.5)
    triple, duple = describe(accented(3), sr=SR)["rhythm"], describe(accented(2), sr=SR)["rhythm"]
    assert triple[third] > triple[half] and duple[half] > duple[third]


def test_track_analyzer_blocks_equal_whole(shared_audio, rng):
    y = librosa.load(shared_audio / "choice.ogg", sr=SR)[0]
    frames = []
    an = TrackAnalyzer(sr=SR, on_frames=frames.append)
    for block in random_blocks(y, rng, n_cuts=40):
        an.update(block)
    streamed, whole = an.finalize(), describe(y, sr=SR)
    assert all(f.ndim == 2 and f.shape[0] == 128 and f.shape[1] >= 1 for f in frames)
    np.testing.assert_array_equal(np.concatenate(frames, axis=1), log_mel(y, sr=SR))
    # exact except the chroma sum, whose float64 accumulation order follows the blocks
    assert streamed["key_confidence"] == pytest.approx(whole["key_confidence"], abs=1e-12)
    np.testing.assert_allclose(streamed["chroma"], whole["chroma"], rtol=1e-12)
    assert {k: v for k, v in streamed.items() if k not in ("key_confidence", "chroma")} == {
        k: v for k, v in whole.items() if k not in ("key_confidence", "chroma")
    }


def test_track_analyzer_memory_is_bounded():
    """Ten minutes (53 MB of float32) fed in 1 s blocks: traced peak measured 8 MB, mostly the chunked
    tempogram at finalize; the state kept between blocks grows ~1 kB per second of audio."""
    rng = np.random.default_rng(0)
    describe(np.zeros(SR, np.float32), sr=SR)  # one-time caches (numba, filterbanks) out of the count
    counted = []
    an = TrackAnalyzer(sr=SR, on_frames=lambda S: counted.append(S.shape[1]))
    tracemalloc.start()
    for _ in range(600):
        an.update((0.1 * rng.standard_normal(SR)).astype(np.float32))
    d = an.finalize()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert sum(counted) == 1 + 600 * SR // 512
    assert d["duration"] == 600.0 and np.isfinite(d["loudness"])
    assert peak < 12e6, f"peak {peak / 1e6:.1f} MB"


def test_track_analyzer_include_and_misuse():
    y = tone(440.0, 2.0)
    an = TrackAnalyzer(sr=SR, include=("loudness",))
    an.update(y)
    assert set(an.finalize()) == {"duration", "loudness"}
    with pytest.raises(ParameterError, match="finalize"):
        an.update(y)
    with pytest.raises(ParameterError, match="twice"):
        an.finalize()
    with pytest.raises(ParameterError, match="no samples"):
        TrackAnalyzer(sr=SR).finalize()
    with pytest.raises(ParameterError, match=r"unknown descriptor\(s\) \['bpm'\]"):
        TrackAnalyzer(include=("bpm",))
    with pytest.raises(ParameterError, match="on_frames must be callable"):
        TrackAnalyzer(on_frames=3)
    with pytest.raises(ParameterError, match="must be mono"):
        describe(np.zeros((2, SR), np.float32))
    with pytest.raises(ParameterError, match="NaN"):
        TrackAnalyzer().update(np.array([np.nan], np.float32))


# --- real recordings (loose sanity checks) -----------------------------------------------------
def test_real_recordings_sanity(shared_audio):
    brahms = librosa.load(shared_audio / "brahms.ogg", sr=SR)[0]
    d = describe(brahms, sr=SR)
    assert (d["key"], d["mode"]) == ("G", "minor")  # Hungarian Dance no. 5 (this recording: G minor)
    assert 70 < d["tempo"] < 180 and -35 < d["loudness"] < -10
    drums = librosa.load(shared_audio / "choice.ogg", sr=SR)[0]
    assert tempo(drums, sr=SR) == pytest.approx(136, rel=0.03)  # librosa.feature.tempo agrees (136.0)
