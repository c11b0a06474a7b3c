"""Tagger checkpoints: one ``torch.save`` file, written atomically, read with ``weights_only=True``.

Layout (a plain dict; only tensors, str, numbers, bools, None, lists and dicts, so the safe
unpickler of ``torch.load(..., weights_only=True)`` reads it and nothing else can run)::

    format          "mir.tagger"
    format_version  1
    mir_version     mir.__version__ of the writer
    model_id        short hex content hash of the weights + config (see :func:`model_id`)
    config          ModelConfig.to_dict()
    state_dict      {name: tensor} (CPU, contiguous)
    tags, genres    vocabularies, in head order
    thresholds      per-tag decision thresholds (``sigmoid(logit) >= threshold``)
    metrics         training / validation scores (plain containers)
    analysis        feature parameters the model was trained on (sample_rate, hop_length, …)
    extra           anything else the trainer wants to keep (plain containers)

``model_id`` covers exactly what determines the model's outputs (weights, config and the music gate
``extra["music_gate"]`` when there is one), not the
vocabulary names or thresholds, so it is a sound cache key for embeddings and logits.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from ..atomic import atomic_path
from ..errors import LabelError, ModelError, ParameterError
from .builders import ModelConfig, build_model
from .gate import GATE_KEY, MusicGate, gate_of
from .tagger import ShortChunkCNN

FORMAT = "mir.tagger"
FORMAT_VERSION = 1
DEFAULT_CHECKPOINT = Path(__file__).resolve().parent / "default" / "default.pt"  # the packaged default tagger
_REQUIRED = ("format", "format_version", "mir_version", "model_id", "config", "state_dict",
             "tags", "genres", "thresholds", "metrics", "analysis", "extra")


@dataclass(frozen=True)
class LoadedModel:
    """A checkpoint brought back to life: the model (eval mode) and everything stored with it."""

    model: ShortChunkCNN
    config: ModelConfig
    tags: tuple[str, ...]
    genres: tuple[str, ...]
    thresholds: np.ndarray  # [n_tags] float64
    metrics: dict[str, Any]
    analysis: dict[str, Any]
    extra: dict[str, Any]
    model_id: str
    mir_version: str
    path: Path | None = field(default=None, compare=False)

    @property
    def music_gate(self) -> MusicGate | None:
        """The model's music gate (:mod:`mir.models.gate`), or None when it has none."""
        return gate_of(self.extra)

    def check_analysis(self, current: Mapping[str, Any] | Any) -> None:
        """Raise :class:`ModelError` if ``current`` feature parameters differ from training's.

        ``current`` is a mapping or a dataclass such as :class:`mir.config.AnalysisConfig`;
        only keys stored in the checkpoint's ``analysis`` and present in ``current`` compare.
        """
        if dataclasses.is_dataclass(current) and not isinstance(current, type):
            current = dataclasses.asdict(current)
        diffs = {
            k: (v, current[k]) for k, v in self.analysis.items()
            if k in current and not _same_value(v, current[k])
        }
        if diffs:
            detail = ", ".join(f"{k}: trained with {a!r}, now {b!r}" for k, (a, b) in sorted(diffs.items()))
            raise ModelError(
                f"model {self.model_id} was trained on different features ({detail}); "
                "analyse with the training parameters or retrain"
            )


def _same_value(a, b) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        try:
            return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=0.0)
        except (TypeError, ValueError):
            return False
    return a == b


# --- hashing ----------------------------------------------------------------------------------
def _unwrap(model: nn.Module) -> nn.Module:
    return getattr(model, "_orig_mod", model)  # torch.compile wraps the module


def _cpu_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu").contiguous() for k, v in _unwrap(model).state_dict().items()}


def model_id(state_dict: Mapping[str, torch.Tensor], config: ModelConfig | Mapping[str, Any],
             music_gate: Mapping[str, Any] | None = None) -> str:
    """12-hex-digit content hash of ``state_dict`` (names, dtypes, shapes, bytes), ``config`` and the
    music gate (``extra["music_gate"]``, :mod:`mir.models.gate`) when there is one.

    Independent of device and memory format (channels_last gives the same id). A model without a
    gate keeps the id it had before gates existed.
    """
    cfg = config.to_dict() if isinstance(config, ModelConfig) else dict(config)
    h = hashlib.blake2b(digest_size=6)
    h.update(json.dumps(cfg, sort_keys=True).encode())
    for name in sorted(state_dict):
        t = state_dict[name].detach().to("cpu").contiguous()
        h.update(f"\0{name}\0{t.dtype}\0{tuple(t.shape)}\0".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    if music_gate is not None:
        h.update(b"\0music_gate\0" + json.dumps(music_gate, sort_keys=True).encode())
    return h.hexdigest()


# --- plain containers -------------------------------------------------------------------------
def _plain(obj: Any, where: str) -> Any:
    """Copy ``obj`` into what ``torch.load(weights_only=True)`` accepts, or raise ParameterError."""
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu").contiguous()
    if isinstance(obj, Mapping):
        out = {}
        for k, v in obj.items():
            if isinstance(k, np.generic):
                k = k.item()
            if not isinstance(k, (str, int)) or isinstance(k, bool):
                raise ParameterError(f"{where} has key {k!r} of type {type(k).__name__}; use str or int keys")
            out[k] = _plain(v, f"{where}[{k!r}]")
        return out
    if isinstance(obj, (list, tuple)):
        return [_plain(v, f"{where}[{i}]") for i, v in enumerate(obj)]
    raise ParameterError(
        f"{where} holds a {type(obj).__name__} ({obj!r:.60}); checkpoints store only numbers, str, "
        "bool, None, lists, dicts, numpy arrays and tensors"
    )


def _vocab(names: Sequence[str], what: str, size: int) -> list[str]:
    if isinstance(names, str) or not isinstance(names, Sequence) and not isinstance(names, np.ndarray):
        raise LabelError(f"{what} must be a list of names, got {type(names).__name__}")
    names = [n.item() if isinstance(n, np.generic) else n for n in names]
    bad = [n for n in names if not isinstance(n, str) or not n]
    if bad:
        raise LabelError(f"{what} must be non-empty strings; bad entries: {bad[:5]!r}")
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise LabelError(f"{what} has duplicate names: {dupes[:5]!r}")
    if len(names) != size:
        raise ParameterError(f"{what} has {len(names)} names but the model has {size} outputs")
    return list(names)


def _thresholds(values, n_tags: int) -> list[float]:
    arr = np.asarray(values, dtype=np.float64) if not isinstance(values, torch.Tensor) else values.detach().cpu().double().numpy()
    if arr.shape != (n_tags,):
        raise ParameterError(f"thresholds must have shape ({n_tags},) (one per tag), got {arr.shape}")
    if not np.all(np.isfinite(arr)) or arr.min(initial=0.0) < 0.0 or arr.max(initial=0.0) > 1.0:
        raise ParameterError("thresholds must be finite probabilities in [0, 1]")
    return [float(v) for v in arr]


# --- save / load ------------------------------------------------------------------------------
def _load_failure(exc: Exception) -> str:
    text = str(exc)
    if "Weights only load failed" in text:
        detail = next((ln.strip() for ln in text.splitlines() if "Unsupported" in ln), "")
        detail = detail.split(". Please use")[0].replace("WeightsUnpickler error: ", "")
        return "it holds objects a safe weights_only load refuses to run" + (f": {detail}" if detail else "")
    first = text.splitlines()[0] if text else ""
    return f"corrupt, truncated, or not a torch.save file: {type(exc).__name__}: {first}"


def save_checkpoint(
    path: str | os.PathLike,
    model: nn.Module,
    *,
    config: ModelConfig,
    tags: Sequence[str],
    genres: Sequence[str],
    thresholds: Sequence[float] | np.ndarray,
    metrics: Mapping[str, Any],
    analysis: Mapping[str, Any],
    extra: Mapping[str, Any] | None = None,
) -> str:
    """Atomically write ``model`` and its metadata to ``path``; return the ``model_id``.

    Raises :class:`ParameterError` when the model does not match ``config``, vocabulary sizes
    do not match the heads, thresholds are not probabilities, or metadata holds objects a safe
    load could not read; :class:`LabelError` for empty or duplicate vocabulary names.
    """
    from .. import __version__

    if not isinstance(config, ModelConfig):
        raise ParameterError(f"config must be a ModelConfig, got {type(config).__name__}")
    state = _cpu_state(model)
    with torch.device("meta"):
        expected = build_model(config).state_dict()
    mismatch = sorted(
        set(state) ^ set(expected)
        | {k for k in set(state) & set(expected) if tuple(state[k].shape) != tuple(expected[k].shape)}
    )
    if mismatch:
        raise ParameterError(f"model does not match config {config}: differing weights {mismatch[:6]}")
    tags = _vocab(tags, "tags", config.n_tags)
    genres = _vocab(genres, "genres", config.n_genres)
    analysis = _plain(dict(analysis), "analysis")
    if "n_mels" in analysis and analysis["n_mels"] != config.n_mels:
        raise ParameterError(f"analysis n_mels={analysis['n_mels']} but the model expects n_mels={config.n_mels}")
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "mir_version": __version__,
        "model_id": "",
        "config": config.to_dict(),
        "state_dict": state,
        "tags": tags,
        "genres": genres,
        "thresholds": _thresholds(thresholds, config.n_tags),
        "metrics": _plain(dict(metrics), "metrics"),
        "analysis": analysis,
        "extra": _plain(dict(extra or {}), "extra"),
    }
    payload["model_id"] = model_id(state, config, _gate_plain(payload["extra"]))
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return payload["model_id"]


def _gate_plain(extra: Mapping[str, Any]) -> Any:
    """The music gate as stored (hashed into the model id), or None."""
    return extra.get(GATE_KEY)


def default_checkpoint() -> Path:
    """The packaged default model (:data:`DEFAULT_CHECKPOINT`); :class:`ModelError` when it is not installed."""
    if not DEFAULT_CHECKPOINT.is_file():
        raise ModelError(f"no model given and the default model {DEFAULT_CHECKPOINT} is not installed; "
                         "pass --model PATH to a checkpoint, or train one with `mir train`")
    return DEFAULT_CHECKPOINT


def load_checkpoint(path: str | os.PathLike, *, device: str | torch.device = "cpu") -> LoadedModel:
    """Load a checkpoint written by :func:`save_checkpoint`; the model comes back in eval mode.

    Uses ``torch.load(..., weights_only=True)`` only. Raises :class:`ModelError` (naming
    ``path``) when the file is missing, unreadable or corrupt, not a mir tagger checkpoint,
    from a newer format, or inconsistent (vocabulary vs head sizes, weights vs config, content
    vs its stored ``model_id``).
    """
    path = Path(path)
    payload = _read_payload(path)
    try:
        _check_format(payload)
        config, state = _config_and_state(payload)
        model = _restore(payload, config, state)
        thresholds = _check_rest(payload, config)
    except _Invalid as exc:
        raise ModelError(f"{path}: {exc}") from None
    model.to(device).eval()
    return LoadedModel(
        model=model,
        config=config,
        tags=tuple(payload["tags"]),
        genres=tuple(payload["genres"]),
        thresholds=thresholds,
        metrics=payload["metrics"],
        analysis=payload["analysis"],
        extra=payload["extra"],
        model_id=payload["model_id"],
        mir_version=str(payload["mir_version"]),
        path=path,
    )


class _Invalid(Exception):
    """What is wrong with a checkpoint's contents; :func:`load_checkpoint` names the file."""


def _read_payload(path: Path):
    if not path.exists():
        raise ModelError(f"{path}: model checkpoint not found")
    if not path.is_file():
        raise ModelError(f"{path}: model checkpoint path is not a file")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt zip, truncated file, foreign pickle, unsafe globals …
        raise ModelError(f"{path}: cannot read model checkpoint ({_load_failure(exc)})") from None


def _check_format(payload) -> None:
    """A mir tagger checkpoint of a format this mir reads, with every required field."""
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise _Invalid(f"not a mir tagger checkpoint (format {found!r}, expected {FORMAT!r})")
    version = payload.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise _Invalid(f"invalid checkpoint format_version {version!r}")
    if version > FORMAT_VERSION:
        raise _Invalid(
            f"checkpoint format {version} was written by a newer mir ({payload.get('mir_version')}); "
            f"this mir reads format ≤ {FORMAT_VERSION}: upgrade mir"
        )
    missing = [k for k in _REQUIRED if k not in payload]
    if missing:
        raise _Invalid(f"checkpoint lacks field(s) {missing}")


def _config_and_state(payload: dict) -> tuple[ModelConfig, dict]:
    """The stored config and weights, the vocabularies agreeing with both in size."""
    try:
        config = ModelConfig.from_dict(payload["config"])
    except ModelError as exc:
        raise _Invalid(str(exc)) from None
    state = payload["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise _Invalid("state_dict is not a mapping of tensors")
    for what, head in (("tags", "tag_head.weight"), ("genres", "genre_head.weight")):
        names = payload[what]
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise _Invalid(f"{what} is not a list of names")
        rows = state[head].shape[0] if head in state else None
        n_cfg = config.n_tags if what == "tags" else config.n_genres
        if len(names) != rows or len(names) != n_cfg:
            raise _Invalid(
                f"vocabulary size mismatch: {len(names)} {what} but the weights have {rows} "
                f"{what} outputs and the config says {n_cfg}"
            )
    return config, state


def _restore(payload: dict, config: ModelConfig, state: dict) -> nn.Module:
    """The model built from ``config`` with ``state`` loaded, its contents matching the stored id."""
    model = build_model(config)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise _Invalid(f"weights do not match the stored config: {str(exc).splitlines()[0]}") from None
    stored_id = payload["model_id"]
    extra = payload["extra"]
    if not isinstance(extra, dict):
        raise _Invalid("extra is not a mapping")
    if model_id(state, config, _gate_plain(extra)) != stored_id:
        raise _Invalid(f"contents do not match the stored model_id {stored_id!r} (file edited or damaged)")
    return model


def _check_rest(payload: dict, config: ModelConfig) -> np.ndarray:
    """The decision thresholds (one per tag); metrics, analysis and extra must be mappings."""
    thresholds = np.asarray(payload["thresholds"], dtype=np.float64)
    if thresholds.shape != (config.n_tags,):
        raise _Invalid(f"thresholds have shape {thresholds.shape}, expected ({config.n_tags},)")
    for key in ("metrics", "analysis", "extra"):
        if not isinstance(payload[key], dict):
            raise _Invalid(f"{key} is not a mapping")
    try:
        gate_of(payload["extra"])
    except ModelError as exc:
        raise _Invalid(str(exc)) from None
    return thresholds
