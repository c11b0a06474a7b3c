"""Engine configuration, read in one place.

Defaults live in the dataclasses below. A TOML file named by the ``MIR_CONFIG`` environment
variable may override any field, section by section::

    [analysis]
    sample_rate = 22050
    [runtime]
    workers = 4

Only :func:`get_config` reads the environment or the file; everything else receives values.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import tomllib
from dataclasses import dataclass, field

from .errors import ConfigError


@dataclass(frozen=True)
class AnalysisConfig:
    """Signal parameters shared by the whole engine (one analysis rate everywhere)."""

    sample_rate: int = 22050
    n_fft: int = 1024
    hop_length: int = 512
    n_mels: int = 128
    fmin: float = 0.0
    fmax: float | None = None  # None = sample_rate / 2
    min_duration: float = 1.0  # seconds; shorter audio raises TooShortError
    silence_peak: float = 1e-4  # peak |sample| at or below this counts as all-silent
    min_file_rate: int = 1000  # file sample rates outside [min, max] are rejected as absurd
    max_file_rate: int = 768000
    max_channels: int = 64
    stream_block_seconds: float = 30.0  # block length of the streaming reader

    def fingerprint(self) -> str:
        """Short hash of every field that changes feature values (used in cache stage versions)."""
        keys = ("sample_rate", "n_fft", "hop_length", "n_mels", "fmin", "fmax")
        blob = json.dumps({k: getattr(self, k) for k in keys}, sort_keys=True)
        return hashlib.blake2b(blob.encode(), digest_size=4).hexdigest()


@dataclass(frozen=True)
class RuntimeConfig:
    """How jobs run: worker processes, flush cadence of batch jobs."""

    workers: int = 0  # 0 = number of CPU cores
    flush_every: int = 64  # results per atomic part file in batch jobs
    flush_seconds: float = 20.0


@dataclass(frozen=True)
class Config:
    analysis: AnalysisConfig = field(default_factory=AnalysisConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)


def _apply(section_cls, values: dict, section: str):
    known = {f.name for f in dataclasses.fields(section_cls)}
    unknown = set(values) - known
    if unknown:
        raise ConfigError(
            f"unknown key(s) {sorted(unknown)} in section [{section}] of the config file; "
            f"known keys: {sorted(known)}"
        )
    return section_cls(**values)


def load_config(path: str | os.PathLike | None) -> Config:
    """Build a :class:`Config` from defaults overridden by the TOML file at ``path`` (if any)."""
    if path is None:
        return Config()
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config file {os.fspath(path)!r} (from MIR_CONFIG) does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {os.fspath(path)!r} is not valid TOML: {exc}") from None
    sections = {"analysis": AnalysisConfig, "runtime": RuntimeConfig}
    unknown = set(data) - set(sections)
    if unknown:
        raise ConfigError(f"unknown section(s) {sorted(unknown)} in {os.fspath(path)!r}; known: {sorted(sections)}")
    return Config(**{name: _apply(cls, data.get(name, {}), name) for name, cls in sections.items()})


@functools.lru_cache(maxsize=1)
def get_config() -> Config:
    """The process-wide configuration (defaults, or the file named by ``MIR_CONFIG``)."""
    return load_config(os.environ.get("MIR_CONFIG") or None)
