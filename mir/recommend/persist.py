"""Saving and loading fitted recommenders: ``model.json`` (class, hyper-parameters) + ``model.npz``
(learned arrays and CSR matrices), no pickle. Classes are looked up by name in
:mod:`~mir.recommend.registry`.
"""
from __future__ import annotations

import inspect
import json
import os
from pathlib import Path

import numpy as np

from .. import atomic
from ..errors import ParameterError
from ._base import Recommender
from .registry import recommender_class


def _learned(model) -> dict:
    return {k: v for k, v in vars(model).items() if k.endswith("_") and not k.startswith("_")}


def _flatten(model, prefix: str, arrays: dict) -> dict:
    import scipy.sparse as sp

    meta = {"class": type(model).__name__, "params": {}, "arrays": [], "csr": [], "children": {}}
    for k, v in model.get_params().items():
        if isinstance(v, Recommender):
            meta["children"][k] = _flatten(v, f"{prefix}{k}.", arrays)
        else:
            meta["params"][k] = v
    for k, v in _learned(model).items():
        if isinstance(v, Recommender):
            meta["children"][k] = _flatten(v, f"{prefix}{k}.", arrays)
        elif sp.issparse(v):
            v = v.tocsr()
            for part in ("data", "indices", "indptr"):
                arrays[f"{prefix}{k}.{part}"] = getattr(v, part)
            arrays[f"{prefix}{k}.shape"] = np.asarray(v.shape, np.int64)
            meta["csr"].append(k)
        elif isinstance(v, np.ndarray):
            if v.dtype == object:
                v = v.astype(str)
            arrays[prefix + k] = v
            meta["arrays"].append(k)
        elif isinstance(v, (int, float, str, bool, np.integer, np.floating)) or v is None:
            meta["params"]["@" + k] = v.item() if isinstance(v, np.generic) else v
        else:
            raise ParameterError(f"cannot store learned attribute {k!r} of type {type(v).__name__}")
    return meta


def save_model(model: Recommender, folder: str | os.PathLike) -> None:
    """Write a fitted recommender as ``model.json`` + ``model.npz`` in ``folder`` (atomically)."""
    import io

    model._check_fitted()
    arrays: dict = {}
    meta = _flatten(model, "", arrays)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    folder = Path(folder)
    atomic.write_bytes(folder / "model.npz", buf.getvalue())
    atomic.write_text(folder / "model.json", json.dumps(meta, indent=1, sort_keys=True))


def _rebuild(meta: dict, prefix: str, arrays) -> Recommender:
    import scipy.sparse as sp

    cls = recommender_class(meta["class"])
    params = {k: v for k, v in meta["params"].items() if not k.startswith("@")}
    init = set(inspect.signature(cls.__init__).parameters)
    for k, child in meta["children"].items():
        if k in init:
            params[k] = _rebuild(child, f"{prefix}{k}.", arrays)
    model = cls(**params)
    for k, child in meta["children"].items():
        if k not in init:
            setattr(model, k, _rebuild(child, f"{prefix}{k}.", arrays))
    for k, v in meta["params"].items():
        if k.startswith("@"):
            setattr(model, k[1:], v)
    for k in meta["arrays"]:
        setattr(model, k, arrays[prefix + k])
    for k in meta["csr"]:
        shape = tuple(int(x) for x in arrays[f"{prefix}{k}.shape"])
        setattr(model, k, sp.csr_matrix((arrays[f"{prefix}{k}.data"], arrays[f"{prefix}{k}.indices"],
                                         arrays[f"{prefix}{k}.indptr"]), shape=shape))
    return model


def load_model(folder: str | os.PathLike) -> Recommender:
    """Read a recommender written by :func:`save_model`."""
    folder = Path(folder)
    try:
        meta = json.loads((folder / "model.json").read_text())
        with np.load(folder / "model.npz", allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except (OSError, ValueError) as exc:
        raise ParameterError(f"cannot read a saved recommender in {str(folder)!r}: {exc}") from exc
    return _rebuild(meta, "", arrays)
