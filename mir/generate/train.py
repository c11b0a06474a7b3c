"""`mir train-generator`: learn the codebook and the sequence model from a library's own tracks.

Tracks are split by content hash into train (75 %), validation (10 %, picks the best epoch) and test
(15 %, reported). Each track is a token sequence (its segments' nearest codebook centres) with bar
positions, conditioned as at generation time: the mean embedding and mean tag probabilities of its
``neighbours`` nearest *training* tracks (never itself), its own tempo and key.

Baselines on the same test tokens: a bigram (interpolated with the training unigram, weight ``alpha``)
and a unigram of the neighbours' tokens (interpolated, weight ``beta``); both smoothing weights are
chosen on the validation tracks, in the baselines' favour. Perplexity = exp(mean negative log-likelihood).
The model's perplexity is that of its mixture (:mod:`.mixture`: the Transformer, that bigram and a cache
of the track's own tokens, weights fitted on validation after training), the distribution sampling uses;
the Transformer alone and the mixture without it (bigram + cache) are reported beside it.

The training state (weights, optimiser, epoch, best weights so far, codebook, split) is saved atomically
after each epoch to ``OUT.last.pt``; running the same command again resumes from it.
"""
from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..atomic import atomic_path
from ..catalog import Library
from ..catalog.stages import stage_versions
from ..errors import ModelError, ParameterError
from .codebook import Codebook, codebook_size, fit_codebook
from .mixture import CACHE_DECAY, CACHE_GAMMA, MAX_CACHE, Mixture, fit_mixture, fit_weights, target_cache_probs
from .model import TokenTransformer, condition_vector, make_config, save_generator
from .retrieve import embeddings, load_tags, resolve_model_id
from .segments import Segments, load_segments

SMOOTHING = (0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0, 300.0, 1000.0, 3000.0)


def default_path(lib: Library) -> Path:
    return lib.root / "generator.pt"


def split_of(content_hash: str) -> str:
    """'train', 'val' or 'test', fixed by the content hash (10 % val, 15 % test)."""
    b = int(hashlib.blake2b(content_hash.encode(), digest_size=4).hexdigest(), 16) % 100
    return "val" if b < 10 else "test" if b < 25 else "train"


@dataclass
class Corpus:
    """Token sequences and conditioning of every usable track."""

    segments: Segments
    track_ids: list[str]
    tokens: list[np.ndarray]
    bars: list[np.ndarray]
    cond: np.ndarray  # [n_tracks, cond_dim]
    split: np.ndarray  # [n_tracks] str
    neighbours: list[np.ndarray]  # indices (into track_ids) of each track's training neighbours
    n_tags: int


def neighbour_matrix(emb: np.ndarray, pool: np.ndarray, k: int) -> list[np.ndarray]:
    """For each row of ``emb``, indices of its ``k`` most similar rows among ``pool`` (itself excluded)."""
    sims = emb @ emb[pool].T
    out = []
    for i in range(len(emb)):
        s = sims[i].copy()
        s[pool == i] = -np.inf
        order = np.argsort(-s, kind="stable")[: min(k, int(np.isfinite(s).sum()))]
        out.append(pool[order])
    return out


def build_corpus(lib: Library, model_id: str, codebook: Codebook | None = None, *, n_tokens: int | None = None,
                 neighbours: int = 10, seed: int = 0) -> tuple[Corpus, Codebook]:
    """Segments of every tagged, analysed track -> tokens and conditioning (codebook learned on train tracks if not given)."""
    ids, hashes, emb = embeddings(lib, model_id)
    seg = load_segments(lib)
    keep = [i for i, t in enumerate(ids) if t in seg.tracks.index and seg.tracks.at[t, "n"] > 0]
    if len(keep) < 3:
        raise ParameterError(f"library {str(lib.root)!r} has {len(keep)} tagged tracks with beats; "
                             "a generator needs at least 3 (run `mir analyze` and `mir tag`)")
    ids, hashes, emb = ids[keep], hashes[keep], emb[keep]
    split = np.array([split_of(h) for h in hashes])
    if not (split == "train").any():
        split[0] = "train"
    for part in ("val", "test"):  # tiny libraries: make sure each part has a track
        if not (split == part).any():
            split[np.flatnonzero(split == "train")[-1]] = part
    rows = {t: seg.rows_of([t]) for t in ids}
    if codebook is None:
        train_rows = np.concatenate([rows[t] for t, s in zip(ids, split) if s == "train"])
        codebook = fit_codebook(seg.features[train_rows], n_tokens or codebook_size(len(train_rows)), random_state=seed)
    tok_all = codebook.encode(seg.features)
    tags = load_tags(lib, model_id)
    probs = dict(zip(tags["track_id"], tags["tag_probs"]))
    n_tags = len(tags.attrs["tags"])
    tagmat = np.stack([np.asarray(probs[t], np.float32) for t in ids])
    pool = np.flatnonzero(split == "train")
    nbrs = neighbour_matrix(emb, pool, neighbours)
    cond = np.stack([condition_vector(emb[n].mean(axis=0), seg.tracks.at[t, "tempo"], seg.tracks.at[t, "key"],
                                      seg.tracks.at[t, "mode"], tagmat[n].mean(axis=0), n_tags)
                     for t, n in zip(ids, nbrs)])
    corpus = Corpus(seg, list(ids), [tok_all[rows[t]] for t in ids], [seg.bar_pos[rows[t]].astype(np.int64) for t in ids],
                    cond, split, nbrs, n_tags)
    return corpus, codebook


# --- baselines ------------------------------------------------------------------------------------
def unigram(corpus: Corpus, k: int) -> np.ndarray:
    counts = np.bincount(np.concatenate([corpus.tokens[i] for i in np.flatnonzero(corpus.split == "train")]), minlength=k)
    return (counts + 0.5) / (counts.sum() + 0.5 * k)


def bigram_table(corpus: Corpus, k: int, alpha: float) -> np.ndarray:
    """Bigram probabilities [k + 1, k] (row k: after the start) from the training tracks, interpolated with
    the training unigram (weight ``alpha``)."""
    uni = unigram(corpus, k)
    counts = np.zeros((k + 1, k))
    for i in np.flatnonzero(corpus.split == "train"):
        prev = np.r_[k, corpus.tokens[i][:-1]]
        np.add.at(counts, (prev, corpus.tokens[i]), 1)
    return (counts + alpha * uni[None, :]) / (counts.sum(axis=1, keepdims=True) + alpha)


def bigram_probs(corpus: Corpus, part: str, table: np.ndarray) -> np.ndarray:
    """The bigram's probability of each token of ``part`` (tracks in order, concatenated)."""
    k = table.shape[1]
    return np.concatenate([table[np.r_[k, corpus.tokens[i][:-1]], corpus.tokens[i]]
                           for i in np.flatnonzero(corpus.split == part)])


def bigram_nll(corpus: Corpus, part: str, k: int, alpha: float) -> tuple[float, int]:
    """Summed negative log-likelihood and token count of ``part`` under the interpolated bigram."""
    p = bigram_probs(corpus, part, bigram_table(corpus, k, alpha))
    return float(-np.log(p).sum()), len(p)


def neighbour_unigram_nll(corpus: Corpus, part: str, k: int, beta: float) -> tuple[float, int]:
    uni = unigram(corpus, k)
    nll, n = 0.0, 0
    for i in np.flatnonzero(corpus.split == part):
        c = np.bincount(np.concatenate([corpus.tokens[j] for j in corpus.neighbours[i]]), minlength=k)
        p = (c + beta * uni) / (c.sum() + beta)
        nll -= np.log(p[corpus.tokens[i]]).sum()
        n += len(corpus.tokens[i])
    return nll, n


def baseline_perplexities(corpus: Corpus, k: int) -> dict:
    """Test perplexity of the bigram and the neighbours' unigram, smoothing chosen on validation."""
    out = {}
    for name, fn in (("bigram", bigram_nll), ("neighbour_unigram", neighbour_unigram_nll)):
        best = min(SMOOTHING, key=lambda a: fn(corpus, "val", k, a)[0])
        nll, n = fn(corpus, "test", k, best)
        out[name] = {"perplexity": float(math.exp(nll / max(n, 1))), "smoothing": best}
    return out


# --- the model ------------------------------------------------------------------------------------
def windows(corpus: Corpus, part: str, context: int, stride: int) -> list[tuple[int, int]]:
    """(track, start) pairs covering every token of ``part`` with windows of ``context`` tokens."""
    out = []
    for i in np.flatnonzero(corpus.split == part):
        n = len(corpus.tokens[i])
        out.extend((int(i), s) for s in range(0, max(n - context, 0) + 1, stride))
        last = max(n - context, 0)
        if (n - context) % stride and n > context:
            out.append((int(i), last))
    return out


def batch(corpus: Corpus, items, context: int, start_token: int, score_from=None):
    """Tensors (prev, bar, cond, target, mask) for windows ``items``; ``score_from[j]`` masks tokens already scored."""
    b = len(items)
    prev = torch.full((b, context), start_token, dtype=torch.long)
    bar = torch.zeros((b, context), dtype=torch.long)
    target = torch.zeros((b, context), dtype=torch.long)
    mask = torch.zeros((b, context), dtype=torch.bool)
    cond = torch.as_tensor(corpus.cond[[i for i, _ in items]])
    for j, (i, s) in enumerate(items):
        tok, bp = corpus.tokens[i], corpus.bars[i]
        t = tok[s:s + context]
        n = len(t)
        target[j, :n] = torch.as_tensor(t)
        bar[j, :n] = torch.as_tensor(bp[s:s + n])
        p = np.r_[start_token if s == 0 else tok[s - 1], t[:-1]]
        prev[j, :n] = torch.as_tensor(p)
        mask[j, :n] = True
        if score_from is not None:
            mask[j, : score_from[j]] = False
    return prev, bar, cond, target, mask


def token_logprobs(model: TokenTransformer, corpus: Corpus, part: str) -> np.ndarray:
    """The model's log-probability of every token of ``part`` (tracks in order, concatenated; each token
    scored once, with up to ``context`` tokens of history)."""
    c = model.config.context
    stride = max(c // 2, 1)
    out = []
    model.eval()
    with torch.inference_mode():
        for i in np.flatnonzero(corpus.split == part):
            L = len(corpus.tokens[i])
            items, first = [], []
            done = 0
            for s in range(0, max(L - c, 0) + stride, stride):
                s = min(s, max(L - c, 0))
                if done >= L:
                    break
                items.append((int(i), s))
                first.append(done - s)
                done = min(s + c, L)
            prev, bar, cond, target, mask = batch(corpus, items, c, model.start_token, first)
            logp = F.log_softmax(model(prev, bar, cond), dim=-1)
            out.append(logp.gather(-1, target[..., None])[..., 0][mask].double().numpy())
    return np.concatenate(out) if out else np.zeros(0)


def evaluate_nll(model: TokenTransformer, corpus: Corpus, part: str) -> tuple[float, int]:
    """Summed NLL and count of every token of ``part`` under the model alone."""
    lp = token_logprobs(model, corpus, part)
    return float(-lp.sum()), len(lp)


def mixture_perplexities(net: TokenTransformer, corpus: Corpus, k: int, alpha: float,
                         max_cache: float = MAX_CACHE) -> tuple[Mixture, dict]:
    """The mixture (:mod:`.mixture`) fitted on validation, and test perplexities of it, of the Transformer
    alone and of the same mixture fitted without the Transformer (bigram + cache)."""
    table, uni = bigram_table(corpus, k, alpha), unigram(corpus, k)
    seqs = {p: [corpus.tokens[i] for i in np.flatnonzero(corpus.split == p)] for p in ("val", "test")}
    comp = {p: {"model": np.exp(token_logprobs(net, corpus, p)), "bigram": bigram_probs(corpus, p, table)}
            for p in ("val", "test")}
    mix, _ = fit_mixture(comp["val"], table, uni, seqs["val"], max_cache)
    fits = [(fit_weights(np.stack([comp["val"]["bigram"], target_cache_probs(seqs["val"], k, uni, g, d)], axis=1),
                          max_last=max_cache), (g, d))
            for g in CACHE_GAMMA for d in CACHE_DECAY]  # the same mixture without the Transformer, for reference
    (w2, _), no_tf = min(fits, key=lambda f: f[0][1])

    def ppl(w, cols):
        return float(math.exp(-np.log(np.stack(cols, axis=1) @ w).mean()))

    test = comp["test"]
    out = {"test_perplexity": ppl(mix.weights, [test["model"], test["bigram"],
                                                target_cache_probs(seqs["test"], k, uni, mix.gamma, mix.decay)]),
           "transformer_perplexity": ppl(np.ones(1), [test["model"]]),
           "bigram_cache_perplexity": ppl(w2, [test["bigram"], target_cache_probs(seqs["test"], k, uni, *no_tf)]),
           "mixture": {"weights": dict(zip(("transformer", "bigram", "cache"), mix.weights.round(4).tolist())),
                       "cache_gamma": mix.gamma, "cache_decay": mix.decay, "bigram_smoothing": alpha,
                       "max_cache": max_cache}}
    return mix, out


def train_generator(lib: Library, *, model: str | None = None, out: str | None = None, preset: str = "small",
                    epochs: int = 60, batch_size: int = 32, lr: float = 3e-3, n_tokens: int | None = None,
                    neighbours: int = 10, seed: int = 0, threads: int = 1, patience: int = 15,
                    max_cache: float = MAX_CACHE, progress: bool = False) -> dict:
    """Train (or resume) a generator for ``lib``; returns the checkpoint's metrics and path."""
    from tqdm import tqdm

    torch.set_num_threads(threads)
    model_id = resolve_model_id(lib, model)
    out = Path(out) if out else default_path(lib)
    state_path = out.with_name(out.name + ".last.pt")
    state = None
    if state_path.exists():
        state = torch.load(state_path, map_location="cpu", weights_only=True)
        if state.get("settings") != _settings(model_id, preset, n_tokens, neighbours, seed, batch_size, lr):
            raise ModelError(f"{state_path} holds a training run with other settings ({state.get('settings')}); "
                             "delete it to start again, or run with the same options to resume")
    codebook = Codebook.from_dict(state["codebook"]) if state else None
    corpus, codebook = build_corpus(lib, model_id, codebook, n_tokens=n_tokens, neighbours=neighbours, seed=seed)
    k = codebook.size
    config = make_config(preset, n_tokens=k, cond_dim=corpus.cond.shape[1])
    torch.manual_seed(seed)
    net = TokenTransformer(config)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=0.01)
    start, best, best_state, history, bad = 0, math.inf, None, [], 0
    spent = float(state.get("seconds", 0.0)) if state else 0.0  # training time of earlier sessions
    if state:
        net.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        start, best, best_state, history, bad = (state["epoch"], state["best"], state["best_state"],
                                                 state["history"], state["bad"])
    train_items = windows(corpus, "train", config.context, max(config.context // 2, 1))
    t0 = time.monotonic()
    with tqdm(total=epochs, initial=start, desc="train-generator", unit="epoch", disable=not progress) as bar:
        for epoch in range(start, epochs):
            if bad >= patience:
                break
            net.train()
            torch.manual_seed(seed * 1000 + epoch)
            order = np.random.default_rng(seed * 1000 + epoch).permutation(len(train_items))
            total = 0.0
            for b in range(0, len(order), batch_size):
                items = [train_items[j] for j in order[b:b + batch_size]]
                prev, bars, cond, target, mask = batch(corpus, items, config.context, net.start_token)
                logits = net(prev, bars, cond)
                loss = F.cross_entropy(logits[mask], target[mask])
                opt.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
                opt.step()
                total += loss.item() * len(items)
            nll, n = evaluate_nll(net, corpus, "val")
            val = nll / max(n, 1)
            history.append({"epoch": epoch + 1, "train_loss": total / max(len(train_items), 1), "val_nll": val})
            if val < best - 1e-4:
                best, bad = val, 0
                best_state = {k_: v.detach().clone() for k_, v in net.state_dict().items()}
            else:
                bad += 1
            _save_state(state_path, net, opt, epoch + 1, best, best_state, history, bad, codebook,
                        _settings(model_id, preset, n_tokens, neighbours, seed, batch_size, lr),
                        spent + time.monotonic() - t0)
            bar.set_postfix(val_ppl=f"{math.exp(val):.2f}", best=f"{math.exp(best):.2f}")
            bar.update(1)
    net.load_state_dict(best_state)
    baselines = baseline_perplexities(corpus, k)
    mix, mixed = mixture_perplexities(net, corpus, k, baselines["bigram"]["smoothing"], max_cache)
    metrics = {**mixed, "test_tokens": int(sum(len(corpus.tokens[i]) for i in np.flatnonzero(corpus.split == "test"))),
               "val_perplexity": float(math.exp(best)), "epochs_run": len(history),
               "best_epoch": int(np.argmin([h["val_nll"] for h in history]) + 1) if history else 0,
               "baselines": baselines, "codebook_size": k, "preset": preset,
               "tracks": {s: int((corpus.split == s).sum()) for s in ("train", "val", "test")},
               "segments": int(sum(len(t) for t in corpus.tokens)), "train_seconds": spent + time.monotonic() - t0,
               "history": history}
    metrics["beats_baselines"] = all(metrics["test_perplexity"] < b["perplexity"] for b in metrics["baselines"].values())
    gid = save_generator(out, net, codebook, mixture=mix, tagger_id=model_id, n_tags=corpus.n_tags, metrics=metrics,
                         analysis=stage_versions()["beats"])
    return {"model_id": gid, "path": str(out), **metrics}


def _settings(model_id, preset, n_tokens, neighbours, seed, batch_size, lr) -> dict:
    return {"tagger": model_id, "preset": preset, "n_tokens": n_tokens, "neighbours": neighbours, "seed": seed,
            "batch_size": batch_size, "lr": lr}


def _save_state(path: Path, net, opt, epoch, best, best_state, history, bad, codebook: Codebook, settings,
                seconds: float) -> None:
    blob = {"model": net.state_dict(), "optimizer": opt.state_dict(), "epoch": epoch, "best": best,
            "best_state": best_state, "history": history, "bad": bad, "codebook": codebook.to_dict(),
            "settings": settings, "seconds": seconds}
    with atomic_path(path) as tmp:
        torch.save(blob, tmp)
