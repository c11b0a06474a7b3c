"""mir.audio: the only code in mir that opens audio files.

Decoding goes through libsndfile (wav, flac, ogg/vorbis, opus, mp3, aiff) and falls back to an
ffmpeg subprocess for other containers (m4a, aac, wma, ...). Every function returns or takes
float32 mono waveforms ``y`` [shape=(n,)] at a sample rate ``sr`` (default: the configured
analysis rate) and raises :class:`~mir.errors.AudioError` subclasses that name the file.

- :func:`load`, :func:`stream`: decode a whole file (mono, or two channels), or in bounded-memory blocks
- :func:`resample`: soxr HQ resampling, mono or [channels, n]
- :func:`probe`: header summary (:class:`AudioInfo`) without decoding
- :func:`truncation`: whether a WAV, AIFF or Ogg file holds less than its header declares
- :func:`check_samples`: validate a decoded signal
- :func:`save`: write audio atomically
- :func:`read_metadata`, :func:`write_metadata`: the file's text metadata (title, artist, …) through mutagen
"""
from .formats import SUPPORTED_EXTENSIONS, AudioInfo, is_audio_path
from .header import truncation
from .load import load, resample
from .probe import probe
from .save import save, trim_trailing_silence
from .stream import stream
from .metadata import read_metadata, write_metadata
from .validate import check_samples

__all__ = [
    "SUPPORTED_EXTENSIONS",
    "AudioInfo",
    "check_samples",
    "is_audio_path",
    "load",
    "probe",
    "read_metadata",
    "resample",
    "save",
    "stream",
    "trim_trailing_silence",
    "truncation",
    "write_metadata",
]
