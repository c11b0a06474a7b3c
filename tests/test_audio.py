"""mir.audio: decoding, streaming, probing, validation, saving and tags on generated and real files."""
from __future__ import annotations

import math
import os
import tracemalloc
from pathlib import Path

import librosa
import numpy as np
import pytest
import soundfile as sf
from audio_helpers import (
    dominant_frequency,
    ffmpeg_calls,
    install_fake_ffmpeg,
    patch_wav_header,
    truncate_half,
    write_raw,
)
from helpers import tone
from mutagen.id3 import APIC, ID3

import mir.audio as audio
from mir.config import get_config
from mir.errors import (
    AudioError,
    AudioNotFoundError,
    ChannelLayoutError,
    DecodeError,
    EmptyAudioError,
    InvalidSamplesError,
    MirError,
    MissingDecoderError,
    ParameterError,
    SampleRateError,
    SilentAudioError,
    TooShortError,
)

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:audioread")  # librosa.load's import

# (extension, file rate, channels): every written format, mono and stereo, 8 / 44.1 / 48 kHz
FORMATS = [
    ("wav", 8000, 1),
    ("wav", 44100, 2),
    ("flac", 44100, 2),
    ("ogg", 48000, 2),
    ("opus", 48000, 1),
    ("mp3", 44100, 2),
    ("mp3", 8000, 1),
    ("aiff", 44100, 1),
]
TAG_FORMATS = ["wav", "flac", "ogg", "opus", "mp3", "aiff"]


def make(path: Path, *, sr: int = 22050, channels: int = 1, seconds: float = 2.0) -> Path:
    """Save a 440 Hz tone (channel c scaled by 1/(c+1)) with mir.audio.save."""
    y = tone(440.0, seconds, sr)
    audio.save(path, np.stack([y / (c + 1) for c in range(channels)]) if channels > 1 else y, sr)
    return path


def raised(excinfo, path: Path) -> str:
    """The message of a raised error, after checking it names the file."""
    message = str(excinfo.value)
    assert Path(path).name in message
    return message


# --- decoding every format -----------------------------------------------------------------------
@pytest.mark.parametrize("ext, rate, channels", FORMATS)
def test_formats_probe_load_stream(tmp_path, ext, rate, channels):
    path = make(tmp_path / f"tone.{ext}", sr=rate, channels=channels)
    info = audio.probe(path)
    assert (info.format, info.sample_rate, info.channels) == (ext, rate, channels)
    assert info.path == str(path) and info.duration == pytest.approx(2.0, abs=0.01)

    y = audio.load(path, sr=16000)
    assert y.dtype == np.float32 and y.ndim == 1
    assert y.size == math.ceil(info.frames * 16000 / rate)
    reference, _ = librosa.load(path, sr=16000, mono=True)
    assert np.max(np.abs(y - reference)) < 1e-6
    assert dominant_frequency(y, 16000) == pytest.approx(440, abs=2)

    blocks = list(audio.stream(path, sr=16000, block_seconds=0.3))
    assert len(blocks) > 3 and all(b.dtype == np.float32 for b in blocks)
    np.testing.assert_allclose(np.concatenate(blocks), y, atol=1e-6)


def test_lossless_load_keeps_samples(tmp_path):
    y = tone(440.0, 1.5, 44100)
    stereo = np.stack([y, 0.5 * y])
    audio.save(tmp_path / "s.flac", stereo, 44100)
    np.testing.assert_allclose(audio.load(tmp_path / "s.flac", sr=44100), 0.75 * y, atol=1e-4)  # channel mean


def test_opus_is_resampled_to_48k_on_save(tmp_path):
    path = make(tmp_path / "t.opus", sr=44100, channels=2)
    info = audio.probe(path)
    assert (info.format, info.subtype, info.sample_rate) == ("opus", "OPUS", 48000)
    assert info.duration == pytest.approx(2.0, abs=0.01)


def test_default_rate_is_config(tmp_path):
    path = make(tmp_path / "t.wav", sr=8000)
    assert audio.load(path).size == math.ceil(16000 * get_config().analysis.sample_rate / 8000)


def test_offset_and_duration_read_a_span(tmp_path):
    path = make(tmp_path / "t.wav", sr=8000, seconds=3.0)
    whole = audio.load(path, sr=8000)
    part = audio.load(path, sr=8000, offset=0.5, duration=1.25)
    np.testing.assert_array_equal(part, whole[4000:14000])
    reference, _ = librosa.load(path, sr=22050, offset=0.5, duration=1.25)
    span = audio.load(path, sr=22050, offset=0.5, duration=1.25)
    assert np.max(np.abs(span - reference)) < 1e-6
    streamed = np.concatenate(list(audio.stream(path, sr=22050, offset=0.5, duration=1.25, block_seconds=0.2)))
    np.testing.assert_allclose(streamed, span, atol=1e-6)
    assert audio.load(path, sr=8000, offset=2.0, duration=5.0).size == 8000  # clipped at the end


def test_mp3_offset_is_sample_accurate(tmp_path):
    """libsndfile's MP3 seek is not sample-accurate on such low-bitrate files: mir decodes through."""
    path = make(tmp_path / "t.mp3", sr=44100, channels=2, seconds=3.0)
    whole = audio.load(path, sr=44100)
    np.testing.assert_array_equal(audio.load(path, sr=44100, offset=0.5, duration=1.0), whole[22050:66150])
    streamed = np.concatenate(list(audio.stream(path, sr=44100, offset=1.0, block_seconds=0.25)))
    np.testing.assert_array_equal(streamed, whole[44100:])


@pytest.mark.parametrize("kwargs", [{"offset": -1.0}, {"offset": float("nan")}, {"duration": 0.0},
                                    {"sr": 0}, {"sr": 22050.5}, {"offset": 9.0}])
def test_bad_arguments(tmp_path, kwargs):
    path = make(tmp_path / "t.wav", sr=8000)
    with pytest.raises(ParameterError, match="|".join(kwargs)):
        audio.load(path, **kwargs)


# --- the real recordings -------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["trumpet", "robin"])
def test_real_recordings_match_librosa(shared_audio, name):
    path = shared_audio / f"{name}.ogg"
    info = audio.probe(path)
    assert (info.format, info.sample_rate, info.channels) == ("ogg", 22050, 1)
    y = audio.load(path, sr=22050)
    assert y.size / 22050 == pytest.approx(info.duration, abs=1e-9)
    for sr in (22050, 16000):
        reference, _ = librosa.load(path, sr=sr, mono=True)
        mine = audio.load(path, sr=sr)
        assert mine.shape == reference.shape and np.max(np.abs(mine - reference)) < 1e-6
    streamed = np.concatenate(list(audio.stream(path, sr=16000, block_seconds=1.0)))
    np.testing.assert_allclose(streamed, audio.load(path, sr=16000), atol=1e-6)


# --- streaming -----------------------------------------------------------------------------------
def test_stream_memory_is_bounded_by_block(tmp_path, rng):
    """20 minutes at 8 kHz decode to 106 MB at 22.05 kHz; streaming in 5 s blocks stays near 1.4 MB."""
    path, rate, minutes, block = tmp_path / "long.wav", 8000, 20, 5.0
    with sf.SoundFile(path, "w", rate, 1, subtype="PCM_16") as f:
        for _ in range(minutes * 6):
            f.write((0.1 * rng.standard_normal(10 * rate)).astype(np.float32))
    decoded_bytes = 4 * minutes * 60 * 22050
    bound = 4 * block * (rate * (1 + 2) + 2 * 22050)  # the stream() docstring's formula, C = 1
    tracemalloc.start()
    try:
        n = sum(b.size for b in audio.stream(path, sr=22050, block_seconds=block))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert n == minutes * 60 * 22050
    assert peak < 1.1 * bound < decoded_bytes / 50


def test_stream_raises_at_the_block_with_nan(tmp_path):
    y = tone(440.0, 3.0, 8000)
    y[20000:20010] = np.nan
    path = write_raw(tmp_path / "nan.wav", y, 8000)
    blocks = audio.stream(path, sr=8000, block_seconds=1.0)
    assert next(blocks).size == 8000 and next(blocks).size == 8000
    match = "10 samples in the block from sample 16000 .*first at sample 20000,"
    with pytest.raises(InvalidSamplesError, match=match) as excinfo:
        next(blocks)
    raised(excinfo, path)


@pytest.mark.parametrize("signal, error", [(np.zeros(16000, np.float32), SilentAudioError),
                                           (tone(440.0, 0.5, 8000), TooShortError)])
def test_stream_checks_extent_at_the_end(tmp_path, signal, error):
    path = write_raw(tmp_path / "x.wav", signal, 8000)
    with pytest.raises(error) as excinfo:
        list(audio.stream(path, sr=8000, block_seconds=0.2))
    raised(excinfo, path)
    assert len(list(audio.stream(path, sr=8000, check=False))) == 1


def test_stream_argument_errors_raise_at_the_call(tmp_path):
    with pytest.raises(AudioNotFoundError):
        audio.stream(tmp_path / "missing.wav")
    with pytest.raises(ParameterError, match="block_seconds"):
        audio.stream(make(tmp_path / "t.wav"), block_seconds=0)


# --- bad inputs ----------------------------------------------------------------------------------
def test_missing_file(tmp_path):
    path = tmp_path / "missing.flac"
    for read in (audio.load, audio.probe, audio.read_metadata):
        with pytest.raises(AudioNotFoundError, match="not found") as excinfo:
            read(path)
        raised(excinfo, path)


def test_directory_is_not_audio(tmp_path):
    folder = tmp_path / "album.wav"
    folder.mkdir()
    with pytest.raises(AudioNotFoundError, match="not a regular file"):
        audio.load(folder)


def test_zero_byte_file(tmp_path):
    path = tmp_path / "empty.wav"
    path.touch()
    for read in (audio.load, audio.probe):
        with pytest.raises(EmptyAudioError, match="0 bytes") as excinfo:
            read(path)
        raised(excinfo, path)


def test_header_only_file_is_empty(tmp_path):
    path = write_raw(tmp_path / "header.wav", np.zeros(0, np.float32), 8000)
    assert audio.probe(path).frames == 0
    with pytest.raises(EmptyAudioError, match="no audio samples") as excinfo:
        audio.load(path)
    raised(excinfo, path)


def test_text_renamed_to_mp3(tmp_path):
    path = tmp_path / "notes.mp3"
    path.write_text("not audio at all\n" * 200)
    for read in (audio.load, audio.probe, audio.read_metadata):
        with pytest.raises(DecodeError, match="mp3|tags") as excinfo:
            read(path)
        raised(excinfo, path)


@pytest.mark.parametrize("ext, rate", [("wav", 8000), ("opus", 48000)])
def test_truncated_wav_and_opus_load_the_frames_present(tmp_path, ext, rate):
    """libsndfile takes their length from what is on disk (WAV data size trimmed to the bytes
    present, Ogg's last page position), so the first part loads and the loss goes unnoticed."""
    path = make(tmp_path / f"cut.{ext}", sr=rate, seconds=3.0)
    whole = audio.load(path, sr=rate)
    truncate_half(path)
    part = audio.load(path, sr=rate, check=False)
    assert 0.3 * whole.size < part.size < 0.7 * whole.size
    assert audio.probe(path).frames == part.size
    np.testing.assert_allclose(part[: part.size - 1000], whole[: part.size - 1000], atol=1e-4)


@pytest.mark.parametrize("ext, error, match", [
    ("flac", DecodeError, "decoding failed"),  # the decoder loses sync
    ("mp3", DecodeError, "truncated: decoded"),  # fewer frames than the Xing header declares
    ("ogg", EmptyAudioError, "truncated"),  # no complete page with a position: no frames at all
])
def test_truncated_files_raise(tmp_path, ext, error, match):
    path = truncate_half(make(tmp_path / f"cut.{ext}", sr=44100, channels=2, seconds=3.0))
    for read in (audio.load, lambda p: list(audio.stream(p))):
        with pytest.raises(error, match=match) as excinfo:
            read(path)
        raised(excinfo, path)


def test_nan_samples(tmp_path):
    y = tone(440.0, 2.0, 8000)
    y[[100, 200, 300]] = [np.nan, np.inf, -np.inf]
    path = write_raw(tmp_path / "nan.wav", y, 8000)
    match = "3 of 16000 samples are NaN or infinite .first at sample 100,"
    with pytest.raises(InvalidSamplesError, match=match) as excinfo:
        audio.load(path, sr=8000)
    raised(excinfo, path)
    assert np.isnan(audio.load(path, sr=8000, check=False)[100])


def test_silent_and_short_files(tmp_path):
    silent = write_raw(tmp_path / "silent.flac", np.zeros(16000), 8000, subtype="PCM_16")
    with pytest.raises(SilentAudioError, match="silent") as excinfo:
        audio.load(silent)
    raised(excinfo, silent)
    short = make(tmp_path / "short.wav", sr=8000, seconds=0.25)
    with pytest.raises(TooShortError, match="0.250 s .* shorter than the minimum") as excinfo:
        audio.load(short, sr=8000)
    raised(excinfo, short)


@pytest.mark.parametrize("rate", [1, 5_000_000])
def test_absurd_sample_rate(tmp_path, rate):
    path = patch_wav_header(make(tmp_path / f"rate{rate}.wav", sr=8000), rate=rate)
    for read in (audio.probe, audio.load):
        with pytest.raises(SampleRateError, match=f"sample rate {rate} Hz") as excinfo:
            read(path)
        raised(excinfo, path)


def test_bad_channel_counts(tmp_path):
    zero = patch_wav_header(make(tmp_path / "zero.wav", sr=8000), channels=0)
    with pytest.raises(ChannelLayoutError, match="Channel count is zero") as excinfo:
        audio.probe(zero)
    raised(excinfo, zero)
    many = write_raw(tmp_path / "many.wav", np.full((800, 65), 0.1, np.float32), 8000)
    with pytest.raises(ChannelLayoutError, match="65 channels") as excinfo:
        audio.load(many)
    raised(excinfo, many)


def test_m4a_without_ffmpeg(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    path = tmp_path / "song.m4a"
    path.write_bytes(b"\x00\x00\x00\x20ftypM4A " + bytes(200))
    for read in (audio.load, audio.probe, lambda p: list(audio.stream(p))):
        with pytest.raises(MissingDecoderError, match="no decoder for m4a files .install ffmpeg") as excinfo:
            read(path)
        raised(excinfo, path)


def test_unknown_format_without_ffmpeg(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    path = tmp_path / "readme.txt"
    path.write_text("hello\n" * 100)
    with pytest.raises(DecodeError, match="not a recognised audio format") as excinfo:
        audio.load(path)
    raised(excinfo, path)


BAD_FILES = {
    "zero.wav": lambda p: p.touch(),
    "text.mp3": lambda p: p.write_text("x" * 5000),
    "text.flac": lambda p: p.write_text("x" * 5000),
    "cut.flac": lambda p: truncate_half(make(p, seconds=3.0)),
    "cut.mp3": lambda p: truncate_half(make(p, seconds=3.0)),
    "cut.ogg": lambda p: truncate_half(make(p, seconds=3.0)),
    "cut.opus": lambda p: truncate_half(make(p, seconds=3.0)),
    "rate.wav": lambda p: patch_wav_header(make(p), rate=1),
    "junk.m4a": lambda p: p.write_bytes(bytes(300)),
}


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_only_mir_errors_escape(tmp_path, monkeypatch, name):
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    path = tmp_path / name
    BAD_FILES[name](path)
    readers = [audio.probe, audio.load, lambda p: list(audio.stream(p)), audio.read_metadata,
               lambda p: audio.write_metadata(p, {"title": "x"})]
    for read in readers:
        try:
            read(path)
        except MirError as exc:
            assert not isinstance(exc, AudioError) or exc.path == str(path)


# --- ffmpeg fallback (fake executables) ----------------------------------------------------------
def test_ffmpeg_fallback(tmp_path, monkeypatch):
    log = install_fake_ffmpeg(tmp_path / "bin", monkeypatch)
    path = tmp_path / "song.m4a"
    path.write_bytes(bytes(300))  # libsndfile refuses it, so ffmpeg decodes
    y = audio.load(path, sr=16000)
    assert y.dtype == np.float32 and y.size == 32000
    assert dominant_frequency(y, 16000) == pytest.approx(440, abs=2)
    args = ffmpeg_calls(log)[-1]
    assert args[args.index("-i") + 1] == f"file:{path}" and args[args.index("-ar") + 1] == "16000"
    assert args[args.index("-ac") + 1] == "1" and "f32le" in args

    blocks = list(audio.stream(path, sr=16000, block_seconds=0.5))
    assert [b.size for b in blocks] == [8000] * 4
    np.testing.assert_array_equal(np.concatenate(blocks), y)

    span = audio.load(path, sr=8000, offset=0.5, duration=1.5)
    assert span.size == 12000
    args = ffmpeg_calls(log)[-1]
    assert args[args.index("-ss") + 1] == "0.5" and args[args.index("-t") + 1] == "1.5"

    info = audio.probe(path)
    assert (info.format, info.subtype, info.sample_rate, info.channels) == ("m4a", "AAC", 44100, 2)
    assert info.frames == 88200 and info.duration == 2.0


def test_ffmpeg_failure_is_a_decode_error(tmp_path, monkeypatch):
    install_fake_ffmpeg(tmp_path / "bin", monkeypatch, fail=True)
    path = tmp_path / "broken.wma"
    path.write_bytes(bytes(300))
    for read in (audio.load, lambda p: list(audio.stream(p))):
        with pytest.raises(DecodeError, match="ffmpeg failed: Invalid data found") as excinfo:
            read(path)
        raised(excinfo, path)


# --- check_samples -------------------------------------------------------------------------------
def test_check_samples_accepts_and_returns(rng):
    y = (0.1 * rng.standard_normal(22050)).astype(np.float32)
    assert audio.check_samples(y, sr=22050) is y


@pytest.mark.parametrize("y, error, match", [
    (np.zeros(0, np.float32), EmptyAudioError, "no audio samples"),
    (np.array([0.1, np.nan] * 11025, np.float32), InvalidSamplesError, "11025 of 22050 .*first at sample 1,"),
    (np.full(1000, 0.5, np.float32), TooShortError, "shorter than the minimum 1 s"),
    (np.full(22050, 1e-5, np.float32), SilentAudioError, "peak 1e-05"),
    (np.ones(22050, np.int16), ParameterError, "floating-point"),
    (np.ones((2, 22050), np.float32), ParameterError, "ndim=2"),
])
def test_check_samples_rejects(y, error, match):
    with pytest.raises(error, match=match) as excinfo:
        audio.check_samples(y, sr=22050, path="song.wav")
    raised(excinfo, Path("song.wav"))


def test_check_samples_thresholds_and_in_memory_name():
    y = np.full(22050, 1e-3, np.float32)
    with pytest.raises(SilentAudioError, match="<in-memory audio>"):
        audio.check_samples(y, sr=22050, silence_peak=1e-2)
    with pytest.raises(TooShortError):
        audio.check_samples(y, sr=22050, min_duration=2.0)
    assert audio.check_samples(y[:100], sr=22050, min_duration=0.001) is not None


# --- save ----------------------------------------------------------------------------------------
def test_save_format_argument_and_atomicity(tmp_path):
    y = tone(440.0, 1.0, 8000)
    audio.save(tmp_path / "data.bin", y, 8000, format="flac", subtype="PCM_24")
    assert (sf.info(tmp_path / "data.bin").format, sf.info(tmp_path / "data.bin").subtype) == ("FLAC", "PCM_24")
    target = make(tmp_path / "keep.mp3", sr=8000)
    before = target.read_bytes()
    with pytest.raises(ParameterError, match="cannot write mp3 .*sr=7000"):
        audio.save(target, y, 7000)  # not an MPEG rate: the old file stays intact
    assert target.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.bin", "keep.mp3"]  # no temp files left


@pytest.mark.parametrize("kwargs, error, match", [
    ({"format": "m4a"}, ParameterError, "cannot write format 'm4a'"),
    ({"y": np.ones(100, np.int16)}, ParameterError, "floating-point"),
    ({"y": np.array([0.0, np.nan])}, InvalidSamplesError, "NaN"),
    ({"sr": -1}, ParameterError, "sr must be"),
])
def test_save_rejects(tmp_path, kwargs, error, match):
    args = {"y": tone(440.0, 0.5, 8000), "sr": 8000} | kwargs
    with pytest.raises(error, match=match):
        audio.save(tmp_path / "out.wav", args.pop("y"), args.pop("sr"), **args)
    assert not any(tmp_path.iterdir())


# --- tags ----------------------------------------------------------------------------------------
def decoded(path: Path) -> np.ndarray:
    return sf.read(path, dtype="float32", always_2d=True)[0]


@pytest.mark.parametrize("ext", TAG_FORMATS)
def test_tags_round_trip_keeps_audio(tmp_path, ext):
    path = make(tmp_path / f"song.{ext}", sr=48000 if ext == "opus" else 44100, channels=2)
    samples = decoded(path)
    assert {k: audio.read_metadata(path)[k] for k in ("title", "artist", "album", "genre", "year")} == dict.fromkeys(
        ("title", "artist", "album", "genre", "year"))

    new = {"title": "Hungarian Dance", "artist": "Brahms · Strings", "album": "Dances", "genre": "Classical",
           "year": 1869, "comment": "public domain", "mood": "lively"}
    assert audio.write_metadata(path, new, dry_run=True)["title"] == (None, "Hungarian Dance")
    assert audio.read_metadata(path)["title"] is None  # dry run wrote nothing
    changes = audio.write_metadata(path, new)
    assert changes["date"] == (None, "1869") and changes["mood"] == (None, "lively")

    tags = audio.read_metadata(path)
    assert tags["artist"] == "Brahms · Strings" and tags["year"] == 1869 and tags["date"] == "1869"
    assert tags["comment"] == "public domain" and tags["mood"] == "lively"
    np.testing.assert_array_equal(decoded(path), samples)  # audio bit-identical

    assert audio.write_metadata(path, new) == {}  # nothing left to change
    assert audio.write_metadata(path, {"mood": None, "title": "Dance 5"}) == {
        "mood": ("lively", None), "title": ("Hungarian Dance", "Dance 5")}
    tags = audio.read_metadata(path)
    assert "mood" not in tags and tags["title"] == "Dance 5"
    np.testing.assert_array_equal(decoded(path), samples)
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temp files left


def test_tags_skip_cover_art(tmp_path):
    path = make(tmp_path / "song.mp3")
    cover = ID3()
    cover.add(APIC(encoding=3, mime="image/png", type=3, desc="cover", data=b"\x89PNG fake"))
    cover.save(path)
    assert audio.write_metadata(path, {"title": "With cover"}) == {"title": (None, "With cover")}
    assert audio.read_metadata(path)["title"] == "With cover"
    assert ID3(path).getall("APIC")[0].data == b"\x89PNG fake"


def test_write_metadata_failure_leaves_file_intact(tmp_path, monkeypatch):
    path = make(tmp_path / "song.flac")
    before = path.read_bytes()

    def crash(*args):
        raise KeyboardInterrupt  # a kill half-way through tagging

    monkeypatch.setattr("mir.audio.metadata._set", crash)
    with pytest.raises(KeyboardInterrupt):
        audio.write_metadata(path, {"title": "x"})
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["song.flac"]


@pytest.mark.parametrize("tags, match", [
    (["title"], "must be a dict"),
    ({"bad=key": "x"}, "bad tag key"),
    ({"title": 1.5}, "must be str, int or None"),
    ({"year": 2000, "date": "2001"}, "given twice"),
])
def test_write_metadata_rejects(tmp_path, tags, match):
    path = make(tmp_path / "song.ogg")
    with pytest.raises(ParameterError, match=match) as excinfo:
        audio.write_metadata(path, tags)
    raised(excinfo, path)


# --- extensions ----------------------------------------------------------------------------------
def test_supported_extensions():
    expected = {".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".m4a", ".aac", ".aiff", ".aif", ".wma"}
    assert expected <= audio.SUPPORTED_EXTENSIONS
    assert all(ext == ext.lower() and ext.startswith(".") for ext in audio.SUPPORTED_EXTENSIONS)
    assert audio.is_audio_path("A/B/Song.MP3") and audio.is_audio_path(Path("x.flac"))
    assert not audio.is_audio_path("notes.txt") and not audio.is_audio_path("mp3")


# --- lengths the header declares, decoder notes, file names that are not UTF-8 (issue 13) ----------
@pytest.mark.parametrize("fmt,subtype", [("WAV", "PCM_16"), ("WAV", "FLOAT"), ("AIFF", "PCM_24"),
                                         ("OGG", "VORBIS"), ("OGG", "OPUS")])
def test_truncation_compares_the_header_with_the_bytes(tmp_path, fmt, subtype):
    sr = 48000 if subtype == "OPUS" else 22050
    ext = {"WAV": "wav", "AIFF": "aiff"}.get(fmt, "opus" if subtype == "OPUS" else "ogg")
    whole = tmp_path / f"whole.{ext}"
    sf.write(whole, tone(seconds=3.0, sr=sr), sr, format=fmt, subtype=subtype)
    info = audio.probe(whole)
    assert audio.truncation(whole, info.format, info.frames) is None
    data = whole.read_bytes()
    for keep in (0.5, 0.9):
        cut = tmp_path / f"cut-{keep}.{ext}"
        cut.write_bytes(data[:int(len(data) * keep)])
        info = audio.probe(cut)
        message = audio.truncation(cut, info.format, info.frames)
        if fmt == "OGG":
            assert message in ("the file does not end with a complete Ogg page",
                               "the Ogg stream stops before its end-of-stream page")
        else:
            assert message == f"the header declares {3 * sr} frames, the file holds {info.frames} " \
                              f"({100 * info.frames / (3 * sr):.0f}%)"


def test_truncation_ignores_streamed_wavs_and_other_formats(tmp_path):
    path = tmp_path / "streamed.wav"
    sf.write(path, tone(), 22050, subtype="PCM_16")
    data = bytearray(path.read_bytes())
    data[40:44] = b"\xff\xff\xff\xff"  # data size unknown, as a streaming writer leaves it
    path.write_bytes(bytes(data))
    assert audio.truncation(path, "wav", 100) is None
    assert audio.truncation(path, "flac", 100) is None
    assert audio.truncation(tmp_path / "missing.wav", "wav", 100) is None


def test_decoder_notes_go_into_the_error_not_the_terminal(tmp_path, capfd):
    bad = tmp_path / "bad.mp3"
    bad.write_bytes(b"\0" * 64 + b"this is not mpeg audio " * 50)
    with pytest.raises(DecodeError, match="decoder: .*(Illegal Audio-MPEG-Header|Cannot read next header)"):
        audio.probe(bad)
    assert capfd.readouterr().err == ""


def test_file_names_that_are_not_utf8_load(tmp_path):
    raw = os.fsencode(tmp_path) + b"/caf\xe9.wav"
    with open(raw, "wb") as fh:
        sf.write(fh, tone(), 22050, format="WAV")
    name = os.fsdecode(raw)  # str with a surrogate escape, as os.listdir returns it
    assert audio.probe(name).frames == 44100
    assert audio.load(name).size == 44100


def test_an_ogg_cut_at_a_page_boundary_lacks_its_end_of_stream_page(tmp_path, rng):
    whole = tmp_path / "whole.ogg"
    sf.write(whole, 0.3 * rng.standard_normal(5 * 22050).astype(np.float32), 22050, format="OGG", subtype="VORBIS")
    data = whole.read_bytes()
    cut = tmp_path / "cut.ogg"
    cut.write_bytes(data[:data.rfind(b"OggS")])  # every page whole, the last one gone
    info = audio.probe(cut)
    assert 0 < info.frames < 5 * 22050
    assert audio.truncation(cut, "ogg", info.frames) == "the Ogg stream stops before its end-of-stream page"
