"""Library indexes (build, update, stale refusal), similarity queries and the `mir index` / `mir similar` CLI."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import mir
from mir import audio
from mir.catalog import Library, analyze
from mir.cli.main import main as cli
from mir.catalog.predictions import load_embeddings, resolve_model, resolve_model_id
from mir.errors import CatalogError, ParameterError, TrackNotFoundError
from mir.index import ExactIndex
from mir.models.checkpoint import DEFAULT_CHECKPOINT
from mir.similar import Filters, LibraryIndex, build_library_index, open_library_index, update_library_index
from mir.similar.query import key_relation, similar, soft_min, tag_match, tempo_relation
from mir.tagging import tag
from helpers import SR, TAGS, save_debug_model, synth

pytestmark = pytest.mark.usefixtures("one_faiss_thread")
ARTISTS = ["Ann", "Ann", "Ann", "Bob", "Bob", "Cy", "Cy", "Dee"]


@pytest.fixture(scope="module")
def tagged_lib(tmp_path_factory) -> dict:
    """8 tagged clips with artist/genre/year tags, analysed and tagged with a debug model (read-only)."""
    root = tmp_path_factory.mktemp("similar")
    music = root / "music"
    for i, artist in enumerate(ARTISTS):
        path = music / f"clip{i}.flac"
        path.parent.mkdir(parents=True, exist_ok=True)
        audio.save(path, synth(100 + i, 4.0 + (i % 3)), SR)
        audio.write_metadata(path, {"artist": artist, "title": f"Song {i}", "genre": ["jazz", "folk"][i % 2],
                                "year": 1990 + i})
    model = root / "debug.pt"
    model_id = save_debug_model(model)
    lib_dir = root / "lib"
    lib = Library.open_or_create(lib_dir)
    lib.scan([music])
    analyze(lib, workers=1)
    tag(lib, model=model)
    return {"root": root, "music": music, "lib": lib_dir, "model": model, "model_id": model_id}


@pytest.fixture
def lib(tagged_lib, tmp_path) -> Library:
    shutil.copytree(tagged_lib["lib"], tmp_path / "lib")
    return Library(tmp_path / "lib")


# --- the library index -----------------------------------------------------------------------------
def test_build_open_and_query_a_track_returns_itself_first(lib, tagged_lib):
    li = build_library_index(lib)
    assert li.model_id == tagged_lib["model_id"] and len(li) == 8
    assert li.manifest["index_type"] == "Flat" and li.manifest["dim"] == li.index.dim_
    assert (lib.root / "indexes" / li.model_id / "manifest.json").exists()
    opened = open_library_index(lib)
    ids, _, matrix = load_embeddings(lib, li.model_id)
    scores, found = opened.search(matrix, 3)
    assert (found[:, 0] == ids).all() and np.allclose(scores[:, 0], 1.0, atol=1e-5)
    meta = opened.meta
    assert set(meta.index) == set(ids) and {"artist", "title", "tempo", "key", "mode", "tags", "year"} <= set(meta)
    assert meta["year"].between(1990, 1997).all()
    res = similar(opened, tracks=[ids[0]], k=3, exclude_seeds=False)
    assert res[0]["track_id"] == ids[0] and res[0]["path"].endswith(".flac")
    assert all(r["track_id"] != ids[0] for r in similar(opened, tracks=[ids[0]], k=7))


def test_update_adds_and_removes_in_place(lib, tagged_lib, tmp_path):
    more = tmp_path / "more"
    for i in (1, 2):
        audio.save(more / f"extra{i}.flac", synth(900 + i, 5.0), SR)
    lib.scan([more])
    analyze(lib, workers=1)
    tag(lib, model=tagged_lib["model"])
    li = build_library_index(lib)
    assert len(li) == 10
    gone = lib.track(str(more / "extra1.flac"))["track_id"]
    (more / "extra1.flac").unlink()
    lib.scan([more])
    with pytest.raises(CatalogError, match=r"stale: 0 tracks tagged and 1 removed.*mir index update"):
        open_library_index(lib)
    audio.save(more / "extra3.flac", synth(903, 5.0), SR)
    lib.scan([more])
    analyze(lib, workers=1)
    tag(lib, model=tagged_lib["model"])
    with pytest.raises(CatalogError, match="stale: 1 tracks tagged and 1 removed"):
        open_library_index(lib)
    updated, report = update_library_index(lib)
    assert report == {"added": 1, "removed": 1, "built": False}
    assert gone not in updated.index and len(updated) == 10
    opened = open_library_index(lib)
    ids, _, matrix = load_embeddings(lib, li.model_id)
    rebuilt = ExactIndex().build(ids, matrix)
    (s1, i1), (s2, i2) = opened.search(matrix, 10), rebuilt.search(matrix, 10)
    np.testing.assert_array_equal(i1, i2)
    np.testing.assert_allclose(s1, s2, atol=1e-5)
    assert update_library_index(lib)[1] == {"added": 0, "removed": 0, "built": False}


def test_mismatched_manifest_is_refused(lib):
    li = build_library_index(lib)
    path = lib.root / "indexes" / li.model_id / "manifest.json"
    manifest = json.loads(path.read_text())
    path.write_text(json.dumps({**manifest, "dim": manifest["dim"] + 1}))
    with pytest.raises(CatalogError, match=r"dimension .*rebuild it with `mir index build"):
        open_library_index(lib)
    path.write_text(json.dumps({**manifest, "model_id": "0123456789ab"}))
    with pytest.raises(CatalogError, match="built for model '0123456789ab'"):
        open_library_index(lib)
    shutil.rmtree(path.parent)
    with pytest.raises(CatalogError, match="no index for model"):
        open_library_index(lib)


def test_audio_seed_finds_its_own_track(lib, tagged_lib, tmp_path):
    li = build_library_index(lib)
    track = lib.tracks().sort_values("track_id").iloc[5]
    res = similar(li, audio=track["path"], k=3)
    assert res[0]["track_id"] == track["track_id"] and res[0]["score"] > 0.999
    assert "BPM" in res[0]["explanation"] and res[0]["why"]["key_relation"] == "same key"
    # it is named as the query file itself, also from a copy elsewhere; other files are not
    copy = shutil.copy(track["path"], tmp_path / "copy.flac")
    res = similar(li, audio=copy, k=3)
    assert res.seeds[0]["same_as"] == track["track_id"] and res[0]["explanation"].startswith("the query file itself; ")
    assert res[0]["why"]["same_audio"] and not any("same_audio" in r["why"] for r in res[1:])
    other = tmp_path / "other.flac"
    audio.save(other, synth(999, 4.0), SR)
    res = similar(li, audio=other, k=3)
    assert res.seeds[0]["same_as"] is None and not any("same_audio" in r["why"] for r in res)
    assert lib.track_of_file(other) is None and lib.track_of_file(copy) == track["track_id"]


def test_model_is_named_by_id_prefix_or_checkpoint(lib, tagged_lib, tmp_path):
    mid, path = tagged_lib["model_id"], Path(tagged_lib["model"]).resolve()
    for name in (None, mid, mid[:5], path):
        ref = resolve_model(lib, name)
        assert (ref.model_id, ref.checkpoint) == (mid, path)
    assert resolve_model_id(lib, mid[:5]) == mid
    other_id = save_debug_model(tmp_path / "other.pt", seed=1)
    with pytest.raises(CatalogError, match=rf"model {other_id} .* has not tagged library.*mir tag"):
        resolve_model(lib, tmp_path / "other.pt")
    untagged = resolve_model(lib, tmp_path / "other.pt", tagged=False)  # what `mir tag --model` takes
    assert (untagged.model_id, untagged.checkpoint) == (other_id, (tmp_path / "other.pt").resolve())
    assert resolve_model(lib, None, tagged=False).checkpoint == DEFAULT_CHECKPOINT
    with pytest.raises(ParameterError, match=r"'nothing\.pt' is neither a model that tagged library"):
        resolve_model(lib, "nothing.pt", tagged=False)


def test_audio_seed_with_a_moved_checkpoint_needs_model_path(lib, tagged_lib, tmp_path, capsys):
    moved = tmp_path / "moved.pt"
    shutil.copy(tagged_lib["model"], moved)
    info = lib.stages.table("tags", tagged_lib["model_id"]).folder / "model.json"
    info.write_text(info.read_text().replace(str(Path(tagged_lib["model"]).resolve()), str(tmp_path / "gone.pt")))
    assert resolve_model(lib).checkpoint is None
    build_library_index(lib)
    track = lib.tracks().sort_values("track_id").iloc[5]
    assert cli(["similar", str(lib.root), "--audio", track["path"], "-k", "1"]) == 1
    assert "pass --model PATH to the model's checkpoint" in capsys.readouterr().err
    assert cli(["similar", str(lib.root), "--audio", track["path"], "-k", "1", "--model", str(moved), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["results"][0]["track_id"] == track["track_id"]
    assert cli(["tag", str(lib.root), "--model", tagged_lib["model_id"][:6], "-q"]) == 1  # its checkpoint is gone
    assert "no longer there; pass --model PATH" in capsys.readouterr().err
    assert cli(["tag", str(lib.root), "--model", str(moved), "-q"]) == 0
    assert "0 tracks tagged, 0 failed, 8 already tagged" in capsys.readouterr().out


def test_filters_through_the_library(lib):
    li = build_library_index(lib)
    seed = li.meta.index[0]
    res = similar(li, tracks=[seed], k=5, filters=Filters(file_genres=["folk"], max_per_artist=1))
    assert 0 < len(res) <= 4
    assert all(li.meta.loc[r["track_id"], "genre"] == "folk" for r in res)
    artists = [r["artist"] for r in res]
    assert len(artists) == len(set(artists))
    res = similar(li, tracks=[seed], k=10, filters=Filters(year="1992-1994", exclude_artists=["bob"]),
                  exclude_seeds=False)
    rows = li.meta.loc[[r["track_id"] for r in res]]
    assert len(res) == 1 and rows["year"].between(1992, 1994).all() and (rows["artist"] == "Ann").all()


def test_genre_filters_the_prediction_and_file_genre_the_files_own_and_a_shortfall_is_said(lib, capsys):
    li = build_library_index(lib)
    meta = li.meta
    seed = meta.index[0]
    predicted = meta["genre_pred"].iloc[1]
    res = similar(li, tracks=[seed], k=8, filters=Filters(genres=[predicted.upper()]))
    expected = set(meta.index[meta["genre_pred"] == predicted]) - {seed}
    assert {r["track_id"] for r in res} == expected  # whatever the files' own genre says
    assert res.k == 8 and res.shortfall == (f"{len(expected)} of 8 results: {len(expected)} of the 8 indexed tracks "
                                            f"pass the filters (--genre {predicted.upper()}), not counting 1 seed track")
    res = similar(li, tracks=[seed], k=8, filters=Filters(file_genres=["jazz"]))
    assert {r["track_id"] for r in res} == set(meta.index[meta["genre"] == "jazz"]) - {seed}
    assert "pass the filters (--file-genre jazz)" in res.shortfall
    assert similar(li, tracks=[seed], k=3).shortfall is None
    assert similar(li, tracks=[seed], k=9).shortfall == "7 of 9 results: the index holds 8 tracks, not counting 1 seed track"

    assert cli(["similar", str(lib.root), "--track", seed, "--file-genre", "nothing-like-this"]) == 0
    out = capsys.readouterr().out
    assert out.strip() == ("0 of 10 results: 0 of the 8 indexed tracks pass the filters (--file-genre "
                           "nothing-like-this), not counting 1 seed track")
    assert cli(["similar", str(lib.root), "--track", seed, "--genre", predicted, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert (doc["k"], doc["found"]) == (10, len(expected)) and doc["shortfall"].startswith(f"{len(expected)} of 10")


def test_a_query_by_track_loads_neither_torch_nor_librosa(lib):
    build_library_index(lib)
    seed = lib.tracks()["track_id"].iloc[0]
    code = ("import sys; from mir.cli.main import main; rc = main(['similar', sys.argv[1], '--track', sys.argv[2]]); "
            "print('heavy:', sorted(m for m in ('torch', 'librosa', 'scipy.signal') if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code, str(lib.root), seed], capture_output=True, text=True,
                          timeout=120, env=dict(os.environ, PYTHONPATH=str(Path(mir.__file__).parents[1])))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().endswith("heavy: []")


def test_long_titles_end_in_an_ellipsis():
    from mir.cli.similar import clip

    assert clip("A Very Long Title That Does Not Fit", 28) == "A Very Long Title That Does…"
    assert len(clip("A Very Long Title That Does Not Fit", 28)) == 28 and clip("Short", 28) == "Short"


# --- synthetic index for multi-seed and tag queries --------------------------------------------------
class FakeLib:
    root = "fake"

    def __init__(self, ids):
        self.ids = set(ids)

    def track(self, ref):
        if ref not in self.ids:
            raise TrackNotFoundError(f"no track {ref!r}")
        return {"track_id": ref}


def synthetic(rng, tags=("piano", "slow", "guitar")) -> LibraryIndex:
    """Two clusters A (a*) and B (b*), and bridge tracks (m*) half way between them."""
    d = 16
    ca, cb = np.zeros(d), np.zeros(d)
    ca[0], cb[1] = 1.0, 1.0
    a = ca + 0.15 * rng.standard_normal((40, d))
    b = cb + 0.15 * rng.standard_normal((40, d))
    m = (ca + cb) / 2 + 0.05 * rng.standard_normal((6, d))
    ids = [f"a{i:02d}" for i in range(40)] + [f"b{i:02d}" for i in range(40)] + [f"m{i:02d}" for i in range(6)]
    x = np.vstack([a, b, m])
    probs = rng.uniform(0, 0.3, (len(ids), len(tags))).astype(np.float32)
    probs[ids.index("b07")] = [0.95, 0.9, 0.1]
    probs[ids.index("a03")] = [0.99, 0.05, 0.1]  # one tag very likely, the other not
    probs[ids.index("a05")] = [0.9, 0.85, 0.1]
    meta = pd.DataFrame({"path": [f"/music/{t}.wav" for t in ids], "artist": [t[0] for t in ids],
                         "title": ids, "tags": [[] for _ in ids], "tag_probs": list(probs),
                         "tempo": 120.0, "key": "C", "mode": "major", "genre": None}, index=pd.Index(ids))
    meta.attrs.update(tags=list(tags), model_id="synthetic")
    li = LibraryIndex(FakeLib(ids), "synthetic", ExactIndex().build(ids, x), {})
    li._meta = meta
    return li


def test_several_seeds_give_tracks_near_all_of_them(rng):
    li = synthetic(rng)
    one = similar(li, tracks=["a00"], k=5)
    assert all(r["track_id"].startswith(("a", "m")) for r in one)
    both = similar(li, tracks=["a00", "b00"], k=6)
    assert {r["track_id"] for r in both} == {f"m{i:02d}" for i in range(6)}, "bridge tracks are near both seeds"
    assert [r["score"] for r in both] == sorted((r["score"] for r in both), reverse=True)
    assert all(r["track_id"] not in ("a00", "b00") for r in similar(li, tracks=["a00", "b00"], k=30))
    capped = similar(li, tracks=["a00", "b00"], k=4, filters=Filters(max_per_artist=2))
    assert [r["track_id"][0] for r in capped].count("m") == 2 and len(capped) == 4


def test_soft_min_is_between_min_and_mean():
    s = np.array([[0.9, 0.1], [0.5, 0.5], [0.8, 0.7]])
    out = soft_min(s, 0.05)
    assert (out >= s.min(1) - 1e-6).all() and (out <= s.mean(1) + 1e-6).all()
    assert out[2] > out[1] > out[0]  # near both beats near one
    np.testing.assert_allclose(soft_min(s[:, :1]), s[:, 0], atol=1e-6)


def test_tag_query_ranks_tracks_matching_every_tag(rng):
    li = synthetic(rng)
    res = similar(li, tags="Piano, slow", k=3)
    assert res[0]["track_id"] == "b07" and res[0]["why"]["tag_probs"] == {"Piano": pytest.approx(0.95, abs=1e-3),
                                                                          " slow": pytest.approx(0.9, abs=1e-3)}
    assert tag_match(li.meta, ["piano"]).argmax() == li.meta.index.get_loc("a03")
    seeded = similar(li, tracks=["a00"], tags=["piano", "slow"], k=3)
    assert seeded[0]["track_id"] == "a05"  # near the seed and matching the tags
    assert "b07" in [r["track_id"] for r in similar(li, tracks=["a00"], tags=["piano", "slow"], k=3, tag_weight=0.9)]
    with pytest.raises(ParameterError, match="tag 'violin' is not in the vocabulary"):
        similar(li, tags=["violin"])
    with pytest.raises(ParameterError, match="at least one seed"):
        similar(li)


def test_explanation_relations():
    assert key_relation("A", "minor", "C", "major") == "relative key"
    assert key_relation("C", "minor", "C", "major") == "parallel key"
    assert key_relation("G", "major", "C", "major") == "a fifth apart"
    assert key_relation("F#", "major", "C", "major") == "6 steps apart on the circle of fifths"
    assert tempo_relation(121, 120) == "same tempo" and tempo_relation(240, 120) == "double time"
    assert tempo_relation(60, 121) == "half time" and tempo_relation(100, 120) == "-20 BPM"


# --- CLI ------------------------------------------------------------------------------------------
def test_cli_index_and_similar(lib, capsys, tagged_lib):
    root = str(lib.root)
    assert cli(["similar", root, "--track", "x"]) == 1
    assert "no index for model" in capsys.readouterr().err
    assert cli(["index", "build", root]) == 0
    assert "8 tracks" in capsys.readouterr().out
    assert cli(["index", "info", root]) == 0
    assert "up to date" in capsys.readouterr().out
    assert cli(["index", "update", root]) == 0
    assert "+0 added, -0 removed" in capsys.readouterr().out
    tid = lib.tracks().sort_values("track_id")["track_id"].iloc[1]
    assert cli(["similar", root, "--track", tid[:8], "-k", "3", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out["results"]) == 3 and tid not in [r["track_id"] for r in out["results"]]
    assert {"track_id", "path", "artist", "title", "score", "explanation"} <= set(out["results"][0])
    assert cli(["similar", root, "--track", tid, "--track", out["results"][0]["track_id"], "-k", "2"]) == 0
    table = capsys.readouterr().out
    assert "score" in table and "shared tags" in table
    assert cli(["similar", root, "--tags", f"{TAGS[0]},{TAGS[1]}", "-k", "2", "--json", "--bpm", "0-1000"]) == 0
    assert len(json.loads(capsys.readouterr().out)["results"]) == 2
    assert cli(["similar", root, "--track", tid, "--key", "H minor"]) == 1
    assert "H minor" in capsys.readouterr().err
    assert cli(["index", "build", root, "--type", "IVF4096,Flat"]) == 1
    assert "needs at least 4096 vectors" in capsys.readouterr().err


def test_cli_standalone_index_with_out(lib, tagged_lib, capsys, tmp_path, monkeypatch):
    from mir.index import load_index

    mid, root = tagged_lib["model_id"], str(lib.root)
    assert cli(["index", "build", root, "--out", str(tmp_path / "shipped"), "--type", "exact"]) == 0
    assert f"-> {tmp_path / 'shipped'}" in capsys.readouterr().out
    index, manifest = load_index(tmp_path / "shipped")
    ids, _, _ = load_embeddings(lib, mid)
    assert sorted(index.ids) == sorted(ids) and manifest["model_id"] == mid and manifest["library"] == str(lib.root)
    assert not (lib.root / "indexes" / mid).exists()  # the library's own index is untouched
    monkeypatch.chdir(tmp_path)
    assert cli(["index", "build", root, "--out", "--model", mid[:6]]) == 0
    assert f"-> indexes/{lib.root.name}-{mid}" in capsys.readouterr().out
    assert len(load_index(tmp_path / "indexes" / f"{lib.root.name}-{mid}")[0]) == 8


def test_neighbour_agreement_by_hand():
    from mir.similar.query import neighbour_agreement

    ids = ["a", "b", "c", "d"]
    x = np.array([[1, 0], [0.9, 0.1], [0, 1], [0.1, 0.9]], np.float32)  # a~b, c~d
    index = ExactIndex().build(ids, x)
    mean, shares = neighbour_agreement(index, ids, x, ["x", "x", "y", "y"], k=1)
    assert mean == 1.0 and shares.tolist() == [1.0, 1.0, 1.0, 1.0]
    mean, shares = neighbour_agreement(index, ids, x, ["x", "y", "y", "y"], k=1)
    assert shares.tolist() == [0.0, 0.0, 1.0, 1.0] and mean == 0.5
