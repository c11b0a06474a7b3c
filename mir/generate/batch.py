"""`mir generate --batch SPEC.csv`: many pieces from one spec, resumable.

SPEC has one row per piece: ``out`` (required; relative paths are relative to the spec's folder) and any of
``track`` (ids separated by ``;``), ``audio``, ``tags`` (``;``-separated), ``user``, ``events``, ``duration``,
``seed``, ``temperature``, ``top_p``, ``tempo``, ``key``, ``structure``, ``neighbours``. A piece whose
provenance file exists is done (it is written atomically after the audio), so a killed batch reruns
only what is missing. Pieces run one after another in this process, or as tasks on a Dask cluster
(``scheduler``): each worker reads the library and writes its piece (audio, then provenance) where the
spec says, so the library and the spec's folder must be on a filesystem every worker sees.
"""
from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from ..catalog import Library
from ..errors import MirError, ParameterError
from .piece import generate, provenance_path

FLOATS = ("duration", "temperature", "top_p", "tempo")
INTS = ("seed", "neighbours", "sources")


def read_spec(path: str | os.PathLike) -> pd.DataFrame:
    try:
        spec = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, pd.errors.ParserError) as exc:
        raise ParameterError(f"cannot read batch spec {path}: {exc}") from None
    if "out" not in spec or (spec["out"].str.strip() == "").any():
        raise ParameterError(f"batch spec {path} needs an 'out' column with a file name in every row")
    if spec["out"].duplicated().any():
        raise ParameterError(f"batch spec {path} names an output twice: {spec['out'][spec['out'].duplicated()].iat[0]}")
    return spec


def row_kwargs(row: dict, base: Path) -> dict:
    kw: dict = {}
    split = lambda v: [x.strip() for x in v.split(";") if x.strip()]  # noqa: E731
    if row.get("track"):
        kw["tracks"] = split(row["track"])
    if row.get("tags"):
        kw["tags"] = split(row["tags"])
    for name, arg in (("audio", "audio_file"), ("events", "events")):
        if row.get(name):
            kw[arg] = str((base / row[name]).resolve())
    for name in ("user", "key", "structure"):
        if row.get(name):
            kw[name] = row[name]
    try:
        kw.update({k: float(row[k]) for k in FLOATS if row.get(k)})
        kw.update({k: int(row[k]) for k in INTS if row.get(k)})
    except ValueError as exc:
        raise ParameterError(f"batch row for {row['out']}: {exc}") from None
    return kw


def generate_one(job: tuple, lib_root: str, defaults: dict) -> str | None:
    """One piece of a batch (in this process or as a Dask task): None when it is made, else why not."""
    out, kwargs = job
    try:
        generate(Library(lib_root), out=out, **{**defaults, **kwargs})
    except MirError as exc:  # one bad row never stops the batch
        return str(exc)
    return None


def _plan(spec: pd.DataFrame, base: Path, report: dict) -> list[tuple[Path, dict, str]]:
    """The rows still to make, as ``(out, generate kwargs, row name)``; done rows and bad rows are counted."""
    jobs = []
    for row in spec.to_dict("records"):
        out = base / row["out"]
        if provenance_path(out).exists() and out.exists():
            report["skipped"] += 1
            continue
        try:
            jobs.append((out, row_kwargs(row, base), row["out"]))
        except MirError as exc:
            report["failed"] += 1
            report["failures"].append(f"{row['out']}: {exc}")
    return jobs


def generate_batch(lib: Library | str | os.PathLike, spec_path: str | os.PathLike, *, progress: bool = False,
                   scheduler: str | None = None, **defaults) -> dict:
    """Generate every piece of the spec not done yet; ``defaults`` go to :func:`generate` unless a row overrides them.
    ``scheduler``: a Dask scheduler address to run the pieces on. Returns counts ``{"done", "skipped", "failed"}``
    and the failures' messages."""
    from tqdm import tqdm

    from ..parallel import dask_map

    lib = lib if isinstance(lib, Library) else Library(lib)
    spec = read_spec(spec_path)
    report = {"done": 0, "skipped": 0, "failed": 0, "failures": []}
    jobs = _plan(spec, Path(spec_path).resolve().parent, report)
    items = [(out, kwargs) for out, kwargs, _ in jobs]
    if scheduler:
        results = dask_map(scheduler, generate_one, items, str(lib.root), defaults)
    else:
        results = ((i, generate_one(item, str(lib.root), defaults)) for i, item in enumerate(items))
    for i, error in tqdm(results, total=len(items), desc="generate", unit="piece", disable=not progress):
        if error is None:
            report["done"] += 1
        else:
            report["failed"] += 1
            report["failures"].append(f"{jobs[i][2]}: {error}")
    return report
