"""Synthetic listening histories with a hidden taste model.

Taste model (kept in ``tastes.json`` so recommenders can be scored against the truth):

* ``K`` taste clusters; cluster ``k`` has genre weights ``g_k`` (a sparse Dirichlet draw) and
  tag weights ``w_k`` (normal, one per tag of the vocabulary).
* A user mixes 1-3 clusters with weights ``pi``; their genre weights are ``sum pi_k g_k`` and
  their tag weights ``sum pi_k w_k`` plus a small personal offset.
* Affinity of user ``u`` for track ``t`` (the quantity to recover)::

      affinity(u, t) = log(genre_u[genre_t] + 1e-3) + beta * mean(tag_u[tag] for tag in tags_t)

* Listening: each event picks a track with probability proportional to
  ``exp(affinity + log popularity_t)`` (``exploration``: a share of picks uniform over
  playable tracks; ``repeat``: a share of picks replays a track from the user's history);
  ``plays`` in the session is 1 + a geometric count.
* Activity follows a power law; about 15 % of users are cold (1-3 plays in all);
  some tracks are hidden (popularity 0) and never played.

Everything is drawn from the generator passed in, so the same seed gives the same tables.
"""
from __future__ import annotations

import numpy as np

TASTE_VERSION = 1
BETA = 1.5
COLD_SHARE = 0.15
HIDDEN_SHARE = 0.06
START = np.datetime64("2024-01-01T00:00:00", "s")
SPAN_DAYS = 540


def affinity(user: dict, genre: str, tags, beta: float = BETA) -> float:
    """The hidden affinity of a user (an entry of ``tastes["users"]``) for a track."""
    g = float(np.log(user["genres"].get(genre, 0.0) + 1e-3))
    w = [user["tags"].get(t, 0.0) for t in tags]
    return g + beta * (float(np.mean(w)) if w else 0.0)


def affinity_matrix(tastes: dict, tracks, genres, tags) -> tuple[list[str], np.ndarray]:
    """``(user_ids, A)`` with ``A[u, t]`` the hidden affinity of user ``u`` for track ``t``."""
    users = sorted(tastes["users"])
    A = np.array([[affinity(tastes["users"][u], g, tg, tastes["beta"]) for g, tg in zip(genres, tags)] for u in users])
    return users, A


def simulate(tracks: list[str], genres: list[str], tags: list[tuple[str, ...]], *, genre_names, tag_names,
             n_users: int, rng: np.random.Generator):
    """Events DataFrame ``(user, track, timestamp, plays)`` and the taste model dict.

    The stages draw from ``rng`` in this order (the same seed gives the same tables): clusters,
    track popularity, then each user's taste and, right after it, their listening.
    """
    K = int(min(10, max(3, n_users // 20)))
    cluster_g = rng.dirichlet(np.full(len(genre_names), 0.3), size=K)
    cluster_w = rng.normal(0.0, 1.0, size=(K, len(tag_names)))
    popularity, hidden = _popularity(len(tracks), rng)
    track_g, track_tags = _track_features(genres, tags, genre_names, tag_names)
    playable = np.flatnonzero(~hidden)
    users, rows = {}, []
    for u in range(n_users):
        uid = f"u{u:05d}"
        taste = _user_taste(cluster_g, cluster_w, len(tracks), rng)
        aff = np.log(taste["g_u"][track_g] + 1e-3) + BETA * (track_tags @ taste["w_u"])
        picked = _listen(taste, aff, popularity, playable, rng)
        rows.extend((uid, tracks[ti], t, plays) for ti, t, plays in picked)
        users[uid] = _user_entry(taste, genre_names, tag_names)
    tastes = {
        "version": TASTE_VERSION,
        "beta": BETA,
        "formula": "affinity(u,t) = log(genres_u[genre_t] + 1e-3) + beta * mean_{tag in tags_t} tags_u[tag]; "
                   "P(pick t) ~ exp(affinity + log popularity_t), plus exploration and repeat picks",
        "clusters": [{"genres": {g: round(float(cluster_g[k, i]), 6) for i, g in enumerate(genre_names)},
                      "tags": {t: round(float(cluster_w[k, i]), 6) for i, t in enumerate(tag_names)}} for k in range(K)],
        "users": users,
        "tracks": {tr: {"popularity": round(float(popularity[i]), 6), "hidden": bool(hidden[i])} for i, tr in enumerate(tracks)},
    }
    return _events_frame(rows), tastes


def _popularity(n_t: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Lognormal popularity per track, 0 for the hidden ones (never played); ``(popularity, hidden)``."""
    popularity = rng.lognormal(0.0, 1.0, size=n_t)
    hidden = rng.random(n_t) < HIDDEN_SHARE
    popularity[hidden] = 0.0
    return popularity, hidden


def _track_features(genres, tags, genre_names, tag_names) -> tuple[np.ndarray, np.ndarray]:
    """Each track's genre index [n] and its tags as weights summing to 1 [n, n_tags] (a tag mean)."""
    g_index = {g: i for i, g in enumerate(genre_names)}
    t_index = {t: i for i, t in enumerate(tag_names)}
    track_g = np.array([g_index[g] for g in genres])
    track_tags = np.zeros((len(genres), len(tag_names)))
    for i, tg in enumerate(tags):
        for t in tg:
            track_tags[i, t_index[t]] = 1.0
    track_tags /= np.maximum(track_tags.sum(axis=1, keepdims=True), 1.0)
    return track_g, track_tags


def _user_taste(cluster_g: np.ndarray, cluster_w: np.ndarray, n_t: int, rng: np.random.Generator) -> dict:
    """One user's hidden taste and habits: clusters ``ks`` mixed with weights ``pi``, genre and tag
    weights ``g_u``/``w_u``, exploration and repeat shares, cold or not, and how many events."""
    K, T = cluster_w.shape
    n_c = 1 + int(rng.choice(3, p=[0.5, 0.35, 0.15]))
    ks = np.sort(rng.choice(K, size=n_c, replace=False))
    pi = rng.dirichlet(np.ones(n_c))
    g_u = pi @ cluster_g[ks]
    w_u = pi @ cluster_w[ks] + rng.normal(0.0, 0.3, size=T)
    exploration = float(rng.uniform(0.02, 0.15))
    repeat = float(rng.uniform(0.05, 0.5))
    cold = bool(rng.random() < COLD_SHARE)
    if cold:
        n_events = int(rng.integers(1, 4))
    else:
        n_events = int(min(4 + np.floor(rng.pareto(1.1) * 8), 50 * max(1, n_t // 40), 2000))
    return {"ks": ks, "pi": pi, "g_u": g_u, "w_u": w_u, "exploration": exploration, "repeat": repeat,
            "cold": cold, "n_events": n_events}


def _listen(taste: dict, aff: np.ndarray, popularity: np.ndarray, playable: np.ndarray,
            rng: np.random.Generator) -> list[tuple[int, np.datetime64, int]]:
    """One user's events ``(track index, time, plays)``: repeats, exploration, or a pick by
    ``exp(affinity + log popularity)`` over the playable tracks."""
    logit = aff[playable] + np.log(popularity[playable])
    p = np.exp(logit - logit.max())
    p /= p.sum()
    n_events = taste["n_events"]
    t0 = START + np.timedelta64(int(rng.integers(0, SPAN_DAYS * 86400)), "s")
    gaps = rng.exponential(scale=float(rng.uniform(0.2, 5.0)) * 86400, size=n_events)
    times = t0 + np.cumsum(gaps).astype("int64").astype("timedelta64[s]")
    history: list[int] = []
    events = []
    for e in range(n_events):
        if history and rng.random() < taste["repeat"]:
            ti = history[int(rng.integers(len(history)))]
        elif rng.random() < taste["exploration"]:
            ti = int(playable[int(rng.integers(len(playable)))])
        else:
            ti = int(playable[int(rng.choice(len(playable), p=p))])
        plays = 1 if taste["cold"] else int(rng.geometric(0.55))  # cold users: 1-3 events of one play
        history.append(ti)
        events.append((ti, times[e], plays))
    return events


def _user_entry(taste: dict, genre_names, tag_names) -> dict:
    """A user's taste as stored in ``tastes.json`` (rounded to 6 decimals)."""
    return {
        "clusters": [int(k) for k in taste["ks"]],
        "weights": [round(float(x), 6) for x in taste["pi"]],
        "genres": {g: round(float(taste["g_u"][i]), 6) for i, g in enumerate(genre_names)},
        "tags": {t: round(float(taste["w_u"][i]), 6) for i, t in enumerate(tag_names)},
        "exploration": round(taste["exploration"], 6),
        "repeat": round(taste["repeat"], 6),
        "cold": taste["cold"],
        "n_events": taste["n_events"],
    }


def _events_frame(rows: list[tuple]):
    """The events table, sorted by user, time and track, timestamps in UTC."""
    import pandas as pd

    events = pd.DataFrame(rows, columns=["user", "track", "timestamp", "plays"])
    events["timestamp"] = pd.to_datetime(events["timestamp"].astype("datetime64[s]")).dt.tz_localize("UTC")
    events["plays"] = events["plays"].astype("int32")
    return events.sort_values(["user", "timestamp", "track"], kind="mergesort").reset_index(drop=True)
