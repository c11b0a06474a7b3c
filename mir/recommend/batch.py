"""The batch job behind ``mir recommend``: top-k lists for every user, in shards, resumable.

Layout while running (beside the output ``recs.parquet``)::

    recs.parquet.parts/job.json            what the job is (method, parameters, k, input digests)
    recs.parquet.parts/model/model.{json,npz}   the fitted recommender (no pickle)
    recs.parquet.parts/shard-00000.parquet …    one finished shard of users each (atomic writes)

A run first saves the fitted model and always recommends from the copy read back from disk, so a
killed job resumes with the very same model, computes only the missing shards, and concatenates
all shards into the output: byte-for-byte the table of an uninterrupted run. Shards run in this
process or as tasks on a Dask cluster (``scheduler``); the driver alone writes files.

Output columns: ``user`` (str), ``rank`` (int16, 1 = best), ``track_id`` (str), ``score`` (float32).
"""
from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Sequence

import pandas as pd

from .. import atomic
from ..errors import ParameterError
from ._base import Recommender
from .persist import load_model, save_model

DEFAULT_SHARD_SIZE = 2000


@dataclass
class JobReport:
    users: int = 0
    shards: int = 0
    done_before: int = 0  # shards found finished from an earlier run
    computed: int = 0
    rows: int = 0
    resumed_model: bool = False
    seconds: float = 0.0
    out: str = ""
    shard_seconds: list[float] = field(default_factory=list)

    def summary(self) -> str:
        s = f"{self.rows} recommendations for {self.users} users in {self.shards} shards -> {self.out}"
        if self.done_before:
            s += f" (resumed: {self.done_before} shards were already done)"
        return s + f" in {self.seconds:.1f} s"


def shard_users(model: Recommender, users: Sequence[str], k: int, exclude_seen: bool, rerank) -> pd.DataFrame:
    """Recommendations of one shard (the task run in this process or on a Dask worker)."""
    return model.recommend(list(users), k, exclude_seen=exclude_seen, rerank=rerank)


class BatchJob:
    """One ``mir recommend`` run writing ``out``; ``spec`` (JSON values) identifies the job."""

    def __init__(self, out: str | os.PathLike, spec: dict, *, restart: bool = False):
        self.out = Path(out)
        self.work = self.out.with_name(self.out.name + ".parts")
        self.spec = json.loads(json.dumps(spec, sort_keys=True))
        job_file = self.work / "job.json"
        if self.work.exists() and restart:
            shutil.rmtree(self.work)
        if job_file.is_file():
            old = json.loads(job_file.read_text())
            if old != self.spec:
                diff = sorted(k for k in set(old) | set(self.spec) if old.get(k) != self.spec.get(k))
                raise ParameterError(f"{self.work} holds an unfinished job with other settings ({', '.join(diff)}); "
                                     "run the same command to resume it, or pass --restart to start over")
        else:
            self.work.mkdir(parents=True, exist_ok=True)
            atomic.write_text(job_file, json.dumps(self.spec, indent=1, sort_keys=True))
        atomic.clean_stale_temps(self.work)

    def has_model(self) -> bool:
        """Whether an earlier (killed) run of this job saved its fitted model."""
        return (self.work / "model" / "model.json").is_file() and (self.work / "model" / "model.npz").is_file()

    def saved_model(self) -> Recommender | None:
        """The model an earlier (killed) run of this job fitted, or None."""
        return load_model(self.work / "model") if self.has_model() else None

    def _shard_path(self, i: int) -> Path:
        return self.work / f"shard-{i:05d}.parquet"

    def run(self, model: Recommender, users: Sequence[str], *, k: int, exclude_seen: bool = True, rerank=None,
            shard_size: int = DEFAULT_SHARD_SIZE, scheduler: str | None = None, progress: bool = False,
            on_shard: Callable[[int], None] | None = None) -> JobReport:
        """Recommend for ``users`` (in this order) and write the output table; see the module docstring."""
        from tqdm import tqdm

        if shard_size < 1:
            raise ParameterError(f"shard_size must be >= 1, got {shard_size}")
        start = time.monotonic()
        report = JobReport(users=len(users), out=str(self.out))
        if not self.has_model():
            save_model(model, self.work / "model")
        else:
            report.resumed_model = True
        model = load_model(self.work / "model")  # the same arrays on every run of this job
        shards = [list(users[i:i + shard_size]) for i in range(0, len(users), shard_size)]
        report.shards = len(shards)
        todo = [i for i in range(len(shards)) if not self._shard_path(i).is_file()]
        report.done_before = len(shards) - len(todo)
        with tqdm(total=len(users), desc="recommend", unit="user", disable=not progress) as bar:
            bar.update(len(users) - sum(len(shards[i]) for i in todo))
            runner = _run_dask(scheduler, model, shards, todo, k, exclude_seen, rerank) if scheduler else \
                _run_local(model, shards, todo, k, exclude_seen, rerank)
            for i, frame in runner:
                atomic.write_parquet(self._shard_path(i), frame)
                report.computed += 1
                bar.update(len(shards[i]))
                if on_shard is not None:
                    on_shard(report.computed)
        frames = [pd.read_parquet(self._shard_path(i)) for i in range(len(shards))]
        table = pd.concat(frames, ignore_index=True) if frames else shard_users(model, [], k, exclude_seen, rerank)
        atomic.write_parquet(self.out, table)
        report.rows = len(table)
        shutil.rmtree(self.work, ignore_errors=True)
        report.seconds = time.monotonic() - start
        return report


def _run_local(model, shards, todo, k, exclude_seen, rerank) -> Iterator[tuple[int, pd.DataFrame]]:
    for i in todo:
        yield i, shard_users(model, shards[i], k, exclude_seen, rerank)


def _run_dask(address, model, shards, todo, k, exclude_seen, rerank) -> Iterator[tuple[int, pd.DataFrame]]:
    from ..parallel import dask_map

    tasks = [shards[i] for i in todo]
    for pos, frame in dask_map(address, _shard_task, tasks, model, k, exclude_seen, rerank, scatter=True):
        yield todo[pos], frame


def _shard_task(users, model, k, exclude_seen, rerank) -> pd.DataFrame:
    return shard_users(model, users, k, exclude_seen, rerank)
