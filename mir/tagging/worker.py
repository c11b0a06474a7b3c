"""One group of tracks through the model: the task that runs in this process, a worker process or
a Dask worker (plain picklable settings in, stored rows and failure records out)."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..catalog.predictions import STAGE
from ..errors import CatalogError, MirError, ModelError
from ..models.decisions import Measured, decide
from ..models.inference import DEFAULT_BATCH_SIZE, predict_logmels, prepare_model, resolve_precision


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


# A work item: (track_id, hash, path, duration, descriptor context or None, Measured or None)


_WORKER_MODELS: dict[tuple, tuple] = {}  # per process: (path, model_id, compile, channels_last) -> (loaded, model)


def worker_model(settings: TagSettings):
    """The checkpoint of ``settings``, loaded and prepared once per process; ``(LoadedModel, model)``."""
    key = (settings.model_path, settings.model_id, settings.compile, settings.channels_last)
    if key not in _WORKER_MODELS:
        from ..models import load_checkpoint

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
    from ..catalog.store import ArrayStore

    store = ArrayStore(os.path.join(settings.lib_root, "arrays"))
    ok, mels, failures = [], [], []
    for item in items:
        try:
            mel = store.load("logmel", settings.logmel_version, item[1], mmap=True)
            if mel.ndim != 2 or mel.shape[1] < 1:
                raise CatalogError(f"cached log-mel of {item[2]} is empty (shape {mel.shape}); re-analyse it")
        except (MirError, OSError, ValueError) as exc:
            failures.append(failure_row(item, settings, exc))
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
                              batch_size=settings.batch_size, precision=settings.precision, context=contexts,
                              music_gate=loaded.music_gate)
    finally:
        torch.set_num_threads(old_threads)
    return make_rows([item[1] for item in items], out, loaded.tags, loaded.genres, loaded.thresholds,
                     precision=resolve_precision(settings.precision),
                     measured=[item[5] if len(item) > 5 else None for item in items])


def make_rows(hashes: Sequence[str], out: dict[str, np.ndarray], tags: Sequence[str], genres: Sequence[str],
              thresholds: np.ndarray, *, precision: str, measured: Sequence[Measured | None] | None = None) -> list[dict]:
    """One stored row per track from :func:`~mir.models.inference.predict_logmels` output; tags decided
    by :func:`mir.models.decisions.decide` (with the tracks' measured tempo and key, when given)."""
    decisions = decide(out["tag_probs"], thresholds, list(tags), measured=measured)
    rows = []
    for i, h in enumerate(hashes):
        probs = out["tag_probs"][i]
        rows.append({
            "hash": h,
            "tag_probs": probs.copy(),
            "tags": decisions[i].tags,
            "genre": genres[int(np.argmax(out["genre_probs"][i]))],
            "genre_probs": out["genre_probs"][i].copy(),
            "embedding": out["embedding"][i].copy(),
            "n_chunks": int(out["n_chunks"][i]),
            "precision": precision,
        } | ({"music": float(out["music"][i])} if "music" in out else {}))
    return rows


def tag_group(items: Sequence[tuple], settings: TagSettings) -> dict:
    """Load and tag one group; ``{"rows": [...], "failures": [...]}``. The task of workers and Dask."""
    return tag_loaded(load_group(items, settings), settings)


def tag_loaded(group: tuple, settings: TagSettings) -> dict:
    """Tag a group read by :func:`load_group`; a failing group becomes failure records, except when
    the model itself is unusable (:class:`~mir.errors.ModelError` stops the whole job)."""
    ok, mels, failures, contexts = group
    try:
        rows = infer_group(ok, mels, settings, contexts)
    except ModelError:
        raise
    except Exception as exc:  # noqa: BLE001 - one bad group must not stop the batch; record and go on
        rows, failures = [], failures + [failure_row(item, settings, exc) for item in ok]
    return {"rows": rows, "failures": failures}


def failure_row(item: tuple, settings: TagSettings, exc: BaseException) -> dict:
    """The failure record of one track (``item`` = (track_id, hash, path, …))."""
    return {"hash": item[1], "track_id": item[0], "path": item[2], "stage": STAGE, "version": settings.model_id,
            "error": type(exc).__name__, "message": f"{item[2]}: {exc}"}

