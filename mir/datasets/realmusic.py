"""``realmusic``: unlabelled real recordings from Debian's free game-music packages.

``mir dataset build realmusic --out DIR`` fetches exactly the packages of :data:`PACKAGES` with
``apt-get download`` and unpacks each with ``dpkg-deb -x`` (nothing is installed). Of each package
only its music folders are kept (and its sound-effect folders, which :mod:`mir.datasets.nonmusic`
uses as non-music); tracker modules are rendered to FLAC with ``openmpt123`` when it is installed,
headerless PCM is converted to FLAC. Other Debian music packages are held aside for judging and
must not be added here.

Layout of ``DIR``::

    debs/<package>_<version>_all.deb      the fetched packages (debs/.partial/ while downloading)
    packages/<package>/copyright          the package's licence file
    packages/<package>/<path in package>  kept audio files (archive members and renders keep their own names)
    .state/<package>.json                 per-package record, written atomically when the package is done
    manifest.json                         packages (version, licence, hours, split) and tracks

Each track row: ``path`` (relative to ``DIR``), ``package``, ``kind`` (``music`` or ``effect``),
``split``, ``format``, ``sample_rate``, ``channels``, ``duration`` (s), ``styles`` (weak labels from
the file name, often empty), ``source`` (path inside the package or archive). Splits go by whole
package (:data:`SPLITS`), so no package crosses train/valid/test.

The build resumes: a package with a state record is skipped, a ``.deb`` is only moved out of
``debs/.partial`` once ``apt-get`` finished and ``dpkg-deb`` can read it, and a damaged one is fetched again.
"""
from __future__ import annotations

import fnmatch
import json
import os
import re
import shutil
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Iterable

import numpy as np

from .. import atomic, audio
from ..errors import DatasetError, MirError
from ._debian import Debian

NAME = "realmusic"
VERSION = "1"
AUDIO_EXTENSIONS = frozenset({"ogg", "oga", "mp3", "wav", "flac", "opus"})
MODULE_EXTENSIONS = frozenset({"xm", "it", "s3m", "mod"})


@dataclass(frozen=True)
class RawPCM:
    """How to read a package's headerless ``.raw`` files."""

    sample_rate: int
    dtype: str  # numpy dtype of one sample, e.g. "u1" (unsigned 8-bit)
    channels: int = 1


@dataclass(frozen=True)
class PackageSpec:
    """Which folders of one Debian package are music and which are sound effects.

    Patterns are folders inside the package (``fnmatch``, ``*`` spans folders); a file belongs to a
    pattern when its folder matches it or lies below a folder that does. ``archives`` name zip
    archives (``.pk3``) in the package with a member pattern and a kind.
    """

    name: str
    split: str
    music: tuple[str, ...] = ()
    effects: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()  # file-name patterns left out (copies or variants of a kept track)
    archives: tuple[tuple[str, str, str], ...] = ()  # (archive path, member pattern, "music"|"effect")
    raw: RawPCM | None = None


_MG = "usr/share/games/megaglest"
#: the packages the issue lists, and nothing else; test = held-out packages of the real-audio benchmark
PACKAGES: tuple[PackageSpec, ...] = (
    PackageSpec("asc-music", "test", music=("usr/share/games/asc/music",)),
    PackageSpec("drascula-music", "train", music=("usr/share/scummvm/drascula/audio",)),
    PackageSpec("fb-music-high", "train", music=("usr/share/games/frozen-bubble/snd",)),
    PackageSpec("hyperrogue-music", "train", music=("usr/share/hyperrogue/music",), effects=("usr/share/hyperrogue/sounds",)),
    PackageSpec("planetblupi-music-ogg", "train", music=("usr/share/planetblupi/music",)),
    PackageSpec("singularity-music", "valid", music=("usr/share/games/singularity/music",)),
    PackageSpec("ufoai-music", "train", archives=(("usr/share/games/ufoai/base/0music.pk3", "music/*", "music"),)),
    PackageSpec("xblast-tnt-musics", "train", music=("usr/share/games/xblast-tnt/sounds",), raw=RawPCM(22050, "u1")),
    PackageSpec("supertuxkart-data", "train", music=("usr/share/games/supertuxkart/data/music",),
                effects=("usr/share/games/supertuxkart/data/sfx",), exclude=("*_fast.ogg", "farm_f.ogg")),  # faster last laps
    PackageSpec("freedroidrpg-data", "test", music=("usr/share/freedroidrpg/data/sound/music",),
                effects=("usr/share/freedroidrpg/data/sound/effects",),
                exclude=("TechBattle.ogg",)),  # a variant of AmbientBattle (waveform correlation 0.79)
    PackageSpec("megaglest-data", "train",
                music=(f"{_MG}/data/core/menu/music", f"{_MG}/techs/megapack/factions/*/music"),
                effects=(f"{_MG}/data/core/menu/sound", f"{_MG}/data/core/water_sounds", f"{_MG}/techs/megapack/commondata/sounds",
                         f"{_MG}/techs/megapack/factions/*/units/*/sounds", f"{_MG}/tilesets/*/sounds")),
    PackageSpec("widelands-data", "train", music=("usr/share/games/widelands/data/music",),
                effects=("usr/share/games/widelands/data/sound",), exclude=("menu.ogg",)),  # = ingame_14, byte for byte
    PackageSpec("supertux-data", "train", music=("usr/share/games/supertux2/music",),
                effects=("usr/share/games/supertux2/sounds", "usr/share/games/supertux2/speech")),
    PackageSpec("hedgewars-data", "test", music=("usr/share/games/hedgewars/Data/Music",),
                effects=("usr/share/games/hedgewars/Data/Sounds",)),
    PackageSpec("openarena-data", "train", archives=(  # its music is in another package: effects only
        ("usr/share/games/openarena/baseoa/pak0.pk3", "sound/*", "effect"),
        ("usr/share/games/openarena/missionpack/mp-pak0.pk3", "sound/*", "effect"))),
    PackageSpec("lincity-ng-data", "valid", music=("usr/share/games/lincity-ng/music",),
                effects=("usr/share/games/lincity-ng/sounds",)),
    PackageSpec("scorched3d-data", "valid", music=("usr/share/games/scorched3d/data/globalmods/none/data/music",),
                effects=("usr/share/games/scorched3d/data/globalmods/*/data/wav",)),
    PackageSpec("warmux-data", "test", music=("usr/share/games/warmux/music",), effects=("usr/share/games/warmux/sound",),
                exclude=("*Apnee2.ogg",)),  # a remix of Apnee (waveform correlation 0.98)
    PackageSpec("pingus-data", "train", music=("usr/share/games/pingus/data/music",),
                effects=("usr/share/games/pingus/data/sounds",)),
)
SPEC_BY_NAME = {p.name: p for p in PACKAGES}
SPLITS = ("train", "valid", "test")

#: words in a file name that state a style, and the weak label each gives
STYLE_WORDS = {
    "metal": "metal", "rock": "rock", "techno": "electronic", "electro": "electronic", "chipdisko": "chiptune",
    "chiptune": "chiptune", "ambient": "ambient", "ambience": "ambient", "celtic": "celtic", "oriental": "oriental",
    "march": "march", "waltz": "waltz", "jazz": "jazz", "blues": "blues", "reggae": "reggae",
    "orchestral": "orchestral", "disco": "disco", "swing": "swing", "divertissement": "classical",
}
_LICENCE_PHRASES = (  # (pattern in a copyright file without DEP-5 License fields, licence name)
    (r"GNU General Public License.{0,80}version 3", "GPL-3"), (r"GNU General Public License.{0,80}version 2", "GPL-2"),
    (r"Creative Commons Attribution[- ]Share[- ]?Alike|Attribution, ShareAlike", "CC-BY-SA"),
    (r"GNU General Public License", "GPL"), (r"public domain", "public-domain"),
)


# --- pure helpers -----------------------------------------------------------------------------------
def in_folders(path: str, patterns: Iterable[str]) -> bool:
    """Whether file ``path`` (package-relative, POSIX) lies in a folder matching one of ``patterns``."""
    folder = str(PurePosixPath(path).parent)
    return any(fnmatch.fnmatchcase(folder, p) or fnmatch.fnmatchcase(folder, p + "/*") for p in patterns)


def kind_of(spec: PackageSpec, path: str) -> str | None:
    """``"music"``, ``"effect"`` or ``None`` (not kept) for a file of ``spec``'s package."""
    name = PurePosixPath(path).name
    if any(fnmatch.fnmatchcase(name, p) for p in spec.exclude):
        return None
    ext = name.rsplit(".", 1)[-1].lower() if "." in name else ""
    if ext not in AUDIO_EXTENSIONS | MODULE_EXTENSIONS and not (ext == "raw" and spec.raw is not None):
        return None
    if in_folders(path, spec.music):
        return "music"
    if in_folders(path, spec.effects):
        return "effect"
    return None


def style_labels(path: str) -> list[str]:
    """Weak style labels stated by a file's name (``"Like_a_rock.ogg"`` -> ``["rock"]``), sorted."""
    stem = PurePosixPath(path).stem
    words = re.split(r"[^a-z]+", re.sub(r"([a-z])([A-Z])", r"\1 \2", stem).lower())
    return sorted({STYLE_WORDS[w] for w in words if w in STYLE_WORDS})


def licences(text: str) -> list[str]:
    """Licence names in a Debian copyright file: its DEP-5 ``License:`` fields, else known phrases."""
    names = []
    for m in re.finditer(r"^License:[ \t]*(\S[^\n]*)$", text, flags=re.M):
        name = m.group(1).strip()
        if name not in names:
            names.append(name)
    if names:
        return names
    flat = " ".join(text.split())
    for pattern, name in _LICENCE_PHRASES:
        if re.search(pattern, flat, flags=re.I) and not any(n.startswith(name) for n in names):
            names.append(name)
    return names


def split_of(package: str) -> str:
    try:
        return SPEC_BY_NAME[package].split
    except KeyError:
        raise DatasetError(f"{package!r} is not a realmusic package; known: {', '.join(SPEC_BY_NAME)}") from None


# --- the build ------------------------------------------------------------------------------------------
def build(out: str | os.PathLike, *, packages: Iterable[str] | None = None, debian: Debian | None = None,
          progress: bool = True) -> dict:
    """Fetch, unpack and describe the packages into ``out``; resume what is there. Returns the manifest.

    ``packages``: a subset of :data:`PACKAGES` by name (default all). ``debian`` runs the external
    programs (tests pass a fake). Raises :class:`DatasetError` naming the package and what to do when a
    program is missing or a package cannot be fetched.
    """
    out = Path(out)
    debian = debian or Debian()
    names = [p.name for p in PACKAGES] if packages is None else list(packages)
    for n in names:
        split_of(n)
    for sub in ("debs", "packages", ".state"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    from tqdm.auto import tqdm

    bar = tqdm(names, desc="realmusic", unit="pkg", disable=not progress)
    for name in bar:
        bar.set_postfix_str(name)
        if not (out / ".state" / f"{name}.json").is_file():
            _build_package(out, SPEC_BY_NAME[name], debian)
    manifest = assemble(out)
    return manifest


def _build_package(out: Path, spec: PackageSpec, debian: Debian) -> None:
    t0 = time.time()
    deb = _fetch(out, spec.name, debian)
    fields = debian.fields(deb)
    dest = out / "packages" / spec.name
    unpack = out / ".unpack" / spec.name
    shutil.rmtree(unpack, ignore_errors=True)
    shutil.rmtree(dest, ignore_errors=True)  # a package killed half-way is redone from its .deb
    unpack.mkdir(parents=True)
    dest.mkdir(parents=True)
    try:
        debian.extract(deb, unpack)
        copyright_text = _keep_copyright(unpack, dest, spec.name)
        tracks, skipped = _keep_audio(unpack, dest, spec, debian)
    finally:
        shutil.rmtree(unpack, ignore_errors=True)
    record = {
        "package": spec.name, "version": fields.get("Version", ""), "deb": deb.name,
        "summary": fields.get("Description", "").split("\n", 1)[0],
        "description": fields.get("Description", ""),
        "copyright": "copyright" if copyright_text is not None else None,
        "licences": licences(copyright_text or ""),
        "licence_excerpt": (copyright_text or "")[:800],
        "tracks": [_describe(out, t) for t in tracks],
        "skipped": skipped,
        "seconds": round(time.time() - t0, 1),
    }
    atomic.write_text(out / ".state" / f"{spec.name}.json", json.dumps(record, indent=1, sort_keys=True))


def _fetch(out: Path, package: str, debian: Debian) -> Path:
    """The package's ``.deb`` in ``out/debs``: reused when readable, else (re)fetched via ``.partial``."""
    debs = out / "debs"
    for old in sorted(debs.glob(f"{package}_*.deb")):
        try:
            if debian.fields(old).get("Package") == package:
                return old
        except DatasetError:
            pass
        old.unlink()  # damaged or foreign: fetch again
    partial = debs / ".partial"
    shutil.rmtree(partial, ignore_errors=True)  # what an interrupted download left
    partial.mkdir()
    got = debian.download(package, partial)
    debian.fields(got)  # a truncated file fails here, before it counts as fetched
    final = debs / got.name
    os.replace(got, final)
    shutil.rmtree(partial, ignore_errors=True)
    return final


def _keep_copyright(unpack: Path, dest: Path, package: str) -> str | None:
    src = unpack / "usr" / "share" / "doc" / package / "copyright"
    if not src.is_file():
        return None
    text = src.read_text(encoding="utf-8", errors="replace")
    atomic.write_text(dest / "copyright", text)
    return text


def _keep_audio(unpack: Path, dest: Path, spec: PackageSpec, debian: Debian) -> tuple[list[dict], list[dict]]:
    """Move the package's music and effect files from ``unpack`` into ``dest``; (tracks, skipped)."""
    tracks, skipped = [], []
    for path in sorted(p for p in unpack.rglob("*") if p.is_file() and not p.is_symlink()):
        rel = path.relative_to(unpack).as_posix()
        kind = kind_of(spec, rel)
        if kind is None:
            continue
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            kept = _convert(path, target, spec, debian)
        except MirError as exc:
            skipped.append({"source": rel, "reason": str(exc)})
            continue
        tracks.append({"file": kept, "package": spec.name, "kind": kind, "source": rel})
    for archive, pattern, kind in spec.archives:
        src = unpack / archive
        if not src.is_file():
            skipped.append({"source": archive, "reason": "archive not in the package"})
            continue
        with zipfile.ZipFile(src) as zf:
            for member in sorted(zf.namelist()):
                ext = member.rsplit(".", 1)[-1].lower() if "." in member else ""
                if member.endswith("/") or ext not in AUDIO_EXTENSIONS or not fnmatch.fnmatchcase(member, pattern):
                    continue
                target = dest / PurePosixPath(archive).name / member
                target.parent.mkdir(parents=True, exist_ok=True)
                atomic.write_bytes(target, zf.read(member))
                tracks.append({"file": target, "package": spec.name, "kind": kind, "source": f"{archive}:{member}"})
    return tracks, skipped


def _convert(src: Path, target: Path, spec: PackageSpec, debian: Debian) -> Path:
    """Keep ``src`` as ``target``: moved as is, or rendered/converted to FLAC (tracker modules, raw PCM)."""
    ext = src.suffix.lower().lstrip(".")
    target.parent.mkdir(parents=True, exist_ok=True)
    if ext in MODULE_EXTENSIONS:
        flac = target.with_name(target.name + ".flac")
        if not debian.can_render_modules():
            raise DatasetError(f"tracker module {src.name} needs openmpt123 to render (apt-get install openmpt123)")
        tmp = target.with_name(f".{target.name}.partial.flac")  # openmpt123 picks the format by extension
        debian.render_module(src, tmp)
        audio.trim_trailing_silence(tmp)
        os.replace(tmp, flac)
        return flac
    if ext == "raw":
        raw = spec.raw
        data = np.fromfile(src, dtype=raw.dtype).astype(np.float32)
        if raw.dtype in ("u1", "uint8"):
            data = (data - 128.0) / 128.0
        y = data.reshape(-1, raw.channels).T if raw.channels > 1 else data
        flac = target.with_name(target.name + ".flac")
        audio.save(flac, y, raw.sample_rate)
        return flac
    shutil.move(src, target)
    return target


def _describe(out: Path, track: dict) -> dict:
    path = Path(track["file"])
    row = {"path": path.relative_to(out).as_posix(), "package": track["package"], "kind": track["kind"],
           "source": track["source"], "styles": style_labels(track["source"]) if track["kind"] == "music" else []}
    try:
        info = audio.probe(path)
    except MirError as exc:
        return row | {"error": str(exc)}
    return row | {"format": info.format, "sample_rate": int(info.sample_rate), "channels": int(info.channels),
                  "duration": round(float(info.duration), 3)}


# --- the manifest ----------------------------------------------------------------------------------------
def assemble(out: str | os.PathLike) -> dict:
    """Write ``out/manifest.json`` from the per-package records (splits from :data:`PACKAGES`); return it."""
    out = Path(out)
    packages, tracks = {}, []
    for state in sorted((out / ".state").glob("*.json")):
        rec = json.loads(state.read_text())
        name = rec["package"]
        split = split_of(name)
        rows = rec.pop("tracks")
        good = [t | {"split": split} for t in rows if "error" not in t]
        bad = [{"source": t["source"], "reason": t["error"]} for t in rows if "error" in t]
        rec["skipped"] = rec["skipped"] + bad
        if rec.get("copyright"):  # licence names from the kept file, so a better parser needs no rebuild
            rec["licences"] = licences((out / "packages" / name / rec["copyright"]).read_text(errors="replace"))
        music = [t for t in good if t["kind"] == "music"]
        effects = [t for t in good if t["kind"] == "effect"]
        rec |= {"split": split, "n_music": len(music), "n_effects": len(effects),
                "music_hours": round(sum(t["duration"] for t in music) / 3600, 3),
                "effect_hours": round(sum(t["duration"] for t in effects) / 3600, 3)}
        packages[name] = rec
        tracks.extend(good)
    splits = {}
    for split in SPLITS:
        names = [n for n, p in packages.items() if p["split"] == split]
        splits[split] = {"packages": names, "music_tracks": sum(packages[n]["n_music"] for n in names),
                         "music_hours": round(sum(packages[n]["music_hours"] for n in names), 3)}
    manifest = {"name": NAME, "version": VERSION, "packages": packages, "splits": splits, "tracks": tracks}
    atomic.write_text(out / "manifest.json", json.dumps(manifest, indent=1, sort_keys=True))
    return manifest


def read_manifest(root: str | os.PathLike, *, build: str) -> dict:
    """``root/manifest.json`` of a built corpus; a clear error naming the ``build`` command when it is missing."""
    path = Path(root) / "manifest.json"
    if not path.is_file():
        raise DatasetError(f"{path} not found: build the corpus with `{build}`")
    return json.loads(path.read_text())


def load_manifest(root: str | os.PathLike) -> dict:
    return read_manifest(root, build=f"mir dataset build {NAME} --out {root}")


def tracks(root: str | os.PathLike, *, split: str | None = None, kind: str = "music") -> list[dict]:
    """Track rows of a built corpus (``path`` made absolute), filtered by split and kind, in manifest order."""
    root = Path(root)
    rows = load_manifest(root)["tracks"]
    return [r | {"path": str(root / r["path"])} for r in rows
            if (split is None or r["split"] == split) and (kind is None or r["kind"] == kind)]


def summary(manifest: dict) -> str:
    """A table of hours per package and split."""
    lines = [f"{'package':24s} {'split':5s} {'version':22s} {'music':>5s} {'hours':>6s} {'effects':>7s}  licence"]
    for name, p in sorted(manifest["packages"].items(), key=lambda kv: (SPLITS.index(kv[1]["split"]), kv[0])):
        lines.append(f"{name:24s} {p['split']:5s} {p['version']:22s} {p['n_music']:5d} {p['music_hours']:6.2f} "
                     f"{p['n_effects']:7d}  {', '.join(p['licences'])[:40]}")
    for split, s in manifest["splits"].items():
        lines.append(f"{split}: {len(s['packages'])} packages, {s['music_tracks']} music tracks, {s['music_hours']:.2f} h")
    return "\n".join(lines)

