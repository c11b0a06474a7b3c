"""`mir tag`: run a tagger over a library and keep its outputs in the catalogue.

For every present track not yet tagged by the model: load the cached log-mel (tracks without one
are analysed first, with :func:`mir.catalog.analyze`), cut it into chunks, batch chunks across
tracks, run the model in inference mode, average the chunk outputs per track, and store the result
(see :mod:`mir.models.inference` for chunking, batching and aggregation). Work is done in groups
of tracks, in this process (torch on all cores), in worker processes (one torch thread each) or
as tasks on a Dask cluster; the driver alone writes. Results are flushed as atomic part files, so
a killed run keeps what it flushed and the next run does only the rest; every forward pass has
the same batch shape, so resumed, multi-process and Dask runs give bit-identical results.

The rows are stage ``tags``, version = the model id (layout and readers: :mod:`mir.catalog.predictions`).
"""
from __future__ import annotations

import json
import os
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
import pandas as pd

from .. import atomic
from ..catalog import Library, analyze
from ..catalog.predictions import STAGE, resolve_model
from ..catalog.stages import stage_versions
from ..config import AnalysisConfig, get_config
from ..errors import ModelError, ParameterError
from ..models.decisions import DECISION_RULES, Measured, decide
from ..models.gate import MUSIC_THRESHOLD
from ..models.inference import DEFAULT_BATCH_SIZE, resolve_precision
from .worker import TagSettings, load_group, tag_group, tag_loaded

GROUP_CHUNKS = 256  # chunks per task (≈ 16 batches): large enough that padding the last batch is cheap
PRELOAD = ["mir.tagging.worker", "mir.models", "torch"]


@dataclass
class TagReport:
    model_id: str = ""
    todo: int = 0
    done: int = 0
    failed: int = 0
    non_music: int | None = None  # tracks of this run with music probability < MUSIC_THRESHOLD (None: no gate)
    already: int = 0
    skipped_failed: int = 0
    skipped_unanalysed: int = 0
    analysed: int = 0
    chunks: int = 0
    audio_seconds: float = 0.0
    wall_seconds: float = 0.0
    failures: list[dict] = field(default_factory=list)

    def summary(self) -> str:
        s = (f"model {self.model_id}: {self.done} tracks tagged, {self.failed} failed, "
             f"{self.already} already tagged")
        if self.non_music is not None:
            s += f", {self.non_music} of them not music (music gate p < {MUSIC_THRESHOLD})"
        if self.analysed:
            s += f", {self.analysed} analysed first"
        if self.skipped_failed:
            s += f", {self.skipped_failed} skipped after earlier failures (--retry-failed to retry)"
        if self.skipped_unanalysed:
            s += (f", {self.skipped_unanalysed} not analysed (no log-mel, or older descriptors than the model needs: "
                  "run `mir analyze`; failures: `mir failures`)")
        if self.done and self.wall_seconds:
            s += (f" ({self.audio_seconds / 60:.1f} min of audio in {self.wall_seconds:.1f} s, "
                  f"{self.audio_seconds / self.wall_seconds:.0f}x realtime)")
        return s


def plan(lib: Library, model_id: str, logmel_version: str, *, retry_failed: bool = False,
         descriptors_version: str = "") -> tuple[list[tuple], dict]:
    """Present tracks still to tag, ``[(track_id, hash, path, duration)]`` by track id, and counts of the rest.

    With ``descriptors_version`` (models with a track head) a track also needs those descriptors.
    """
    tracks = lib.tracks(include_missing=False).sort_values("track_id")
    done = lib.stages.table(STAGE, model_id).keys()
    have_mel = lib.stages.table("logmel", logmel_version).keys()
    if descriptors_version:
        have_mel = have_mel & lib.stages.table("descriptors", descriptors_version).keys()
    failed = set()
    if not retry_failed:
        failures = lib.failures()
        failed = set(failures.loc[(failures["stage"] == STAGE) & (failures["version"] == model_id), "hash"])
    todo, counts = [], {"already": 0, "skipped_failed": 0, "unanalysed": 0}
    for t in tracks.itertuples(index=False):
        if t.hash in done:
            counts["already"] += 1
        elif t.hash in failed:
            counts["skipped_failed"] += 1
        elif t.hash not in have_mel:
            counts["unanalysed"] += 1
        else:
            todo.append((t.track_id, t.hash, t.path, float(t.duration or 0.0)))
    return todo, counts


def group_tracks(todo: Sequence[tuple], frames: dict[str, int], *, chunk_frames: int, n_chunks: int | None,
                 group_chunks: int = GROUP_CHUNKS) -> list[list[tuple]]:
    """Consecutive groups of about ``group_chunks`` chunks (a long track alone can exceed it)."""
    from ..models.inference import chunk_starts

    groups, cur, size = [], [], 0
    for item in todo:
        k = len(chunk_starts(max(1, frames.get(item[1], 1)), chunk_frames, n_chunks))
        if cur and size + k > group_chunks:
            groups.append(cur)
            cur, size = [], 0
        cur.append(item)
        size += k
    if cur:
        groups.append(cur)
    return groups



def tag(
    lib: Library,
    *,
    model: str | os.PathLike | None = None,
    n_chunks: int | None = None,
    workers: int | None = None,
    scheduler: str | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    precision: str = "fp32",
    compile: bool = False,
    threads: int | None = None,
    analyze_missing: bool = True,
    retry_failed: bool = False,
    progress: bool = False,
    flush_every: int | None = None,
    flush_seconds: float | None = None,
    group_chunks: int = GROUP_CHUNKS,
    cfg: AnalysisConfig | None = None,
    on_flush: Callable[[int], None] | None = None,
) -> TagReport:
    """Tag every present track of ``lib`` that ``model`` has not tagged yet.

    Parameters
    ----------
    model : checkpoint path, or the id (or id prefix) of a model that tagged ``lib`` before (its checkpoint
        is where it tagged from); ``None`` = the packaged default model (see
        :func:`~mir.catalog.predictions.resolve_model`)
    n_chunks : chunks per track (evenly spaced); ``None`` = every non-overlapping chunk
    workers : 1 (default) = in this process, torch on all cores; N > 1 = N worker processes with one
        torch thread each
    scheduler : address of a Dask ``distributed`` scheduler: groups of tracks become tasks there
        (workers must see the library folder and the checkpoint at the same paths; tracks without a
        log-mel are analysed here first); overrides ``workers``
    batch_size : chunks per forward pass
    precision : ``"fp32"`` (default), ``"bf16"`` or ``"auto"`` (bf16 where the CPU runs it natively); see
        :mod:`mir.models.inference`. Rows record the precision that produced them.
    compile : ``torch.compile(dynamic=True)`` the model (slow start; pays off on large libraries)
    threads : torch threads per process; ``None`` = all cores in this process, 1 per worker process or
        Dask task. On a busy machine one thread per process (``workers`` = cores) is often faster than
        intra-op threads: see benchmarks/tagging.py
    analyze_missing : analyse tracks without a cached log-mel first (``mir analyze``); if False they are skipped
    retry_failed : retry tracks whose tagging failed before with this model
    on_flush : called with the number of rows written so far after every flush (tests, progress hooks)

    Raises :class:`ModelError` when the checkpoint is missing or unusable, or was trained on
    features that differ from the library's analysis settings.
    """
    conf = get_config()
    cfg = cfg or conf.analysis
    flush_every = flush_every or conf.runtime.flush_every
    flush_seconds = conf.runtime.flush_seconds if flush_seconds is None else flush_seconds
    workers = 1 if workers is None else workers
    _check_options(n_chunks=n_chunks, batch_size=batch_size, precision=precision, workers=workers, threads=threads)
    path, loaded = _load_model(lib, model, cfg)
    report = TagReport(model_id=loaded.model_id, non_music=None if loaded.music_gate is None else 0)
    start = time.monotonic()
    versions = stage_versions(cfg)
    settings = TagSettings(
        model_path=str(path), model_id=loaded.model_id, lib_root=str(lib.root), logmel_version=versions["logmel"],
        n_chunks=n_chunks, batch_size=batch_size, precision=precision, compile=compile,
        threads=threads or (1 if (scheduler or workers > 1) else 0), with_context=loaded.model.track_head is not None,
    )
    descriptors_version = versions["descriptors"] if settings.with_context else ""
    if analyze_missing:
        report.analysed = _analyse_first(lib, settings, descriptors_version, retry_failed=retry_failed, cfg=cfg,
                                         workers=workers, progress=progress, flush_every=flush_every,
                                         flush_seconds=flush_seconds)
    with lib.lock():
        todo = _plan_into(report, lib, settings, descriptors_version, retry_failed=retry_failed,
                          measured_version=versions["descriptors"])
        table = lib.stages.table(STAGE, loaded.model_id)
        _write_model_info(lib, table, loaded, path, versions["descriptors"])
        groups = group_tracks(todo, _frames_of(lib, settings.logmel_version), chunk_frames=loaded.config.chunk_frames,
                              n_chunks=n_chunks, group_chunks=group_chunks)
        writer = _Writer(lib, table, report, {item[1]: item[3] for item in todo}, every=flush_every,
                         seconds=flush_seconds, on_flush=on_flush)
        _run_groups(groups, settings, writer, total=len(todo), scheduler=scheduler, workers=workers,
                    progress=progress)
        table.compact()
    report.wall_seconds = time.monotonic() - start
    return report


# --- the stages of tag() ----------------------------------------------------------------------------
def _check_options(*, n_chunks, batch_size, precision, workers, threads) -> None:
    if n_chunks is not None and (isinstance(n_chunks, bool) or not isinstance(n_chunks, int) or n_chunks < 1):
        raise ParameterError(f"n_chunks must be a positive int or None, got {n_chunks!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ParameterError(f"batch_size must be a positive int, got {batch_size!r}")
    resolve_precision(precision)
    for name, value in (("workers", workers), ("threads", threads or 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ParameterError(f"{name} must be a positive int, got {value!r}")


def _load_model(lib: Library, model, cfg: AnalysisConfig):
    """``(checkpoint path, LoadedModel)``, refused when it was trained on other analysis settings."""
    from ..models import load_checkpoint

    ref = resolve_model(lib, model, tagged=False)
    if ref.checkpoint is None:
        raise ModelError(f"model {ref.model_id} tagged {str(lib.root)!r} from a checkpoint that is no longer there; "
                         "pass --model PATH to its checkpoint")
    path = ref.checkpoint
    loaded = load_checkpoint(path)
    loaded.check_analysis(cfg)
    if loaded.config.n_mels != cfg.n_mels:
        raise ModelError(f"{path}: model expects n_mels={loaded.config.n_mels}, the library analyses "
                         f"n_mels={cfg.n_mels}")
    return path, loaded


def _analyse_first(lib: Library, settings: TagSettings, descriptors_version: str, *, retry_failed: bool,
                   cfg: AnalysisConfig, workers: int, progress: bool, flush_every: int, flush_seconds: float) -> int:
    """Analyse the tracks the model cannot tag yet (no log-mel, or no descriptors for a track head);
    returns how many were analysed."""
    _, counts = plan(lib, settings.model_id, settings.logmel_version, retry_failed=retry_failed,
                     descriptors_version=descriptors_version)
    if not counts["unanalysed"]:
        return 0
    return analyze(lib, workers=None if workers == 1 else workers, progress=progress, cfg=cfg,
                   flush_every=flush_every, flush_seconds=flush_seconds).done


def _plan_into(report: TagReport, lib: Library, settings: TagSettings, descriptors_version: str, *,
               retry_failed: bool, measured_version: str) -> list[tuple]:
    """The tracks to tag (see :func:`plan`), counted into ``report``. Each item also carries, read once
    here so any worker gets it with the item: its descriptor context when the model has a track head
    (else None), and what its descriptors measured (:class:`~mir.models.decisions.Measured`, or None),
    which the tag decisions use: ``(track_id, hash, path, duration, context, measured)``."""
    todo, counts = plan(lib, settings.model_id, settings.logmel_version, retry_failed=retry_failed,
                        descriptors_version=descriptors_version)
    report.todo, report.already = len(todo), counts["already"]
    report.skipped_failed, report.skipped_unanalysed = counts["skipped_failed"], counts["unanalysed"]
    if not todo:
        return []
    described = lib.stages.table("descriptors", measured_version).read()
    contexts: list = [None] * len(todo)
    if descriptors_version:
        from ..models.track_head import contexts_from_descriptors

        contexts = list(contexts_from_descriptors(described, [item[1] for item in todo]))
    measured = _measured(described, [item[1] for item in todo])
    return [(*item, context, m) for item, context, m in zip(todo, contexts, measured)]


def _measured(described: pd.DataFrame, hashes: Sequence[str]) -> list[Measured | None]:
    """What the descriptors of each content hash measured (None for a track without descriptors)."""
    rows = {row["hash"]: row for row in described.to_dict("records")} if len(described) else {}
    return [Measured.from_descriptors(rows[h]) if h in rows else None for h in hashes]


class _Writer:
    """Collects finished groups into ``report`` and appends them to the stage table in flushes:
    every ``every`` rows and failures, or ``seconds`` after the last flush."""

    def __init__(self, lib: Library, table, report: TagReport, duration: dict[str, float], *, every: int,
                 seconds: float, on_flush: Callable[[int], None] | None):
        self.lib, self.table, self.report, self.duration = lib, table, report, duration
        self.every, self.seconds, self.on_flush = every, seconds, on_flush
        self.rows: list[dict] = []
        self.failures: list[dict] = []
        self.written = 0
        self.last = time.monotonic()

    def collect(self, result: dict) -> None:
        for row in result["rows"]:
            self.rows.append(row)
            self.report.done += 1
            self.report.chunks += row["n_chunks"]
            if "music" in row:
                self.report.non_music += int(row["music"] < MUSIC_THRESHOLD)
            self.report.audio_seconds += self.duration.get(row["hash"], 0.0)
        for f in result["failures"]:
            self.failures.append(f)
            self.report.failures.append(f)
            self.report.failed += 1
        if len(self.rows) + len(self.failures) >= self.every or time.monotonic() - self.last > self.seconds:
            self.flush()

    def flush(self) -> None:
        if self.rows:
            self.table.append(pd.DataFrame(self.rows))
            self.written += len(self.rows)
            self.rows.clear()
        self.lib.record_failures(self.failures)
        self.failures.clear()
        self.last = time.monotonic()
        if self.on_flush is not None:
            self.on_flush(self.written)


def _run_groups(groups: list[list[tuple]], settings: TagSettings, writer: _Writer, *, total: int,
                scheduler: str | None, workers: int, progress: bool) -> None:
    """Tag every group with the executor the options choose; ``writer`` keeps what finished, also on Ctrl-C."""
    from tqdm import tqdm

    with tqdm(total=total, desc="tag", unit="track", disable=not progress) as bar:
        try:
            for result in _results(groups, settings, scheduler=scheduler, workers=workers):
                writer.collect(result)
                bar.update(len(result["rows"]) + len(result["failures"]))
        finally:
            writer.flush()


def _results(groups: list[list[tuple]], settings: TagSettings, *, scheduler: str | None,
             workers: int) -> Iterator[dict]:
    """One result dict per group, in any order, from the executor the options choose."""
    if not groups:
        return iter(())
    if scheduler:
        return _run_dask(scheduler, groups, settings)
    if workers > 1 and len(groups) > 1:
        return _run_pool(min(workers, len(groups)), groups, settings)
    return _run_local(groups, settings)


def _frames_of(lib: Library, logmel_version: str) -> dict[str, int]:
    frame = lib.stages.table("logmel", logmel_version).read()
    return dict(zip(frame["hash"], frame["frames"].astype(int))) if len(frame) else {}


def _write_model_info(lib: Library, table, loaded, path: Path, descriptors_version: str) -> None:
    """Write ``model.json``; re-decide stored tags when the checkpoint's thresholds or mir's decision
    rules (:data:`~mir.models.decisions.DECISION_RULES`) differ from those the tags were decided by."""
    info = {
        "model_id": loaded.model_id, "checkpoint": str(path), "tags": list(loaded.tags),
        "genres": list(loaded.genres), "thresholds": [float(v) for v in loaded.thresholds],
        "decision_rules": DECISION_RULES,
        "config": loaded.config.to_dict(), "analysis": loaded.analysis, "mir_version": loaded.mir_version,
    }
    target = table.folder / "model.json"
    if target.exists():
        try:
            old = json.loads(target.read_text())
        except (OSError, json.JSONDecodeError):
            old = None
        if old is not None and (old.get("thresholds") != info["thresholds"]
                                or old.get("decision_rules", 1) != DECISION_RULES):
            _redecide(lib, table, loaded, descriptors_version)
    atomic.write_text(target, json.dumps(info, indent=1))


def _redecide(lib: Library, table, loaded, descriptors_version: str) -> None:
    """Decide the stored tags again from their stored probabilities (the model id covers weights only:
    new thresholds or decision rules keep the probabilities and embeddings, and change only ``tags``)."""
    frame = table.read()
    if frame.empty:
        return
    measured = _measured(lib.stages.table("descriptors", descriptors_version).read(), list(frame["hash"]))
    decisions = decide(np.stack(frame["tag_probs"].to_numpy()), loaded.thresholds, list(loaded.tags),
                       measured=measured)
    frame["tags"] = [d.tags for d in decisions]
    table.append(frame)
    table.compact()


# --- executors: each yields one result dict per group, in any order ------------------------------
def _run_local(groups: list[list[tuple]], settings: TagSettings) -> Iterator[dict]:
    """In this process: the next group's log-mels are read in a thread while the model runs."""
    with ThreadPoolExecutor(1, thread_name_prefix="mir-tag-load") as loader:
        nxt = loader.submit(load_group, groups[0], settings)
        for k in range(len(groups)):
            group = nxt.result()
            if k + 1 < len(groups):
                nxt = loader.submit(load_group, groups[k + 1], settings)
            yield tag_loaded(group, settings)


def _run_pool(workers: int, groups: list[list[tuple]], settings: TagSettings) -> Iterator[dict]:
    from ..parallel import process_pool

    with process_pool(workers, preload=PRELOAD, threads_per_worker=1) as pool:
        queue = iter(groups)
        running = {pool.submit(tag_group, g, settings) for g in _take(queue, 2 * workers)}
        while running:
            finished, running = wait(running, return_when=FIRST_COMPLETED)
            for fut in finished:
                yield fut.result()
                running |= {pool.submit(tag_group, g, settings) for g in _take(queue, 1)}


def _run_dask(address: str, groups: list[list[tuple]], settings: TagSettings) -> Iterator[dict]:
    from ..parallel import dask_map

    for _, result in dask_map(address, tag_group, groups, settings):
        yield result


def _take(it: Iterator, n: int) -> list:
    out = []
    for x in it:
        out.append(x)
        if len(out) >= n:
            break
    return out

