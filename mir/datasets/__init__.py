"""Built-in datasets that any machine can build offline.

``mirdemo``: real compositions from the music21 corpus (Irish and Scottish dance tunes, Bach
chorales, Palestrina masses, Monteverdi madrigals, classical string quartets, German and
Chinese folk songs) and procedurally arranged pieces in ten popular styles (rock, metal, pop,
dance, ambient, jazz, hip-hop, blues, reggae, orchestral), rendered with General MIDI soundfonts
and produced with pedalboard, Slakh-style, with two-level genres (``folk/jig``, ``rock/rock``),
multi-label tags, splits per work and synthetic listening histories.

>>> from mir.datasets import build, load_labels
>>> info = build("mirdemo", "tiny", "/tmp/mirdemo-tiny")          # doctest: +SKIP
>>> labels = load_labels(info.labels_path)                        # doctest: +SKIP

Sizes: ``tiny`` (84 clips of 6 s, for tests), ``demo`` (714 clips of 30 s),
``full`` (9,660 clips of 30 s; progress bar, resumes when interrupted).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable

from ..errors import DatasetError, ParameterError
from ._build import DatasetInfo, info
from ._spec import GENRE_OF_LEAF, GENRES, SIZES, TAG_GROUPS, TAG_VOCABULARY, TOP_GENRES
from ..catalog.labels import COLUMNS as LABEL_COLUMNS
from ..catalog.labels import load_labels, split_tags, write_labels


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    description: str
    sizes: tuple[str, ...]
    builder: Callable[..., DatasetInfo]


def _build_mirdemo(size, out, **kw) -> DatasetInfo:
    from ._build import build as _b

    return _b(size, out, **kw)


#: every dataset :func:`build` knows, by name
REGISTRY: dict[str, DatasetSpec] = {
    "mirdemo": DatasetSpec(
        "mirdemo",
        "music21-corpus works and procedural pieces, several GM soundfonts, pedalboard production: "
        "21 two-level genres, 21 tags, listening histories",
        tuple(SIZES),
        _build_mirdemo,
    ),
}
DEFAULT_DATASET = "mirdemo"


def available() -> list[str]:
    """Names of the datasets :func:`build` can make."""
    return sorted(REGISTRY)


def get_spec(name: str) -> DatasetSpec:
    try:
        return REGISTRY[name]
    except KeyError:
        raise DatasetError(f"unknown dataset {name!r}; known datasets: {', '.join(available())}") from None


def build(name: str, size: str, out: str | os.PathLike, *, seed: int = 0, workers: int | None = None,
          progress: bool = True, cache_dir: str | os.PathLike | None = None, soundfonts=None) -> DatasetInfo:
    """Build dataset ``name`` at ``size`` into folder ``out``; resume or reuse what is there.

    Parameters
    ----------
    name : str
        A key of :data:`REGISTRY` (``"mirdemo"``).
    size : {"tiny", "demo", "full"}
    out : path
        Output folder (created). A folder holding another build (other name, size or seed)
        is refused with :class:`~mir.errors.DatasetError`.
    seed : int >= 0
        Same seed, same bytes: audio files, ``labels.csv`` and tables are reproducible.
    workers : int or None
        Worker processes; ``None`` reads ``runtime.workers`` from the config (0 = all cores),
        ``1`` builds in this process.
    progress : bool
        Show tqdm progress bars.
    cache_dir : path or None
        Where parsed scores are cached (default ``out/.build/scores``); share it between
        builds to parse each work once.
    soundfonts : sequence of str or None
        General MIDI soundfonts to draw from per clip (``TimGM6mb``, ``FluidR3_GM``,
        ``MuseScore_General``); None uses every installed one and warns once about a missing one.

    Returns
    -------
    DatasetInfo
        Counts, duration, size on disk, build time, paths of the tables.
    """
    spec = get_spec(name)
    if size not in spec.sizes:
        raise ParameterError(f"unknown size {size!r} for dataset {name!r}; choose one of {list(spec.sizes)}")
    kw = {} if soundfonts is None else {"soundfonts": tuple(soundfonts)}
    return spec.builder(size, out, seed=seed, workers=workers, progress=progress, cache_dir=cache_dir, **kw)


def build_demo(out: str | os.PathLike, *, size: str = "demo", seed: int = 0, workers: int | None = None,
               progress: bool = True, soundfonts=None) -> DatasetInfo:
    """The collection ``mir demo`` uses: builds it into ``out``, or reuses a finished build there."""
    return build(DEFAULT_DATASET, size, out, seed=seed, workers=workers, progress=progress, soundfonts=soundfonts)


__all__ = [
    "REGISTRY", "DEFAULT_DATASET", "DatasetInfo", "DatasetSpec", "GENRES", "GENRE_OF_LEAF", "SIZES", "TAG_GROUPS",
    "TAG_VOCABULARY", "TOP_GENRES",
    "LABEL_COLUMNS", "available", "build", "build_demo", "get_spec", "info", "load_labels", "split_tags", "write_labels",
]
