"""Block-wise decoding: :func:`stream` yields float32 mono blocks at the analysis rate in bounded memory."""
from __future__ import annotations

import math
import os
from typing import Iterable, Iterator

import numpy as np
import soundfile as sf
import soxr

from ..config import get_config
from ..errors import ParameterError
from . import ffmpeg, native
from .load import RESAMPLE_QUALITY, fix_length, target_rate
from .validate import check_extent, check_file, check_finite, check_span, is_seconds


def stream(
    path: str | os.PathLike,
    *,
    sr: int | None = None,
    block_seconds: float | None = None,
    offset: float = 0.0,
    duration: float | None = None,
    check: bool = True,
) -> Iterator[np.ndarray]:
    """Decode ``path`` block by block to float32 mono at ``sr``.

    The blocks concatenate to :func:`load` of the same arguments (same downmix, same soxr HQ filter
    run as a stream, same length). Each block is a new array the caller may keep.

    Memory is bounded by the block size, independent of the file's length. With ``B`` =
    ``block_seconds``, file rate ``R`` and ``C`` channels, at most a reused read buffer
    (``4·B·R·C`` bytes), two mono mixes (``4·B·R`` each) and two output blocks (``4·B·sr`` each:
    the one the caller holds and the next) are alive, plus soxr's and libsndfile's fixed-size
    state: about ``4·B·(R·(C + 2) + 2·sr)`` bytes, 4.4 MB for stereo 44.1 kHz read as 22.05 kHz in
    5 s blocks. The ffmpeg fallback holds about two blocks of ``4·B·sr`` bytes.

    Parameters
    ----------
    path : audio file
    sr : target sample rate in Hz; ``None`` = ``get_config().analysis.sample_rate``
    block_seconds : length of each block in seconds of the file (the first and last may differ
        slightly after resampling); ``None`` = ``get_config().analysis.stream_block_seconds``
    offset, duration : seconds to skip, seconds to read (``None`` = to the end)
    check : validate while streaming: NaN/inf raise at the block holding them; empty, too short or
        silent audio raises after the last block

    Yields
    ------
    y : np.ndarray [shape=(n,), dtype=float32]

    Bad arguments and missing or empty files raise at the call; decoding errors while iterating.
    """
    sr = target_rate(sr)
    block_seconds = get_config().analysis.stream_block_seconds if block_seconds is None else block_seconds
    if not (is_seconds(block_seconds) and block_seconds > 0):
        raise ParameterError(f"block_seconds must be a positive number of seconds, got {block_seconds!r}")
    check_span(offset, duration)
    path = check_file(path)
    blocks = _decode(path, sr, block_seconds, offset, duration)
    return _checked(blocks, sr=sr, path=path) if check else blocks


def _decode(path: str, sr: int, block_seconds: float, offset: float,
            duration: float | None) -> Iterator[np.ndarray]:
    with native.open_soundfile(path) as f:
        if f is None:
            yield from ffmpeg.blocks(path, sr=sr, block_frames=max(1, round(block_seconds * sr)),
                                     offset=offset, duration=duration)
        else:
            frames = max(1, round(block_seconds * f.samplerate))
            yield from _resampled(_read_blocks(f, path, frames, offset, duration), f.samplerate, sr)


def _read_blocks(f: sf.SoundFile, path: str, block_frames: int, offset: float,
                 duration: float | None) -> Iterator[np.ndarray]:
    """Mono blocks at the file's rate, read into one reused buffer."""
    count = native.seek_span(f, path, offset, duration)
    buf = np.empty((min(block_frames, count), f.channels), dtype=np.float32)
    done = 0
    while done < count:
        block = native.read(f, path, min(len(buf), count - done), out=buf)
        if not len(block):
            break
        done += len(block)
        yield native.to_mono(block)
    native.check_complete(path, done, count)


def _resampled(blocks: Iterable[np.ndarray], orig_sr: int, sr: int) -> Iterator[np.ndarray]:
    """Resample a block sequence as one continuous signal; the total length is ``ceil(n * sr / orig_sr)``."""
    if orig_sr == sr:
        yield from blocks
        return
    resampler = soxr.ResampleStream(orig_sr, sr, 1, dtype="float32", quality=RESAMPLE_QUALITY)
    n_in = n_out = 0
    for y in blocks:
        out = resampler.resample_chunk(y)
        n_in, n_out = n_in + y.size, n_out + out.size
        if out.size:
            yield out
    tail = resampler.resample_chunk(np.zeros(0, dtype=np.float32), last=True)
    tail = fix_length(tail, max(0, math.ceil(n_in * sr / orig_sr) - n_out))
    if tail.size:
        yield tail


def _checked(blocks: Iterator[np.ndarray], *, sr: int, path: str) -> Iterator[np.ndarray]:
    """Pass blocks through, raising on NaN/inf at once and on empty/short/silent audio at the end."""
    n, peak = 0, 0.0
    for y in blocks:
        check_finite(y, sr=sr, path=path, start=n)
        n += y.size
        peak = max(peak, float(y.max()), -float(y.min()))
        yield y
    check_extent(n, peak, sr=sr, path=path)
