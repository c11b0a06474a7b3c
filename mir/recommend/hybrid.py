"""The default recommender ``hybrid``: "popularity × personal affinity", blended with ALS.

``b_t + theta_u · phi_t`` (an item bias learned from every user's plays plus the user's taste over
the track features, :mod:`mir.recommend.affinity`), standardised per user and added to ``w ·`` the
standardised ALS score; the ALS weight and the never-played-track offset are tuned on a validation
split of the training events. Cold-start users get :class:`~mir.recommend.content_taste.ContentTaste`
lists (or the taste part alone).

Scores every catalogue track for a block of users (dense ``[users, n_items]``), which is exact and
cheap for catalogues up to ~10^5 tracks.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from ..errors import ParameterError
from ..topk import top_k
from . import affinity, taste_cells
from ._base import Recommender, clone
from .arrays import NEG, mask_unwanted, zscore_rows
from .content_taste import ContentTaste, dense_topk, fit_settings
from .methods import Collaborative
from .tune import relevance_credit, validation_split

ALS_WEIGHTS = (0.0, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5)
OFFSETS = (0.0, 0.25, -0.25, 0.5, -0.5, -0.75, -1.0, 1.0, -1.5, -2.0, -3.0)  # mildest first


def first_plays(X):
    """[n_users, n_items] CSR, the pattern of ``X.matrix()``: each (user, track)'s first play as its rank in
    the user's events by time (ties: input order), for :func:`~mir.recommend.affinity.fit_taste_model`'s
    ``first_play``."""
    order = np.lexsort((np.arange(len(X)), X.timestamp, X.user_idx))
    rank = np.empty(len(X), np.float64)
    rank[order] = np.arange(1, len(X) + 1)
    key = X.user_idx.astype(np.int64) * X.n_items + X.item_idx
    uniq, inv = np.unique(key, return_inverse=True)
    best = np.full(len(uniq), np.inf)
    np.minimum.at(best, inv, rank)
    out = sp.csr_matrix((best, (uniq // X.n_items, uniq % X.n_items)), shape=(X.n_users, X.n_items))
    out.sort_indices()
    return out


class Hybrid(Recommender):
    """``z(b_t + theta_u · phi_t) + w · z(ALS)`` per user (z: standardised over the catalogue).

    The taste part is :func:`mir.recommend.affinity.fit_tastes` with item biases (learned from
    every user's plays: the popularity prior of a track). Never-played tracks (cold-start tracks)
    have no learned bias nor ALS factors: their bias is the median bias of played tracks, their
    ALS term is replaced by the taste term, and ``cold_offset`` is added (``"match"``: the offset
    of ``OFFSETS`` whose validation lists hold never-played tracks at the rate they make up of the
    relevant held-out items; a number: as given). ``weight``: the ALS weight ``w`` ("auto": the
    best validation recall@``tune_k`` over ``grid``). Users with 1 to ``cold_user_plays`` plays
    (cold-start users) get ``cold_users="content"`` (default): a purely content list
    (:class:`ContentTaste`), or ``"prior"``: the taste part alone (their few plays move the
    population's taste, the item bias acts as a popularity prior: more recall on the demo, but not
    content-based). ``collaborative``: the ALS part (default
    ``Collaborative()``, its settings chosen on the same validation split). ``iterations``,
    ``ridge``, ``tol``: the taste fits' (:func:`~mir.recommend.affinity.fit_taste_model`); the final
    taste fit on all events starts from the validation fit's tastes, biases and prior and runs at
    most ``refit_iterations`` rounds (None: ``iterations``; fewer is faster: 5 cost 0.004 recall on
    the demo). ``picks``: ``"sequential"`` (default) fits the taste part with each user's tracks as draws
    without replacement in first-play order (:func:`first_plays`), ``"independent"`` as independent
    draws; ``bias_l2``: the item biases' L2. On the demo's validation split (inside the training events)
    sequential with ``bias_l2=0.1`` gained +0.016 and +0.011 recall@50 over independent with 1.0 (holdouts
    0.2 / 0.3, paired SE 0.008); on the demo's test split 0.437 against 0.425. ``taste_fit``, ``cells``, ``threads``,
    ``scheduler``: both taste fits exact or over cells of tracks (:func:`~mir.recommend.taste_cells.fit_taste`;
    ``"auto"``: exact up to 2,000 tracks), their blocks of users on threads or a Dask cluster.
    """

    name = "hybrid"
    needs_tracks = True

    def __init__(self, collaborative: Recommender | None = None, weight: float | str = "auto",
                 cold_offset: float | str = "match", cold_users: str = "content", cold_user_plays: int = 3,
                 iterations: int = 20, ridge: float = 1e-2, validation: float = 0.2, tune_k: int = 50,
                 grid: tuple = ALS_WEIGHTS, cold_grid: tuple = OFFSETS, max_tune_users: int = 5000,
                 random_state: int = 0, tol: float = 1e-4, refit_iterations: int | None = None,
                 picks: str = "sequential", bias_l2: float = 0.1, taste_fit: str = "auto", cells: int | str = "auto",
                 threads: int = 1, scheduler: str | None = None):
        self.collaborative = collaborative
        self.weight = weight
        self.cold_offset = cold_offset
        self.cold_users = cold_users
        self.cold_user_plays = cold_user_plays
        self.iterations = iterations
        self.ridge = ridge
        self.validation = validation
        self.tune_k = tune_k
        self.grid = grid
        self.cold_grid = cold_grid
        self.max_tune_users = max_tune_users
        self.random_state = random_state
        self.tol = tol
        self.refit_iterations = refit_iterations
        self.picks = picks
        self.bias_l2 = bias_l2
        self.taste_fit = taste_fit
        self.cells = cells
        self.threads = threads
        self.scheduler = scheduler

    # --- fitting ---------------------------------------------------------------------------------------
    def _check(self) -> None:
        if self.picks not in ("independent", "sequential"):
            raise ParameterError(f"picks must be 'independent' or 'sequential', got {self.picks!r}")
        if self.cold_users not in ("prior", "content"):
            raise ParameterError(f"cold_users must be 'prior' or 'content', got {self.cold_users!r}")
        if self.refit_iterations is not None and int(self.refit_iterations) < 1:
            raise ParameterError(f"refit_iterations must be >= 1, got {self.refit_iterations!r}")
        if not (self.weight == "auto" or (not isinstance(self.weight, str) and float(self.weight) >= 0)):
            raise ParameterError(f"weight must be a number >= 0 or 'auto', got {self.weight!r}")
        if isinstance(self.cold_offset, str) and self.cold_offset != "match":
            raise ParameterError(f"cold_offset must be a number or 'match', got {self.cold_offset!r}")

    def _fit_parts(self, X, tracks, cf, *, content: bool = True, init=None) -> tuple[dict, affinity.Tastes]:
        """Fitted state of every part on ``X`` (a dict of the learned attributes) and the taste fit.
        ``content``: fit the cold users' :class:`ContentTaste` too; ``init``: a taste fit to start from."""
        Phi = affinity.track_features(tracks).astype(np.float32)
        seen = X.matrix()
        rounds = self.iterations if init is None or self.refit_iterations is None else self.refit_iterations
        fit = taste_cells.fit_taste(seen, Phi, item_bias=True, iterations=rounds, ridge=self.ridge,
                                    bias_l2=self.bias_l2, tol=self.tol, init=init,
                                    first_play=first_plays(X) if self.picks == "sequential" else None,
                                    **fit_settings(self))
        theta, b = fit.theta, fit.b.copy()
        never = np.asarray(seen.sum(axis=0)).ravel() == 0
        if never.any() and (~never).any():
            b[never] = np.median(b[~never])
        state = {"features_": Phi, "theta_": theta.astype(np.float32), "bias_": b.astype(np.float32),
                 "never_played_": never, "rounds_": fit.rounds}
        if self.weight == "auto" or float(self.weight) > 0:
            state["collaborative_"] = cf.fit(X, tracks) if cf is not None else Collaborative().fit(X, tracks)
        if content and self.cold_users == "content":
            state["content_"] = ContentTaste(self.iterations, self.ridge, self.tol, self.taste_fit, self.cells, self.threads,
                                             self.scheduler).fit(X, tracks)
        return state, fit

    def _fit(self, X, tracks) -> None:
        self._check()
        cf = clone(self.collaborative) if self.collaborative is not None else Collaborative()
        split = validation_split(X, self.validation, max_users=self.max_tune_users, random_state=self.random_state)
        cf_tuning = None
        if isinstance(cf, Collaborative) and cf._auto():  # choose the ALS settings once, on this split
            settings, cf_tuning = cf.search(split, tracks)
            for name, value in settings.items():
                setattr(cf, name, value)
        self.weight_ = 0.0 if self.weight == "auto" else float(self.weight)
        self.cold_offset_ = 0.0 if isinstance(self.cold_offset, str) else float(self.cold_offset)
        self.cold_share_target_ = float("nan")
        self.tuning_ = np.zeros((0, 4))
        warm = None
        if len(split.users) and (self.weight == "auto" or self.cold_offset == "match"):
            warm = self._tune(split, tracks, clone(cf))
        for k, v in self._fit_parts(X, tracks, cf, init=warm)[0].items():
            setattr(self, k, v)
        if cf_tuning is not None and hasattr(self, "collaborative_"):  # the ALS search's rows, for reports
            self.collaborative_.tuning_ = cf_tuning

    def _tune(self, split, tracks, cf) -> affinity.Tastes:
        """Choose ``weight_`` then ``cold_offset_`` on ``split``; ``tuning_`` rows: ``[weight, offset,
        recall@tune_k, never-played share of the lists]`` (warm validation users). Returns the taste
        fit on ``split.train`` (the final fit starts from it). The cold users' content model is not
        fitted here: only warm users are validated."""
        saved = dict(vars(self))
        state, fit = self._fit_parts(split.train, tracks, cf, content=False)
        for k, v in state.items():
            setattr(self, k, v)
        self.seen_ = split.train.matrix()
        self.user_plays_ = np.asarray(self.seen_.sum(axis=1)).ravel()
        users = split.users[self.user_plays_[split.users] > self.cold_user_plays]
        weights = [float(w) for w in self.grid] if self.weight == "auto" else [self.weight_]
        offsets = [float(c) for c in self.cold_grid] if self.cold_offset == "match" else [self.cold_offset_]
        rows = [(w, offsets[0], *r) for w, r in zip(weights, self._validate(users, split.relevant,
                                                                             [(w, offsets[0]) for w in weights]))]
        best_w = rows[int(np.argmax([r[2] for r in rows]))][0] if rows else self.weight_
        rel = np.concatenate([split.relevant[int(x)] for x in split.users])
        target = float(np.mean(self.never_played_[rel])) if len(rel) else 0.0
        best_c = offsets[0]
        if len(offsets) > 1:
            at = [(c, *r) for c, r in zip(offsets, self._validate(users, split.relevant, [(best_w, c) for c in offsets]))]
            rows += [(best_w, *r) for r in at[1:]]
            best_c = at[int(np.argmin([abs(r[2] - target) for r in at]))][0]
        vars(self).clear()
        vars(self).update(saved)
        self.weight_, self.cold_offset_, self.cold_share_target_ = best_w, best_c, target
        self.tuning_ = np.array(rows, np.float64).reshape(-1, 4)
        return fit

    def _validate(self, users, relevant, settings) -> list[tuple[float, float]]:
        """(mean recall@tune_k, never-played share of the lists) of warm ``users`` at each ``(weight,
        offset)`` of ``settings`` (the score parts are computed once per block of users)."""
        with_cf = any(w > 0 for w, _ in settings)
        hits, never, total = np.zeros(len(settings)), np.zeros(len(settings)), np.zeros(len(settings))
        for lo in range(0, len(users), 512):
            u = users[lo:lo + 512]
            with affinity.one_blas_thread():
                z, zc = self._warm_parts(u, with_cf)
            for i, (w, c) in enumerate(settings):
                S = self._combine(z, zc, w, c).astype(np.float32)
                mask_unwanted(S, self.seen_, u, None, True)
                _, items = top_k(S, self.tune_k)
                hits[i] += float(relevance_credit(items, u, relevant, len(self.never_played_)).sum())
                ok = items >= 0
                never[i] += int(self.never_played_[items[ok]].sum())
                total[i] += int(ok.sum())
        return [(h / max(len(users), 1), nv / max(t, 1)) for h, nv, t in zip(hits, never, total)]

    # --- scoring ---------------------------------------------------------------------------------------
    def _warm_parts(self, u, with_cf: bool):
        """Users ``u``'s standardised taste scores and ALS scores (the taste scores on never-played tracks)."""
        z = zscore_rows(affinity.scores(self.theta_[u], self.features_, self.bias_))
        if not with_cf:
            return z, None
        cf, played = self.collaborative_, ~self.never_played_
        z_cf = zscore_rows(cf.user_factors_[u] @ cf.item_factors_.T, played)
        return z, np.where(played, z_cf, z)

    def _combine(self, z, zc, w, c):
        """``z + w zc`` plus the offset ``c`` on never-played tracks."""
        if w > 0:
            z = z + w * zc
        return z + np.where(self.never_played_, c, 0.0)

    def _dense(self, u):
        u = np.asarray(u, np.int64)
        z = self._combine(*self._warm_parts(u, self.weight_ > 0), self.weight_, self.cold_offset_)
        cold = self.user_plays_[u] <= self.cold_user_plays
        if cold.any():
            if self.cold_users == "content":
                z[cold] = zscore_rows(self.content_._dense(u[cold]))
            else:
                z[cold] = zscore_rows(affinity.scores(self.theta_[u[cold]], self.features_, self.bias_))
        return z.astype(np.float32)

    def _candidates(self, u, n, allowed, exclude_seen):
        return dense_topk(self, u, n, allowed, exclude_seen)

    def _score(self, u, items):
        S = self._dense(u)
        out = np.take_along_axis(S, np.maximum(items, 0), axis=1)
        return np.where(items >= 0, out, NEG).astype(np.float32)
