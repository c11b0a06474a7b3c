"""Sampling a piece: tokens from the model under constraints enforced at every step, then segments.

At step ``t`` the candidates are the neighbours' segments that keep every constraint (masking):

- spread: a source track that already gave ``floor(max_share * n)`` beats gives no more;
- novelty: when the last ``max_run`` output beats are consecutive beats of one source track, that
  track's next segment is not allowed (so no run copied in source order is longer than ``max_run``);
- bar phase: segments at the bar position of beat ``t`` are preferred (used whenever one is allowed).

The model's logits are lowered by ``continuity`` times each token's best seam cost (:func:`seam_cost`:
how unlike the previous output segment is what precedes the candidate in its source; 0 for the previous
segment's own successor), masked to the tokens those candidates carry, divided by ``temperature``,
cut to the smallest set of tokens holding ``top_p`` of the probability (nucleus), and one token is
drawn with the seeded generator. Among the allowed segments with that token, the source's own next
segment wins (a seamless continuation); otherwise the one whose predecessor in its source is most
like the previous output segment (the seam then sounds like a transition the source made itself).
A repeat ``structure`` (e.g. ``"AABA"`` over ``phrase_bars``-bar sections) replays a section's tokens
where the constraints allow, choosing segments afresh.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..errors import ParameterError


@dataclass(frozen=True)
class Constraints:
    max_run: int = 4
    max_share: float = 0.25
    continuity: float = 1.0  # weight of the seam cost on the token logits (0: the model's logits alone)


@dataclass
class Pool:
    """Candidate segments (the neighbours'): per candidate its source track, token, bar position,
    successor and predecessor in its source (index into the pool, -1 if none) and standardised features."""

    track: np.ndarray
    token: np.ndarray
    bar_pos: np.ndarray
    succ: np.ndarray
    pred: np.ndarray
    feats: np.ndarray

    def __len__(self) -> int:
        return len(self.track)


def nucleus(logits: np.ndarray, allowed: np.ndarray, *, temperature: float, top_p: float) -> np.ndarray:
    """Probabilities [k] over tokens: ``allowed`` only, tempered, cut to the top-p nucleus (float64)."""
    if not temperature > 0:
        raise ParameterError(f"temperature must be > 0, got {temperature!r}")
    if not 0 < top_p <= 1:
        raise ParameterError(f"top_p must be in (0, 1], got {top_p!r}")
    z = np.where(allowed, np.asarray(logits, np.float64) / temperature, -np.inf)
    p = np.exp(z - z.max())
    p /= p.sum()
    order = np.argsort(-p, kind="stable")
    keep = np.cumsum(p[order]) - p[order] < top_p  # tokens before the mass reaches top_p, plus the one crossing it
    q = np.zeros_like(p)
    q[order[keep]] = p[order[keep]]
    return q / q.sum()


def section_plan(n: int, meter: int, structure: str | None, phrase_bars: int = 8) -> list[tuple[str, int]]:
    """(section letter, beat index within the section) per output beat; no structure: one section."""
    if not structure:
        return [("A", t) for t in range(n)]
    if not structure.isalpha():
        raise ParameterError(f"structure {structure!r} must be letters such as 'AABA'")
    length = phrase_bars * meter
    return [(structure[(t // length) % len(structure)].upper(), t % length) for t in range(n)]


def sample_piece(next_logits: Callable[[list[int], np.ndarray], np.ndarray], pool: Pool, n: int, *, meter: int,
                 rng: np.random.Generator, temperature: float = 1.0, top_p: float = 0.95,
                 constraints: Constraints = Constraints(), structure: str | None = None,
                 phrase_bars: int = 8) -> np.ndarray:
    """Pool indices [n] of the piece's segments. ``next_logits(tokens so far, bar positions [t + 1])`` gives
    the model's logits for beat ``t``. Raises ParameterError when the neighbours cannot fill ``n`` beats."""
    n_src = len(np.unique(pool.track))
    cap = max(int(np.floor(constraints.max_share * n)), 1)
    if n_src * cap < n:
        need = int(np.ceil(n / cap))
        raise ParameterError(f"{n_src} neighbour tracks with beats cannot fill {n} beats with at most "
                             f"{constraints.max_share:.0%} from each; retrieve at least {need} (--neighbours)")
    bars = np.arange(n) % meter
    plan = section_plan(n, meter, structure, phrase_bars)
    first: dict[tuple[str, int], int] = {}
    counts = np.zeros(int(pool.track.max()) + 1, np.int64)
    chosen: list[int] = []
    tokens: list[int] = []
    run = 0
    for t in range(n):
        allowed = counts[pool.track] < cap
        prev = chosen[-1] if chosen else -1
        if prev >= 0 and run >= constraints.max_run and pool.succ[prev] >= 0:
            allowed[pool.succ[prev]] = False
        on_bar = allowed & (pool.bar_pos == bars[t])
        if on_bar.any():
            allowed = on_bar
        if not allowed.any():
            raise ParameterError(f"no neighbour segment satisfies the constraints at beat {t}; retrieve more --neighbours")
        carried = np.zeros(int(pool.token.max()) + 1 if len(pool) else 0, bool)
        carried[pool.token[allowed]] = True
        logits = np.asarray(next_logits(tokens, bars[: t + 1]), np.float64)
        k = len(logits)
        if prev >= 0 and constraints.continuity:
            logits = logits - constraints.continuity * token_seam_cost(pool, allowed, prev, k)
        tok_ok = np.zeros(k, bool)
        tok_ok[: min(k, len(carried))] = carried[:k]
        repeat = first.get(plan[t])
        if repeat is not None and tok_ok[repeat]:
            tok = repeat
        else:
            tok = int(rng.choice(k, p=nucleus(logits, tok_ok, temperature=temperature, top_p=top_p)))
        first.setdefault(plan[t], tok)
        cand = np.flatnonzero(allowed & (pool.token == tok))
        if prev >= 0 and pool.succ[prev] in cand:
            pick = int(pool.succ[prev])
        elif prev >= 0:
            pick = int(cand[np.argmin(seam_cost(pool, cand, prev) + 1e-3 * rng.random(len(cand)))])
        else:
            pick = int(cand[rng.integers(len(cand))])
        run = run + 1 if prev >= 0 and pool.succ[prev] == pick else 1
        counts[pool.track[pick]] += 1
        chosen.append(pick)
        tokens.append(tok)
    return np.asarray(chosen, np.int64)


def seam_cost(pool: Pool, cand: np.ndarray, prev: int) -> np.ndarray:
    """Cost [len(cand)] of following pool segment ``prev`` with each candidate: 0 for ``prev``'s own
    successor, else the distance (standardised features, divided by sqrt(dims)) from ``prev`` to the
    segment that precedes the candidate in its source (to the candidate itself when it has none)."""
    ref = np.where(pool.pred[cand] >= 0, pool.pred[cand], cand)
    cost = np.linalg.norm(pool.feats[ref] - pool.feats[prev], axis=1) / np.sqrt(max(pool.feats.shape[1], 1))
    cost[cand == pool.succ[prev]] = 0.0
    return cost


def token_seam_cost(pool: Pool, allowed: np.ndarray, prev: int, k: int) -> np.ndarray:
    """Per token [k]: the lowest :func:`seam_cost` among the allowed segments carrying it (0 elsewhere:
    those tokens are masked anyway)."""
    cand = np.flatnonzero(allowed)
    best = np.full(k, np.inf)
    np.minimum.at(best, pool.token[cand], seam_cost(pool, cand, prev))
    return np.where(np.isfinite(best), best, 0.0)


def longest_source_run(track: np.ndarray, beat: np.ndarray) -> int:
    """Longest run of output beats whose sources are consecutive beats of one track, in order."""
    if not len(track):
        return 0
    best = run = 1
    for i in range(1, len(track)):
        run = run + 1 if track[i] == track[i - 1] and beat[i] == beat[i - 1] + 1 else 1
        best = max(best, run)
    return best


def max_share(track: np.ndarray) -> float:
    """Largest share of output beats taken from one source track."""
    return float(np.bincount(np.unique(track, return_inverse=True)[1]).max() / len(track)) if len(track) else 0.0
