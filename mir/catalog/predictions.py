"""What a model wrote into the catalogue: which models tagged a library, their tags and embeddings.

The tagging job (:mod:`mir.tagging`) writes stage ``tags``, version = the model id, one row per
content hash::

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
        music        float32                     probability that the track is music (only models with a
                                                 music gate, :mod:`mir.models.gate`; absent otherwise)
    LIB/stages/tags/<model_id>/model.json        tags, genres, thresholds, config, analysis, checkpoint path

Embeddings live in the same rows as list columns (not in the per-track array store): one Parquet
read returns every embedding of a model, which is what an index build wants
(:func:`load_embeddings`); per-track ``.npy`` files would cost one open per track.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import CatalogError, ParameterError
from .library import Library

STAGE = "tags"


def tagged_models(lib: Library) -> list[str]:
    """Model ids that have tagged something in ``lib``, most recently written first."""
    folder = lib.stages.root / STAGE
    ids = lib.stages.versions(STAGE)

    def newest(mid: str) -> float:
        parts = list((folder / mid).glob("part-*.parquet"))
        return max((p.stat().st_mtime for p in parts), default=0.0)

    return sorted((m for m in ids if newest(m) > 0), key=newest, reverse=True)


@dataclass(frozen=True)
class ModelRef:
    """A model named by ``--model`` (see :func:`resolve_model`)."""

    checkpoint: Path | None  # the file the model loads from; None when it is no longer where it tagged from
    tagged_id: str | None = None  # the model id, when the model has tagged the library

    @cached_property
    def model_id(self) -> str:
        """The model id (read from the checkpoint when the model has not tagged the library)."""
        if self.tagged_id is not None:
            return self.tagged_id
        from ..models import load_checkpoint

        return load_checkpoint(self.checkpoint).model_id


def resolve_model(lib: Library, model: str | os.PathLike | None = None, *, tagged: bool = True) -> ModelRef:
    """Which model ``--model`` names, for every command.

    ``model`` is a checkpoint file, or the id (or a unique prefix of the id) of a model that tagged
    ``lib``, whose checkpoint is the file it tagged from (``model.json``). ``None`` is the model that
    tagged ``lib`` most recently, or with ``tagged=False`` the packaged default model.
    ``tagged``: the model must have tagged ``lib`` (queries, indexes); ``False`` for commands that
    run the model (``mir tag``, ``mir evaluate``).
    """
    names = tagged_models(lib)
    if model is None:
        if not tagged:
            from ..models.checkpoint import default_checkpoint

            return ModelRef(library_model(lib) or default_checkpoint())
        if not names:
            raise CatalogError(f"library {str(lib.root)!r} has no tagged tracks; run `mir tag {lib.root}` first")
        return _tagged_ref(lib, names[0])
    text = os.fspath(model)
    hits = [m for m in names if m.startswith(text)] if text else []
    if len(hits) == 1:
        return _tagged_ref(lib, hits[0])
    if len(hits) > 1:
        raise ParameterError(f"model {text!r} is ambiguous: {hits}")
    path = Path(text).expanduser()
    if not path.is_file():
        raise ParameterError(f"model {text!r} is neither a model that tagged library {str(lib.root)!r} "
                             f"({', '.join(names) or 'none'}) nor a checkpoint file")
    ref = ModelRef(path.resolve())
    if ref.model_id in names:
        return ModelRef(ref.checkpoint, ref.model_id)
    if tagged:
        raise CatalogError(f"model {ref.model_id} ({text}) has not tagged library {str(lib.root)!r}; "
                           f"run `mir tag {lib.root} --model {text}` first")
    return ref


LIBRARY_MODEL = Path("models") / "library-model.json"  # the library's own model (mir adapt), under LIB


def library_model(lib: Library) -> Path | None:
    """The checkpoint recorded as ``lib``'s own model (by ``mir adapt``), or None: then the packaged default."""
    record = lib.root / LIBRARY_MODEL
    if not record.is_file():
        return None
    try:
        path = lib.root / json.loads(record.read_text())["checkpoint"]
    except (ValueError, KeyError, TypeError) as exc:
        raise CatalogError(f"{record} is not a library-model record ({exc}); delete it to use the default model") from None
    if not path.is_file():
        raise CatalogError(f"{record} names {path}, which does not exist; run `mir adapt {lib.root}` again "
                           "or delete the record to use the default model")
    return path


def set_library_model(lib: Library, checkpoint: str | os.PathLike, **info) -> None:
    """Record ``checkpoint`` (inside ``lib``) as the model ``mir tag`` and ``mir index`` use for ``lib`` from now on."""
    from ..atomic import write_text

    rel = Path(checkpoint).resolve().relative_to(lib.root)
    write_text(lib.root / LIBRARY_MODEL, json.dumps({"checkpoint": str(rel), **info}, indent=1))


def resolve_model_id(lib: Library, model: str | os.PathLike | None = None) -> str:
    """Id of a model that tagged ``lib``, named as :func:`resolve_model` reads ``--model``."""
    return resolve_model(lib, model).model_id


def music_probs(lib: Library, model_id: str, *, include_missing: bool = False) -> pd.Series | None:
    """``{track_id: p(music)}`` of ``model_id``, or None when the model has no music gate."""
    table = lib.stages.table(STAGE, model_id).read()
    if "music" not in table or table["music"].isna().all():
        return None
    tracks = lib.tracks(include_missing=include_missing)[["track_id", "hash"]]
    frame = tracks.merge(table[["hash", "music"]], on="hash", how="inner")
    return pd.Series(frame["music"].to_numpy(np.float64), index=frame["track_id"].to_numpy(str), name="music")


def _tagged_ref(lib: Library, model_id: str) -> ModelRef:
    path = model_info(lib, model_id).get("checkpoint")
    return ModelRef(Path(path) if path and os.path.isfile(path) else None, model_id)


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
    ``embedding`` only when asked); ``music`` always (NaN for a model without a music gate). ``frame.attrs`` holds the ``tags`` and ``genres`` vocabularies
    (the order of ``tag_probs`` and ``genre_probs``) and the ``thresholds``.
    """
    info = model_info(lib, model_id)
    table = lib.stages.table(STAGE, model_id).read()
    if not embedding and "embedding" in table:
        table = table.drop(columns="embedding")
    tracks = lib.tracks(include_missing=include_missing)[["track_id", "hash", "path"]]
    frame = tracks.merge(table, on="hash", how="inner").sort_values("track_id").reset_index(drop=True)
    if "music" not in frame:
        frame["music"] = np.nan
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
    if len(frame):
        matrix = np.stack(frame["embedding"].to_numpy()).astype(np.float32)
    else:
        from ..models.builders import ModelConfig  # torch: only to know the width of no rows

        matrix = np.zeros((0, ModelConfig.from_dict(info["config"]).output_dim), np.float32)
    return frame["track_id"].to_numpy(str), frame["hash"].to_numpy(str), matrix


def tagging_state(lib: Library) -> list[dict]:
    """Per model that tagged ``lib``, most recent first: ``{"model_id", "tagged"`` (present tracks it
    tagged), ``"checkpoint"`` (where it tags from, None when that file is gone), ``"decision_rules"``
    (the version of the rules its stored tags were decided by)}."""
    present = set(lib.tracks(include_missing=False)["hash"])
    out = []
    for model_id in tagged_models(lib):
        info = model_info(lib, model_id)
        checkpoint = info.get("checkpoint")
        out.append({"model_id": model_id, "tagged": len(present & lib.stages.table(STAGE, model_id).keys()),
                    "checkpoint": checkpoint if checkpoint and os.path.isfile(checkpoint) else None,
                    "decision_rules": info.get("decision_rules", 1)})
    return out


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
    row["music"] = None if pd.isna(row.get("music", np.nan)) else float(row["music"])
    row["model_id"] = model_id
    return row
