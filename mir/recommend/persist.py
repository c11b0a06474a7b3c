"""Saving and loading fitted recommenders: ``model.json`` (class, hyper-parameters) + ``model.npz``
(learned arrays and CSR matrices), no pickle. Classes are looked up by name in
:mod:`~mir.recommend.registry`.

Format 2 (``"format": 2`` in ``model.json``) names the default hybrid ``Hybrid``. Format 1 (no
``format`` key) called it ``AffinityHybrid``, used ``Hybrid`` for the retired ``hybrid-blend`` and
gave ``Collaborative`` an ``algorithm`` ("als" or the retired "bpr") and a ``learning_rate``; format-1
files of the methods still in mir load, those of retired methods (hybrid-blend, hybrid-learned, bpr,
ease) are refused.
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

FORMAT = 2
RETIRED = {"Hybrid": "hybrid-blend", "LearnedHybrid": "hybrid-learned", "EASE": "ease"}  # format-1 names of retired methods
FORMAT1_NAMES = {"AffinityHybrid": "Hybrid"}  # format-1 names of classes still in use, by their new name


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
    meta = {"format": FORMAT, **_flatten(model, "", arrays)}
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    folder = Path(folder)
    atomic.write_bytes(folder / "model.npz", buf.getvalue())
    atomic.write_text(folder / "model.json", json.dumps(meta, indent=1, sort_keys=True))


def _retired(folder: Path, method: str) -> ParameterError:
    return ParameterError(f"the saved recommender in {str(folder)!r} was fitted by the retired method {method!r}; "
                          "fit it again with `mir recommend` (default method: hybrid)")


def _class(name: str, params: dict, version: int, folder: Path) -> type[Recommender]:
    """The class of a saved model; format-1 names and parameters are brought up to date in ``params``."""
    if version == 1:
        if name in RETIRED:
            raise _retired(folder, RETIRED[name])
        if name == "Collaborative":
            if params.pop("algorithm", "als") != "als":
                raise _retired(folder, "bpr")
            params.pop("learning_rate", None)  # bpr's
        name = FORMAT1_NAMES.get(name, name)
    elif version != FORMAT:
        raise ParameterError(f"the saved recommender in {str(folder)!r} has format {version!r}; this mir reads "
                             f"formats 1 and {FORMAT}: fit it again with `mir recommend`")
    if name == "Collaborative":
        params.pop("cold_ridge", None)  # retired; the saved factors already hold what it predicted
    return recommender_class(name)


def _rebuild(meta: dict, prefix: str, arrays, version: int, folder: Path) -> Recommender:
    import scipy.sparse as sp

    params = {k: v for k, v in meta["params"].items() if not k.startswith("@")}
    cls = _class(meta["class"], params, version, folder)
    init = set(inspect.signature(cls.__init__).parameters)
    for k, child in meta["children"].items():
        if k in init:
            params[k] = _rebuild(child, f"{prefix}{k}.", arrays, version, folder)
    model = cls(**params)
    for k, child in meta["children"].items():
        if k not in init:
            setattr(model, k, _rebuild(child, f"{prefix}{k}.", arrays, version, folder))
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
    return _rebuild(meta, "", arrays, meta.get("format", 1), folder)
