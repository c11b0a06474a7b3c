"""Library-level inputs of the recommend commands: tracks + checked events as :class:`Interactions`."""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import ParameterError
from .trackset import TrackSet, from_library, known_tracks
from .events import EventReport, Interactions, clean_events, read_events, track_resolver


@dataclass
class Inputs:
    tracks: TrackSet
    interactions: Interactions
    report: EventReport
    resolve: Callable[[str], str | None]

    def digest(self) -> dict:
        """What identifies the input of a batch job (recorded in its job.json)."""
        h = hashlib.blake2b(digest_size=16)
        h.update("\n".join(self.tracks.track_ids.tolist()).encode())
        h.update(np.ascontiguousarray(self.tracks.embeddings).tobytes())
        return {"events": self.interactions.fingerprint(), "tracks": h.hexdigest(), "model_id": self.tracks.model_id}


def load_inputs(lib, events: str | os.PathLike, *, model_id: str | None = None) -> Inputs:
    """Tracks of ``lib`` (embeddings of ``model_id``) and the events of ``events`` mapped onto them.

    Track references resolve as in :func:`~mir.recommend.events.track_resolver`, relative paths
    against the events file's folder. Skipped rows are counted in the report (and logged).
    """
    tracks = from_library(lib, model_id)
    ids, hashes, paths = known_tracks(lib, tracks)
    resolve = track_resolver(ids, hashes=hashes, paths=paths, base=Path(events).resolve().parent)
    frame = read_events(events)
    clean, report = clean_events(frame, resolve, source=str(events))
    if report.kept == 0:
        raise ParameterError(f"{report.summary()}: no usable event; check that the tracks name tracks of "
                             f"{lib.root} (track ids, hashes or file paths)")
    return Inputs(tracks, Interactions.from_events(clean, tracks.track_ids), report, resolve)
