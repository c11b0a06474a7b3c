"""`mir tag`: run a tagger over a library and keep its outputs in the catalogue.

For every present track not yet tagged by the model: load the cached log-mel (tracks without one
are analysed first, with :func:`mir.catalog.analyze`), cut it into chunks, batch chunks across
tracks, run the model in inference mode, average the chunk outputs per track, and store the result
(see :mod:`mir.models.inference` for chunking, batching and aggregation). Work is done in groups
of tracks, in this process (torch on all cores), in worker processes (one torch thread each) or
as tasks on a Dask cluster; the driver alone writes. Results are flushed as atomic part files, so
a killed run keeps what it flushed and the next run does only the rest; every forward pass has
the same batch shape, so resumed, multi-process and Dask runs give bit-identical results.

Storage: stage ``tags``, version = the model id, one row per content hash::

    LIB/stages/tags/<model_id>/part-*.parquet
        hash         str
        tag_probs    list<float32> [n_tags]      mean over chunks of sigmoid(tag logits), vocabulary order
        tags         list<str>                   decided tags: tag_probs >= the checkpoint's per-tag
                                                 thresholds, by decreasing probability
        genre        str                         argmax of genre_probs
        genre_probs  list<float32> [n_genres]    mean over chunks of softmax(genre logits)
        embedding    list<float32> [embed_dim]   L2-normalised mean of the chunks' unit embeddings
        n_chunks     int64                       chunks the track was cut into
        precision    str                         "fp32" or "bf16"
    LIB/stages/tags/<model_id>/model.json        tags, genres, thresholds, config, analysis, checkpoint path

Embeddings live in the same rows as list columns (not in the per-track array store): one Parquet
read returns every embedding of a model, which is what an index build wants
(:func:`load_embeddings`); per-track ``.npy`` files would cost one open per track.
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

from . import atomic
from .catalog import Library, analyze
from .catalog.stages import stage_versions
from .config import AnalysisConfig, get_config
from .errors import CatalogError, MirError, ModelError, ParameterError
from .models.inference import DEFAULT_BATCH_SIZE, decide_tags, predict_logmels, prepare_model, resolve_precision
from .models.builders import ModelConfig

STAGE = "tags"
DEFAULT_MODEL = Path(__file__).resolve().parent / "models" / "default" / "default.pt"
GROUP_CHUNKS = 256  # chunks per task (≈ 16 batches): large enough that padding the last batch is cheap
PRELOAD = ["mir.tagging", "mir.models", "torch"]
TAG_SEPARATOR = "; "  # how decided tags are joined in a file's ``mir_tags`` text tag (as read_tags joins values)


# --- the model ---------------------------------------------------------------------------------
def resolve_model_path(model: str | os.PathLike | None) -> Path:
    """Checkpoint path for ``--model`` (``None``: the packaged default model)."""
    if model is not None:
        return Path(model).expanduser().resolve()
    if not DEFAULT_MODEL.is_file():
        raise ModelError(
            f"no model given and the default model {DEFAULT_MODEL} is not installed; "
            "pass --model PATH to a checkpoint, or train one with `mir train`"
        )
    return DEFAULT_MODEL


@dataclass(frozen=True)
class TagSettings:
    """Everything a worker needs to tag a group of tracks (plain values: pickles to any worker)."""

    model_path: str
    model_id: str
    lib_root: str
    logmel_version: str
    n_chunks: int | None = None
    batch_size: int = DEFAULT_BATCH_SIZE
    precision: str = "fp32"
    channels_last: bool = True
    compile: bool = False
    threads: int = 0  # torch threads in the worker; 0 = leave as is
    with_context: bool = False  # the model has a track head: items carry their descriptor context (item[4])


_WORKER_MODELS: dict[tuple, tuple] = {}  # per process: (path, model_id, compile, channels_last) -> (loaded, model)


def worker_model(settings: TagSettings):
    """The checkpoint of ``settings``, loaded and prepared once per process; ``(LoadedModel, model)``."""
    key = (settings.model_path, settings.model_id, settings.compile, settings.channels_last)
    if key not in _WORKER_MODELS:
        from .models import load_checkpoint

        loaded = load_checkpoint(settings.model_path)
        if loaded.model_id != settings.model_id:
            raise ModelError(f"{settings.model_path}: the checkpoint changed during the run "
                             f"(model id {loaded.model_id}, expected {settings.model_id}); run again")
        model = prepare_model(loaded.model, channels_last=settings.channels_last, compile=settings.compile)
        _WORKER_MODELS.clear()  # one model per worker at a time
        _WORKER_MODELS[key] = (loaded, model)
    return _WORKER_MODELS[key]


# --- one group of tracks (runs in this process, a worker process or a Dask worker) ---------------
def load_group(items: Sequence[tuple], settings: TagSettings) -> tuple[list, list[np.ndarray], list[dict], np.ndarray | None]:
    """Memory-map the cached log-mels of ``items`` [(track_id, hash, path, …)]; -> (ok items, mels, failures,
    contexts): the items' descriptor contexts (``item[4]``) when the model has a track head, else None."""
    from .catalog.store import ArrayStore

    store = ArrayStore(os.path.join(settings.lib_root, "arrays"))
    ok, mels, failures = [], [], []
    for item in items:
        try:
            mel = store.load("logmel", settings.logmel_version, item[1], mmap=True)
            if mel.ndim != 2 or mel.shape[1] < 1:
                raise CatalogError(f"cached log-mel of {item[2]} is empty (shape {mel.shape}); re-analyse it")
        except (MirError, OSError, ValueError) as exc:
            failures.append(_failure(item, settings, exc))
            continue
        ok.append(item)
        mels.append(mel)
    contexts = np.stack([item[4] for item in ok]) if settings.with_context and ok else None
    return ok, mels, failures, contexts


def infer_group(items: Sequence[tuple], mels: Sequence[np.ndarray], settings: TagSettings,
                contexts: np.ndarray | None = None) -> list[dict]:
    """Tag rows (see the module docstring) of ``items`` from their log-mels (and descriptor contexts)."""
    if not items:
        return []
    import torch

    loaded, model = worker_model(settings)
    old_threads = torch.get_num_threads()
    if settings.threads:
        torch.set_num_threads(settings.threads)
    try:
        out = predict_logmels(model, mels, chunk_frames=loaded.config.chunk_frames, n_chunks=settings.n_chunks,
                              batch_size=settings.batch_size, precision=settings.precision, context=contexts)
    finally:
        torch.set_num_threads(old_threads)
    return make_rows([item[1] for item in items], out, loaded.tags, loaded.genres, loaded.thresholds,
                     precision=resolve_precision(settings.precision))


def make_rows(hashes: Sequence[str], out: dict[str, np.ndarray], tags: Sequence[str], genres: Sequence[str],
              thresholds: np.ndarray, *, precision: str) -> list[dict]:
    """One stored row per track from :func:`~mir.models.inference.predict_logmels` output."""
    decided = decide_tags(out["tag_probs"], thresholds)
    rows = []
    for i, h in enumerate(hashes):
        probs = out["tag_probs"][i]
        on = np.flatnonzero(decided[i])
        on = on[np.argsort(-probs[on], kind="stable")]
        rows.append({
            "hash": h,
            "tag_probs": probs.copy(),
            "tags": [tags[j] for j in on],
            "genre": genres[int(np.argmax(out["genre_probs"][i]))],
            "genre_probs": out["genre_probs"][i].copy(),
            "embedding": out["embedding"][i].copy(),
            "n_chunks": int(out["n_chunks"][i]),
            "precision": precision,
        })
    return rows


def tag_group(items: Sequence[tuple], settings: TagSettings) -> dict:
    """Load and tag one group; ``{"rows": [...], "failures": [...]}``. The task of workers and Dask."""
    ok, mels, failures, contexts = load_group(items, settings)
    try:
        rows = infer_group(ok, mels, settings, contexts)
    except ModelError:
        raise  # the model itself is unusable: stop the whole job
    except Exception as exc:  # noqa: BLE001 - one bad group must not stop the batch; record and go on
        rows, failures = [], failures + [_failure(item, settings, exc) for item in ok]
    return {"rows": rows, "failures": failures}


def _failure(item: tuple, settings: TagSettings, exc: BaseException) -> dict:
    return {"hash": item[1], "track_id": item[0], "path": item[2], "stage": STAGE, "version": settings.model_id,
            "error": type(exc).__name__, "message": f"{item[2]}: {exc}"}


# --- the job -----------------------------------------------------------------------------------
@dataclass
class TagReport:
    model_id: str = ""
    todo: int = 0
    done: int = 0
    failed: int = 0
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
    from .models.inference import chunk_starts

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
    model : checkpoint path; ``None`` = the packaged default model (:data:`DEFAULT_MODEL`)
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
    from tqdm import tqdm

    from .models import load_checkpoint

    conf = get_config()
    cfg = cfg or conf.analysis
    flush_every = flush_every or conf.runtime.flush_every
    flush_seconds = conf.runtime.flush_seconds if flush_seconds is None else flush_seconds
    if n_chunks is not None and (isinstance(n_chunks, bool) or not isinstance(n_chunks, int) or n_chunks < 1):
        raise ParameterError(f"n_chunks must be a positive int or None, got {n_chunks!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ParameterError(f"batch_size must be a positive int, got {batch_size!r}")
    resolve_precision(precision)
    workers = 1 if workers is None else workers
    for name, value in (("workers", workers), ("threads", threads or 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ParameterError(f"{name} must be a positive int, got {value!r}")

    path = resolve_model_path(model)
    loaded = load_checkpoint(path)
    loaded.check_analysis(cfg)
    if loaded.config.n_mels != cfg.n_mels:
        raise ModelError(f"{path}: model expects n_mels={loaded.config.n_mels}, the library analyses "
                         f"n_mels={cfg.n_mels}")
    report = TagReport(model_id=loaded.model_id)
    start = time.monotonic()
    logmel_version = stage_versions(cfg)["logmel"]
    descriptors_version = stage_versions(cfg)["descriptors"] if loaded.model.track_head is not None else ""
    if analyze_missing:
        _, counts = plan(lib, loaded.model_id, logmel_version, retry_failed=retry_failed,
                         descriptors_version=descriptors_version)
        if counts["unanalysed"]:
            report.analysed = analyze(lib, workers=None if workers == 1 else workers, progress=progress,
                                      cfg=cfg, flush_every=flush_every, flush_seconds=flush_seconds).done
    settings = TagSettings(
        model_path=str(path), model_id=loaded.model_id, lib_root=str(lib.root), logmel_version=logmel_version,
        n_chunks=n_chunks, batch_size=batch_size, precision=precision, compile=compile,
        threads=threads or (1 if (scheduler or workers > 1) else 0), with_context=bool(descriptors_version),
    )
    with lib.lock():
        todo, counts = plan(lib, loaded.model_id, logmel_version, retry_failed=retry_failed,
                            descriptors_version=descriptors_version)
        report.todo, report.already = len(todo), counts["already"]
        report.skipped_failed, report.skipped_unanalysed = counts["skipped_failed"], counts["unanalysed"]
        if descriptors_version and todo:  # read the descriptors once; each item carries its context to any worker
            from .models.track_head import contexts_from_descriptors

            described = lib.stages.table("descriptors", descriptors_version).read()
            contexts = contexts_from_descriptors(described, [item[1] for item in todo])
            todo = [(*item, context) for item, context in zip(todo, contexts)]
        table = lib.stages.table(STAGE, loaded.model_id)
        _write_model_info(table.folder, loaded, path)
        frames = _frames_of(lib, logmel_version)
        groups = group_tracks(todo, frames, chunk_frames=loaded.config.chunk_frames, n_chunks=n_chunks,
                              group_chunks=group_chunks)
        duration = {item[1]: item[3] for item in todo}
        pending_rows: list[dict] = []
        pending_fail: list[dict] = []
        written = 0
        last_flush = time.monotonic()

        def flush():
            nonlocal last_flush, written
            if pending_rows:
                table.append(pd.DataFrame(pending_rows))
                written += len(pending_rows)
                pending_rows.clear()
            lib.record_failures(pending_fail)
            pending_fail.clear()
            last_flush = time.monotonic()
            if on_flush is not None:
                on_flush(written)

        def collect(result: dict, bar) -> None:
            for row in result["rows"]:
                pending_rows.append(row)
                report.done += 1
                report.chunks += row["n_chunks"]
                report.audio_seconds += duration.get(row["hash"], 0.0)
            for f in result["failures"]:
                pending_fail.append(f)
                report.failures.append(f)
                report.failed += 1
            bar.update(len(result["rows"]) + len(result["failures"]))
            if len(pending_rows) + len(pending_fail) >= flush_every or time.monotonic() - last_flush > flush_seconds:
                flush()

        with tqdm(total=len(todo), desc="tag", unit="track", disable=not progress) as bar:
            try:
                if not groups:
                    pass
                elif scheduler:
                    for result in _run_dask(scheduler, groups, settings):
                        collect(result, bar)
                elif workers > 1 and len(groups) > 1:
                    for result in _run_pool(min(workers, len(groups)), groups, settings):
                        collect(result, bar)
                else:
                    for result in _run_local(groups, settings):
                        collect(result, bar)
            finally:
                flush()  # whatever finished is kept, also on Ctrl-C
        table.compact()
    report.wall_seconds = time.monotonic() - start
    return report


def _frames_of(lib: Library, logmel_version: str) -> dict[str, int]:
    frame = lib.stages.table("logmel", logmel_version).read()
    return dict(zip(frame["hash"], frame["frames"].astype(int))) if len(frame) else {}


def _write_model_info(folder: Path, loaded, path: Path) -> None:
    info = {
        "model_id": loaded.model_id, "checkpoint": str(path), "tags": list(loaded.tags),
        "genres": list(loaded.genres), "thresholds": [float(v) for v in loaded.thresholds],
        "config": loaded.config.to_dict(), "analysis": loaded.analysis, "mir_version": loaded.mir_version,
    }
    target = folder / "model.json"
    if target.exists():
        try:
            old = json.loads(target.read_text())
        except (OSError, json.JSONDecodeError):
            old = None
        if old is not None and old.get("thresholds") != info["thresholds"]:
            _redecide(folder, loaded)
    atomic.write_text(target, json.dumps(info, indent=1))


def _redecide(folder: Path, loaded) -> None:
    """The checkpoint's thresholds changed (the model id covers weights only): re-decide stored tags."""
    from .catalog.store import PartTable

    table = PartTable(folder)
    frame = table.read()
    if frame.empty:
        return
    probs = np.stack(frame["tag_probs"].to_numpy())
    decided = decide_tags(probs, loaded.thresholds)
    frame["tags"] = [[loaded.tags[j] for j in np.flatnonzero(d)[np.argsort(-p[np.flatnonzero(d)], kind="stable")]]
                     for d, p in zip(decided, probs)]
    table.append(frame)
    table.compact()


# --- executors: each yields one result dict per group, in any order ------------------------------
def _run_local(groups: list[list[tuple]], settings: TagSettings) -> Iterator[dict]:
    """In this process: the next group's log-mels are read in a thread while the model runs."""
    with ThreadPoolExecutor(1, thread_name_prefix="mir-tag-load") as loader:
        nxt = loader.submit(load_group, groups[0], settings)
        for k in range(len(groups)):
            ok, mels, failures, contexts = nxt.result()
            if k + 1 < len(groups):
                nxt = loader.submit(load_group, groups[k + 1], settings)
            try:
                rows = infer_group(ok, mels, settings, contexts)
            except ModelError:
                raise
            except Exception as exc:  # noqa: BLE001 - same policy as tag_group
                rows, failures = [], failures + [_failure(item, settings, exc) for item in ok]
            yield {"rows": rows, "failures": failures}


def _run_pool(workers: int, groups: list[list[tuple]], settings: TagSettings) -> Iterator[dict]:
    from .parallel import process_pool

    with process_pool(workers, preload=PRELOAD, threads_per_worker=1) as pool:
        queue = iter(groups)
        running = {pool.submit(tag_group, g, settings) for g in _take(queue, 2 * workers)}
        while running:
            finished, running = wait(running, return_when=FIRST_COMPLETED)
            for fut in finished:
                yield fut.result()
                running |= {pool.submit(tag_group, g, settings) for g in _take(queue, 1)}


def _run_dask(address: str, groups: list[list[tuple]], settings: TagSettings) -> Iterator[dict]:
    from .parallel import dask_map

    for _, result in dask_map(address, tag_group, groups, settings):
        yield result


def _take(it: Iterator, n: int) -> list:
    out = []
    for x in it:
        out.append(x)
        if len(out) >= n:
            break
    return out


# --- reading results -----------------------------------------------------------------------------
def tagged_models(lib: Library) -> list[str]:
    """Model ids that have tagged something in ``lib``, most recently written first."""
    folder = lib.stages.root / STAGE
    ids = lib.stages.versions(STAGE)

    def newest(mid: str) -> float:
        parts = list((folder / mid).glob("part-*.parquet"))
        return max((p.stat().st_mtime for p in parts), default=0.0)

    return sorted((m for m in ids if newest(m) > 0), key=newest, reverse=True)


def model_info(lib: Library, model_id: str) -> dict:
    """What ``model.json`` of ``model_id`` holds (vocabularies, thresholds, config)."""
    path = lib.stages.table(STAGE, model_id).folder / "model.json"
    if not path.exists():
        raise CatalogError(f"library {str(lib.root)!r} has no tags of model {model_id!r}; "
                           f"tagged models: {tagged_models(lib) or 'none'} (run `mir tag`)")
    return json.loads(path.read_text())


def load_tags(lib: Library, model_id: str, *, embedding: bool = False, include_missing: bool = False) -> pd.DataFrame:
    """Tags of ``model_id`` joined with their tracks, sorted by track id.

    Columns: ``track_id``, ``hash``, ``path``, then the stored columns (see the module docstring;
    ``embedding`` only when asked). ``frame.attrs`` holds the ``tags`` and ``genres`` vocabularies
    (the order of ``tag_probs`` and ``genre_probs``) and the ``thresholds``.
    """
    info = model_info(lib, model_id)
    table = lib.stages.table(STAGE, model_id).read()
    if not embedding and "embedding" in table:
        table = table.drop(columns="embedding")
    tracks = lib.tracks(include_missing=include_missing)[["track_id", "hash", "path"]]
    frame = tracks.merge(table, on="hash", how="inner").sort_values("track_id").reset_index(drop=True)
    frame.attrs.update(tags=info["tags"], genres=info["genres"], thresholds=info["thresholds"], model_id=model_id)
    return frame


def load_embeddings(lib: Library, model_id: str, *, include_missing: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All embeddings of ``model_id``: ``(track_ids [n] str, hashes [n] str, matrix [n, d] float32)``.

    Rows follow track id order; each matrix row has unit L2 norm (inner product = cosine).
    """
    info = model_info(lib, model_id)
    table = lib.stages.table(STAGE, model_id).read(columns=["hash", "embedding"])
    tracks = lib.tracks(include_missing=include_missing)[["track_id", "hash"]]
    frame = tracks.merge(table, on="hash", how="inner").sort_values("track_id")
    d = ModelConfig.from_dict(info["config"]).output_dim
    matrix = np.stack(frame["embedding"].to_numpy()).astype(np.float32) if len(frame) else np.zeros((0, d), np.float32)
    return frame["track_id"].to_numpy(str), frame["hash"].to_numpy(str), matrix


def track_tags(lib: Library, content_hash: str, model_id: str) -> dict | None:
    """One track's stored tag row with ``tag_probs``/``genre_probs`` as ``{name: prob}``; None if untagged."""
    info = model_info(lib, model_id)
    table = lib.stages.table(STAGE, model_id).read()
    rows = table[table["hash"] == content_hash]
    if rows.empty:
        return None
    row = rows.iloc[0].to_dict()
    row["tag_probs"] = dict(zip(info["tags"], map(float, row["tag_probs"])))
    row["genre_probs"] = dict(zip(info["genres"], map(float, row["genre_probs"])))
    row["tags"] = list(row["tags"])
    row["model_id"] = model_id
    return row


# --- writing into the audio files -------------------------------------------------------------------
def file_tags_of(row: pd.Series | dict, model_id: str) -> dict[str, str]:
    """Text tags that ``mir tag --write-tags`` sets from one stored row."""
    return {"genre": str(row["genre"]), "mir_tags": TAG_SEPARATOR.join(row["tags"]), "mir_model": model_id}


def write_file_tags(lib: Library, model_id: str, *, dry_run: bool = False,
                    tracks: Sequence[str] | None = None) -> list[dict]:
    """Write decided genre and tags of ``model_id`` into every file of the tagged tracks.

    Sets ``genre``, ``mir_tags`` (decided tags joined by ``"; "``) and ``mir_model`` through
    :func:`mir.audio.write_tags`: tag blocks only, atomically, audio data untouched. Formats whose
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
    from . import audio

    entry = {"path": path, "track_id": track_id, "changes": {}, "error": None}
    try:
        try:
            entry["changes"] = audio.write_tags(path, wanted, dry_run=dry_run)
        except ParameterError:  # e.g. M4A takes no custom keys: write the genre only
            entry["changes"] = audio.write_tags(path, {"genre": wanted["genre"]}, dry_run=dry_run)
    except MirError as exc:
        entry["error"] = str(exc)
    return entry


# --- files outside a library -----------------------------------------------------------------------
def predict_files(model, paths: Sequence[str | os.PathLike], *, chunk_frames: int, n_chunks: int | None = None,
                  batch_size: int = DEFAULT_BATCH_SIZE, precision: str = "fp32", prefetch: int = 1,
                  cfg: AnalysisConfig | None = None) -> dict[str, np.ndarray]:
    """Decode → log-mel → model → per-track aggregation for audio files (no library needed).

    Decoding and log-mels of the next file run in a background thread (``prefetch`` files ahead;
    0 = serially) while the model runs. Returns what :func:`~mir.models.inference.predict_logmels`
    returns, one row per path. Raises the :class:`~mir.errors.AudioError` of an unreadable file.
    """
    from . import audio
    from .features import describe_with_logmel, log_mel
    from .models.track_head import CONTEXT_DIM, context_of

    cfg = cfg or get_config().analysis
    params = dict(sr=cfg.sample_rate, n_fft=cfg.n_fft, hop_length=cfg.hop_length, n_mels=cfg.n_mels,
                  fmin=cfg.fmin, fmax=cfg.fmax)
    with_context = getattr(getattr(model, "_orig_mod", model), "track_head", None) is not None

    def mel_of(path):
        y = audio.load(path, sr=cfg.sample_rate)
        if not with_context:
            return log_mel(y, **params), None
        mel, desc = describe_with_logmel(y, **params, include=("tempo", "key"))  # what the track head needs
        return mel, context_of(desc)[0]

    paths = list(paths)
    if not paths:
        return predict_logmels(model, [], chunk_frames=chunk_frames, batch_size=batch_size, precision=precision,
                               context=np.zeros((0, CONTEXT_DIM)) if with_context else None)
    group: list[tuple] = []
    results = []

    def run(items):
        results.append(predict_logmels(model, [m for m, _ in items], chunk_frames=chunk_frames, n_chunks=n_chunks,
                                       batch_size=batch_size, precision=precision,
                                       context=np.stack([c for _, c in items]) if with_context else None))

    # group files so batches stay full: about GROUP_CHUNKS chunks per forward group
    target = max(batch_size, GROUP_CHUNKS // 2)
    size = 0
    if prefetch <= 0:
        mel_iter = map(mel_of, paths)
    else:
        pool = ThreadPoolExecutor(1, thread_name_prefix="mir-decode")
        mel_iter = _prefetched(pool, mel_of, paths, prefetch)
    try:
        for mel, context in mel_iter:
            group.append((mel, context))
            size += max(1, mel.shape[1] // chunk_frames) if n_chunks is None else n_chunks
            if size >= target:
                run(group)
                group, size = [], 0
        if group:
            run(group)
    finally:
        if prefetch > 0:
            pool.shutdown(cancel_futures=True)
    return {k: np.concatenate([r[k] for r in results]) for k in results[0]}


def _prefetched(pool: ThreadPoolExecutor, fn, items: list, ahead: int) -> Iterator:
    futures = [pool.submit(fn, x) for x in items[: ahead + 1]]
    for i in range(len(items)):
        fut = futures[i]
        if i + ahead + 1 < len(items):
            futures.append(pool.submit(fn, items[i + ahead + 1]))
        yield fut.result()
