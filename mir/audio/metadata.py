"""A file's own metadata: text fields (title, artist, album, genre, date, comment, custom keys) read
and written with mutagen. (In mir, "tags" are the labels a model predicts; what a file carries is
its metadata, even where the format calls its fields tags.)

MP3, WAV and AIFF carry ID3 (WAV in an ``id3`` RIFF chunk); FLAC, Ogg Vorbis and Opus carry Vorbis
comments, which take any key; M4A takes the keys of mutagen's EasyMP4. Keys are lower-case "easy"
names; multiple values of one key read as one string joined by ``"; "``. Writing rewrites only the
tag blocks: the decoded audio is bit-identical before and after.
"""
from __future__ import annotations

import os
import re
import shutil

import mutagen
from mutagen.easymp4 import EasyMP4
from mutagen.id3 import COMM, ID3, TXXX, Encoding
from mutagen.mp4 import MP4

from ..atomic import atomic_path
from ..errors import AudioError, DecodeError, ParameterError
from .formats import format_from_extension
from .validate import check_file

CORE_KEYS = ("title", "artist", "album", "genre")
# ID3 text frames of the common keys; "comment" is a COMM frame, any other key a TXXX frame
_ID3_FRAMES = {
    "title": "TIT2", "artist": "TPE1", "album": "TALB", "genre": "TCON", "date": "TDRC",
    "albumartist": "TPE2", "composer": "TCOM", "tracknumber": "TRCK", "discnumber": "TPOS", "bpm": "TBPM",
}
_ID3_KEYS = {frame: key for key, frame in _ID3_FRAMES.items()}
_BINARY_KEYS = frozenset({"metadata_block_picture", "coverart"})  # base64 cover art, not text
_KEY = re.compile(r"[a-z0-9_ :.()/-]+")


def read_metadata(path: str | os.PathLike) -> dict:
    """Text metadata of ``path``.

    Returns
    -------
    dict with ``title``, ``artist``, ``album``, ``genre`` (str or None) and ``year`` (int or None,
    from the date tag), then every other text tag under its lower-case key (``date``, ``comment``, ...).
    """
    path = check_file(path)
    text = _text(_open(path))
    tags = {key: text.get(key) for key in CORE_KEYS}
    tags["year"] = _year(text.get("date") or text.get("year"))
    tags.update((key, value) for key, value in text.items() if key not in tags)
    return tags


def write_metadata(path: str | os.PathLike, fields: dict, *, dry_run: bool = False) -> dict:
    """Set text metadata of ``path`` in place, atomically, without touching the audio data.

    Parameters
    ----------
    fields : ``{key: value}``; keys are easy names (``title``, ``artist``, ``album``, ``genre``,
        ``date``, ``comment`` or custom ones), ``year`` is stored as ``date``; values are str or
        int, ``None`` removes the field
    dry_run : only report what would change

    Returns
    -------
    ``{key: (old, new)}`` for each field that changes (``year`` reported as ``date``; strings or None).

    The file is copied beside itself, the copy tagged, then moved over the original, so a killed
    process leaves either the old file or the new one.
    """
    path = check_file(path)
    wanted = _normalise(path, fields)
    audio = _open(path)
    current = _text(audio)
    changes = {key: (current.get(key), new) for key, new in wanted.items() if current.get(key) != new}
    if changes and not dry_run:
        _rewrite(path, type(audio), changes)
    return changes


def stamp_metadata(path: str | os.PathLike, fields: dict, *, format: str | None = None) -> None:
    """Write text metadata into a file that has none yet (one just encoded), in one fixed layout so the
    bytes depend on the input only: FLAC and Ogg Vorbis get upper-case Vorbis comment keys; MP3 and
    WAV get ID3v2.4 with ``title``/``artist``/``album``/``genre`` as TIT2/TPE1/TALB/TCON, ``comment`` as
    COMM and any other key as TXXX with an upper-case description. ``format`` names the container
    when the file name does not (temp files). Not atomic: meant for a file not yet in place.
    """
    path = os.fspath(path)
    fmt = format or format_from_extension(path)
    if fmt in ("flac", "ogg"):
        from mutagen.flac import FLAC
        from mutagen.oggvorbis import OggVorbis

        f = (FLAC if fmt == "flac" else OggVorbis)(path)
        if f.tags is None:
            f.add_tags()
        for k, v in fields.items():
            f.tags[k.upper()] = [str(v)]
        f.save()
        return
    if fmt not in ("mp3", "wav"):
        raise ParameterError(f"{path}: stamp_metadata writes flac, ogg, mp3 and wav files, not {fmt}")
    from mutagen.id3 import TALB, TCON, TIT2, TPE1

    frames = {"title": TIT2, "artist": TPE1, "album": TALB, "genre": TCON}
    if fmt == "mp3":
        id3 = ID3()
    else:
        from mutagen.wave import WAVE

        wav = WAVE(path)
        if wav.tags is None:
            wav.add_tags()
        id3 = wav.tags
    for k, v in fields.items():
        if k in frames:
            id3.add(frames[k](encoding=3, text=[str(v)]))
        elif k == "comment":
            id3.add(COMM(encoding=3, lang="eng", desc="", text=[str(v)]))
        else:
            id3.add(TXXX(encoding=3, desc=k.upper(), text=[str(v)]))
    if fmt == "mp3":
        id3.save(path, v2_version=4)
    else:
        wav.save()


def _rewrite(path: str, kind: type, changes: dict) -> None:
    """Copy ``path`` beside itself, apply ``changes`` to the copy (opened as ``kind``), move it back."""
    with atomic_path(path) as tmp:
        shutil.copyfile(path, tmp)
        shutil.copymode(path, tmp)
        audio = _mutagen(path, kind, tmp)
        if audio.tags is None:
            _add_tags(path, audio)
        for key, (_, new) in changes.items():
            _set(path, audio.tags, key, new)
        try:
            audio.save()
        except mutagen.MutagenError as exc:
            raise AudioError(path, f"writing tags failed ({exc})") from None


def _open(path: str):
    """mutagen file object for ``path``; M4A through EasyMP4 for easy key names."""
    audio = _mutagen(path, mutagen.File, path)
    if audio is None:
        raise DecodeError(path, "mutagen does not recognise the format",
                          "tags are read from mp3, flac, ogg, opus, wav, aiff and m4a files")
    return _mutagen(path, EasyMP4, path) if isinstance(audio, MP4) else audio


def _mutagen(path: str, opener, target: str | os.PathLike):
    """``opener(target)`` with mutagen's errors turned into a DecodeError naming ``path``."""
    try:
        return opener(target)
    except mutagen.MutagenError as exc:
        raise DecodeError(path, f"cannot read tags ({exc})", "the file is corrupt or not audio") from None


def _add_tags(path: str, audio) -> None:
    try:
        audio.add_tags()
    except (mutagen.MutagenError, NotImplementedError):
        raise AudioError(path, f"{format_from_extension(path)} files cannot hold text tags") from None


def _text(audio) -> dict[str, str]:
    """Every text tag of a mutagen file object as ``{lower-case key: value}``."""
    tags = audio.tags
    if tags is None:
        return {}
    if isinstance(tags, ID3):
        pairs = _id3_pairs(tags)
    else:
        pairs = ((key.lower(), tags[key]) for key in tags.keys())
    return {key: "; ".join(map(str, values)) for key, values in pairs if key and key not in _BINARY_KEYS}


def _set(path: str, tags, key: str, value: str | None) -> None:
    if isinstance(tags, ID3):
        _id3_set(tags, key, value)
        return
    try:
        if value is not None:
            tags[key] = [value]
        elif key in tags.keys():
            del tags[key]
    except (KeyError, ValueError):  # EasyMP4 only knows a fixed set of keys
        raise ParameterError(f"{path}: {format_from_extension(path)} files cannot hold the tag {key!r}") from None


def _id3_pairs(tags: ID3):
    """``(key, values)`` of the text frames we name; pictures and other binary frames are skipped."""
    for frame in tags.values():
        if key := _id3_key(frame):
            yield key, frame.text


def _id3_key(frame) -> str | None:
    if frame.FrameID == "TXXX":
        return frame.desc.lower()
    if frame.FrameID == "COMM":
        return "comment" if not frame.desc else None
    return _ID3_KEYS.get(frame.FrameID)


def _id3_set(tags: ID3, key: str, value: str | None) -> None:
    for hashkey in [h for h, frame in tags.items() if _id3_key(frame) == key]:
        del tags[hashkey]
    if value is None:
        return
    if key == "comment":
        tags.add(COMM(encoding=Encoding.UTF8, lang="eng", desc="", text=[value]))
    elif key in _ID3_FRAMES:
        tags.add(getattr(mutagen.id3, _ID3_FRAMES[key])(encoding=Encoding.UTF8, text=[value]))
    else:
        tags.add(TXXX(encoding=Encoding.UTF8, desc=key, text=[value]))


def _normalise(path: str, fields: dict) -> dict[str, str | None]:
    """Validated ``{stored key: str or None}``; ``year`` becomes ``date``."""
    if not isinstance(fields, dict):
        raise ParameterError(f"{path}: metadata must be a dict of key -> str, int or None, got {type(fields).__name__}")
    out: dict[str, str | None] = {}
    for key, value in fields.items():
        stored = "date" if str(key).lower() == "year" else str(key).lower()
        if not (isinstance(key, str) and _KEY.fullmatch(stored)) or stored in _BINARY_KEYS:
            raise ParameterError(f"{path}: bad tag key {key!r} "
                                 "(use letters, digits, space or _ : . - / ( ))")
        if value is not None and (isinstance(value, bool) or not isinstance(value, (str, int))):
            raise ParameterError(f"{path}: tag {key!r} must be str, int or None, got {type(value).__name__}")
        if stored in out:
            raise ParameterError(f"{path}: tag {stored!r} given twice (year is stored as date)")
        out[stored] = None if value is None else str(value)
    return out


def _year(date: str | None) -> int | None:
    match = re.match(r"\s*(\d{4})", date or "")
    return int(match.group(1)) if match else None
