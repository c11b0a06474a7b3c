"""Worker processes for batch jobs, and running tasks on a Dask cluster (:func:`dask_map`).

Workers are started by a fork server that has already imported the heavy modules, so each
worker starts in milliseconds. Every worker watches the process that created the pool and exits
when it disappears: a job killed with SIGKILL leaves no orphan workers behind.

Workers never import the caller's ``__main__``: multiprocessing's spawn and forkserver methods re-run
the main script in every worker (as ``__mp_main__``), so a script without an
``if __name__ == "__main__":`` guard would start its own work again in each worker. mir's workers
only run mir's functions, so they are started as if the caller had no main script.
"""
from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
import types
from concurrent.futures import ProcessPoolExecutor
from multiprocessing.context import ForkServerContext, ForkServerProcess

from .errors import ParameterError


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


_MAIN_SWAP = threading.Lock()


@contextlib.contextmanager
def _without_main():
    """While a worker starts: a ``__main__`` with no file and no spec, so the worker re-runs nothing."""
    with _MAIN_SWAP:
        main = sys.modules["__main__"]
        sys.modules["__main__"] = types.ModuleType("__main__")
        try:
            yield
        finally:
            sys.modules["__main__"] = main


class _Process(ForkServerProcess):
    @staticmethod
    def _Popen(process_obj):
        with _without_main():
            return ForkServerProcess._Popen(process_obj)


class _Context(ForkServerContext):
    """The forkserver start method, minus the re-import of the caller's main script."""

    Process = _Process


def process_pool(workers: int, *, preload: list[str] = (), threads_per_worker: int = 1) -> ProcessPoolExecutor:
    """A process pool whose workers die with their parent and never re-run the caller's main
    script; ``preload`` modules load once."""
    ctx = _Context()
    ctx.set_forkserver_preload(list(preload))
    return ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_init_worker,
                               initargs=(os.getpid(), threads_per_worker))


def dask_map(address: str, fn, items: list, *args, scatter: bool = False, per_worker: int = 2):
    """Run ``fn(item, *args)`` for every item on the Dask cluster at ``address``; yields
    ``(position, result)`` as tasks finish.

    At most ``per_worker`` tasks per worker are in flight, so results stream back as they are
    ready and a long queue never piles up on the scheduler. ``scatter`` sends the ``args`` that
    are not plain scalars or None to every worker once (large shared inputs such as a fitted model).
    """
    try:
        from distributed import Client, as_completed
    except ImportError:  # pragma: no cover - dask[distributed] is a dependency
        raise ParameterError("--scheduler needs the `distributed` package (pip install 'dask[distributed]')") from None
    try:
        client = Client(address, set_as_default=False, timeout="20s")
    except (OSError, TimeoutError) as exc:
        raise ParameterError(f"cannot reach the Dask scheduler at {address!r}: {exc}") from None
    with client:
        n_workers = max(1, len(client.scheduler_info().get("workers", {})))
        if scatter:
            plain = (type(None), bool, int, float, str)
            args = tuple(a if isinstance(a, plain) else client.scatter(a, broadcast=True) for a in args)
        queue = iter(enumerate(items))
        position: dict = {}

        def submit(i, item):
            fut = client.submit(fn, item, *args, pure=False)
            position[fut.key] = i
            return fut

        futures = as_completed([submit(i, x) for _, (i, x) in zip(range(per_worker * n_workers), queue)],
                               loop=client.loop)
        for fut in futures:
            result = fut.result()
            i = position.pop(fut.key)
            fut.release()
            following = next(queue, None)
            if following is not None:
                futures.add(submit(*following))
            yield i, result
