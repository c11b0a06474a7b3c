"""A library directory: everything mir knows about one music collection.

Layout (all tables Parquet, every write atomic)::

    LIB/library.json                 format version, mir version that created it
    LIB/files.parquet                every audio file seen: path, content hash, size, mtime
    LIB/tracks.parquet               one row per distinct content (track), with file tags
    LIB/stages/<stage>/<version>/    analysis results, see :mod:`mir.catalog.store`
    LIB/arrays/<stage>/<version>/    per-track arrays (log-mel spectrograms)
    LIB/failures/                    one row per (content hash, stage, version) that failed
    LIB/aliases.parquet              bytes hash -> track hash, for files whose tags mir rewrote

The library never stores audio; it points at files by absolute path and knows them by hash.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd

from .. import __version__, atomic, audio
from ..config import get_config
from ..errors import AudioError, CatalogError, ParameterError, TrackNotFoundError
from .scan import FileStat, content_hash, track_id_of, walk_audio
from .stages import DESCRIPTOR_COLUMNS, stage_versions
from .store import ArrayStore, PartTable, StageStore

FORMAT_VERSION = 1
TRACK_COLUMNS = [
    "track_id", "hash", "path", "n_files", "status", "format", "subtype", "duration", "sample_rate",
    "channels", "size", "title", "artist", "album", "genre", "year",
]
FILE_COLUMNS = ["path", "hash", "size", "mtime_ns"]
FAILURE_COLUMNS = ["hash", "track_id", "path", "stage", "version", "error", "message"]
ALIAS_COLUMNS = ["bytes_hash", "hash"]


@dataclass
class ScanReport:
    files: int = 0
    hashed: int = 0
    new_tracks: int = 0
    moved: int = 0
    missing: int = 0
    restored: int = 0
    duplicates: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)

    def summary(self) -> str:
        s = (f"{self.files} audio files seen, {self.hashed} hashed, {self.new_tracks} new tracks, "
             f"{self.moved} moved/renamed, {self.missing} newly missing, {self.restored} back again, "
             f"{self.duplicates} duplicate copies")
        if self.failures:
            s += f", {len(self.failures)} unreadable (see `mir failures`)"
        return s


def _empty(columns: list[str]) -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype="object") for c in columns})


class Library:
    """Open (or create) a library directory. Cheap: tables are read on demand."""

    def __init__(self, root: str | os.PathLike, *, create: bool = False):
        self.root = Path(root).expanduser().resolve()
        meta = self.root / "library.json"
        if not meta.exists():
            if not create:
                hint = "create it with `mir scan LIB PATH…`" if not self.root.exists() else \
                    "it is not a mir library (no library.json); scan into a new folder"
                raise CatalogError(f"library {str(self.root)!r} does not exist: {hint}")
            if self.root.exists() and any(self.root.iterdir()):
                raise CatalogError(f"cannot create a library in {str(self.root)!r}: the folder is not empty "
                                   "and holds no library.json; choose a new or empty folder")
            self.root.mkdir(parents=True, exist_ok=True)
            atomic.write_text(meta, json.dumps({"format_version": FORMAT_VERSION, "created_by": f"mir {__version__}"}))
        try:
            info = json.loads(meta.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise CatalogError(f"{meta} is unreadable ({exc}); the library folder is damaged") from None
        if info.get("format_version") != FORMAT_VERSION:
            raise CatalogError(f"library {str(self.root)!r} has format version {info.get('format_version')!r}; "
                               f"this mir ({__version__}) reads version {FORMAT_VERSION}")
        self.stages = StageStore(self.root / "stages")
        self.arrays = ArrayStore(self.root / "arrays")
        self._failures = PartTable(self.root / "failures", key=["hash", "stage", "version"])

    @classmethod
    def open_or_create(cls, root: str | os.PathLike) -> "Library":
        return cls(root, create=True)

    # --- locking -------------------------------------------------------------------------
    @contextlib.contextmanager
    def lock(self):
        """Exclusive writer lock; released by the OS even when the process is killed."""
        fh = open(self.root / ".lock", "a+")
        try:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise CatalogError(f"library {str(self.root)!r} is being modified by another mir process; "
                                   "wait for it to finish") from None
            yield
        finally:
            fh.close()

    # --- tables --------------------------------------------------------------------------
    def _read(self, name: str, columns: list[str]) -> pd.DataFrame:
        path = self.root / name
        if not path.exists():
            return _empty(columns)
        try:
            return pd.read_parquet(path)
        except Exception as exc:
            raise CatalogError(f"cannot read {path}: {exc}") from exc

    def tracks(self, *, include_missing: bool = True) -> pd.DataFrame:
        frame = self._read("tracks.parquet", TRACK_COLUMNS)
        if not include_missing:
            frame = frame[frame["status"] == "ok"].reset_index(drop=True)
        return frame

    def files(self) -> pd.DataFrame:
        return self._read("files.parquet", FILE_COLUMNS)

    def track(self, ref: str) -> pd.Series:
        """A track by id, content hash (or a unique prefix of either), or file path."""
        tracks = self.tracks()
        if os.path.sep in ref or Path(ref).suffix:
            path = str(Path(ref).expanduser().resolve())
            files = self.files()
            hit = files[files["path"] == path]
            if not hit.empty:
                rows = tracks[tracks["hash"] == hit["hash"].iloc[0]]
                if not rows.empty:
                    return rows.iloc[0]
        rows = tracks[tracks["track_id"].str.startswith(ref) | tracks["hash"].str.startswith(ref)] if ref else tracks[:0]
        if len(rows) == 1:
            return rows.iloc[0]
        if len(rows) > 1:
            raise TrackNotFoundError(f"track reference {ref!r} is ambiguous ({len(rows)} tracks match); give more characters")
        raise TrackNotFoundError(f"no track {ref!r} in library {str(self.root)!r} (give a track id or a scanned file path)")

    def aliases(self) -> dict[str, str]:
        """Hash of a file's bytes -> the track hash it belongs to (files whose tags mir rewrote)."""
        frame = self._read("aliases.parquet", ALIAS_COLUMNS)
        return dict(zip(frame["bytes_hash"], frame["hash"]))

    def retag_files(self, track_hashes: dict[str, str]) -> None:
        """Record files rewritten in their metadata only: ``{path: track hash it still is}``.

        Writing tags changes a file's bytes but not its audio: without this, the next scan would
        take it for new content. Each file's row keeps its track hash with the new size and mtime,
        and the new bytes hash becomes an alias, so the file keeps its track id even when it is
        later moved or renamed.
        """
        if not track_hashes:
            return
        with self.lock():
            files = self.files().set_index("path")
            aliases = self.aliases()
            for path, track_hash in track_hashes.items():
                path = str(Path(path).expanduser().resolve())
                if path not in files.index:
                    raise CatalogError(f"{path!r} is not a file of library {str(self.root)!r}; scan it first")
                st = os.stat(path)
                files.loc[path, ["hash", "size", "mtime_ns"]] = [track_hash, st.st_size, st.st_mtime_ns]
                aliases[content_hash(path)] = track_hash
            aliases = {b: h for b, h in aliases.items() if b != h}
            atomic.write_parquet(self.root / "aliases.parquet",
                                 pd.DataFrame(sorted(aliases.items()), columns=ALIAS_COLUMNS))
            atomic.write_parquet(self.root / "files.parquet", files.reset_index()[FILE_COLUMNS].sort_values("path")
                                 .reset_index(drop=True))

    def _write_tables(self, files: pd.DataFrame, tracks: pd.DataFrame) -> None:
        atomic.write_parquet(self.root / "files.parquet", files.sort_values("path").reset_index(drop=True))
        atomic.write_parquet(self.root / "tracks.parquet", tracks.sort_values("track_id").reset_index(drop=True))

    # --- failures --------------------------------------------------------------------------
    def failures(self) -> pd.DataFrame:
        """Failures still standing: (hash, stage, version) that failed and has not succeeded since."""
        frame = self._failures.read()
        if frame.empty:
            return _empty(FAILURE_COLUMNS)
        keep = []
        track_hashes = set(self.tracks()["hash"])
        done_cache: dict[tuple[str, str], set] = {}
        for row in frame.itertuples(index=False):
            if row.stage == "scan":
                keep.append(row.hash not in track_hashes)
                continue
            key = (row.stage, row.version)
            if key not in done_cache:
                done_cache[key] = self.stages.table(*key).keys()
            keep.append(row.hash not in done_cache[key])
        return frame[keep].reset_index(drop=True)

    def record_failures(self, rows: list[dict]) -> None:
        if rows:
            self._failures.append(pd.DataFrame(rows, columns=FAILURE_COLUMNS))

    # --- scanning --------------------------------------------------------------------------
    def scan(self, paths: Iterable[str | os.PathLike], *, progress: bool = False,
             checkpoint_every: int | None = None, checkpoint_seconds: float | None = None) -> ScanReport:
        """Add new audio under ``paths``, follow moved files, mark vanished ones missing.

        Unchanged files (same path, size and mtime) are not re-read. Progress is checkpointed,
        so a killed scan resumes where it stopped and ends with the same tables.
        """
        from tqdm import tqdm

        runtime = get_config().runtime
        checkpoint_every = checkpoint_every or runtime.flush_every
        checkpoint_seconds = runtime.flush_seconds if checkpoint_seconds is None else checkpoint_seconds
        with self.lock():
            report = ScanReport()
            old_files = self.files()
            known = {r.path: r for r in old_files.itertuples(index=False)}
            tracks = {r["hash"]: r for r in self.tracks().to_dict("records")}
            aliases = self.aliases()
            scan_failed = {h for h, s in zip(*(self._failures.read(columns=["hash", "stage"])[c] for c in ("hash", "stage")))
                           if s == "scan"} if self._failures.parts() else set()
            seen: dict[str, dict] = {}
            last = time.monotonic()
            since = 0
            stats = list(walk_audio(paths))
            for fs in tqdm(stats, desc="scan", unit="file", disable=not progress):
                report.files += 1
                old = known.get(fs.path)
                if old is not None and old.size == fs.size and old.mtime_ns == fs.mtime_ns:
                    h = old.hash
                else:
                    try:
                        h = content_hash(fs.path)
                        h = aliases.get(h, h)
                    except OSError as exc:
                        report.failures.append((fs.path, str(exc)))
                        continue
                    report.hashed += 1
                seen[fs.path] = {"path": fs.path, "hash": h, "size": fs.size, "mtime_ns": fs.mtime_ns}
                if h not in tracks and h not in scan_failed:
                    row = self._describe_file(fs, h, report)
                    if row is None:
                        scan_failed.add(h)
                    else:
                        tracks[h] = row
                        report.new_tracks += 1
                        since += 1
                if since >= checkpoint_every or (since and time.monotonic() - last > checkpoint_seconds):
                    self._write_tables(*self._merge(old_files, seen, tracks, report, final=False))
                    since, last = 0, time.monotonic()
            self._write_tables(*self._merge(old_files, seen, tracks, report, final=True))
            return report

    def _describe_file(self, fs: FileStat, h: str, report: ScanReport) -> dict | None:
        try:
            info = audio.probe(fs.path)
            tags = audio.read_metadata(fs.path)
        except AudioError as exc:
            report.failures.append((fs.path, str(exc)))
            self.record_failures([{"hash": h, "track_id": track_id_of(h), "path": fs.path, "stage": "scan",
                                   "version": "1", "error": type(exc).__name__, "message": str(exc)}])
            return None
        return {
            "track_id": track_id_of(h), "hash": h, "path": fs.path, "n_files": 1, "status": "ok",
            "format": info.format, "subtype": info.subtype, "duration": float(info.duration),
            "sample_rate": int(info.sample_rate), "channels": int(info.channels), "size": int(fs.size),
            "title": tags.get("title"), "artist": tags.get("artist"), "album": tags.get("album"),
            "genre": tags.get("genre"), "year": tags.get("year"),
        }

    def _merge(self, old_files: pd.DataFrame, seen: dict[str, dict], tracks: dict[str, dict],
               report: ScanReport, *, final: bool) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Combine old and newly seen files into the files and tracks tables.

        Until the walk is complete (``final`` False), files not yet re-seen are kept as they
        were; at the end, file rows whose path no longer exists are dropped and tracks left
        without any file are marked missing (never deleted: their analysis stays cached).
        """
        rows = dict(seen)
        for r in old_files.to_dict("records"):
            if r["path"] not in rows and (not final or os.path.exists(r["path"])):
                rows[r["path"]] = r
        files = pd.DataFrame(list(rows.values()), columns=FILE_COLUMNS) if rows else _empty(FILE_COLUMNS)
        paths_by_hash: dict[str, list[str]] = {}
        for p, h in zip(files["path"], files["hash"]):
            paths_by_hash.setdefault(h, []).append(p)
        out = []
        for h, t in tracks.items():
            t = dict(t)
            paths = sorted(paths_by_hash.get(h, []))
            if paths:
                if final:
                    if t["status"] == "missing":
                        report.restored += 1
                    elif t["path"] != paths[0] and t["path"] not in paths:
                        report.moved += 1
                    report.duplicates += len(paths) - 1
                t.update(path=paths[0], n_files=len(paths), status="ok")
            elif final:
                if t["status"] != "missing":
                    report.missing += 1
                t.update(n_files=0, status="missing")
            out.append(t)
        frame = pd.DataFrame(out, columns=TRACK_COLUMNS) if out else _empty(TRACK_COLUMNS)
        return files, frame

    # --- analysis results ------------------------------------------------------------------
    def stage_table(self, stage: str, version: str) -> pd.DataFrame:
        return self.stages.table(stage, version).read()

    def descriptors(self) -> pd.DataFrame:
        """Tracks joined with their current descriptors (NaN where not analysed yet)."""
        table = self.stage_table("descriptors", stage_versions()["descriptors"])
        cols = ["hash"] + [c for c in DESCRIPTOR_COLUMNS if c != "duration"]
        table = table.reindex(columns=cols)
        return self.tracks().merge(table, on="hash", how="left")

    def logmel(self, ref: str, *, mmap: bool = False):
        """Cached log-mel spectrogram [n_mels, frames] of a track (id, hash or path)."""
        t = self.track(ref)
        return self.arrays.load("logmel", stage_versions()["logmel"], t["hash"], mmap=mmap)

    def info(self) -> dict:
        """Counts, durations, formats, analysis progress and failures."""
        tracks = self.tracks()
        present = tracks[tracks["status"] == "ok"]
        versions = stage_versions()
        return {
            "library": str(self.root),
            "tracks": int(len(present)),
            "missing": int((tracks["status"] == "missing").sum()),
            "files": int(len(self.files())),
            "duration_hours": float(present["duration"].sum() / 3600) if len(present) else 0.0,
            "formats": {str(k): int(v) for k, v in present["format"].value_counts().sort_index().items()},
            "analysed": {s: int(present["hash"].isin(self.stages.table(s, v).keys()).sum())
                         for s, v in versions.items()},
            "failures": int(len(self.failures())),
        }

    def export(self, path: str | os.PathLike, *, fmt: str | None = None) -> Path:
        """Write tracks with descriptors as csv, parquet or json (format from ``fmt`` or the suffix)."""
        path = Path(path)
        fmt = (fmt or path.suffix.lstrip(".")).lower()
        frame = self.descriptors()
        flat = frame.copy()  # CSV cells hold text: vector descriptors become JSON lists
        for col in ("chroma", "rhythm"):
            flat[col] = [json.dumps([round(float(v), 5) for v in x]) if isinstance(x, (list, np.ndarray)) else ""
                         for x in flat[col]]
        writers = {
            "csv": lambda tmp: flat.to_csv(tmp, index=False),
            "parquet": lambda tmp: frame.to_parquet(tmp, index=False),
            "json": lambda tmp: frame.to_json(tmp, orient="records", indent=1),
        }
        if fmt not in writers:
            raise ParameterError(f"export format {fmt!r} is not supported; use one of {sorted(writers)}")
        atomic.write_with(path, writers[fmt])
        return path
