"""What one server keeps between requests: the library, and caches that follow it.

Loaded objects (the similarity index, the track metadata, the playlist track set) are cached and
dropped whenever the library changes on disk (another ``mir tag`` or ``mir index update``, or an
upload added here), judged from the modification times of its tables, checked at most once a second.

The recommender for ``/users/{user}/recommendations`` is fitted on the events file, in a
background thread started with the server, by the library's ``make(method).fit`` (what ``mir
recommend`` fits); the fitted model is saved under ``LIB/serve/recommenders/<digest>/`` so a restart
with the same events, tracks and method reads it back instead of fitting again.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
from pathlib import Path

from . import deps

LOG = logging.getLogger("mir.api")
CHECK_EVERY_S = 1.0


class _Library(deps.Library):
    """A :class:`~mir.catalog.Library` that reads its tracks table again only when the file changed.

    ``Library.track`` (which every similarity query calls) reads ``tracks.parquet`` each time; in a
    server that was most of a query's time. Callers get a copy, so nothing they do reaches the cache.
    """

    _tracks_key = None
    _tracks_frame = None

    def tracks(self, *, include_missing: bool = True):
        try:
            st = os.stat(self.root / "tracks.parquet")
            key = (st.st_ino, st.st_mtime_ns, st.st_size)
        except OSError:
            key = None
        if key is None or key != self._tracks_key:
            self._tracks_frame, self._tracks_key = super().tracks(), key
        frame = self._tracks_frame.copy()
        return frame if include_missing else frame[frame["status"] == "ok"].reset_index(drop=True)


class Service:
    def __init__(self, lib_path: str | os.PathLike, *, model: str | None = None, events: str | None = None,
                 rec_method: str = "hybrid", read_only: bool = False):
        self.lib = _Library(lib_path)
        self.model = model
        self.events = None if events is None else str(Path(events).expanduser().resolve())
        self.rec_method = rec_method
        self.read_only = read_only
        self.tmp = self.lib.root / "tmp" / "serve"
        self.uploads = self.lib.root / "uploads"
        self._lock = threading.RLock()
        self._cache: dict = {}
        self._version = None
        self._checked = 0.0
        self.recommender_state = {"state": "off" if events is None else "waiting", "detail": None}
        self._recommender = None
        self.analyses = max(1, (os.cpu_count() or 2) // 2)  # uploads analysed at once
        self._limiter = None
        self.jobs = None  # the generation jobs (mir.api.jobs.Jobs), set by create_app

    # --- cache that follows the library --------------------------------------------------------
    def _disk_version(self) -> tuple:
        root = self.lib.root
        paths = [root / "tracks.parquet", root / "files.parquet", *sorted((root / "stages").glob("*/*")),
                 *sorted((root / "indexes").glob("*/manifest.json"))]
        out = []
        for p in paths:
            try:
                st = p.stat()
                out.append((str(p), st.st_mtime_ns, st.st_size))
            except OSError:
                pass
        return tuple(out)

    def cached(self, name: str, build):
        with self._lock:
            now = time.monotonic()
            if now - self._checked >= CHECK_EVERY_S:
                self._checked = now
                version = self._disk_version()
                if version != self._version:
                    self._version, self._cache = version, {}
            if name not in self._cache:
                self._cache[name] = build()
            return self._cache[name]

    def analysis_limiter(self):
        """Created on first use, inside the event loop that uses it."""
        import anyio

        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(self.analyses)
        return self._limiter

    def forget(self) -> None:
        with self._lock:
            self._cache, self._checked = {}, 0.0

    # --- what the endpoints read ---------------------------------------------------------------
    def model_id(self) -> str:
        return self.cached("model_id", lambda: deps.resolve_model_id(self.lib, self.model))

    def index(self) -> "deps.LibraryIndex":
        return self.cached("index", lambda: deps.open_library_index(self.lib, self.model))

    def meta(self):
        """Track metadata frame (by track id) for listing and filters: the index's when there is one."""
        def build():
            try:
                return self.index().meta
            except deps.CatalogError:
                return deps.track_metadata(self.lib, self.model_id())
        return self.cached("meta", build)

    def track(self, ref: str):
        """The catalogue row of a track reference: full ids from a cached table, the rest via ``Library.track``."""
        by_id = self.cached("tracks_by_id", lambda: self.lib.tracks().set_index("track_id", drop=False))
        if ref in by_id.index:
            return by_id.loc[ref]
        return self.lib.track(ref)

    def track_tags(self, content_hash: str, model_id: str) -> dict | None:
        """What ``track_tags`` returns (decided tags, genre, ``{name: prob}`` maps), from one cached read of the table."""
        frame = self.cached(f"tags/{model_id}", lambda: deps.load_tags(self.lib, model_id, include_missing=True)
                            .drop_duplicates("hash").set_index("hash"))
        if content_hash not in frame.index:
            return None
        row = frame.loc[content_hash]
        music = row.get("music")
        return {"model_id": model_id, "tags": list(row["tags"]), "genre": row["genre"],
                "tag_probs": dict(zip(frame.attrs["tags"], map(float, row["tag_probs"]))),
                "genre_probs": dict(zip(frame.attrs["genres"], map(float, row["genre_probs"]))),
                "music": None if music is None or music != music else float(music)}

    def trackset(self):
        return self.cached("trackset", lambda: deps.from_library(self.lib, self.model_id()))

    # --- recommendations -----------------------------------------------------------------------
    def start_recommender(self) -> None:
        if self.events is not None and self.recommender_state["state"] == "waiting":
            self.recommender_state = {"state": "fitting", "detail": f"{self.rec_method} on {self.events}"}
            threading.Thread(target=self._fit_recommender, name="mir-recommender-fit", daemon=True).start()

    def _fit_recommender(self) -> None:
        try:
            inputs = deps.load_inputs(self.lib, self.events, model_id=self.model)
            key = hashlib.blake2b(json.dumps([inputs.digest(), self.rec_method], sort_keys=True).encode(),
                                  digest_size=8).hexdigest()
            folder = self.lib.root / "serve" / "recommenders" / key
            if (folder / "model.json").is_file():
                model = deps.load_model(folder)
            else:
                model = deps.make(self.rec_method).fit(inputs.interactions, inputs.tracks)
                if not self.read_only:
                    try:
                        deps.save_model(model, folder)
                    except OSError as exc:  # a library folder we may not write: keep it in memory only
                        LOG.warning("could not save the fitted recommender under %s: %s", folder, exc)
            self._recommender = model
            self.recommender_state = {"state": "ready", "detail": f"{self.rec_method}, {inputs.report.summary()}"}
        except Exception as exc:  # reported by /stats and the endpoint, never raised in a thread
            LOG.exception("fitting the recommender failed")
            self.recommender_state = {"state": "failed", "detail": f"{type(exc).__name__}: {exc}"}

    def recommender(self):
        return self._recommender
