"""One exception hierarchy for mir.

Every error names the offending file or value and, where it can, what to do about it.
Catch :class:`MirError` to handle anything mir raises on purpose.
"""
from __future__ import annotations

import os


class MirError(Exception):
    """Base class of every error mir raises on purpose."""


class ParameterError(MirError, ValueError):
    """A function or command received a bad value (names the parameter and the value)."""


class ConfigError(MirError):
    """The configuration file or an environment override is malformed."""


# --- audio -----------------------------------------------------------------------------------
class AudioError(MirError):
    """A problem with one audio file; ``path`` names it (or ``None`` for in-memory audio)."""

    def __init__(self, path: str | os.PathLike | None, problem: str, hint: str = ""):
        self.path = None if path is None else os.fspath(path)
        self.problem = problem
        self.hint = hint
        where = self.path if self.path is not None else "<in-memory audio>"
        msg = f"{where}: {problem}"
        if hint:
            msg += f" ({hint})"
        super().__init__(msg)

    def __reduce__(self):  # keep pickling (process pools, Dask) working with the custom __init__
        return (self.__class__, (self.path, self.problem, self.hint))


class AudioNotFoundError(AudioError, FileNotFoundError):
    """The file does not exist or cannot be read."""


class DecodeError(AudioError):
    """The file exists but its contents cannot be decoded (corrupt, truncated, wrong extension)."""


class MissingDecoderError(AudioError):
    """No installed decoder handles this format (e.g. m4a without ffmpeg)."""


class EmptyAudioError(AudioError):
    """The file holds no samples at all."""


class TooShortError(AudioError):
    """The audio is shorter than the minimum the analysis needs."""


class SilentAudioError(AudioError):
    """Every sample is (near) zero."""


class InvalidSamplesError(AudioError):
    """Samples contain NaN or infinity."""


class ChannelLayoutError(AudioError):
    """The channel count is zero or beyond what mir downmixes."""


class SampleRateError(AudioError):
    """The sample rate is absurd (too low or too high to be real audio)."""


# --- catalogue, datasets, models --------------------------------------------------------------
class CatalogError(MirError):
    """A library directory is missing, malformed, or was written by an incompatible version."""


class TrackNotFoundError(CatalogError, KeyError):
    """A track id or path is not in the library."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class LabelError(MirError):
    """A labels file is malformed (wrong columns, unknown tracks, empty label sets)."""


class DatasetError(MirError):
    """Building a dataset failed (unknown name or size, rendering problem)."""


class ModelError(MirError):
    """A model checkpoint is missing, corrupt or incompatible."""
