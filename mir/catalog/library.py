"""A library directory: everything mir knows about one music collection.

Layout (all tables Parquet, every write atomic)::

    LIB/library.json                 format version, mir version that created it
    LIB/files.parquet                every audio file seen: path, content hash, size, mtime
    LIB/tracks.parquet               one row per distinct content (track), with file tags
    LIB/stages/<stage>/<version>/    analysis results, see :mod:`mir.catalog.store`
    LIB/arrays/<stage>/<version>/    per-track arrays (log-mel spectrograms)
    LIB/failures/                    one row per (content hash, stage, version) that failed, and per
                                     path that could not be scanned
    LIB/warnings/                    one row per (content hash, stage, kind) that was analysed with a caveat
    LIB/aliases.parquet              bytes hash -> track hash, for files whose tags mir rewrote

The library never stores audio; it points at files by absolute path and knows them by hash.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import pandas as pd

from .. import __version__, atomic, audio
from ..config import get_config
from ..errors import AudioError, CatalogError, TrackNotFoundError
from .scan import FileStat, Unreadable, content_hash, track_id_of, walk_audio
from .stages import DESCRIPTOR_COLUMNS, stage_versions
from .store import ArrayStore, PartTable, StageStore

FORMAT_VERSION = 1
TRACK_COLUMNS = [
    "track_id", "hash", "path", "n_files", "status", "format", "subtype", "duration", "sample_rate",
    "channels", "size", "title", "artist", "album", "genre", "year",
]
FILE_COLUMNS = ["path", "hash", "size", "mtime_ns"]
FAILURE_COLUMNS = ["hash", "track_id", "path", "stage", "version", "error", "message"]
WARNING_COLUMNS = ["hash", "track_id", "path", "stage", "version", "warning", "message"]
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
    failures: list[tuple[str, str]] = field(default_factory=list)  # (path, message), new this scan
    failed_before: int = 0  # unchanged files that failed an earlier scan
    warnings: list[tuple[str, str]] = field(default_factory=list)  # (path, message)

    def summary(self) -> str:
        s = (f"{self.files} audio files seen, {self.hashed} hashed, {self.new_tracks} new tracks, "
             f"{self.moved} moved/renamed, {self.missing} newly missing, {self.restored} back again, "
             f"{self.duplicates} duplicate copies")
        if self.failures or self.failed_before:
            s += f", {len(self.failures) + self.failed_before} unreadable (see `mir failures`)"
        if self.warnings:
            s += f", {len(self.warnings)} with warnings"
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
        self._failures = PartTable(self.root / "failures", key=["hash", "path", "stage", "version"])
        self._warnings = PartTable(self.root / "warnings", key=["hash", "stage", "version", "warning"])

    @classmethod
    def open_or_create(cls, root: str | os.PathLike) -> "Library":
        return cls(root, create=True)

    # --- locking -------------------------------------------------------------------------
    @contextlib.contextmanager
    def lock(self):
        """Exclusive writer lock; released by the OS even when the process is killed. The holder writes
        its process id and command into the lock file, so a refused writer can say who holds it."""
        fh = open(self.root / ".lock", "a+")
        try:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise CatalogError(self._locked_message(fh)) from None
            fh.seek(0)
            fh.truncate()
            fh.write(json.dumps({"pid": os.getpid(), "command": _command_line(), "since": time.time()}))
            fh.flush()
            yield
        finally:
            fh.close()

    def _locked_message(self, fh) -> str:
        import multiprocessing

        try:
            fh.seek(0)
            holder = json.loads(fh.read() or "{}")
        except (OSError, ValueError):
            holder = {}
        who = (f"process {holder['pid']} ({holder.get('command', '?')}, since "
               f"{time.strftime('%H:%M:%S', time.localtime(holder.get('since', 0)))})" if holder.get("pid")
               else "another process")
        parent = multiprocessing.parent_process()
        if parent is not None and holder.get("pid") == parent.pid:
            return (f"library {str(self.root)!r} is held by this worker's own parent, {who}: the worker process "
                    "ran the calling script again (Python's multiprocessing re-imports the main script in every "
                    "worker) and so tried to start the same job; put the script's code under "
                    "`if __name__ == \"__main__\":`")
        return f"library {str(self.root)!r} is being modified by {who}; wait for it to finish"

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

    def track_of_file(self, path: str | os.PathLike) -> str | None:
        """Id of the catalogued track whose audio ``path`` holds (same bytes, or bytes that mir's tag
        writing made from it), wherever the file lies; None when the library has no such track."""
        digest = content_hash(path)
        digest = self.aliases().get(digest, digest)
        rows = self.tracks()
        hit = rows[rows["hash"] == digest]
        return None if hit.empty else str(hit["track_id"].iloc[0])

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

    # --- failures and warnings --------------------------------------------------------------
    def failures(self) -> pd.DataFrame:
        """Failures still standing, one row per (hash, stage, version), and per path for the scan.

        An analysis failure stands until that stage succeeds for the content. A scan failure
        stands while its path exists and is not a file of a known track (the file was fixed,
        replaced or removed); rows without a hash are paths that could not be read at all.
        """
        frame = self._failures.read()
        if frame.empty:
            return _empty(FAILURE_COLUMNS)
        frame = frame.reindex(columns=FAILURE_COLUMNS)
        is_scan = (frame["stage"] == "scan").to_numpy()
        scans = frame[is_scan].drop_duplicates(subset=["path"], keep="last")
        stages = frame[~is_scan].drop_duplicates(subset=["hash", "stage", "version"], keep="last")
        track_hashes = set(self.tracks()["hash"])
        file_hash = dict(zip(*(self.files()[c] for c in ("path", "hash"))))
        keep_scan = [file_hash.get(p) not in track_hashes and _exists(p) for p in scans["path"]]
        done_cache: dict[tuple[str, str], set] = {}
        keep_stage = []
        for row in stages.itertuples(index=False):
            key = (row.stage, row.version)
            if key not in done_cache:
                done_cache[key] = self.stages.table(*key).keys()
            keep_stage.append(row.hash not in done_cache[key])
        out = pd.concat([scans[keep_scan], _per_file(stages[keep_stage], self.files())], ignore_index=True)
        return out.sort_values(["stage", "path"], kind="stable").reset_index(drop=True)

    def record_failures(self, rows: list[dict]) -> None:
        if rows:
            self._failures.append(pd.DataFrame(rows, columns=FAILURE_COLUMNS))

    def warnings(self) -> pd.DataFrame:
        """Warnings of present tracks: analysed, but with a caveat (a truncated file, no sound)."""
        frame = self._warnings.read()
        if frame.empty:
            return _empty(WARNING_COLUMNS)
        versions = stage_versions()
        current = [st == "scan" or versions.get(st) == v for st, v in zip(frame["stage"], frame["version"])]
        present = set(self.tracks(include_missing=False)["hash"])
        frame = frame[current & frame["hash"].isin(present).to_numpy()].reindex(columns=WARNING_COLUMNS)
        return _per_file(frame, self.files()).sort_values("path", kind="stable").reset_index(drop=True)

    def record_warnings(self, rows: list[dict]) -> None:
        if rows:
            self._warnings.append(pd.DataFrame(rows, columns=WARNING_COLUMNS))

    # --- scanning --------------------------------------------------------------------------
    def scan(self, paths: Iterable[str | os.PathLike], *, progress: bool = False,
             checkpoint_every: int | None = None, checkpoint_seconds: float | None = None) -> ScanReport:
        """Add new audio under ``paths``, follow moved files, mark vanished ones missing.

        Unchanged files (same path, size and mtime) are not re-read. Progress is checkpointed
        (also when the scan stops on an error or Ctrl-C), so a killed scan resumes where it
        stopped and ends with the same tables. Every audio-named path that cannot become a track
        is a failure row naming it, each copy of bad content included.
        """
        from tqdm import tqdm

        runtime = get_config().runtime
        checkpoint_every = checkpoint_every or runtime.flush_every
        checkpoint_seconds = runtime.flush_seconds if checkpoint_seconds is None else checkpoint_seconds
        with self.lock():
            walk = _Walk(self)
            since, last = 0, time.monotonic()
            try:
                stats = list(walk_audio(paths))
                with tqdm(total=len(stats), desc="scan", unit="file", disable=not progress) as bar:
                    for fs in stats:
                        since += walk.add(fs)
                        bar.update(1)
                        if since >= checkpoint_every or (since and time.monotonic() - last > checkpoint_seconds):
                            walk.checkpoint(final=False)
                            since, last = 0, time.monotonic()
                    # the bar stays on screen as a one-line summary
                    bar.set_postfix_str(f"{walk.report.new_tracks} new, {len(walk.report.failures)} unreadable")
            except BaseException:
                with contextlib.suppress(Exception):  # keep the work done; the original error goes on
                    walk.checkpoint(final=False)
                raise
            walk.checkpoint(final=True)
            if len(self._failures.parts()) > 16:
                self._failures.compact()
            return walk.report

    def _describe_file(self, fs: FileStat, h: str) -> tuple[dict | None, dict | None, dict | None]:
        """``(track row, failure row, warning row)`` of a new file's content (one of the first two is None)."""
        base = {"hash": h, "track_id": track_id_of(h), "path": fs.path, "stage": "scan", "version": "1"}
        try:
            info = audio.probe(fs.path)
            tags = audio.read_metadata(fs.path)
        except AudioError as exc:
            return None, {**base, "error": type(exc).__name__, "message": str(exc)}, None
        except Exception as exc:  # a decoder or tag-reader bug on one file must not stop the scan
            return None, {**base, "error": type(exc).__name__,
                          "message": f"{fs.path}: unexpected error reading the file: {exc}"}, None
        row = {
            "track_id": track_id_of(h), "hash": h, "path": fs.path, "n_files": 1, "status": "ok",
            "format": info.format, "subtype": info.subtype, "duration": float(info.duration),
            "sample_rate": int(info.sample_rate), "channels": int(info.channels), "size": int(fs.size),
            "title": tags.get("title"), "artist": tags.get("artist"), "album": tags.get("album"),
            "genre": tags.get("genre"), "year": tags.get("year"),
        }
        cut = audio.truncation(fs.path, info.format, info.frames)
        warning = {**base, "warning": "truncated", "message": f"{fs.path}: truncated: {cut} (copy or download the file again)"}
        return row, None, warning if cut else None

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
            "warnings": int(len(self.warnings())),
        }


def _json_records(frame: pd.DataFrame) -> str:
    """``frame`` as a JSON list of row objects: NaN as null, and ``/`` written plainly (pandas
    escapes it as ``\\/``)."""
    return json.dumps(json.loads(frame.to_json(orient="records")), indent=1, ensure_ascii=False) + "\n"


def _per_file(frame: pd.DataFrame, files: pd.DataFrame) -> pd.DataFrame:
    """Rows about content (by hash) repeated for every file that holds it, each naming its own path."""
    paths: dict[str, list[str]] = {}
    for p, h in zip(files["path"], files["hash"]):
        paths.setdefault(h, []).append(p)
    rows = []
    for row in frame.to_dict("records"):
        for p in sorted(paths.get(row["hash"], [])) or [row["path"]]:
            message = row["message"]
            if p != row["path"] and isinstance(message, str) and message.startswith(f"{row['path']}: "):
                message = f"{p}: " + message[len(row["path"]) + 2:]
            rows.append({**row, "path": p, "message": message})
    return pd.DataFrame(rows, columns=frame.columns)


def _exists(path: str) -> bool:
    """True when ``path`` (or, for a stored name with ``\\xNN`` escapes, its original bytes) exists."""
    if os.path.lexists(path):
        return True
    if "\\x" in path:
        import codecs

        with contextlib.suppress(ValueError, UnicodeError):
            return os.path.lexists(os.fsdecode(codecs.escape_decode(path.encode("utf-8"))[0]))
    return False


class _Walk:
    """The state of one scan: files seen, tracks known, failure and warning rows not yet saved."""

    def __init__(self, lib: Library):
        self.lib = lib
        self.report = ScanReport()
        self.old_files = lib.files()
        self.known = {r.path: r for r in self.old_files.itertuples(index=False)}
        self.tracks = {r["hash"]: r for r in lib.tracks().to_dict("records")}
        self.aliases = lib.aliases()
        failed = lib._failures.read(columns=["hash", "path", "stage"])
        scan_rows = failed[failed["stage"] == "scan"]
        self.failed_paths = dict(zip(scan_rows["path"], scan_rows["hash"]))  # path -> hash it failed with ("": unread)
        self.seen: dict[str, dict] = {}
        self.pending_failures: list[dict] = []
        self.pending_warnings: list[dict] = []

    def add(self, fs: FileStat | Unreadable) -> int:
        """Take one walked entry; returns 1 when it made a new track."""
        report = self.report
        report.files += 1
        if isinstance(fs, Unreadable):
            if self.failed_paths.get(fs.path) == "":
                report.failed_before += 1
                return 0
            self._fail({"hash": "", "track_id": "", "path": fs.path, "stage": "scan", "version": "1",
                        "error": "Unreadable", "message": fs.message})
            return 0
        old = self.known.get(fs.path)
        if old is not None and old.size == fs.size and old.mtime_ns == fs.mtime_ns:
            h = old.hash
        else:
            try:
                h = content_hash(fs.path)
            except OSError as exc:
                self._fail({"hash": "", "track_id": "", "path": fs.path, "stage": "scan", "version": "1",
                            "error": type(exc).__name__, "message": f"{fs.path}: cannot be read: {exc.strerror} "
                            "(check the file and its permissions)"})
                return 0
            h = self.aliases.get(h, h)
            report.hashed += 1
        self.seen[fs.path] = {"path": fs.path, "hash": h, "size": fs.size, "mtime_ns": fs.mtime_ns}
        if h in self.tracks:
            return 0
        if self.failed_paths.get(fs.path) == h:
            report.failed_before += 1
            return 0  # this very file failed before and has not changed: not read again
        row, failure, warning = self.lib._describe_file(fs, h)
        if failure is not None:
            self._fail(failure)
            return 0
        self.tracks[h] = row
        report.new_tracks += 1
        if warning is not None:
            report.warnings.append((fs.path, warning["message"]))
            self.pending_warnings.append(warning)
        return 1

    def _fail(self, row: dict) -> None:
        self.report.failures.append((row["path"], row["message"]))
        self.failed_paths[row["path"]] = row["hash"]
        self.pending_failures.append(row)

    def checkpoint(self, *, final: bool) -> None:
        """Save the tables, failures and warnings so far (atomically)."""
        self.lib.record_failures(self.pending_failures)
        self.pending_failures.clear()
        self.lib.record_warnings(self.pending_warnings)
        self.pending_warnings.clear()
        self.lib._write_tables(*self.lib._merge(self.old_files, self.seen, self.tracks, self.report, final=final))


def _command_line() -> str:
    text = " ".join(os.path.basename(a) if i == 0 else a for i, a in enumerate(sys.argv)) or "python"
    return text if len(text) <= 80 else text[:79] + "…"
