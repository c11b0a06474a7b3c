"""Header inspection: :func:`probe` reads format, rate, channels and length without decoding."""
from __future__ import annotations

import os

from . import ffmpeg, native
from .formats import AudioInfo, format_from_soundfile
from .validate import check_file, check_layout


def probe(path: str | os.PathLike) -> AudioInfo:
    """Describe the audio file at ``path`` from its header (ffprobe for ffmpeg-only formats).

    Raises
    ------
    AudioNotFoundError : missing or unreadable file
    EmptyAudioError : zero-byte file
    DecodeError : not decodable audio; MissingDecoderError : needs ffmpeg, which is not installed
    SampleRateError : rate outside config ``min_file_rate..max_file_rate``
    ChannelLayoutError : 0 channels or more than config ``max_channels``
    """
    path = check_file(path)
    with native.open_soundfile(path) as f:
        if f is not None:
            return AudioInfo(path, format_from_soundfile(f.format, f.subtype), f.subtype,
                             f.samplerate, f.channels, f.frames, f.frames / f.samplerate)
    info = ffmpeg.probe(path)
    check_layout(path, info.sample_rate, info.channels)
    return info
