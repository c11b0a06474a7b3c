"""Reading through libsndfile (soundfile): opening with error mapping and header checks, frame spans,
reads that turn decoder failures and truncation into :class:`~mir.errors.DecodeError`.

Reads are strictly sequential: soundfile normally re-seeks after every read to keep its position,
and libsndfile's MP3 seek (mpg123) is not sample-accurate on some files, which corrupts block reads.
:class:`SequentialSoundFile` turns that bookkeeping off; MP3 offsets are reached by decoding and
discarding frames instead of seeking.

Truncated files: FLAC raises ``DecodeError`` (the decoder loses sync), and so does MP3 when it
decodes clearly fewer frames than its header declares. WAV/AIFF and Ogg (Vorbis, Opus) load the
frames present: libsndfile takes their length from what is on disk (the WAV data size trimmed to
the bytes there, the position of Ogg's last complete page), so the loss cannot be seen from here.
An Ogg cut before any page with a position has no frames and fails as empty audio;
:func:`mir.audio.header.truncation` reads their declared length to tell.

Decoder chatter: mpg123 (libsndfile's MP3 decoder) prints notes such as ``Note: Illegal
Audio-MPEG-Header`` straight to the process's standard error. Opening and reading capture file
descriptor 2 meanwhile: the notes join the message of a :class:`DecodeError` raised there, and are
logged at debug level otherwise (the capture is process-wide, so other threads' output to
standard error in those moments is captured too).
"""
from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
from typing import Iterator

import numpy as np
import soundfile as sf

from ..errors import ChannelLayoutError, DecodeError, MissingDecoderError, ParameterError
from . import ffmpeg
from .formats import FFMPEG_EXTENSIONS, NATIVE_EXTENSIONS, extension, format_from_extension
from .validate import check_layout

log = logging.getLogger(__name__)

# libsndfile error codes SFE_CHANNEL_COUNT_ZERO, SFE_CHANNEL_COUNT, SFE_BAD_CHANNEL_COUNT
_CHANNEL_ERRORS = frozenset({32, 33, 34})
# libsndfile reports MP3 data it cannot sync to as SFE_BAD_FILE, "File does not exist ..."
_MISREPORTED_UNRECOGNISED = 7
# formats whose libsndfile seek is not sample-accurate: offsets are decoded through instead
_DECODE_TO_SEEK = frozenset({"MP3"})
# MP3 lengths without a Xing header are estimates: only a larger shortfall counts as truncation
SHORT_READ_TOLERANCE = 0.01


class SequentialSoundFile(sf.SoundFile):
    """A SoundFile read front to back: soundfile skips its tell/seek around each read of a file
    that is not seekable. Explicit :meth:`seek` calls still work."""

    def seekable(self) -> bool:
        return False


@contextlib.contextmanager
def open_soundfile(path: str) -> Iterator[sf.SoundFile | None]:
    """Open ``path`` with libsndfile and check its header; yield ``None`` when ffmpeg must decode it.

    Raises the matching ``AudioError`` when neither libsndfile nor ffmpeg can take the file.
    """
    with decoder_notes(path):
        try:
            f = SequentialSoundFile(_os_name(path))
        except sf.SoundFileError as exc:
            _require_ffmpeg(path, exc)
            f = None
    if f is None:
        yield None
    else:
        with f:
            check_layout(path, f.samplerate, f.channels)
            yield f


def seek_span(f: sf.SoundFile, path: str, offset: float, duration: float | None) -> int:
    """Move ``f`` to ``offset`` seconds; return how many frames ``duration`` seconds spans there,
    clipped to the end of the file."""
    start = int(offset * f.samplerate)
    if start and start >= f.frames:
        end = f.frames / f.samplerate
        raise ParameterError(f"{path}: offset={offset} s is at or past the end of the audio ({end:.3f} s)")
    count = f.frames - start
    if duration is not None:
        count = min(count, int(duration * f.samplerate))
    if start and f.format in _DECODE_TO_SEEK:
        _skip(f, path, start)
    elif start:
        try:
            f.seek(start)
        except sf.SoundFileError as exc:
            raise DecodeError(path, f"cannot seek to {offset} s ({_reason(exc)})", "the file is corrupt") from None
    return count


def read(f: sf.SoundFile, path: str, frames: int, out: np.ndarray | None = None) -> np.ndarray:
    """Read up to ``frames`` frames as float32 [shape=(n, channels)], into ``out`` when given."""
    with decoder_notes(path) if f.format == "MP3" else contextlib.nullcontext():
        try:
            return f.read(frames, dtype="float32", always_2d=True, out=None if out is None else out[:frames])
        except sf.SoundFileError as exc:
            raise DecodeError(path, f"decoding failed ({_reason(exc)})", "the file is truncated or corrupt") from None


@contextlib.contextmanager
def decoder_notes(path: str) -> Iterator[None]:
    """Capture what C decoders write to file descriptor 2 inside the block (see the module docstring)."""
    with contextlib.suppress(Exception):  # sys.stderr may be replaced by an object without a flush
        sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:  # no standard error to capture
        yield
        return
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            try:
                yield
            finally:
                os.dup2(saved, 2)
                os.close(saved)
        except DecodeError as exc:
            notes = _notes(tmp)
            if notes:
                raise DecodeError(exc.path, f"{exc.problem}; decoder: {notes}", exc.hint) from None
            raise
        notes = _notes(tmp)
        if notes:
            log.debug("%s: decoder: %s", path, notes)


def _notes(tmp) -> str:
    tmp.seek(0)
    lines = tmp.read(4096).decode("utf-8", "replace").splitlines()
    return " / ".join(dict.fromkeys(line.strip() for line in lines if line.strip()))


def _os_name(path: str) -> str | bytes:
    """``path`` as libsndfile can open it: file names that are not valid UTF-8 (read by Python with
    surrogate escapes) go as the original bytes."""
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return os.fsencode(path)
    return path


def check_complete(path: str, got: int, expected: int) -> None:
    """Raise :class:`DecodeError` when clearly fewer frames decoded than the header declares."""
    if got < expected * (1 - SHORT_READ_TOLERANCE):
        raise DecodeError(path, f"truncated: decoded {got} of the {expected} frames the header declares",
                          "copy or download the file again")


def to_mono(block: np.ndarray) -> np.ndarray:
    """Channel mean of ``block`` [shape=(n, channels)] -> new float32 array [shape=(n,)]."""
    return block.mean(axis=1, dtype=np.float32) if block.shape[1] > 1 else block[:, 0].copy()


def _skip(f: sf.SoundFile, path: str, frames: int) -> None:
    """Decode and drop ``frames`` frames, in blocks of at most 2**16."""
    buf = np.empty((min(frames, 2**16), f.channels), dtype=np.float32)
    while frames > 0 and len(block := read(f, path, min(frames, len(buf)), out=buf)):
        frames -= len(block)


def _require_ffmpeg(path: str, exc: sf.SoundFileError) -> None:
    """Return when ffmpeg should decode a file libsndfile refused; otherwise raise the right error."""
    ext, fmt = extension(path), format_from_extension(path) or "extension-less"
    if getattr(exc, "code", None) in _CHANNEL_ERRORS:
        raise ChannelLayoutError(path, f"bad channel count in the header ({_reason(exc)})",
                                 "the header is corrupt") from None
    if ext in NATIVE_EXTENSIONS:
        raise DecodeError(path, f"cannot decode as {fmt} ({_reason(exc)})",
                          f"the file is corrupt, truncated or not really {fmt}") from None
    if ffmpeg.available():
        return
    if ext in FFMPEG_EXTENSIONS:
        raise MissingDecoderError(path, f"no decoder for {fmt} files", "install ffmpeg to decode them") from None
    raise DecodeError(path, f"not a recognised audio format ({_reason(exc)})",
                      "install ffmpeg to decode other formats") from None


def _reason(exc: sf.SoundFileError) -> str:
    if getattr(exc, "code", None) == _MISREPORTED_UNRECOGNISED:
        return "libsndfile: data not recognised"
    return f"libsndfile: {getattr(exc, 'error_string', None) or exc}".rstrip(".")
