"""Audio file extensions and format names (which files mir treats as audio, who decodes them),
and :class:`AudioInfo`, the header summary :func:`mir.audio.probe` returns."""
from __future__ import annotations

import os
from dataclasses import dataclass

# decoded by libsndfile (through soundfile) with no external program
NATIVE_EXTENSIONS = frozenset({".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aiff", ".aif"})
# decoded through an ffmpeg subprocess when ffmpeg is installed
FFMPEG_EXTENSIONS = frozenset({".m4a", ".aac", ".wma", ".ape", ".wv"})
SUPPORTED_EXTENSIONS = NATIVE_EXTENSIONS | FFMPEG_EXTENSIONS

# format name (as in AudioInfo.format and save(format=...)) -> (soundfile format, default subtype)
WRITE_FORMATS = {
    "wav": ("WAV", None),
    "flac": ("FLAC", None),
    "ogg": ("OGG", "VORBIS"),
    "opus": ("OGG", "OPUS"),
    "mp3": ("MP3", "MPEG_LAYER_III"),
    "aiff": ("AIFF", None),
}
_EXTENSION_FORMATS = {".oga": "ogg", ".aif": "aiff"}
_SOUNDFILE_ALIASES = {"wavex": "wav", "rf64": "wav"}


def extension(path: str | os.PathLike) -> str:
    """Lower-case extension of ``path`` including the dot (``""`` when there is none)."""
    return os.path.splitext(os.fspath(path))[1].lower()


def is_audio_path(path: str | os.PathLike) -> bool:
    """True when the extension of ``path`` is one of :data:`SUPPORTED_EXTENSIONS` (no file access)."""
    return extension(path) in SUPPORTED_EXTENSIONS


def format_from_extension(path: str | os.PathLike) -> str:
    """mir format name for the extension of ``path`` (``"song.oga"`` -> ``"ogg"``)."""
    ext = extension(path)
    return _EXTENSION_FORMATS.get(ext, ext.lstrip("."))


def format_from_soundfile(sf_format: str, subtype: str) -> str:
    """mir format name for a soundfile (format, subtype) pair: Opus is ``"opus"``, not ``"ogg"``."""
    if sf_format == "OGG" and subtype == "OPUS":
        return "opus"
    name = sf_format.lower()
    return _SOUNDFILE_ALIASES.get(name, name)


@dataclass(frozen=True)
class AudioInfo:
    """What an audio file's header says, read without decoding the samples.

    ``format`` is a mir format name (``"wav"``, ``"flac"``, ``"ogg"``, ``"opus"``, ``"mp3"``, ...),
    ``subtype`` the codec or sample encoding (``"PCM_16"``, ``"VORBIS"``, ...), ``frames`` the number
    of samples per channel and ``duration`` = ``frames / sample_rate`` seconds. MP3 lengths are the
    decoder's estimate when the file has no Xing/LAME header.
    """

    path: str
    format: str
    subtype: str
    sample_rate: int
    channels: int
    frames: int
    duration: float
