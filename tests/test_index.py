"""mir.index on synthetic clustered vectors: FAISS against the exact index, updates, storage, filters."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from mir.errors import CatalogError, ParameterError
from mir.index import ExactIndex, FaissIndex, choose_factory, faiss_index, load_index, resolve_factory, save_index
from mir.similar import Filters, filtered_search, parse_key, parse_range

D = 32


pytestmark = pytest.mark.usefixtures("one_faiss_thread")


def clustered(rng, n: int, *, d: int = D, clusters: int = 40, spread: float = 0.35):
    centres = rng.standard_normal((clusters, d))
    x = centres[rng.integers(0, clusters, n)] + spread * rng.standard_normal((n, d))
    return np.array([f"t{i:06d}" for i in range(n)]), x.astype(np.float32)


def recall_at(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(a) & set(b)) / len(b) for a, b in zip(found, truth)]))


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(7)
    ids, x = clustered(rng, 12_000)
    queries = x[rng.choice(len(x), 200, replace=False)] + 0.1 * rng.standard_normal((200, D)).astype(np.float32)
    return ids, x, queries


FAISS_TYPES = ["Flat", "HNSW32,Flat", "IVF64,Flat", "IVF64,PQ16x4,RFlat"]


@pytest.mark.parametrize("factory", FAISS_TYPES)
def test_faiss_recall_against_exact(data, factory):
    ids, x, q = data
    _, truth = ExactIndex().build(ids, x).search(q, 10)
    index = FaissIndex(factory, nprobe=16, k_factor=16).build(ids, x)
    scores, found = index.search(q, 10)
    assert recall_at(found, truth) >= 0.95
    assert scores.dtype == np.float32 and found.shape == (200, 10)
    assert (np.diff(scores, axis=1) <= 1e-6).all()  # best first


def test_exact_scores_are_cosines(rng):
    ids, x = clustered(rng, 300)
    scores, found = ExactIndex().build(ids, x * 7.0).search(x[:3] * 0.1, 5)
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    rows = [[int(t[1:]) for t in r] for r in found]
    np.testing.assert_allclose(scores, np.einsum("qd,qkd->qk", unit[:3], unit[rows]), atol=1e-5)


@pytest.mark.parametrize("factory", ["exact", "Flat", "HNSW32,Flat", "IVF64,PQ16x4,RFlat"])
def test_query_by_a_track_returns_itself_first(data, factory):
    ids, x, _ = data
    index = ExactIndex() if factory == "exact" else FaissIndex(factory, k_factor=16)
    index.build(ids, x)
    pick = np.arange(0, len(ids), 97)
    scores, found = index.search(x[pick], 5)
    assert (found[:, 0] == ids[pick]).all()
    np.testing.assert_allclose(scores[:, 0], 1.0, atol=1e-4)


@pytest.mark.parametrize("factory", ["exact", "Flat", "IVF32,Flat", "HNSW32,Flat"])
def test_incremental_add_remove_equals_rebuild(rng, factory):
    ids, x = clustered(rng, 4000)
    make = (lambda: ExactIndex()) if factory == "exact" else (lambda: FaissIndex(factory, nprobe=32, ef_search=4000))
    # exhaustive knobs (nprobe = nlist, efSearch = n): results must equal a rebuild exactly
    inc = make().build(ids[:3000], x[:3000])
    inc.add(ids[3000:], x[3000:])
    gone = ids[rng.choice(4000, 400, replace=False)]
    assert inc.remove(gone) == 400
    assert inc.remove(gone[:5]) == 0  # already gone: ignored
    keep = ~np.isin(ids, gone)
    ref = make().build(ids[keep], x[keep])
    assert len(inc) == len(ref) == 3600 and set(inc.ids) == set(ids[keep])
    q = x[rng.choice(4000, 100, replace=False)]
    s1, i1 = inc.search(q, 10)
    s2, i2 = ref.search(q, 10)
    np.testing.assert_array_equal(i1, i2)
    np.testing.assert_allclose(s1, s2, atol=1e-5)
    assert not np.isin(i1, gone).any()


def test_hnsw_tombstones_compact_and_never_come_back(rng):
    ids, x = clustered(rng, 2000)
    index = FaissIndex("HNSW16,Flat").build(ids, x)
    index.remove(ids[:100])  # HNSW cannot delete: tombstones
    assert index.tombstones_.size == 100 and index.index_.ntotal == 2000 and len(index) == 1900
    _, found = index.search(x[:100], 10)
    assert not np.isin(found, ids[:100]).any()
    index.remove(ids[100:600])  # past 25 %: compacted
    assert index.tombstones_.size == 0 and index.index_.ntotal == len(index) == 1400
    _, found = index.search(x[600:700], 1)
    assert (found[:, 0] == ids[600:700]).all()
    index.add(ids[:10], x[:10])  # a removed id may come back
    assert index.search(x[:10], 1)[1][:, 0].tolist() == ids[:10].tolist()


@pytest.mark.parametrize("factory", ["exact", "Flat", "HNSW32,Flat", "IVF32,PQ16x4,RFlat"])
@pytest.mark.parametrize("mmap", [False, True])
def test_save_load_round_trip(tmp_path, rng, factory, mmap):
    ids, x = clustered(rng, 3000)
    index = ExactIndex() if factory == "exact" else FaissIndex(factory, ef_search=64, nprobe=8)
    index.build(ids, x)
    index.remove(ids[:7])
    manifest = save_index(index, tmp_path / "idx", extra={"note": "x"})
    assert manifest["count"] == 2993 and manifest["dim"] == D and manifest["note"] == "x"
    loaded, read = load_index(tmp_path / "idx", mmap=mmap)
    assert type(loaded) is type(index) and read["checksum"] == manifest["checksum"]
    assert loaded.params() == index.params() and list(loaded.ids) == list(index.ids)
    q = x[::50]
    for a, b in zip(index.search(q, 10), loaded.search(q, 10)):
        np.testing.assert_array_equal(a, b)
    if mmap and factory != "exact":
        with pytest.raises(ParameterError, match="memory-mapped"):
            loaded.add(["new"], x[:1])
    # saving again replaces the files atomically and removes the old ones
    index.add(["new"], x[:1])
    save_index(index, tmp_path / "idx")
    assert len(load_index(tmp_path / "idx")[0]) == 2994
    assert len(list((tmp_path / "idx").glob("labels-*.npy"))) == 1


def test_corrupt_or_missing_files_are_refused(tmp_path, rng):
    ids, x = clustered(rng, 500)
    save_index(FaissIndex("Flat").build(ids, x), tmp_path / "idx")
    manifest = json.loads((tmp_path / "idx" / "manifest.json").read_text())
    path = tmp_path / "idx" / manifest["files"]["index"]
    data = bytearray(path.read_bytes())
    data[-10] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CatalogError, match="checksum"):
        load_index(tmp_path / "idx")
    path.write_bytes(bytes(data[:-4]))
    with pytest.raises(CatalogError, match="truncated"):
        load_index(tmp_path / "idx")
    path.unlink()
    with pytest.raises(CatalogError, match="missing"):
        load_index(tmp_path / "idx")
    with pytest.raises(CatalogError, match="no saved index"):
        load_index(tmp_path / "nothing")


def test_bad_input_is_rejected_with_the_value(rng):
    ids, x = clustered(rng, 100)
    index = FaissIndex("Flat").build(ids, x)
    with pytest.raises(ParameterError, match="dimension 5"):
        index.search(np.ones((1, 5)), 3)
    with pytest.raises(ParameterError, match="already in the index"):
        index.add(ids[:2], x[:2])
    with pytest.raises(ParameterError, match="appears 2 times"):
        ExactIndex().build(["a", "a"], x[:2])
    with pytest.raises(ParameterError, match="all zeros"):
        index.add(["z"], np.zeros((1, D)))
    with pytest.raises(ParameterError, match="NaN"):
        index.search(np.full((1, D), np.nan), 3)
    with pytest.raises(ParameterError, match="k must be"):
        index.search(x[:1], 0)
    with pytest.raises(ParameterError, match="needs at least 128 vectors"):
        FaissIndex("IVF128,Flat").build(ids, x)
    with pytest.raises(ParameterError, match="cannot build index type"):
        FaissIndex("NoSuchThing").build(ids, x)
    with pytest.raises(ParameterError, match="unknown search option"):
        index.search(x[:1], 3, efsearch=3)


def test_fewer_results_than_k_are_padded(rng):
    ids, x = clustered(rng, 5)
    for index in (ExactIndex().build(ids, x), FaissIndex("Flat").build(ids, x)):
        scores, found = index.search(x[:2], 8)
        assert (found[:, 5:] == "").all() and np.isneginf(scores[:, 5:]).all()
        assert (found[:, :5] != "").all()


def test_choose_factory_by_size():
    assert choose_factory(1_000, 256) == "Flat" and choose_factory(50_000, 256) == "Flat"
    assert choose_factory(500_000, 256) == "IVF2048,PQ128x4fs,RFlat"
    big = choose_factory(5_000_000, 256)
    assert big.startswith("IVF") and "PQ128x4fs" in big and big.endswith("RFlat")
    assert resolve_factory("hnsw", 10, 8) == "HNSW32,Flat" and resolve_factory("IVF8,SQ8", 10, 8) == "IVF8,SQ8"
    assert resolve_factory("ivfpq", 20_000, 64) == "IVF512,PQ32x4fs,RFlat"


# --- filters -----------------------------------------------------------------------------------------
def test_parse_key_and_range():
    assert parse_key("A minor") == ("A", "minor") and parse_key("am") == ("A", "minor")
    assert parse_key("Bb major") == ("A#", "major") and parse_key("F#") == ("F#", None)
    assert parse_range("90-120", "bpm") == (90.0, 120.0) and parse_range("90-", "bpm") == (90.0, None)
    assert parse_range("-120", "bpm") == (None, 120.0) and parse_range("100", "bpm") == (100.0, 100.0)
    with pytest.raises(ParameterError, match="'H minor'"):
        parse_key("H minor")
    with pytest.raises(ParameterError, match="empty"):
        parse_range("120-90", "bpm")


def fake_meta(ids: np.ndarray, rng) -> pd.DataFrame:
    n = len(ids)
    keys = ["C", "A", "G", "E"]
    return pd.DataFrame({
        "artist": [f"artist{i % 30}" if i % 11 else None for i in range(n)],
        "genre": [["jazz", "folk", "rock", None][i % 4] for i in range(n)],
        "genre_pred": [["jazz", "folk", "rock", "pop"][(i // 4) % 4] for i in range(n)],
        "tags": [["piano", "slow"] if i % 3 == 0 else ["guitar"] for i in range(n)],
        "tempo": rng.uniform(60, 180, n).round(1),
        "key": [keys[i % 4] for i in range(n)],
        "mode": ["minor" if i % 2 else "major" for i in range(n)],
        "year": [1970 + i % 50 if i % 7 else np.nan for i in range(n)],
    }, index=pd.Index(ids, name="track_id"))


def test_filter_mask_conditions(rng):
    ids = np.array([f"t{i}" for i in range(400)])
    meta = fake_meta(ids, rng)
    f = Filters(genres=["POP", "jazz"], tags=["piano"], bpm="80-150", keys=["A minor", "C"], year="1980-2000",
                exclude_tracks=["t0", "t12"], exclude_artists=["ARTIST3"])
    ok = f.mask(meta)
    genre = meta["genre"].where(meta["genre"].notna(), meta["genre_pred"])
    expect = (genre.isin(["pop", "jazz"]) & meta["tags"].map(lambda t: "piano" in t)
              & meta["tempo"].between(80, 150) & meta["year"].between(1980, 2000)
              & (((meta["key"] == "A") & (meta["mode"] == "minor")) | (meta["key"] == "C"))
              & ~meta.index.isin(["t0", "t12"]) & (meta["artist"] != "artist3")).to_numpy()
    np.testing.assert_array_equal(ok, expect)
    assert 0 < ok.sum() < 400
    assert not Filters().per_track and Filters().allowed(meta) is None


@pytest.mark.parametrize("subset_exact", [True, False], ids=["subset-exact", "selector"])
@pytest.mark.parametrize("factory", ["exact", "Flat", "HNSW16,Flat", "IVF64,PQ16x4,RFlat"])
def test_filters_never_leak_and_keep_k(data, factory, rng, subset_exact, monkeypatch):
    if not subset_exact:  # every allowed set goes through the approximate index + IDSelector (widening)
        if factory == "exact":
            pytest.skip("the exact index has no selector path")
        monkeypatch.setattr(faiss_index, "SUBSET_EXACT_MIN", 0)
        monkeypatch.setattr(faiss_index, "SUBSET_EXACT_FRACTION", 0.0)
    ids, x, q = data
    index = ExactIndex() if factory == "exact" else FaissIndex(factory, ef_search=16, nprobe=2, k_factor=2)
    index.build(ids, x)
    meta = fake_meta(ids, rng)
    for filters in (Filters(genres=["rock"], bpm="100-110"),  # ~2 % of tracks: the search must widen
                    Filters(keys=["G major"], max_per_artist=1),
                    Filters(exclude_artists=[f"artist{i}" for i in range(29)], max_per_artist=3)):
        allowed = filters.allowed(meta)
        artists = meta["artist"].dropna().to_dict()
        _, found = filtered_search(index, q[:20], 10, allowed=allowed, artists=artists,
                                        max_per_artist=filters.max_per_artist)
        ok = set(meta.index[filters.mask(meta)])
        n_ok = len(ok)
        if filters.max_per_artist:  # tracks without an artist are not capped
            by_artist = meta.loc[list(ok), "artist"]
            n_ok = int(by_artist.isna().sum() + by_artist.dropna().value_counts().clip(upper=filters.max_per_artist).sum())
        assert n_ok >= 10
        assert (found != "").all(), f"{filters}: fewer than k results although {n_ok} qualify"
        assert set(found.ravel()) <= ok
        if filters.max_per_artist:
            for row in found:
                counts = meta.loc[row, "artist"].dropna().value_counts()
                assert (counts <= filters.max_per_artist).all()
        if factory == "exact" and not filters.max_per_artist:
            _, truth = index.search(q[:20], 10, allowed=allowed)
            np.testing.assert_array_equal(found, truth)


def test_filters_return_all_when_fewer_than_k_qualify(data):
    ids, x, q = data
    index = FaissIndex("HNSW16,Flat", ef_search=16).build(ids, x)
    allowed = ids[[5, 900, 4000, 11_999]]
    scores, found = filtered_search(index, q[:3], 10, allowed=allowed, exclude=[{ids[5]}, set(), set()])
    assert set(found[0, :3]) == set(allowed[1:]) and (found[0, 3:] == "").all()
    assert set(found[1, :4]) == set(allowed) and (found[1, 4:] == "").all()
    assert np.isneginf(scores[1, 4:]).all()


@pytest.mark.parametrize("factory", ["HNSW16,Flat", "IVF64,PQ16x4,RFlat"])
def test_selective_filter_is_exact_over_the_allowed_set(data, factory, rng):
    """A 1 % allowed set is searched by brute force over its stored vectors: the approximate index
    (deliberately weak knobs) returns exactly the exact index's results restricted to that set."""
    ids, x, q = data
    index = FaissIndex(factory, ef_search=16, nprobe=1, k_factor=1).build(ids, x)
    assert index.subset_exact_max() >= 120
    removed = ids[rng.choice(len(ids), 300, replace=False)]
    allowed = np.union1d(ids[rng.choice(len(ids), 120, replace=False)], removed[:20])  # ~1 %, some removed
    index.remove(removed)
    exact = ExactIndex().build(ids, x)
    exact.remove(removed)
    truth_s, truth = exact.search(q, 10, allowed=allowed)
    scores, found = index.search(q, 10, allowed=allowed)
    np.testing.assert_array_equal(found, truth)
    np.testing.assert_allclose(scores, truth_s, atol=1e-6)
    live_ok = set(allowed) - set(removed)
    assert set(found.ravel()) <= live_ok
    _, found_f = filtered_search(index, q, 10, allowed=allowed, exclude=[{t} for t in found[:, 0]])
    _, truth_f = exact.search(q, 11, allowed=allowed)
    np.testing.assert_array_equal(found_f, truth_f[:, 1:])  # the excluded best one, then the next 10
    assert index.is_exhaustive(n_allowed=len(allowed), ef_search=16)


def test_subset_search_falls_back_to_the_selector_without_reconstruct(data, monkeypatch):
    ids, x, q = data
    index = FaissIndex("HNSW16,Flat", ef_search=16).build(ids[:3000], x[:3000])

    def cannot(labels):
        raise RuntimeError("reconstruct not implemented for this type")

    monkeypatch.setattr(index, "_vectors", cannot)
    allowed = ids[:3000:50]
    _, found = filtered_search(index, q[:5], 10, allowed=allowed)
    assert not index._subset_ok and not index.is_exhaustive(n_allowed=len(allowed))
    assert (found != "").all() and set(found.ravel()) <= set(allowed)


@pytest.mark.parametrize("factory", ["exact", "HNSW16,Flat"])
def test_reused_allowed_set_follows_changes(data, factory):
    """The last allowed set is remembered between calls; changing it in place or changing the index
    must not give stale results."""
    ids, x, q = data
    index = (ExactIndex() if factory == "exact" else FaissIndex(factory)).build(ids[:2000], x[:2000])
    allowed = ids[:2000:10].copy()
    _, first = index.search(q[:3], 5, allowed=allowed)
    assert set(first.ravel()) <= set(allowed)
    index.remove(first[:, 0])
    _, after = index.search(q[:3], 5, allowed=allowed)
    assert not set(after.ravel()) & set(first[:, 0]) and (after != "").all()
    allowed[:] = ids[1:2000:10]  # same object, other contents
    _, moved = index.search(q[:3], 5, allowed=allowed)
    assert set(moved.ravel()) <= set(allowed)
    index.add(["new"], x[:1] + 1e-3)
    allowed_list = list(allowed) + ["new"]
    _, with_new = index.search(x[:1], 1, allowed=allowed_list)
    assert with_new[0, 0] == "new"
