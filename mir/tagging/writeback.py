"""Writing a model's decided genre and tags into the audio files' own metadata (``mir tag --write-tags``)."""
from __future__ import annotations

from typing import Sequence

import pandas as pd

from ..catalog import Library
from ..catalog.predictions import load_tags
from ..errors import MirError, ParameterError

TAG_SEPARATOR = "; "  # how decided tags are joined in a file's ``mir_tags`` text tag (as read_metadata joins values)


def file_tags_of(row: pd.Series | dict, model_id: str) -> dict[str, str]:
    """Text tags that ``mir tag --write-tags`` sets from one stored row."""
    return {"genre": str(row["genre"]), "mir_tags": TAG_SEPARATOR.join(row["tags"]), "mir_model": model_id}


def write_file_tags(lib: Library, model_id: str, *, dry_run: bool = False,
                    tracks: Sequence[str] | None = None) -> list[dict]:
    """Write decided genre and tags of ``model_id`` into every file of the tagged tracks.

    Sets ``genre``, ``mir_tags`` (decided tags joined by ``"; "``) and ``mir_model`` through
    :func:`mir.audio.write_metadata`: tag blocks only, atomically, audio data untouched. Formats whose
    tags take only fixed keys (M4A) get ``genre`` alone. ``tracks`` limits it to these track ids.

    Returns one entry per file: ``{"path", "track_id", "changes": {key: (old, new)}, "error"}``
    (``changes`` is what would change under ``dry_run``). A file that cannot be written is reported,
    not raised.

    Writing changes a file's bytes but not its audio; the library records the file as the same
    track (:meth:`~mir.catalog.Library.retag_files`), so a later scan keeps its id and analysis.
    """
    frame = load_tags(lib, model_id)
    if tracks is not None:
        frame = frame[frame["track_id"].isin(set(tracks))]
    files = lib.files()
    paths_by_hash = files.groupby("hash")["path"].apply(sorted).to_dict() if len(files) else {}
    out, rewritten = [], {}
    try:
        for row in frame.itertuples(index=False):
            wanted = file_tags_of(row._asdict(), model_id)
            for path in paths_by_hash.get(row.hash, [row.path]):
                entry = _write_file_tags(path, row.track_id, wanted, dry_run)
                if entry["changes"] and not dry_run:
                    rewritten[path] = row.hash
                out.append(entry)
    finally:  # files already rewritten stay known as their tracks, even when a later one fails
        lib.retag_files(rewritten)
    return out


def _write_file_tags(path: str, track_id: str, wanted: dict, dry_run: bool) -> dict:
    from .. import audio

    entry = {"path": path, "track_id": track_id, "changes": {}, "error": None}
    try:
        try:
            entry["changes"] = audio.write_metadata(path, wanted, dry_run=dry_run)
        except ParameterError:  # e.g. M4A takes no custom keys: write the genre only
            entry["changes"] = audio.write_metadata(path, {"genre": wanted["genre"]}, dry_run=dry_run)
    except MirError as exc:
        entry["error"] = str(exc)
    return entry

