"""Worker processes for batch jobs.

Workers are started by a fork server that has already imported the heavy modules, so each
worker starts in milliseconds. Every worker watches the process that created the pool and exits
when it disappears: a job killed with SIGKILL leaves no orphan workers behind.
"""
from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import threading
import time
from concurrent.futures import ProcessPoolExecutor


def _parent_alive(pid: int) -> bool:
    """True while ``pid`` runs; a killed parent not yet reaped (a zombie) counts as gone."""
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):  # PermissionError: the pid was reused by another user
        return False
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            state = fh.read().rsplit(b")", 1)[1].split()[0]
        return state not in (b"Z", b"X")
    except (OSError, IndexError):
        return True  # no /proc (not Linux): rely on os.kill alone


def _watch_parent(pid: int, interval: float) -> None:
    while _parent_alive(pid):
        time.sleep(interval)
    os._exit(1)


@contextlib.contextmanager
def limit_threads(threads: int):
    """Cap BLAS/OpenMP and torch threads of this process inside the block.

    The maths in a worker is many small matrix products: with several workers, or a loaded
    machine, multi-threaded BLAS oversubscribes the cores (measured: 12x slower descriptors).
    """
    import torch
    from threadpoolctl import threadpool_limits

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with threadpool_limits(limits=threads):
            yield
    finally:
        torch.set_num_threads(before)


_worker_limits = contextlib.ExitStack()  # held for the worker's whole life (a dropped context would exit)


def _init_worker(parent_pid: int, threads: int) -> None:
    threading.Thread(target=_watch_parent, args=(parent_pid, 0.5), daemon=True).start()
    _worker_limits.enter_context(limit_threads(threads))


def process_pool(workers: int, *, preload: list[str] = (), threads_per_worker: int = 1) -> ProcessPoolExecutor:
    """A process pool whose workers die with their parent; ``preload`` modules load once."""
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(list(preload))
    return ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_init_worker,
                               initargs=(os.getpid(), threads_per_worker))
