"""The library's beat-synchronous segments, as the beats stage of ``mir analyze`` stored them.

:class:`Segments` flattens every analysed track's segments into arrays (one row per segment):
``track`` (index into ``track_ids``), ``beat`` (segment index within its track: it spans beats
``beat`` and ``beat + 1``), ``bar_pos``, ``start``/``end`` (s) and ``features``. Per track it keeps
tempo, key, mode and loudness from the descriptors stage and the file path for rendering.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..catalog import Library
from ..catalog.stages import stage_versions
from ..errors import CatalogError
from ..features.beats import SEGMENT_FEATURES


@dataclass
class Segments:
    tracks: pd.DataFrame  # index = track id: hash, path, tempo, key, mode, loudness, meter, first (row of its first segment), n
    track: np.ndarray  # [m] int32 index into tracks
    beat: np.ndarray  # [m] int32
    bar_pos: np.ndarray  # [m] int8
    start: np.ndarray  # [m] float64 s
    end: np.ndarray  # [m] float64 s
    features: np.ndarray  # [m, len(SEGMENT_FEATURES)] float32

    def __len__(self) -> int:
        return len(self.track)

    @property
    def track_ids(self) -> np.ndarray:
        return self.tracks.index.to_numpy(str)

    def rows_of(self, track_ids) -> np.ndarray:
        """Segment rows of the given tracks (in track order, then beat order)."""
        pos = self.tracks.index.get_indexer(list(track_ids))
        return np.concatenate([np.arange(self.tracks["first"].iat[p], self.tracks["first"].iat[p] + self.tracks["n"].iat[p])
                               for p in pos if p >= 0] or [np.zeros(0, np.int64)])

    def successor(self) -> np.ndarray:
        """Row of the next segment of the same track [m] (-1 at a track's last segment)."""
        nxt = np.arange(1, len(self) + 1)
        last = np.r_[self.track[1:] != self.track[:-1], True]
        nxt[last] = -1
        return nxt


def load_segments(lib: Library, track_ids=None) -> Segments:
    """Segments of the present analysed tracks of ``lib`` (all, or ``track_ids``), in track-id order.

    Raises :class:`CatalogError` naming ``mir analyze`` when no track has the current beats stage.
    """
    versions = stage_versions()
    rows = lib.stages.table("beats", versions["beats"]).read()
    if rows.empty:
        raise CatalogError(f"library {str(lib.root)!r} has no beats analysis (stage beats {versions['beats']}); "
                           f"run `mir analyze {lib.root}`")
    tracks = lib.tracks(include_missing=False)[["track_id", "hash", "path"]]
    desc = lib.stage_table("descriptors", versions["descriptors"]).reindex(columns=["hash", "tempo", "key", "mode", "loudness"])
    frame = tracks.merge(rows, on="hash").merge(desc, on="hash", how="left").sort_values("track_id")
    if track_ids is not None:
        wanted = set(map(str, track_ids))
        missing = wanted - set(frame["track_id"])
        if missing:
            raise CatalogError(f"{len(missing)} track(s) have no beats analysis (e.g. {sorted(missing)[0]}); "
                               f"run `mir analyze {lib.root}`")
        frame = frame[frame["track_id"].isin(wanted)]
    cols = {k: [] for k in ("track", "beat", "bar_pos", "start", "end", "features")}
    firsts, counts = [], []
    total = 0
    for i, row in enumerate(frame.itertuples(index=False)):
        beats = np.asarray(row.beats, dtype=np.float64)
        n = max(len(beats) - 1, 0)
        feats = lib.arrays.load("beats", versions["beats"], row.hash) if n else np.zeros((0, len(SEGMENT_FEATURES)), np.float32)
        if feats.shape != (n, len(SEGMENT_FEATURES)):
            raise CatalogError(f"beats arrays of track {row.track_id} have shape {feats.shape}, expected "
                               f"({n}, {len(SEGMENT_FEATURES)}); run `mir analyze {lib.root}` again")
        firsts.append(total)
        counts.append(n)
        total += n
        cols["track"].append(np.full(n, i, np.int32))
        cols["beat"].append(np.arange(n, dtype=np.int32))
        cols["bar_pos"].append(np.asarray(row.bar_pos[:n], dtype=np.int8))
        cols["start"].append(beats[:-1])
        cols["end"].append(beats[1:])
        cols["features"].append(feats.astype(np.float32))
    out = frame.set_index("track_id")[["hash", "path", "tempo", "key", "mode", "loudness", "meter"]].copy()
    out["first"], out["n"] = firsts, counts
    cat = lambda k, empty: np.concatenate(cols[k]) if cols[k] else empty  # noqa: E731
    return Segments(out, cat("track", np.zeros(0, np.int32)), cat("beat", np.zeros(0, np.int32)),
                    cat("bar_pos", np.zeros(0, np.int8)), cat("start", np.zeros(0)), cat("end", np.zeros(0)),
                    cat("features", np.zeros((0, len(SEGMENT_FEATURES)), np.float32)))
