"""`mir analyze --scheduler`: the Dask path gives the in-process tables and arrays, resumes, checks paths first."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import write_clip

from mir.catalog import Library, analyze, remote, stage_versions
from mir.errors import CatalogError

distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def cluster():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=":0",
                                  silence_logs=40) as c:
        yield c


@pytest.fixture
def music(tmp_path) -> Path:
    root = tmp_path / "music"
    for i in range(4):
        write_clip(root / f"clip{i}.{('wav', 'flac', 'ogg')[i % 3]}", 10 + i, seconds=1.5)
    return root


def tables(lib: Library) -> dict[str, pd.DataFrame]:
    out = {s: lib.stage_table(s, v).sort_values("hash").reset_index(drop=True) for s, v in stage_versions().items()}
    return out


def same_as(lib: Library, ref: Library) -> None:
    got, want = tables(lib), tables(ref)
    for name in want:
        pd.testing.assert_frame_equal(got[name].reset_index(drop=True), want[name].reset_index(drop=True), obj=name)
    for name in stage_versions():
        assert not got[name]["hash"].duplicated().any()
    for t in ref.tracks()["track_id"]:
        np.testing.assert_array_equal(lib.logmel(t), ref.logmel(t))


def test_dask_analysis_is_the_in_process_analysis(tmp_path, music, cluster):
    ref = Library.open_or_create(tmp_path / "ref")
    ref.scan([music])
    analyze(ref, workers=1)
    lib = Library.open_or_create(tmp_path / "dask")
    lib.scan([music])
    report = analyze(lib, scheduler=cluster.scheduler_address)
    assert (report.done, report.failed) == (4, 0)
    same_as(lib, ref)


def test_interrupted_dask_run_resumes_without_duplicates(tmp_path, music, cluster, monkeypatch):
    ref = Library.open_or_create(tmp_path / "ref")
    ref.scan([music])
    analyze(ref, workers=1)
    lib = Library.open_or_create(tmp_path / "dask")
    lib.scan([music])
    run = remote.run_dask

    def killed_after_three(*args):
        for i, pair in enumerate(run(*args)):
            if i == 2:
                raise KeyboardInterrupt
            yield pair

    monkeypatch.setattr(remote, "run_dask", killed_after_three)
    with pytest.raises(KeyboardInterrupt):
        analyze(lib, scheduler=cluster.scheduler_address, flush_every=1, flush_seconds=0.0)
    monkeypatch.setattr(remote, "run_dask", run)
    assert len(lib.stage_table("descriptors", stage_versions()["descriptors"])) == 2
    report = analyze(lib, scheduler=cluster.scheduler_address)
    assert (report.done, report.failed) == (2, 0)  # only what was missing
    same_as(lib, ref)


def test_a_path_the_workers_cannot_see_is_named(tmp_path, cluster):
    missing = str(tmp_path / "elsewhere" / "song.wav")
    with pytest.raises(CatalogError, match=r"cannot read '.*elsewhere/song\.wav'.*same paths"):
        remote.check_shared_paths(cluster.scheduler_address, [missing], [str(tmp_path)])
    with pytest.raises(CatalogError, match="cannot write"):
        remote.check_shared_paths(cluster.scheduler_address, [], [str(tmp_path / "nope")])
