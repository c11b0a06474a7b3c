"""Self-supervised training of a tagger's backbone on unlabelled audio (SimCLR / CLMR style),
optionally joint with its supervised tag and genre heads on labelled log-mels ("replay").

A step draws ``batch_size`` tracks; two random crops of each go through independent
:class:`~mir.train.views.Views` and the shared backbone; a small projection head maps the
embeddings to the space where NT-Xent (Chen et al. 2020) pulls the two views of one track
together and pushes the other tracks of the batch away. With replay, a batch of labelled
chunks adds the supervised tagging loss, so the heads keep what they learned.

With ``group_weight``, tracks also carry a group (a corpus's package, a library's album folder)
and a second projection learns, by supervised contrastive loss (Khosla et al. 2020), that tracks
of one group belong together: the production and style a package or album shares, which
track-level invariance alone trains away.

Every step draws its randomness from ``(seed, step)``, and the training state (weights,
projection, optimiser, step) is saved atomically every ``save_every`` steps: a killed run
resumes where it stopped and ends with the same weights as an uninterrupted one.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ..atomic import atomic_path
from ..errors import AudioError, ParameterError
from ..features.logmel import LogMel
from ..models import build_model, load_checkpoint, save_checkpoint
from .views import Views


@dataclass(frozen=True)
class SSLConfig:
    """Hyper-parameters of a contrastive run (stored in the checkpoint's ``extra``)."""

    steps: int = 1000
    batch_size: int = 32  # tracks per step, two views each
    lr: float = 3e-4
    weight_decay: float = 1e-4
    temperature: float = 0.1
    proj_dim: int = 128
    supervised_weight: float = 1.0  # weight of the replayed supervised loss; 0 = none
    supervised_batch: int = 32
    distill_weight: float = 0.0  # weight of keeping the base model's chunk tag/genre outputs (mir adapt); 0 = none
    group_weight: float = 0.0  # weight of the same-group (package, album) loss; 0 = none
    group_size: int = 4  # tracks drawn per group in a batch when group_weight > 0
    views: Views = field(default_factory=Views)
    seed: int = 0
    save_every: int = 25

    def __post_init__(self):
        for name in ("steps", "batch_size", "proj_dim", "supervised_batch", "save_every", "group_size"):
            if int(getattr(self, name)) < 1:
                raise ParameterError(f"{name} must be ≥ 1, got {getattr(self, name)!r}")
        if self.batch_size < 2:
            raise ParameterError(f"batch_size must be ≥ 2 (other tracks are the negatives), got {self.batch_size}")
        if self.temperature <= 0 or self.lr <= 0 or min(self.supervised_weight, self.distill_weight, self.group_weight) < 0:
            raise ParameterError(f"temperature and lr must be > 0 and the loss weights ≥ 0, got temperature "
                                 f"{self.temperature!r}, lr {self.lr!r}, supervised {self.supervised_weight!r}, "
                                 f"distill {self.distill_weight!r}, group {self.group_weight!r}")

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["views"] = self.views.to_dict()
        return d


# --- maths -------------------------------------------------------------------------------------
def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """NT-Xent loss of paired views ``z1``, ``z2`` [batch, d]: row i of each is the other's positive,
    the other 2·batch − 2 rows are its negatives (cosine similarity / temperature, cross-entropy)."""
    if z1.shape != z2.shape or z1.dim() != 2 or z1.shape[0] < 2:
        raise ParameterError(f"z1 and z2 must both be [batch ≥ 2, d], got {tuple(z1.shape)} and {tuple(z2.shape)}")
    n = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2]).float(), dim=-1)
    sim = z @ z.T / temperature
    sim = sim.masked_fill(torch.eye(2 * n, dtype=torch.bool, device=z.device), float("-inf"))
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
    return F.cross_entropy(sim, target)


def sup_con(z: torch.Tensor, groups: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """Supervised contrastive loss (Khosla et al. 2020, "L_out"): each row's positives are the other rows
    of its group; the mean over rows that have one. ``z`` [n, d], ``groups`` [n] integer labels."""
    if z.dim() != 2 or groups.shape != (z.shape[0],):
        raise ParameterError(f"z must be [n, d] and groups [n], got {tuple(z.shape)} and {tuple(groups.shape)}")
    z = F.normalize(z.float(), dim=-1)
    eye = torch.eye(len(z), dtype=torch.bool, device=z.device)
    sim = (z @ z.T / temperature).masked_fill(eye, float("-inf"))
    log_prob = sim - torch.logsumexp(sim, dim=1, keepdim=True)
    pos = (groups[:, None] == groups[None, :]) & ~eye
    n_pos = pos.sum(1)
    has = n_pos > 0
    if not bool(has.any()):
        raise ParameterError("no two rows share a group: the same-group loss needs groups of ≥ 2 rows")
    per_row = -(log_prob.masked_fill(~pos, 0.0)).sum(1)[has] / n_pos[has]
    return per_row.mean()


class Projection(nn.Module):
    """Two-layer MLP from the backbone embedding to the contrastive space (dropped after training)."""

    def __init__(self, in_dim: int, out_dim: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_dim, in_dim), nn.ReLU(), nn.Linear(in_dim, out_dim))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.net(h)


# --- unlabelled audio --------------------------------------------------------------------------
class WaveBank:
    """Decoded mono waveforms of unlabelled tracks held in RAM as float16 (9 h at 22,050 Hz ≈ 1.4 GB)."""

    def __init__(self, waves: Sequence[np.ndarray], names: Sequence[str], sr: int,
                 groups: Sequence[str] | None = None):
        if len(waves) < 2:
            raise ParameterError(f"contrastive training needs at least 2 tracks, got {len(waves)}")
        if groups is not None and len(groups) != len(waves):
            raise ParameterError(f"{len(groups)} groups for {len(waves)} tracks; give one group per track")
        self.waves = [np.asarray(w, dtype=np.float16) for w in waves]
        self.names = list(names)
        self.sr = int(sr)
        self.groups = None if groups is None else [str(g) for g in groups]
        self._codes = None

    def group_codes(self) -> np.ndarray:
        """Integer group per track (sorted group names), for batching by group."""
        if self.groups is None:
            raise ParameterError("these tracks carry no groups; load them with groups (a corpus's packages, "
                                 "a library's folders) to train the same-group loss")
        if self._codes is None:
            index = {g: i for i, g in enumerate(sorted(set(self.groups)))}
            self._codes = np.array([index[g] for g in self.groups])
        return self._codes

    def __len__(self) -> int:
        return len(self.waves)

    @property
    def seconds(self) -> float:
        return sum(len(w) for w in self.waves) / self.sr

    @classmethod
    def load(cls, paths: Sequence[str | os.PathLike], *, sr: int | None = None, max_seconds: float | None = None,
             offsets: Sequence[float] | None = None, groups: Sequence[str] | None = None, progress: bool = False,
             log: Callable[[str], None] | None = None) -> "WaveBank":
        """Decode ``paths`` (at most ``max_seconds`` from each, from ``offsets[i]`` seconds in); files that fail
        to decode are skipped and counted. ``groups[i]`` is track i's group (kept for the decoded ones)."""
        from tqdm import tqdm

        from .. import audio
        from ..config import get_config

        sr = sr or get_config().analysis.sample_rate
        waves, names, kept, failed = [], [], [], []
        paths = list(paths)
        offsets = [0.0] * len(paths) if offsets is None else [float(o) for o in offsets]
        for i, (p, offset) in enumerate(tqdm(list(zip(paths, offsets)), desc="decode", unit="track",
                                             disable=not progress, leave=False)):
            try:
                waves.append(audio.load(p, sr=sr, offset=offset, duration=max_seconds))
                names.append(str(p))
                kept.append(i)
            except AudioError as exc:
                failed.append(f"{p}: {exc}")
        if failed and log:
            log(f"skipped {len(failed)} file(s) that did not decode, e.g. {failed[0]}")
        return cls(waves, names, sr, groups=None if groups is None else [groups[i] for i in kept])

    def draw(self, config: "SSLConfig", rng: np.random.Generator) -> np.ndarray:
        """The tracks of one batch: uniform, or with ``group_weight`` ``group_size`` tracks from each of
        ``batch_size // group_size`` groups, so every track has same-group partners in the batch."""
        if not config.group_weight:
            return rng.choice(len(self), size=config.batch_size, replace=len(self) < config.batch_size)
        codes = self.group_codes()
        present = np.unique(codes)
        n_groups = max(2, config.batch_size // config.group_size)
        chosen = rng.choice(present, size=n_groups, replace=len(present) < n_groups)
        out = []
        for g in chosen:
            members = np.flatnonzero(codes == g)
            out.append(rng.choice(members, size=config.group_size, replace=len(members) < config.group_size))
        return np.concatenate(out)

    def views(self, index: np.ndarray, n: int, views: Views, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Two independent views [len(index), n] of a random crop region of each track ``index[k]``."""
        out = np.empty((2, len(index), n), dtype=np.float32)
        for k, i in enumerate(index):
            w = self.waves[int(i)]
            for v in range(2):
                speed = views.speed(rng)
                need = int(np.ceil(n * speed)) + 1
                start = int(rng.integers(0, max(len(w) - need, 0) + 1))
                out[v, k] = views(w[start:start + need].astype(np.float32), self.sr, n, rng, speed=speed)
        return out[0], out[1]


# --- training ----------------------------------------------------------------------------------
@dataclass
class SSLResult:
    path: Path
    model_id: str
    steps: int
    resumed_from: int
    losses: list[float]
    seconds: float


def state_path(out: str | os.PathLike) -> Path:
    out = Path(out)
    return out.with_name(out.stem + ".last.pt")


def backbone_of(path: str | os.PathLike):
    """The checkpoint at ``path`` as a backbone-only model (a track head, if any, is dropped) and its metadata."""
    loaded = load_checkpoint(path)
    config = dataclasses.replace(loaded.config, track_hidden=0)
    model = build_model(config)
    state = {k: v for k, v in loaded.model.state_dict().items() if not k.startswith("track_head.")}
    model.load_state_dict(state)
    return model, config, loaded


def _student(base, keep_head: bool):
    """The model to train from checkpoint ``base``: backbone only, or with the base's track head kept."""
    if not keep_head:
        return backbone_of(base)
    loaded = load_checkpoint(base)
    model = build_model(loaded.config)
    model.load_state_dict(loaded.model.state_dict())
    return model, loaded.config, loaded


def _teacher(loaded, config: SSLConfig):
    if not config.distill_weight:
        return None
    teacher = loaded.model.eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher


def distill_loss(model, h: torch.Tensor, teacher, mels: torch.Tensor) -> torch.Tensor:
    """How far the student's chunk tag and genre outputs (from its features ``h``) are from the frozen
    ``teacher``'s on the same log-mels: BCE against the teacher's tag probabilities + KL of the genre softmax."""
    with torch.no_grad():
        target = teacher(mels)
    z = model.dropout(F.relu(h))
    tags, genre = model.tag_head(z), model.genre_head(z)
    bce = F.binary_cross_entropy_with_logits(tags.float(), torch.sigmoid(target.tags.float()))
    kl = F.kl_div(F.log_softmax(genre.float(), -1), F.log_softmax(target.genre.float(), -1), log_target=True,
                  reduction="batchmean")
    return bce + kl


def _fingerprint(base_id: str, bank: WaveBank, config: SSLConfig, replay) -> str:
    """What a saved state must match to be resumed; ``steps`` is left out, so a run can be extended."""
    h = hashlib.blake2b(digest_size=8)
    optional = {"distill_weight": 0.0, "group_weight": 0.0, "group_size": 4}  # at these values, older states resume
    settings = {k: v for k, v in config.to_dict().items() if k != "steps" and optional.get(k, object()) != v}
    names = [bank.names, bank.groups] if config.group_weight else bank.names
    h.update(json.dumps([base_id, settings, names, bank.sr], sort_keys=True).encode())
    if replay is not None:
        h.update(replay.fingerprint().encode())
    return h.hexdigest()


def _replay_batch(replay, train_idx: np.ndarray, tag_cols: np.ndarray, genre_map: np.ndarray, size: int,
                  chunk_frames: int, rng: np.random.Generator):
    from .data import Augment

    idx = rng.choice(train_idx, size=size, replace=len(train_idx) < size)
    starts = replay.bank.random_starts(idx, chunk_frames, rng)
    x = Augment()(replay.bank.chunks(idx, starts, chunk_frames), rng)
    y_tags = replay.labels.y_tags[idx][:, tag_cols]
    g = replay.labels.y_genre[idx]
    y_genre = np.where(g >= 0, genre_map[np.maximum(g, 0)], -1)
    return torch.from_numpy(x), torch.from_numpy(y_tags.astype(np.float32)), torch.from_numpy(y_genre.astype(np.int64))


def _vocab_maps(replay, tags: Sequence[str], genres: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Columns of the replay labels in the model's tag order, and replay genre index → model genre index."""
    missing = [t for t in tags if t not in replay.labels.tags]
    if missing:
        raise ParameterError(f"replay labels lack the model's tags {missing[:5]}; use labels with the model's vocabulary")
    tag_cols = np.array([replay.labels.tags.index(t) for t in tags])
    genre_map = np.array([list(genres).index(g) if g in genres else -1 for g in replay.labels.genres])
    return tag_cols, genre_map


@dataclass
class _Run:
    """What one contrastive run holds between steps."""

    model: nn.Module
    proj: Projection
    opt: torch.optim.Optimizer
    loaded: object  # the base checkpoint (LoadedModel)
    teacher: nn.Module | None
    n_samples: int  # samples per view: one chunk of log-mel frames
    replay: object | None
    maps: tuple | None  # replay label columns / genre map, when replaying
    replay_train: np.ndarray | None  # the replayed tracks of the train split
    fingerprint: str
    logmel: nn.Module = field(default_factory=LogMel)
    proj_group: Projection | None = None  # the same-group loss's projection, when group_weight > 0


def _setup(base, bank: WaveBank, config: SSLConfig, replay, keep_head: bool) -> _Run:
    from ..config import get_config

    model, model_config, loaded = _student(base, keep_head)
    p = get_config().analysis
    if bank.sr != p.sample_rate:
        raise ParameterError(f"the waveforms are at {bank.sr} Hz but the analysis rate is {p.sample_rate} Hz")
    logmel = LogMel()
    torch.manual_seed(config.seed)
    proj = Projection(model_config.embed_dim, config.proj_dim)
    proj_group = Projection(model_config.embed_dim, config.proj_dim) if config.group_weight else None
    if proj_group is not None:
        bank.group_codes()  # fails early, naming the fix, when the tracks carry no groups
    params = [p for n, p in model.named_parameters() if not n.startswith("track_head.")] + list(proj.parameters())
    params += list(proj_group.parameters()) if proj_group is not None else []
    maps = _vocab_maps(replay, loaded.tags, loaded.genres) if replay is not None and config.supervised_weight else None
    return _Run(model=model, proj=proj, opt=torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay),
                loaded=loaded, teacher=_teacher(loaded, config), n_samples=(model_config.chunk_frames - 1) * p.hop_length,
                replay=replay if maps else None, maps=maps, replay_train=replay.index("train") if maps else None,
                fingerprint=_fingerprint(loaded.model_id, bank, config, replay), logmel=logmel, proj_group=proj_group)


def _resume(run: _Run, state_file: Path, config: SSLConfig, say) -> tuple[int, list[float]]:
    """``(steps done, losses)`` from a matching saved state, loaded into ``run``; ``(0, [])`` otherwise."""
    if not state_file.exists():
        return 0, []
    state = torch.load(state_file, map_location="cpu", weights_only=True)
    if state.get("fingerprint") != run.fingerprint:
        warnings.warn(f"{state_file} belongs to another run (other data or settings); starting afresh", stacklevel=3)
        return 0, []
    run.model.load_state_dict(state["model"])
    run.proj.load_state_dict(state["proj"])
    if run.proj_group is not None:
        run.proj_group.load_state_dict(state["proj_group"])
    run.opt.load_state_dict(state["opt"])
    start = int(state["step"])
    if start > config.steps:
        raise ParameterError(f"{state_file} is already at step {start}, past steps={config.steps}; "
                             "ask for more steps or write to another --out")
    say(f"resuming at step {start} of {config.steps}")
    return start, list(state["losses"])


def _step(run: _Run, bank: WaveBank, config: SSLConfig, step: int) -> float:
    """One optimisation step; its randomness comes from ``(seed, step)`` alone."""
    from .loop import tagging_loss

    rng = np.random.default_rng([config.seed, step])
    torch.manual_seed(config.seed * 1_000_003 + step)
    idx = bank.draw(config, rng)
    v1, v2 = bank.views(idx, run.n_samples, config.views, rng)
    with torch.no_grad():
        mels = run.logmel(torch.from_numpy(np.concatenate([v1, v2])))
    h = run.model.features(mels)
    loss = nt_xent(*run.proj(h).split(len(idx)), config.temperature)
    if run.proj_group is not None:
        groups = torch.from_numpy(np.concatenate([bank.group_codes()[idx]] * 2))
        loss = loss + config.group_weight * sup_con(run.proj_group(h), groups, config.temperature)
    if run.teacher is not None:
        loss = loss + config.distill_weight * distill_loss(run.model, h, run.teacher, mels)
    if run.maps is not None:
        chunk_frames = run.loaded.config.chunk_frames
        x, y_tags, y_genre = _replay_batch(run.replay, run.replay_train, *run.maps, config.supervised_batch,
                                           chunk_frames, rng)
        loss = loss + config.supervised_weight * tagging_loss(run.model(x), y_tags, y_genre)
    run.opt.zero_grad(set_to_none=True)
    loss.backward()
    run.opt.step()
    return float(loss.detach())


def _finish(run: _Run, bank: WaveBank, out: Path, config: SSLConfig, losses: list[float], analysis) -> str:
    run.model.eval()
    loaded = run.loaded
    extra = dict(loaded.extra)
    extra["ssl"] = {"base_model": loaded.model_id, "config": config.to_dict(), "tracks": len(bank),
                    "hours": round(bank.seconds / 3600, 3), "replay": run.replay is not None,
                    "final_loss": float(np.mean(losses[-20:])) if losses else None}
    config_out = loaded.config if run.model.track_head is not None else dataclasses.replace(loaded.config, track_hidden=0)
    return save_checkpoint(out, run.model, config=config_out, tags=loaded.tags, genres=loaded.genres,
                           thresholds=loaded.thresholds, metrics={}, analysis=analysis or loaded.analysis, extra=extra)


def train_ssl(base: str | os.PathLike, bank: WaveBank, out: str | os.PathLike, *, config: SSLConfig = SSLConfig(),
              replay=None, keep_head: bool = False, analysis: dict | None = None, progress: bool = False,
              log: Callable[[str], None] | None = None, stop_after: int | None = None) -> SSLResult:
    """Fine-tune the backbone of checkpoint ``base`` on ``bank`` and write a backbone checkpoint to ``out``.

    ``replay`` (a :class:`mir.train.loop.TrainingData`) adds the supervised loss on its train split; its
    vocabulary must hold the model's tags. The result has no track head: train one on it with
    ``mir train --track-head``. ``stop_after`` ends the call after that many steps (tests use it to
    interrupt a run); the state stays resumable.

    ``keep_head``: keep the base model's track head (frozen) in the result, as ``mir adapt`` does; with
    ``config.distill_weight`` the base model's chunk tag and genre outputs on the same views are a target
    (self-distillation), so the backbone keeps feeding the head and the heads what they learned.
    """
    from tqdm import tqdm

    t0 = time.monotonic()
    say = log or (lambda msg: None)
    out = Path(out)
    run = _setup(base, bank, config, replay, keep_head)
    state_file = state_path(out)
    start, losses = _resume(run, state_file, config, say)
    run.model.train()
    run.proj.train()
    last = config.steps if stop_after is None else min(config.steps, start + stop_after)
    bar = tqdm(range(start, last), initial=start, total=config.steps, desc="ssl", unit="step", disable=not progress)
    for step in bar:
        losses.append(_step(run, bank, config, step))
        bar.set_postfix(loss=f"{losses[-1]:.3f}")
        if (step + 1) % config.save_every == 0 or step + 1 == last:
            _save_state(state_file, run, step + 1, losses)
    bar.close()
    if last < config.steps:
        return SSLResult(state_file, "", last, start, losses, time.monotonic() - t0)
    model_id = _finish(run, bank, out, config, losses, analysis)
    say(f"wrote {out} (model {model_id}) after {config.steps} steps; final loss {np.mean(losses[-20:]):.4f}")
    return SSLResult(out, model_id, config.steps, start, losses, time.monotonic() - t0)


def _save_state(path: Path, run: _Run, step: int, losses: list[float]) -> None:
    payload = {"model": run.model.state_dict(), "proj": run.proj.state_dict(), "opt": run.opt.state_dict(),
               "step": step, "losses": losses, "fingerprint": run.fingerprint}
    if run.proj_group is not None:
        payload["proj_group"] = run.proj_group.state_dict()
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def audio_paths(source: str | os.PathLike, *, split: str | None = "train") -> list[Path]:
    """Audio files of ``source``: a mir library (its present tracks), a corpus folder with a
    ``manifest.json`` listing tracks with a ``split`` and ``kind`` (the music of ``split``), or any
    folder (every audio file)."""
    return [path for path, _ in audio_tracks(source, split=split)]


def audio_tracks(source: str | os.PathLike, *, split: str | None = "train") -> list[tuple[Path, str]]:
    """``(path, group)`` of each audio file of ``source`` (see :func:`audio_paths`). The group is what
    tracks that belong together share: a corpus track's package, else the file's folder."""
    from ..audio import is_audio_path

    source = Path(source)
    if (source / "library.json").is_file():
        from ..catalog import Library

        tracks = Library(source).tracks(include_missing=False)
        return [(Path(p), str(Path(p).parent)) for p in tracks["path"]]
    manifest = source / "manifest.json"
    if manifest.is_file():
        data = json.loads(manifest.read_text())
        rows = data.get("tracks", data) if isinstance(data, dict) else data
        return [(source / r["path"], str(r.get("package") or Path(r["path"]).parent)) for r in rows
                if (split is None or r.get("split") == split) and r.get("kind", "music") == "music"]
    if not source.is_dir():
        raise ParameterError(f"{source}: not a folder; give a folder of audio, a corpus built by `mir dataset build`, or a library")
    return [(p, str(p.parent.relative_to(source))) for p in sorted(source.rglob("*")) if p.is_file() and is_audio_path(p)]
