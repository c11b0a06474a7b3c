"""`mir analyze`: compute every missing analysis stage for every track, in worker processes.

Each file is decoded once per run (streamed in bounded memory) and feeds all of its missing
stages at the same time. Results are flushed as atomic part files every few dozen tracks, so a
killed run loses at most the unflushed ones and the next run computes only what is missing.
One bad file is recorded in the failures table and never stops the batch.
"""
from __future__ import annotations

import contextlib
import os
import time
from concurrent.futures import FIRST_COMPLETED, wait
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..config import AnalysisConfig, get_config
from ..errors import MirError, ParameterError
from .library import Library
from .store import ArrayStore
from ..parallel import limit_threads, process_pool
from .stages import stage_versions

PRELOAD = ["mir.catalog.analysis", "mir.audio", "mir.catalog._warm"]


@dataclass
class AnalyzeReport:
    todo: int = 0
    done: int = 0
    failed: int = 0
    skipped_failed: int = 0
    audio_seconds: float = 0.0
    wall_seconds: float = 0.0
    failures: list[dict] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def summary(self) -> str:
        rt = self.audio_seconds / self.wall_seconds if self.wall_seconds else 0.0
        s = f"{self.done} tracks analysed, {self.failed} failed, {self.todo - self.done - self.failed} left"
        if self.warnings:
            s += f", {len(self.warnings)} with warnings"
        if self.skipped_failed:
            s += f", {self.skipped_failed} skipped after earlier failures (--retry-failed to retry)"
        if self.done:
            s += f" ({self.audio_seconds / 60:.1f} min of audio at {rt:.0f}x realtime)"
        return s


def analyze_file(path: str, content_hash: str, stages: dict[str, str], lib_root: str | None,
                 cfg: AnalysisConfig) -> dict:
    """Decode ``path`` once and compute the requested ``stages`` ({name: version}).

    Returns ``{"rows": {stage: row}, "failure": None | {...}}``; the log-mel array is written to
    the library's array store (atomically) when requested. Runs in a worker process.
    """
    from .. import audio
    from ..features import TrackAnalyzer
    from ..features.beats import BeatState
    from ..features.descriptors import chroma_fft_size

    want_logmel = "logmel" in stages
    beats = BeatState() if "beats" in stages else None
    frames = {"n": 0}
    try:
        with contextlib.ExitStack() as stack:
            on_frames = None
            if want_logmel or beats:  # log-mel frames go straight to disk: memory stays bounded for any length
                append = stack.enter_context(ArrayStore(os.path.join(lib_root, "arrays")).column_writer(
                    "logmel", stages["logmel"], content_hash, rows=cfg.n_mels)) if want_logmel else None

                def on_frames(block):
                    frames["n"] += block.shape[-1]
                    if append:
                        append(block)
                    if beats:
                        beats.frames(block)

            analyzer = TrackAnalyzer(sr=cfg.sample_rate, n_fft=cfg.n_fft, hop_length=cfg.hop_length,
                                     n_mels=cfg.n_mels, fmin=cfg.fmin, fmax=cfg.fmax, on_frames=on_frames,
                                     on_chroma=beats.chroma if beats else None)
            level = _Level()
            for block in audio.stream(path, sr=cfg.sample_rate, block_seconds=cfg.stream_block_seconds):
                level.update(block)
                analyzer.update(block)
            desc = analyzer.finalize()
            del analyzer  # its buffers go before the beats stage's peak
        warning = None
        if level.offset_only(cfg.silence_peak):
            warning = {"warning": "no_sound", "message": f"{path}: the signal is a constant offset "
                       f"({level.mean:+.3g}) with no sound, so no key (check the recording)"}
            desc.update(key=None, mode=None, key_confidence=float("nan"))
        rows: dict[str, dict] = {}
        if beats:
            seg = beats.result(sr=cfg.sample_rate, hop_length=cfg.hop_length,
                               chroma_hop=chroma_fft_size(cfg.sample_rate) // 2, tempo=desc["tempo"])
            ArrayStore(os.path.join(lib_root, "arrays")).save("beats", stages["beats"], content_hash, seg["features"])
            rows["beats"] = {"hash": content_hash, "meter": int(seg["meter"]), "beats": seg["beats"].tolist(),
                             "bar_pos": seg["bar_pos"].tolist()}
        if "descriptors" in stages:
            rows["descriptors"] = {"hash": content_hash, **{k: desc[k] for k in sorted(desc)}}
        if want_logmel:
            rows["logmel"] = {"hash": content_hash, "frames": int(frames["n"])}
        return {"rows": rows, "failure": None, "warning": warning, "duration": float(desc.get("duration", 0.0))}
    except MirError as exc:
        return {"rows": {}, "failure": {"error": type(exc).__name__, "message": str(exc)}, "duration": 0.0}
    except Exception as exc:  # a bug or a library crash on one file must not stop the batch
        return {"rows": {}, "failure": {"error": type(exc).__name__, "message": f"{path}: unexpected error: {exc}"},
                "duration": 0.0}


class _Level:
    """Running mean and spread of a streamed signal, to tell a constant offset (DC) from sound.

    The spread of a block is the range of its central 99% of samples: the resampler's ringing
    at the start and end of a constant signal is left out. The resampler's last few samples
    come as a short block of their own: blocks shorter than ``TAIL`` after the first are skipped.
    """

    TAIL = 4096

    def __init__(self):
        self.n, self.total, self.spread = 0, 0.0, 0.0

    def update(self, y: np.ndarray) -> None:
        if y.size and (y.size >= self.TAIL or not self.n):
            lo, hi = np.percentile(y, [0.5, 99.5])
            self.spread = max(self.spread, float(hi - lo))
        self.n, self.total = self.n + y.size, self.total + float(y.sum(dtype=np.float64))

    @property
    def mean(self) -> float:
        return self.total / self.n if self.n else 0.0

    def offset_only(self, silence_peak: float) -> bool:
        """True when the signal is a non-zero constant: no more variation than ``silence_peak``."""
        return self.n > 0 and self.spread <= silence_peak and abs(self.mean) > silence_peak


def plan(lib: Library, versions: dict[str, str], *, retry_failed: bool = False) -> tuple[list[tuple], int]:
    """Tracks that still miss a stage: ``[(track_id, hash, path, {stage: version}), ...]``."""
    tracks = lib.tracks(include_missing=False)
    done = {s: lib.stages.table(s, v).keys() for s, v in versions.items()}
    failed: dict[str, set] = {s: set() for s in versions}
    if not retry_failed:
        for row in lib.failures().itertuples(index=False):
            if row.stage in versions and row.version == versions[row.stage]:
                failed[row.stage].add(row.hash)
    todo, skipped = [], 0
    for t in tracks.sort_values("track_id").itertuples(index=False):
        missing = {s: v for s, v in versions.items() if t.hash not in done[s]}
        blocked = {s for s in missing if t.hash in failed[s]}
        if blocked:
            skipped += 1
            missing = {s: v for s, v in missing.items() if s not in blocked}
        if missing:
            todo.append((t.track_id, t.hash, t.path, missing))
    return todo, skipped


def _results(todo: list, lib_root: str, cfg, *, workers: int, scheduler: str | None):
    """``(item, result)`` of :func:`analyze_file` for every planned item: on a Dask cluster, in this
    process, or in a pool of worker processes with a bounded window of tasks in flight."""
    if scheduler:
        from .remote import run_dask

        yield from run_dask(scheduler, todo, analyze_file, lib_root, cfg)
        return
    if workers <= 1 or len(todo) <= 1:
        with limit_threads(1):  # one core, as in a worker process
            for item in todo:
                yield item, analyze_file(item[2], item[1], item[3], lib_root, cfg)
        return
    if any("beats" in item[3] for item in todo):
        from ..features.beats import warm_up

        warm_up()  # numba compiles once here; workers compiling at once corrupt its cache
    with process_pool(min(workers, len(todo)), preload=PRELOAD) as pool:
        queue = iter(todo)
        running = {}
        for item in queue:
            running[pool.submit(analyze_file, item[2], item[1], item[3], lib_root, cfg)] = item
            if len(running) >= 2 * workers:
                break
        while running:
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for fut in finished:
                yield running.pop(fut), fut.result()
                nxt = next(queue, None)
                if nxt is not None:
                    running[pool.submit(analyze_file, nxt[2], nxt[1], nxt[3], lib_root, cfg)] = nxt


def analyze(lib: Library, *, workers: int | None = None, progress: bool = False, retry_failed: bool = False,
            cfg: AnalysisConfig | None = None, flush_every: int | None = None,
            flush_seconds: float | None = None, scheduler: str | None = None) -> AnalyzeReport:
    """Compute every missing stage for every present track of ``lib``; ``scheduler``: on that Dask cluster
    (:mod:`mir.catalog.remote`: audio and library on a filesystem every worker sees) instead of ``workers``."""
    from tqdm import tqdm

    conf = get_config()
    cfg = cfg or conf.analysis
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise ParameterError(f"workers must be None (every core) or a whole number >= 1, got workers={workers!r}")
    workers = workers or conf.runtime.workers or os.cpu_count() or 1
    flush_every = flush_every or conf.runtime.flush_every
    flush_seconds = conf.runtime.flush_seconds if flush_seconds is None else flush_seconds
    versions = stage_versions(cfg)
    report = AnalyzeReport()
    start = time.monotonic()
    with lib.lock():
        todo, report.skipped_failed = plan(lib, versions, retry_failed=retry_failed)
        report.todo = len(todo)
        pending_rows: dict[str, list[dict]] = {s: [] for s in versions}
        pending_fail: list[dict] = []
        pending_warn: list[dict] = []
        last_flush = time.monotonic()

        def flush():
            nonlocal last_flush
            for s, rows in pending_rows.items():
                if rows:
                    lib.stages.table(s, versions[s]).append(pd.DataFrame(rows))
                    rows.clear()
            lib.record_failures(pending_fail)
            pending_fail.clear()
            lib.record_warnings(pending_warn)
            pending_warn.clear()
            last_flush = time.monotonic()

        def collect(item, result, bar):
            track_id, h, path, stages = item
            for s, row in result["rows"].items():
                pending_rows[s].append(row)
            if result["failure"]:
                report.failed += 1
                for s in stages:
                    f = {"hash": h, "track_id": track_id, "path": path, "stage": s, "version": stages[s],
                         **result["failure"]}
                    pending_fail.append(f)
                report.failures.append({"path": path, **result["failure"]})
            else:
                report.done += 1
                report.audio_seconds += result["duration"]
                if result.get("warning") and "descriptors" in stages:
                    pending_warn.append({"hash": h, "track_id": track_id, "path": path, "stage": "descriptors",
                                         "version": stages["descriptors"], **result["warning"]})
                    report.warnings.append(result["warning"]["message"])
            bar.update(1)
            n_pending = sum(map(len, pending_rows.values())) + len(pending_fail)
            if n_pending >= flush_every or time.monotonic() - last_flush > flush_seconds:
                flush()

        with tqdm(total=len(todo), desc="analyze", unit="track", disable=not progress) as bar:
            try:
                with contextlib.closing(_results(todo, str(lib.root), cfg, workers=workers, scheduler=scheduler)) as results:
                    for item, result in results:
                        collect(item, result, bar)
            finally:
                flush()  # whatever finished is kept, also on Ctrl-C
                bar.set_postfix_str(f"{report.done} done, {report.failed} failed")  # stays as a summary
        for s, v in versions.items():
            lib.stages.table(s, v).compact()
    report.wall_seconds = time.monotonic() - start
    return report
