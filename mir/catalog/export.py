"""``mir export``: a library's tracks with descriptors and, when asked, a model's tags and embeddings.

Columns: those of :meth:`Library.descriptors` (track id, path, metadata, descriptors); with ``tags``
also ``model_id``, ``genre_pred`` (the model's genre), ``genre_prob`` (its probability), ``tags``
(decided, by decreasing probability), then one probability column per tag (``tag:<name>``) and per
genre (``genre:<name>``), in the model's vocabulary order. Tracks the model has not tagged have
empty model columns. With ``embeddings``: Parquet gets an ``embedding`` column of fixed-size float32
lists; csv and json get ``<out>.embeddings.npy`` ([n, d] float32, one row per track id of
``<out>.embeddings.ids.txt``, the tracks of the export that have one, in the same order).

A per-track model output that mir gains later (a music/non-music probability is planned) is one
more entry of :data:`MODEL_COLUMNS`.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd

from .. import atomic
from ..errors import ParameterError
from .library import Library, _json_records
from .predictions import load_tags, resolve_model_id

FORMATS = ("csv", "parquet", "json")
#: per-track model outputs exported with ``tags`` (besides the per-tag and per-genre probabilities)
MODEL_COLUMNS = ("model_id", "genre_pred", "genre_prob", "tags")


def export(lib: Library, path: str | os.PathLike, *, fmt: str | None = None, model: str | None = None,
           tags: bool = False, embeddings: bool = False) -> list[Path]:
    """Write the export (format from ``fmt`` or the suffix of ``path``); returns the files written.

    ``model``: whose tags and embeddings (id, id prefix or checkpoint; default the most recent).
    """
    path = Path(path)
    fmt = (fmt or path.suffix.lstrip(".")).lower()
    if fmt not in FORMATS:
        raise ParameterError(f"export format {fmt!r} is not supported; use one of {list(FORMATS)}")
    frame = lib.descriptors()
    matrix = None
    if tags or embeddings:
        model_id = resolve_model_id(lib, model)
        predicted = load_tags(lib, model_id, embedding=embeddings)
        if tags:
            frame = frame.merge(_model_columns(predicted), on="hash", how="left")
        if embeddings:
            by_hash = dict(zip(predicted["hash"], predicted["embedding"]))
            rows = [by_hash.get(h) for h in frame["hash"]]
            have = np.array([r is not None for r in rows], dtype=bool)
            d = len(next((r for r in rows if r is not None), ()))
            matrix = np.stack([r for r in rows if r is not None]).astype(np.float32) if have.any() \
                else np.zeros((0, d), np.float32)
    written = [path]
    if fmt == "parquet":
        atomic.write_with(path, lambda tmp: _parquet(frame, tmp, matrix, have if matrix is not None else None))
        return written
    flat = _flat(frame) if fmt == "csv" else frame
    if fmt == "csv":
        atomic.write_with(path, lambda tmp: flat.to_csv(tmp, index=False))
    else:
        atomic.write_with(path, lambda tmp: tmp.write_text(_json_records(flat), encoding="utf-8"))
    if matrix is not None:
        npy, ids = Path(f"{path}.embeddings.npy"), Path(f"{path}.embeddings.ids.txt")
        atomic.save_npy(npy, matrix)
        atomic.write_text(ids, "".join(f"{t}\n" for t in frame["track_id"][have]))
        written += [npy, ids]
    return written


def _model_columns(predicted: pd.DataFrame) -> pd.DataFrame:
    vocab, genres = list(predicted.attrs["tags"]), list(predicted.attrs["genres"])
    tag_probs = np.stack(predicted["tag_probs"].to_numpy()) if len(predicted) else np.zeros((0, len(vocab)))
    genre_probs = np.stack(predicted["genre_probs"].to_numpy()) if len(predicted) else np.zeros((0, len(genres)))
    out = pd.DataFrame({
        "hash": predicted["hash"], "model_id": predicted.attrs["model_id"], "genre_pred": predicted["genre"],
        "genre_prob": genre_probs.max(axis=1) if len(predicted) else [],
        "tags": [list(t) for t in predicted["tags"]],
    })
    probs = pd.DataFrame(np.hstack([tag_probs, genre_probs]).round(6),
                         columns=[f"tag:{t}" for t in vocab] + [f"genre:{g}" for g in genres], index=out.index)
    return pd.concat([out, probs], axis=1)


def _flat(frame: pd.DataFrame) -> pd.DataFrame:
    """CSV cells hold text: vector descriptors become JSON lists, decided tags ``; ``-joined text."""
    flat = frame.copy()
    for col in ("chroma", "rhythm"):
        if col in flat:
            flat[col] = [json.dumps([round(float(v), 5) for v in x]) if isinstance(x, (list, np.ndarray)) else ""
                         for x in flat[col]]
    if "tags" in flat:
        flat["tags"] = ["; ".join(t) if isinstance(t, (list, np.ndarray)) else "" for t in flat["tags"]]
    return flat


def _parquet(frame: pd.DataFrame, tmp: Path, matrix: np.ndarray | None, have: np.ndarray | None) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(frame, preserve_index=False)
    if matrix is not None:
        d = matrix.shape[1]
        full = np.zeros((len(frame), d), np.float32)
        full[have] = matrix
        values = pa.FixedSizeListArray.from_arrays(pa.array(full.ravel(), pa.float32()), d,
                                                   mask=pa.array(~have))
        table = table.append_column("embedding", values)
    pq.write_table(table, tmp)
