"""The General MIDI soundfonts the collection is rendered with, and one loaded synthesiser per font.

``TimGM6mb`` ships in the ``pretty_midi`` wheel and is always there. Debian's ``fluid-soundfont-gm``
(FluidR3_GM.sf2) and ``musescore-general-soundfont`` (MuseScore_General_Full.sf3, Ogg-compressed
samples, which ``tinysoundfont`` decodes) are used when installed. A build draws one of the fonts
it was given per clip (seeded) and records the set in its manifest and resume state.

Loading FluidR3 takes about 3 s and MuseScore General about 16 s (and 1.2 GB of memory for the
decoded samples), so each process loads a font once and resets the synthesiser before every clip:
the output does not depend on which clips the process rendered before.
"""
from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass
from pathlib import Path

from ..errors import DatasetError
from ._spec import SAMPLE_RATE


@dataclass(frozen=True)
class Soundfont:
    name: str
    paths: tuple[str, ...]  # candidate files, first existing wins
    package: str  # where it comes from: a pip or Debian package


#: every font a build may use, in draw order
SOUNDFONTS: tuple[Soundfont, ...] = (
    Soundfont("TimGM6mb", (), "pretty_midi (pip)"),
    Soundfont("FluidR3_GM", ("/usr/share/sounds/sf2/FluidR3_GM.sf2",), "fluid-soundfont-gm (Debian)"),
    Soundfont("MuseScore_General", ("/usr/share/sounds/sf3/MuseScore_General_Full.sf3",
                                    "/usr/share/sounds/sf3/MuseScore_General.sf3"), "musescore-general-soundfont (Debian)"),
)
BY_NAME = {s.name: s for s in SOUNDFONTS}
DEFAULT = "TimGM6mb"


class MissingSoundfontWarning(UserWarning):
    """A Debian soundfont is not installed; the build renders with fewer fonts."""


def path_of(name: str) -> Path | None:
    """The font file of ``name``, or None when it is not installed."""
    if name not in BY_NAME:
        raise DatasetError(f"unknown soundfont {name!r}; known: {', '.join(BY_NAME)}")
    if name == DEFAULT:
        try:
            import pretty_midi
        except ImportError as exc:  # pragma: no cover
            raise DatasetError("rendering needs the pretty_midi package, whose wheel ships the TimGM6mb soundfont") from exc
        path = Path(pretty_midi.__file__).resolve().parent / "TimGM6mb.sf2"
        if not path.is_file():
            raise DatasetError(f"GM soundfont not found at {path}; reinstall pretty_midi")
        return path
    return next((Path(p) for p in BY_NAME[name].paths if Path(p).is_file()), None)


def resolve(names=None, *, warn: bool = True) -> tuple[str, ...]:
    """The fonts a build uses: ``names`` (each must be installed), or every installed one.

    Without ``names``, a missing Debian font is left out with one :class:`MissingSoundfontWarning`
    naming the package to install.
    """
    if names is not None:
        names = tuple(dict.fromkeys(names))
        if not names:
            raise DatasetError("no soundfont given; name at least one of " + ", ".join(BY_NAME))
        for n in names:
            if n not in BY_NAME:
                raise DatasetError(f"unknown soundfont {n!r}; known: {', '.join(BY_NAME)}")
            if path_of(n) is None:
                raise DatasetError(f"soundfont {n} is not installed; apt-get install {BY_NAME[n].package.split()[0]}")
        return names
    found = tuple(s.name for s in SOUNDFONTS if path_of(s.name) is not None)
    missing = [s for s in SOUNDFONTS if s.name not in found]
    if missing and warn:
        warnings.warn(
            "rendering with " + ", ".join(found) + " only: " + "; ".join(
                f"{s.name} is not installed (apt-get install -y {s.package.split()[0]})" for s in missing)
            + ". The collection records which soundfonts it used.", MissingSoundfontWarning, stacklevel=3)
    return found


@functools.lru_cache(maxsize=None)
def _loaded(name: str):
    try:
        from tinysoundfont.synth import Synth
    except ImportError as exc:
        raise DatasetError("rendering needs tinysoundfont (pip install --no-deps tinysoundfont)") from exc
    path = path_of(name)
    if path is None:
        raise DatasetError(f"soundfont {name} is not installed; apt-get install {BY_NAME[name].package.split()[0]}")
    synth = Synth(gain=0.0, samplerate=SAMPLE_RATE)
    sfid = synth.sfload(str(path), max_voices=256)
    return synth, sfid


def synth_for(name: str):
    """``(synth, sfid)`` for font ``name``: loaded once per process, reset to its initial state."""
    synth, sfid = _loaded(name)
    synth.soundfonts[sfid].reset()  # ends the voices with a quick release and frees the channels
    synth.generate_simple(_FLUSH_FRAMES, buffer=_FLUSH)  # play the releases out, into nothing
    synth.channel = {ch: sfid for ch in range(16)}
    return synth, sfid


_FLUSH_FRAMES = SAMPLE_RATE // 2
_FLUSH = memoryview(bytearray(_FLUSH_FRAMES * 2 * 4))
