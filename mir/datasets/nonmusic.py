"""``nonmusic``: sounds that are not music, for a music/non-music gate and its measurement.

``mir dataset build nonmusic --out DIR --realmusic RDIR`` makes

- ``speech``: espeak-ng reading sentences and numbers in :data:`VOICES` (languages and voice variants);
  whole voices are held out for valid and test, so a gate is measured on voices it never heard;
- ``effect``: the sound-effect folders of the realmusic packages (hard links into ``RDIR``'s files,
  at least ``MIN_EFFECT_SECONDS`` long), split by the same packages as the music;
- ``silence`` (room tone at -80..-55 dBFS: digital zero is refused by :func:`mir.audio.load`),
  ``hum`` (50 or 60 Hz mains with harmonics, over a little noise) and ``noise`` (white, pink, brown),
  10 s each at various levels, split 70/15/15 by clip index.

Layout: ``speech/<voice>/<n>.wav``, ``effects/<package>/...``, ``synthetic/<kind>/<n>.flac`` and
``manifest.json`` (one row per clip: ``path`` relative to ``DIR``, ``kind``, ``split``, ``duration``
and the kind's parameters). Same seed, same clips; files already there are kept (resume).
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np

from .. import atomic
from ..errors import DatasetError, MirError
from . import realmusic
from ._debian import Debian

NAME = "nonmusic"
VERSION = "1"
SR = 22050
SYNTH_SECONDS = 10.0
MIN_EFFECT_SECONDS = 1.0  # mir.audio.load refuses shorter audio
CLIPS_PER_VOICE = 10
SYNTH_CLIPS = {"silence": 20, "hum": 40, "noise": 60}

#: (espeak-ng voice, split): languages and variants; valid and test voices are never in train
VOICES: tuple[tuple[str, str], ...] = (
    ("en-us+m1", "train"), ("en-gb+f2", "train"), ("de+m3", "train"), ("fr-fr+f1", "train"), ("es+m2", "train"),
    ("it+f3", "train"), ("ru+m4", "train"), ("pl+f4", "train"), ("nl+m5", "train"), ("cmn+m6", "train"),
    ("pt-br+m7", "train"), ("sv+f1", "train"), ("tr+f3", "train"), ("ro+m2", "train"),
    ("cs+m3", "valid"), ("vi+f2", "valid"),
    ("en-gb-scotland+f4", "test"), ("fi+m2", "test"), ("hu+m6", "test"), ("id+f3", "test"), ("sw+m1", "test"),
)
SENTENCES = (
    "The train to the coast leaves at a quarter past nine, so we should pack the bags tonight.",
    "Please remember to water the plants on the balcony while I am away next week.",
    "The committee will meet again on Thursday to discuss the budget for the new library.",
    "She opened the window, looked at the grey sky, and decided to take an umbrella after all.",
    "Turn left at the second crossing, then follow the river until you reach the old bridge.",
    "Our results show a small but steady increase in temperature over the last ten years.",
    "If the printer is out of paper again, there is a fresh box in the cupboard by the door.",
    "Welcome to the evening news. Here are the main stories of the day.",
    "He could not find his keys anywhere, until he finally checked the pocket of his coat.",
    "The museum is closed on Mondays, but the garden is open every day from eight until six.",
    "Add two cups of flour, a pinch of salt and enough water to make a smooth dough.",
    "Thank you for calling. All of our operators are busy at the moment; please stay on the line.",
)


# --- signals (pure) -----------------------------------------------------------------------------------
def coloured_noise(n: int, colour: str, rng: np.random.Generator) -> np.ndarray:
    """Unit-RMS noise [shape=(n,)], float32: ``white`` (flat), ``pink`` (1/f power) or ``brown`` (1/f²)."""
    exponent = {"white": 0.0, "pink": 0.5, "brown": 1.0}.get(colour)
    if exponent is None:
        raise DatasetError(f"unknown noise colour {colour!r}; use white, pink or brown")
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.arange(spec.size, dtype=np.float64)
    f[0] = 1.0
    y = np.fft.irfft(spec / f**exponent, n)
    y -= y.mean()
    return (y / max(float(np.sqrt(np.mean(y**2))), 1e-12)).astype(np.float32)


def mains_hum(n: int, sr: int, mains: float, rng: np.random.Generator, *, n_harmonics: int = 6) -> np.ndarray:
    """Unit-RMS mains hum: ``mains`` Hz and its harmonics with random decaying amplitudes and phases."""
    t = np.arange(n) / sr
    amps = rng.uniform(0.2, 1.0, n_harmonics) / np.arange(1, n_harmonics + 1) ** rng.uniform(0.5, 1.5)
    y = sum(a * np.sin(2 * np.pi * mains * k * t + rng.uniform(0, 2 * np.pi))
            for k, a in enumerate(amps, start=1) if mains * k < sr / 2)
    return (y / np.sqrt(np.mean(y**2))).astype(np.float32)


def at_level(y: np.ndarray, db: float) -> np.ndarray:
    """``y`` (unit RMS) scaled to ``db`` dBFS RMS, clipped to ±1."""
    return np.clip(y * 10 ** (db / 20), -1.0, 1.0).astype(np.float32)


def synthetic_clip(kind: str, index: int, seed: int) -> tuple[np.ndarray, dict]:
    """Clip ``index`` of ``kind`` (silence, hum, noise): ``(y, params)``, a function of (kind, index, seed) only."""
    rng = np.random.default_rng([seed, list(SYNTH_CLIPS).index(kind), index])
    n = int(SYNTH_SECONDS * SR)
    if kind == "silence":
        db = float(rng.uniform(-80, -55))
        return at_level(coloured_noise(n, "pink", rng), db), {"level_db": round(db, 1)}
    if kind == "hum":
        mains = float(rng.choice([50.0, 60.0]))
        db = float(rng.uniform(-45, -10))
        y = mains_hum(n, SR, mains, rng) + 10 ** (-rng.uniform(20, 40) / 20) * coloured_noise(n, "white", rng)
        return at_level(y / np.sqrt(np.mean(y**2)), db), {"mains_hz": mains, "level_db": round(db, 1)}
    if kind == "noise":
        colour = ("white", "pink", "brown")[index % 3]
        db = float(rng.uniform(-45, -10))
        return at_level(coloured_noise(n, colour, rng), db), {"colour": colour, "level_db": round(db, 1)}
    raise DatasetError(f"unknown synthetic kind {kind!r}; known: {', '.join(SYNTH_CLIPS)}")


def index_split(index: int, n: int) -> str:
    """70/15/15 split by position: the first 70 % train, then valid, then test."""
    return "train" if index < round(0.7 * n) else "valid" if index < round(0.85 * n) else "test"


def speech_text(voice_index: int, clip: int, seed: int) -> tuple[str, int, int]:
    """(text, words per minute, pitch 0-99) of one speech clip: two or three sentences and a number."""
    rng = np.random.default_rng([seed, 99, voice_index, clip])
    picks = rng.choice(len(SENTENCES), size=int(rng.integers(2, 4)), replace=False)
    number = f"{int(rng.integers(10, 9999))}, {int(rng.integers(1, 31))}.{int(rng.integers(1, 13))}.{int(rng.integers(1950, 2030))}"
    text = " ".join(SENTENCES[i] for i in picks) + f" {number}."
    return text, int(rng.integers(130, 200)), int(rng.integers(25, 75))


# --- the build ---------------------------------------------------------------------------------------------
def build(out: str | os.PathLike, *, realmusic_dir: str | os.PathLike | None = None, seed: int = 0,
          debian: Debian | None = None, progress: bool = True, clips_per_voice: int = CLIPS_PER_VOICE,
          synth_clips: dict[str, int] | None = None, voices: tuple[tuple[str, str], ...] = VOICES) -> dict:
    """Make the corpus in ``out`` (see the module docstring); returns the manifest.

    ``realmusic_dir``: a built realmusic corpus whose effect files are linked in; ``None`` leaves effects
    out (the manifest says so). ``clips_per_voice``, ``synth_clips`` and ``voices`` size the corpus (tests).
    """
    out = Path(out)
    debian = debian or Debian()
    synth_clips = dict(SYNTH_CLIPS if synth_clips is None else synth_clips)
    from tqdm.auto import tqdm

    rows = []
    for v, (voice, split) in enumerate(tqdm(voices, desc="speech", unit="voice", disable=not progress)):
        folder = out / "speech" / voice.replace("+", "_")
        folder.mkdir(parents=True, exist_ok=True)
        for c in range(clips_per_voice):
            text, speed, pitch = speech_text(v, c, seed)
            path = folder / f"{c:03d}.wav"
            if not path.is_file():
                with atomic.atomic_path(path) as tmp:
                    debian.speak(text, tmp, voice=voice, speed=speed, pitch=pitch)
            rows.append({"path": path, "kind": "speech", "split": split, "voice": voice, "speed": speed,
                         "pitch": pitch, "text": text})
    for kind, n in synth_clips.items():
        folder = out / "synthetic" / kind
        for i in range(n):
            y, params = synthetic_clip(kind, i, seed)
            path = folder / f"{i:03d}.flac"
            if not path.is_file():
                from .. import audio

                audio.save(path, y, SR)
            rows.append({"path": path, "kind": kind, "split": index_split(i, n)} | params)
    effects_from = None
    if realmusic_dir is not None:
        effects_from = str(realmusic_dir)
        rows += _link_effects(out, Path(realmusic_dir))
    return _write_manifest(out, rows, seed=seed, effects_from=effects_from, voices=voices)


def _link_effects(out: Path, rdir: Path) -> list[dict]:
    rows = []
    for t in realmusic.tracks(rdir, kind="effect"):
        if t["duration"] < MIN_EFFECT_SECONDS:
            continue
        src = Path(t["path"])
        rel = Path(t["path"]).relative_to(rdir / "packages")
        dest = out / "effects" / rel
        if not dest.is_file():
            dest.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(src, dest)
            except OSError:
                shutil.copy2(src, dest)
        rows.append({"path": dest, "kind": "effect", "split": t["split"], "package": t["package"],
                     "source": t["source"], "duration": t["duration"]})
    return rows


def _write_manifest(out: Path, rows: list[dict], *, seed: int, effects_from: str | None, voices) -> dict:
    from .. import audio

    clips = []
    for r in rows:
        r = dict(r)
        if "duration" not in r:
            try:
                r["duration"] = round(float(audio.probe(r["path"]).duration), 3)
            except MirError as exc:
                raise DatasetError(f"{r['path']}: unreadable after writing ({exc}); delete it and build again") from None
        r["path"] = Path(r["path"]).relative_to(out).as_posix()
        clips.append(r)
    counts: dict[str, dict[str, int]] = {}
    for r in clips:
        counts.setdefault(r["kind"], {s: 0 for s in realmusic.SPLITS})[r["split"]] += 1
    manifest = {"name": NAME, "version": VERSION, "seed": seed, "effects_from_realmusic": effects_from is not None,
                "voices": {v: s for v, s in voices}, "counts": counts,
                "hours": {k: round(sum(r["duration"] for r in clips if r["kind"] == k) / 3600, 3) for k in counts},
                "clips": clips}
    atomic.write_text(out / "manifest.json", json.dumps(manifest, indent=1, sort_keys=True))
    return manifest


def load_manifest(root: str | os.PathLike) -> dict:
    return realmusic.read_manifest(root, build=f"mir dataset build {NAME} --out {root} --realmusic DIR")


def clips(root: str | os.PathLike, *, split: str | None = None, kinds: tuple[str, ...] | None = None) -> list[dict]:
    """Clip rows of a built corpus (``path`` made absolute), filtered by split and kind."""
    root = Path(root)
    return [r | {"path": str(root / r["path"])} for r in load_manifest(root)["clips"]
            if (split is None or r["split"] == split) and (kinds is None or r["kind"] in kinds)]


def summary(manifest: dict) -> str:
    lines = [f"{'kind':8s} {'train':>6s} {'valid':>6s} {'test':>6s} {'hours':>6s}"]
    for kind, c in manifest["counts"].items():
        lines.append(f"{kind:8s} {c['train']:6d} {c['valid']:6d} {c['test']:6d} {manifest['hours'][kind]:6.2f}")
    if not manifest["effects_from_realmusic"]:
        lines.append("effects: none (pass --realmusic DIR of a built realmusic corpus)")
    return "\n".join(lines)
