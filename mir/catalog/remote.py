"""`mir analyze --scheduler`: decoding and analysis as tasks on a Dask cluster.

Workers open the audio by its path in the library and write each track's log-mel frames into the
library's array store (atomic, named by content hash, as the local worker processes do), so the
audio and the library must sit on a filesystem every worker sees at the same paths (NFS, a
cluster filesystem, or one machine). :func:`check_shared_paths` checks that on every worker before
any task runs. The client alone writes the tables (stage rows, failures), so a killed run resumes
from what was flushed, without duplicates, exactly as in-process.
"""
from __future__ import annotations

import os
from typing import Iterator

from ..errors import CatalogError, ParameterError


def _visible(paths: list[str], writable: list[str]) -> list[str]:
    """On a worker: what it cannot read (``paths``) or write (``writable``), as messages."""
    problems = [f"cannot read {p!r}" for p in paths if not (os.path.isfile(p) and os.access(p, os.R_OK))]
    problems += [f"cannot write {p!r}" for p in writable if not (os.path.isdir(p) and os.access(p, os.W_OK))]
    return problems


def check_shared_paths(address: str, paths: list[str], writable: list[str]) -> None:
    """Every worker of the cluster at ``address`` can read ``paths`` and write in the folders ``writable``,
    else :class:`~mir.errors.CatalogError` naming the worker and the path."""
    from distributed import Client

    try:
        client = Client(address, set_as_default=False, timeout="20s")
    except (OSError, TimeoutError) as exc:
        raise ParameterError(f"cannot reach the Dask scheduler at {address!r}: {exc}") from None
    with client:
        seen = client.run(_visible, list(paths), list(writable))
    bad = {w: p for w, p in seen.items() if p}
    if not seen:
        raise CatalogError(f"the Dask cluster at {address!r} has no workers")
    if bad:
        worker, problems = sorted(bad.items())[0]
        raise CatalogError(f"Dask worker {worker} {problems[0]} ({len(bad)} of {len(seen)} workers have such "
                           f"problems): mir analyze --scheduler needs the audio and the library on a filesystem "
                           f"every worker sees at the same paths")


def _analyze_task(item: tuple, analyze_file, lib_root: str, cfg) -> dict:
    """One track on a worker (one BLAS/torch thread, as a local worker process)."""
    from ..parallel import limit_threads

    _, content_hash, path, stages = item
    with limit_threads(1):
        return analyze_file(path, content_hash, stages, lib_root, cfg)


def run_dask(address: str, todo: list[tuple], analyze_file, lib_root: str, cfg) -> Iterator[tuple[tuple, dict]]:
    """``(item, result)`` of ``analyze_file`` (:func:`~mir.catalog.analysis.analyze_file`) for every ``todo`` item,
    computed on the cluster at ``address`` after :func:`check_shared_paths` on the first item's audio and the
    array store."""
    from ..parallel import dask_map

    if not todo:
        return
    arrays = os.path.join(lib_root, "arrays")
    os.makedirs(arrays, exist_ok=True)
    check_shared_paths(address, [todo[0][2]], [arrays])
    for i, result in dask_map(address, _analyze_task, todo, analyze_file, lib_root, cfg):
        yield todo[i], result
