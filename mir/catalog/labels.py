"""The labels file format shared by the demo collection and ``mir train``.

A UTF-8 CSV with a header row and exactly the columns ``track,genre,tags``:

``track``  path of the audio file, relative to the folder holding the labels file
``genre``  one genre per track (may be empty when the file only carries tags); ``top/leaf`` names a
           two-level genre (``folk/jig``), and a flat name is read as its own leaf
``tags``   zero or more tags separated by ``|`` (e.g. ``strings|minor|fast``)

An optional fourth column ``weight`` (a number ≥ 0, empty = 1) says how much a track counts in
training: ``mir train`` draws it ``weight`` times as often as a track of weight 1 (e.g. 3 for a
smaller collection trained beside a larger one, 0 to keep a track out of training but in the
file). Every row needs a track and at least one label. Tracks are unique.
"""
from __future__ import annotations

import csv
import io
import os
from pathlib import Path
from typing import Iterable, Mapping, Sequence

from .. import atomic
from ..errors import LabelError

COLUMNS = ("track", "genre", "tags")
WEIGHT = "weight"  # the optional fourth column
TAG_SEPARATOR = "|"


GENRE_SEPARATOR = "/"


def genre_leaf(genre: str) -> str:
    """``"folk/jig"`` -> ``"jig"``; a flat genre is its own leaf."""
    return genre.rsplit(GENRE_SEPARATOR, 1)[-1]


def genre_top(genre: str, tops: Mapping[str, str] | None = None) -> str:
    """``"folk/jig"`` -> ``"folk"``; a flat genre's top is ``tops[genre]`` when given, else itself."""
    if GENRE_SEPARATOR in genre:
        return genre.split(GENRE_SEPARATOR, 1)[0]
    return (tops or {}).get(genre, genre)


def align_genres(genres: Iterable[str], vocabulary: Sequence[str]) -> dict[str, str]:
    """Map label genres outside ``vocabulary`` onto the vocabulary entry with the same leaf.

    Lets two-level labels (``folk/jig``) be scored against a model trained on flat names (``jig``),
    and flat labels of an older collection against a two-level model. A genre whose leaf matches no
    entry, or more than one, is left out of the map (and stays unknown to the vocabulary).
    """
    by_leaf: dict[str, list[str]] = {}
    for v in vocabulary:
        by_leaf.setdefault(genre_leaf(v), []).append(v)
    known = set(vocabulary)
    out = {}
    for g in genres:
        if g and g not in known and len(by_leaf.get(genre_leaf(g), ())) == 1:
            out[g] = by_leaf[genre_leaf(g)][0]
    return out


def split_tags(text: str) -> tuple[str, ...]:
    """``"a| b||a"`` -> ``("a", "b")``: stripped, empty items dropped, first occurrence kept."""
    seen: dict[str, None] = {}
    for t in (text or "").split(TAG_SEPARATOR):
        t = t.strip()
        if t:
            seen.setdefault(t)
    return tuple(seen)


def load_labels(path: str | os.PathLike, *, check_files: bool = False):
    """Read a labels file into a DataFrame with columns ``track`` (str), ``genre`` (str, ``""``
    when absent) and ``tags`` (tuple of str), in file order; plus ``weight`` (float) when the file
    has that column.

    Raises :class:`~mir.errors.LabelError` naming the file and line for a missing file, wrong
    header, empty track, duplicate track, a row without any label, or (``check_files=True``)
    tracks whose audio file does not exist beside the labels file.
    """
    import pandas as pd

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise LabelError(f"{path}: labels file does not exist") from None
    except UnicodeDecodeError as exc:
        raise LabelError(f"{path}: not UTF-8 text ({exc})") from None
    reader = csv.reader(io.StringIO(text))
    try:
        header = next(reader)
    except StopIteration:
        raise LabelError(f"{path}: empty file; expected a header line '{','.join(COLUMNS)}'") from None
    header = [h.strip().lower() for h in header]
    if tuple(header) not in (COLUMNS, COLUMNS + (WEIGHT,)):
        raise LabelError(f"{path} line 1: columns are {header}; expected exactly {list(COLUMNS)} (track,genre,tags), "
                         f"optionally followed by {WEIGHT!r}")
    width = len(header)
    tracks, genres, tags, weights = [], [], [], []
    first_line: dict[str, int] = {}
    for row in reader:
        line = reader.line_num
        if not row or all(not c.strip() for c in row):
            continue
        if len(row) != width:
            raise LabelError(f"{path} line {line}: {len(row)} fields, expected {width} ({','.join(header)}); "
                             "quote fields that contain commas")
        track, genre, tag_text = (c.strip() for c in row[:3])
        if width > 3:
            weights.append(_weight(row[3].strip(), path, line))
        if not track:
            raise LabelError(f"{path} line {line}: empty track")
        if track in first_line:
            raise LabelError(f"{path} line {line}: track {track!r} already listed on line {first_line[track]}")
        row_tags = split_tags(tag_text)
        if not genre and not row_tags:
            raise LabelError(f"{path} line {line}: track {track!r} has neither a genre nor tags")
        first_line[track] = line
        tracks.append(track)
        genres.append(genre)
        tags.append(row_tags)
    if not tracks:
        raise LabelError(f"{path}: no labelled tracks after the header")
    if check_files:
        missing = [t for t in tracks if not (path.parent / t).is_file()]
        if missing:
            raise LabelError(f"{path}: {len(missing)} track(s) not found relative to {path.parent}, "
                             f"e.g. line {first_line[missing[0]]}: {missing[0]!r}")
    frame = pd.DataFrame({"track": tracks, "genre": genres, "tags": tags})
    if width > 3:
        frame[WEIGHT] = weights
    return frame


def _weight(text: str, path: Path, line: int) -> float:
    """A row's training weight: empty means 1; otherwise a finite number ≥ 0."""
    if not text:
        return 1.0
    try:
        w = float(text)
    except ValueError:
        w = float("nan")
    if not (w >= 0 and w != float("inf")):
        raise LabelError(f"{path} line {line}: weight {text!r} is not a number ≥ 0 (leave it empty for 1)")
    return w


def format_labels(rows) -> str:
    """CSV text for ``rows`` of ``(track, genre, tags)`` (tags: iterable of str), ``\\n`` line ends."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(COLUMNS)
    for track, genre, tags in rows:
        bad = [t for t in tags if TAG_SEPARATOR in t or not t.strip()]
        if bad:
            raise LabelError(f"track {track!r}: tag(s) {bad} are empty or contain {TAG_SEPARATOR!r}")
        w.writerow([track, genre, TAG_SEPARATOR.join(tags)])
    return buf.getvalue()


def write_labels(path: str | os.PathLike, rows) -> None:
    """Atomically write a labels file (see :func:`format_labels`)."""
    atomic.write_text(path, format_labels(rows))
