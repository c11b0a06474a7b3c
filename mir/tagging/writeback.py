"""Writing a model's decided genre and tags into the audio files' own metadata (``mir tag --write-tags``),
and putting the old values back (``mir tag --restore-tags``).

mir writes into its own fields: ``mir_genre``, ``mir_tags`` (decided tags joined by ``"; "``) and
``mir_model`` (``TXXX:MIR_GENRE`` in ID3, ``MIR_GENRE`` Vorbis comments, ``----:com.mir:MIR_GENRE``
MP4 atoms; see :mod:`mir.audio.metadata`). These are mir's and are updated on every write. The file's
own ``genre`` is written only when asked (``set_genre``), only where the file has none, and over an
existing one only with ``overwrite``.

Before a file is changed, the values it had are kept in ``LIB/file-metadata-backup.json`` (written
atomically), as ``{path: {key: {"old": value or null, "written": value or null}}}``; the first
``old`` of a key is kept across later writes, so a restore goes back to the file as it was before
mir first touched it.
"""
from __future__ import annotations

import json
from typing import Sequence

import pandas as pd

from .. import atomic
from ..catalog import Library
from ..catalog.predictions import load_tags
from ..errors import CatalogError, MirError

TAG_SEPARATOR = "; "  # how decided tags are joined in a file's ``mir_tags`` field (as read_metadata joins values)
BACKUP = "file-metadata-backup.json"
BACKUP_FORMAT = 1


def file_tags_of(row: pd.Series | dict, model_id: str, *, set_genre: bool = False) -> dict[str, str]:
    """Metadata fields that ``mir tag --write-tags`` sets from one stored row (``genre`` only with ``set_genre``)."""
    fields = {"mir_genre": str(row["genre"]), "mir_tags": TAG_SEPARATOR.join(row["tags"]), "mir_model": model_id}
    if set_genre:
        fields["genre"] = str(row["genre"])
    return fields


def write_file_tags(lib: Library, model_id: str, *, dry_run: bool = False, tracks: Sequence[str] | None = None,
                    set_genre: bool = False, overwrite: bool = False) -> list[dict]:
    """Write the decided genre and tags of ``model_id`` into every file of the tagged tracks.

    Parameters
    ----------
    dry_run : only report what would change (nothing written, no backup)
    tracks : only these track ids
    set_genre : also write the predicted genre into the file's own ``genre`` field where it has none
    overwrite : with ``set_genre``, replace a genre the file already has

    Returns one entry per file: ``{"path", "track_id", "changes": {key: (old, new)}, "kept": {key: (value,
    mir's value)}, "error"}``: ``kept`` lists the fields left as they were because the file had them.
    A file that cannot be written is reported, not raised. Writing changes a file's bytes but not its
    audio; the library records it as the same track (:meth:`~mir.catalog.Library.retag_files`).
    """
    frame = load_tags(lib, model_id)
    if tracks is not None:
        frame = frame[frame["track_id"].isin(set(tracks))]
    files = lib.files()
    paths_by_hash = files.groupby("hash")["path"].apply(sorted).to_dict() if len(files) else {}
    entries = []
    for row in frame.itertuples(index=False):
        wanted = file_tags_of(row._asdict(), model_id, set_genre=set_genre)
        for path in paths_by_hash.get(row.hash, [row.path]):
            entries.append(_plan(path, row.track_id, row.hash, wanted, overwrite))
    if dry_run:
        return [_public(e) for e in entries]
    todo = [e for e in entries if e["changes"] and not e["error"]]
    with lib.lock():  # the old values are safe before any file changes
        backup = read_backup(lib)
        for e in todo:
            kept = backup.setdefault(e["path"], {})
            for key, (old, new) in e["changes"].items():
                kept.setdefault(key, {"old": old})["written"] = new
        _write_backup(lib, backup)
    _apply(lib, todo)
    return [_public(e) for e in entries]


def restore_file_tags(lib: Library, *, dry_run: bool = False) -> list[dict]:
    """Put back the values files had before ``mir tag --write-tags`` changed them.

    A field is restored only while it still holds what mir wrote; one changed since is left as it is
    and reported (``left``: ``{key: (current, mir's value)}``), and stays in the backup. Returns one entry
    per backed-up file: ``{"path", "track_id", "changes": {key: (current, restored)}, "left", "error"}``.
    """
    from .. import audio

    backup = read_backup(lib)
    files = lib.files()
    hash_of = dict(zip(files["path"], files["hash"])) if len(files) else {}
    tracks = lib.tracks()
    track_of = dict(zip(tracks["hash"], tracks["track_id"])) if len(tracks) else {}
    entries = []
    for path, fields in sorted(backup.items()):
        entry = {"path": path, "track_id": track_of.get(hash_of.get(path)), "hash": hash_of.get(path),
                 "changes": {}, "left": {}, "error": None}
        try:
            current = audio.read_metadata(path)
        except MirError as exc:
            entry["error"] = str(exc)
            entries.append(entry)
            continue
        for key, rec in fields.items():
            now = current.get(key)
            if now == rec.get("written") and now != rec["old"]:
                entry["changes"][key] = (now, rec["old"])
            elif now != rec["old"]:
                entry["left"][key] = (now, rec.get("written"))
        entries.append(entry)
    if dry_run:
        return [_public(e) for e in entries]
    _apply(lib, [e for e in entries if e["changes"] and not e["error"]])
    with lib.lock():
        backup = read_backup(lib)
        for e in entries:
            if e["error"]:
                continue
            left = {k: v for k, v in backup.get(e["path"], {}).items() if k in e["left"]}
            if left:
                backup[e["path"]] = left
            else:
                backup.pop(e["path"], None)
        _write_backup(lib, backup)
    return [_public(e) for e in entries]


def read_backup(lib: Library) -> dict[str, dict]:
    """``{path: {key: {"old", "written"}}}`` from the library's backup of file metadata ({} if none)."""
    path = lib.root / BACKUP
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("format") != BACKUP_FORMAT:
            raise ValueError(f"format {data.get('format')!r}, expected {BACKUP_FORMAT}")
        return data["files"]
    except (OSError, ValueError, KeyError, AttributeError) as exc:
        raise CatalogError(f"cannot read the metadata backup {path}: {exc}; it holds the values --restore-tags "
                           "puts back, so keep the file and fix or restore it by hand") from None


def _write_backup(lib: Library, files: dict) -> None:
    atomic.write_text(lib.root / BACKUP, json.dumps({"format": BACKUP_FORMAT, "files": files}, indent=1,
                                                    ensure_ascii=False, sort_keys=True))


def _plan(path: str, track_id: str, track_hash: str, wanted: dict, overwrite: bool) -> dict:
    """What writing ``wanted`` into ``path`` would change, with the file's own fields protected."""
    from .. import audio

    entry = {"path": path, "track_id": track_id, "hash": track_hash, "changes": {}, "kept": {}, "error": None}
    try:
        changes = audio.write_metadata(path, wanted, dry_run=True)
    except MirError as exc:
        entry["error"] = str(exc)
        return entry
    for key, (old, new) in changes.items():
        if old is not None and not key.startswith("mir_") and not overwrite:
            entry["kept"][key] = (old, new)
        else:
            entry["changes"][key] = (old, new)
    return entry


def _apply(lib: Library, entries: list[dict]) -> None:
    """Write each entry's changes (the new value of each ``(old, new)`` pair) into its file; an error
    is noted in the entry. Rewritten files stay known as their tracks."""
    from .. import audio

    rewritten = {}
    try:
        for e in entries:
            try:
                audio.write_metadata(e["path"], {k: new for k, (_, new) in e["changes"].items()})
            except MirError as exc:
                e["error"], e["changes"] = str(exc), {}
                continue
            if e.get("hash"):
                rewritten[e["path"]] = e["hash"]
    finally:  # files already rewritten stay known as their tracks, even when a later one fails
        lib.retag_files(rewritten)


def _public(entry: dict) -> dict:
    return {k: v for k, v in entry.items() if k != "hash"}
