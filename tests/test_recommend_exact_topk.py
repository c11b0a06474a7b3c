"""Fast candidate paths of mir.recommend against brute force: blocked top-k, pruned MIPS, taste
mixtures, index-backed content candidates, cold-start factors."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from mir.errors import ParameterError
from mir.recommend import ContentBased, Interactions, TrackSet
from mir.recommend.arrays import NEG, played, seen_mask
from mir.recommend.exact_topk import NormOrder, mips_topk, mixture_topk, topk_rows
from mir.recommend.taste import mixture_scores
from mir.topk import top_k


def topk(scores, n):
    """The reference lists as ``(items, scores)``, the recommenders' order."""
    vals, cols = top_k(scores, n)
    return cols, vals


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def random_seen(rng, n_users, n_items, per_user=20):
    rows = np.repeat(np.arange(n_users), per_user)
    X = sp.csr_matrix((np.ones(len(rows)), (rows, rng.integers(0, n_items, len(rows)))), shape=(n_users, n_items))
    X.sum_duplicates()
    return X


def brute(S, seen, users, allowed=None):
    S = S.copy()
    for r, u in enumerate(users):
        S[r, seen.indices[seen.indptr[u]:seen.indptr[u + 1]]] = NEG
    if allowed is not None:
        S[:, ~allowed] = NEG
    return S


def test_played_lists_each_users_csr_row(rng):
    seen = random_seen(rng, 6, 30, 4)
    rows, cols = played(seen, np.array([3, -1, 0]))
    for r, u in [(0, 3), (2, 0)]:
        assert sorted(cols[rows == r]) == sorted(seen.indices[seen.indptr[u]:seen.indptr[u + 1]])
    assert not (rows == 1).any()


def test_topk_rows_equals_full_sort_also_with_masked_and_short_rows(rng):
    S = rng.standard_normal((40, 3000)).astype(np.float32)
    S[3, :2990] = NEG  # fewer than n finite entries
    S[5, ::2] = NEG
    S[7] = np.sort(S[7])  # increasing along the row: the strided sample is a poor guess
    for n in (1, 10, 50):
        ci, cv = topk_rows(S, n)
        ri, rv = topk(S, n)
        np.testing.assert_array_equal(ci, ri)
        np.testing.assert_array_equal(cv, rv)
    floor = np.full(40, 0.5, np.float32)
    ci, cv = topk_rows(S, 20, floor=floor)
    ri, rv = topk(np.where(S >= 0.5, S, NEG), 20)
    np.testing.assert_array_equal(ci, ri)


@pytest.mark.parametrize("n_items", [300, 5000])
def test_mips_topk_equals_brute_force(rng, n_items):
    # item norms spread over two orders of magnitude, as ALS gives popular vs rare tracks
    F = (rng.standard_normal((n_items, 16)) * rng.pareto(1.5, (n_items, 1))).astype(np.float32)
    U = rng.standard_normal((64, 16)).astype(np.float32)
    seen = random_seen(rng, 64, n_items)
    allowed = rng.random(n_items) > 0.1
    users = np.arange(64)
    order = NormOrder(F)
    for n in (5, 50):
        got_i, got_v = mips_topk(U, order, n, seen=seen, users=users, allowed=allowed)
        ref_i, ref_v = topk(brute(U @ F.T, seen, users, allowed), n)
        np.testing.assert_array_equal(got_i, ref_i)
        np.testing.assert_allclose(got_v, ref_v, rtol=1e-5, atol=1e-5)
    got_i, _ = mips_topk(U, order, 20)  # nothing excluded
    np.testing.assert_array_equal(got_i, topk(U @ F.T, 20)[0])


def test_mixture_topk_equals_scoring_every_item(rng):
    n_items, d, T = 2000, 8, 3
    E = rng.standard_normal((n_items, d)).astype(np.float32)
    E /= np.linalg.norm(E, axis=1, keepdims=True)
    tastes = rng.standard_normal((32, T, d)).astype(np.float32)
    tastes /= np.linalg.norm(tastes, axis=2, keepdims=True)
    shares = rng.dirichlet(np.ones(T), 32).astype(np.float32)
    shares[:8, 1:] = 0  # one-taste users
    tastes[:8, 1:] = 0
    seen = random_seen(rng, 32, n_items)
    users = np.arange(32)
    allowed = rng.random(n_items) > 0.2
    got_i, got_v = mixture_topk(tastes, shares, E, 30, 0.1, seen=seen, users=users, allowed=allowed)
    sims = np.einsum("btd,nd->btn", tastes, E)
    ref_i, ref_v = topk(brute(mixture_scores(sims, shares, 0.1), seen, users, allowed), 30)
    np.testing.assert_allclose(got_v, ref_v, rtol=1e-5, atol=1e-5)
    assert (got_i == ref_i).mean() > 0.995  # float rounding may swap exact near-ties


def clustered_world(rng, n_items=400, n_users=60, d=16):
    centres = rng.standard_normal((8, d))
    cluster = rng.integers(0, 8, n_items)
    tracks = TrackSet(track_ids=[f"t{i:03d}" for i in range(n_items)],
                      embeddings=centres[cluster] + 0.5 * rng.standard_normal((n_items, d)))
    likes = rng.integers(0, 8, (n_users, 2))
    user, item = [], []
    for u in range(n_users):
        pool = np.flatnonzero(np.isin(cluster, likes[u]))
        picks = rng.choice(pool, 25)
        user += [u] * len(picks)
        item += list(picks)
    X = Interactions([f"u{u}" for u in range(n_users)], tracks.track_ids, np.array(user, np.int32),
                     np.array(item, np.int32), np.arange(len(user), dtype=np.int64), np.ones(len(user)))
    return tracks, X


def test_content_candidates_from_a_flat_index_equal_the_exact_scan_and_hnsw_comes_close(rng):
    tracks, X = clustered_world(rng)
    exact = ContentBased().fit(X, tracks)
    users = np.arange(X.n_users)
    ref, _ = exact.recommend_index(users, 20)
    flat = ContentBased(index="flat").fit(X, tracks)
    got, _ = flat.recommend_index(users, 20)
    assert (got == ref).mean() > 0.995  # same lists (up to float near-ties)
    hnsw = ContentBased(index="HNSW32,Flat").fit(X, tracks)
    got, _ = hnsw.recommend_index(users, 20)
    recall = np.mean([len(set(a) & set(b)) / 20 for a, b in zip(got, ref)])
    assert recall >= 0.95  # the stated tolerance of the approximate index
    with pytest.raises(ParameterError, match="lacks"):
        from mir.index import ExactIndex

        flat.use_index(ExactIndex().build(list(tracks.track_ids[:10]), tracks.embeddings[:10]))


def test_seen_mask_matches_a_per_user_isin(rng):
    seen = random_seen(rng, 10, 50, 8)
    users = np.array([4, -1, 9, 0])
    items = rng.integers(-1, 50, (4, 30))
    ref = np.array([[u >= 0 and it >= 0 and it in set(seen.indices[seen.indptr[u]:seen.indptr[u + 1]]) for it in row]
                    for u, row in zip(users, items)])
    np.testing.assert_array_equal(seen_mask(seen, users, items), ref)
