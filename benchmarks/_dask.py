"""The Dask cluster a benchmark runs on: ``--scheduler ADDR`` when given, else a local cluster of
``--dask-workers`` processes (one thread each) for as long as the block runs."""
from __future__ import annotations

import contextlib
from typing import Iterator


@contextlib.contextmanager
def scheduler_address(args) -> Iterator[str]:
    if args.scheduler:
        yield args.scheduler
        return
    from distributed import LocalCluster

    with LocalCluster(n_workers=args.dask_workers, threads_per_worker=1, processes=True, dashboard_address=":0",
                      silence_logs=40) as cluster:
        yield cluster.scheduler_address
