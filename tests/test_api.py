"""`mir serve` (mir.api): every endpoint through FastAPI's TestClient, safety paths, and a schemathesis contract run."""
from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, settings

from mir import audio
from mir.catalog import Library, analyze
from mir.catalog.predictions import track_tags
from mir.similar import build_library_index
from mir.tagging import tag
from browser import ARTIFACTS, live_server, wait_for
from helpers import GENRES, SR, TAGS, save_debug_model, synth

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # starlette's note that its TestClient will move from httpx to httpx2
    from fastapi.testclient import TestClient

from mir.api import create_app  # noqa: E402
from mir.api.guard import Guard  # noqa: E402

pytestmark = [pytest.mark.filterwarnings("ignore::DeprecationWarning"), pytest.mark.usefixtures("one_faiss_thread")]
ARTISTS = ["Ann", "Bob", "Cy"]
N_CLIPS = 8


def build_served_lib(root) -> dict:
    """8 tagged, analysed, indexed clips (debug model) and a small events file."""
    music = root / "music"
    for i in range(N_CLIPS):
        path = music / f"clip{i}.flac"
        path.parent.mkdir(parents=True, exist_ok=True)
        audio.save(path, synth(100 + i, 4.0 + (i % 3)), SR)
        audio.write_metadata(path, {"artist": ARTISTS[i % 3], "title": f"Song {i}", "genre": ["jazz", "folk"][i % 2]})
    model = root / "debug.pt"
    model_id = save_debug_model(model)
    lib = Library.open_or_create(root / "lib")
    lib.scan([music])
    analyze(lib, workers=1)
    tag(lib, model=model)
    build_library_index(lib)
    ids = sorted(lib.tracks()["track_id"])
    rows = [{"user": f"u{u}", "track": ids[(u + j) % N_CLIPS], "timestamp": f"2024-01-{1 + j:02d}", "plays": 1 + j}
            for u in range(6) for j in range(4)]
    pd.DataFrame(rows).to_csv(root / "events.csv", index=False)
    return {"root": root, "music": music, "lib": root / "lib", "model": model, "model_id": model_id, "ids": ids,
            "events": root / "events.csv"}


@pytest.fixture(scope="session")
def served(tmp_path_factory) -> dict:
    return build_served_lib(tmp_path_factory.mktemp("serve"))


@pytest.fixture(scope="module")
def client(served):
    app = create_app(served["lib"], events=str(served["events"]), rec_method="popularity")
    with TestClient(app) as c:
        _wait_for_recommender(c)
        yield c


def _wait_for_recommender(c, timeout=60.0):
    import time

    end = time.monotonic() + timeout
    while c.get("/stats").json()["recommender"]["state"] == "fitting" and time.monotonic() < end:
        time.sleep(0.05)


@pytest.fixture
def lib_copy(served, tmp_path):
    """A private copy of the library (its files stay where they are)."""
    shutil.copytree(served["lib"], tmp_path / "lib")
    return tmp_path / "lib"


def track_of(served, i: int) -> dict:
    lib = Library(served["lib"])
    return lib.track(str(served["music"] / f"clip{i}.flac")).to_dict()


def clip_bytes(served, i: int = 3) -> bytes:
    return (served["music"] / f"clip{i}.flac").read_bytes()


# --- server basics ----------------------------------------------------------------------------------
def test_health_and_request_ids(client):
    r = client.get("/health")
    assert r.status_code == 200 and r.json()["status"] == "ok"
    assert len(r.headers["x-request-id"]) == 32
    assert client.get("/health", headers={"X-Request-ID": "abc-123"}).headers["x-request-id"] == "abc-123"
    odd = client.get("/health", headers={"X-Request-ID": "no spaces please " + "x" * 80}).headers["x-request-id"]
    assert odd != "no spaces please" and len(odd) == 32


def test_errors_carry_the_request_id_and_no_cors(client):
    r = client.get("/tracks/ffffffffffff", headers={"Origin": "https://evil.example"})
    assert r.status_code == 404 and r.json()["request_id"] == r.headers["x-request-id"]
    assert "access-control-allow-origin" not in r.headers
    pre = client.options("/tracks", headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"})
    assert pre.status_code == 405 and "access-control-allow-origin" not in pre.headers


def test_access_log_is_one_json_object_per_request(client, caplog):
    with caplog.at_level(logging.INFO, logger="mir.api.access"):
        r = client.get("/tracks?limit=2", headers={"X-Request-ID": "log-me"})
    lines = [json.loads(rec.getMessage()) for rec in caplog.records if rec.name == "mir.api.access"]
    mine = [x for x in lines if x["request_id"] == "log-me"]
    assert len(mine) == 1 and mine[0]["status"] == 200 and mine[0]["path"] == "/tracks" and mine[0]["method"] == "GET"
    assert mine[0]["bytes_out"] == len(r.content) and mine[0]["ms"] >= 0


def test_stats(client, served):
    s = client.get("/stats").json()
    assert s["library"]["tracks"] == N_CLIPS and s["model_id"] == served["model_id"]
    assert s["index"] == {"exists": True, "stale": False, "added": 0, "removed": 0, "type": "Flat", "count": N_CLIPS}
    assert s["recommender"]["state"] == "ready" and s["read_only"] is False


def test_page_and_static_files(client):
    page = client.get("/")
    assert page.status_code == 200 and 'id="library-view"' in page.text
    assert client.get("/static/app.js").status_code == 200
    assert client.get("/docs").status_code == 200 and client.get("/openapi.json").json()["info"]["title"] == "mir"


# --- tracks -----------------------------------------------------------------------------------------
def test_list_search_filter_and_page(client, served):
    page = client.get("/tracks").json()
    assert page["total"] == N_CLIPS and [t["track_id"] for t in page["tracks"]] == served["ids"]
    assert page["model_id"] == served["model_id"]
    assert [t["title"] for t in client.get("/tracks", params={"q": "song 3"}).json()["tracks"]] == ["Song 3"]
    assert client.get("/tracks", params={"q": "CLIP5.FLAC"}).json()["total"] == 1
    assert {t["artist"] for t in client.get("/tracks", params={"q": "bob"}).json()["tracks"]} == {"Bob"}
    jazz = client.get("/tracks", params={"file_genre": "jazz"}).json()
    assert jazz["total"] == 4 and {t["genre"] for t in jazz["tracks"]} == {"jazz"}
    some = client.get("/tracks", params={"limit": 3, "offset": 6}).json()
    assert some["total"] == N_CLIPS and [t["track_id"] for t in some["tracks"]] == served["ids"][6:]
    t0 = page["tracks"][0]
    assert set(t0["tags"]) <= set(TAGS) and t0["genre_pred"] in GENRES
    tagged = client.get("/tracks", params={"tag": t0["tags"][0]}).json()
    assert t0["track_id"] in {t["track_id"] for t in tagged["tracks"]}
    assert all(t0["tags"][0] in t["tags"] for t in tagged["tracks"])
    bpm = t0["bpm"]
    near = client.get("/tracks", params={"bpm": f"{bpm - 0.5:.1f}-{bpm + 0.5:.1f}"}).json()["tracks"]
    assert t0["track_id"] in {t["track_id"] for t in near} and all(abs(t["bpm"] - bpm) <= 0.5 for t in near)
    key = client.get("/tracks", params={"key": f"{t0['key']} {t0['mode']}"}).json()["tracks"]
    assert all((t["key"], t["mode"]) == (t0["key"], t0["mode"]) for t in key) and key


@pytest.mark.parametrize("params", [{"limit": 0}, {"limit": 501}, {"offset": -1}, {"bpm": "fast"}, {"key": "H minor"}])
def test_list_rejects_bad_parameters(client, params):
    r = client.get("/tracks", params=params)
    assert r.status_code == 422, r.text


def test_track_detail(client, served):
    t = track_of(served, 2)
    d = client.get(f"/tracks/{t['track_id']}").json()
    stored = track_tags(Library(served["lib"]), t["hash"], served["model_id"])
    assert d["track_id"] == t["track_id"] and d["title"] == "Song 2" and d["artist"] == "Cy" and d["genre"] == "jazz"
    assert d["model_id"] == served["model_id"] and d["tags"] == stored["tags"] and d["genre_pred"] == stored["genre"]
    assert d["tag_probs"] == pytest.approx(stored["tag_probs"]) and list(d["tag_probs"]) == TAGS
    assert list(d["genre_probs"]) == GENRES and d["duration"] == pytest.approx(6.0)
    assert d["music"] is None  # the debug model has no music gate
    assert {"tempo", "key", "mode", "loudness"} <= set(d["descriptors"]) and d["descriptors"]["tempo"] > 0
    # a unique prefix works as in the CLI
    assert client.get(f"/tracks/{t['track_id'][:8]}").json()["track_id"] == t["track_id"]


@pytest.mark.parametrize("ref, status", [("ffffffffffffffff", 404), ("zz", 404), ("0", 422), ("abc", 422),
                                         ("not-an-id", 422), ("1234567g", 422)])
def test_track_refs_that_are_not_ids(client, ref, status):
    # "zz" and the like fail the route's pattern (422) - except short ones that cannot match it at all (404 route)
    r = client.get(f"/tracks/{ref}")
    assert r.status_code in ({status} if ref != "zz" else {404, 422})


def test_audio_whole_file_and_ranges(client, served):
    t = track_of(served, 1)
    data = (served["music"] / "clip1.flac").read_bytes()
    url = f"/tracks/{t['track_id']}/audio"
    whole = client.get(url)
    assert whole.status_code == 200 and whole.content == data and whole.headers["accept-ranges"] == "bytes"
    assert whole.headers["content-type"] == "audio/flac"
    part = client.get(url, headers={"Range": "bytes=100-1099"})
    assert part.status_code == 206 and part.content == data[100:1100]
    assert part.headers["content-range"] == f"bytes 100-1099/{len(data)}"
    tail = client.get(url, headers={"Range": "bytes=-500"})
    assert tail.status_code == 206 and tail.content == data[-500:]
    rest = client.get(url, headers={"Range": f"bytes={len(data) - 10}-"})
    assert rest.status_code == 206 and rest.content == data[-10:]
    beyond = client.get(url, headers={"Range": f"bytes={len(data)}-{len(data) + 10}"})
    assert beyond.status_code == 416 and beyond.headers["content-range"] == f"bytes */{len(data)}"
    assert client.get(url, headers={"Range": "bytes=500-100"}).status_code in (400, 416)
    assert client.get(url, headers={"Range": "lines=1-2"}).status_code == 400


def test_spectrogram(client, served):
    t = track_of(served, 0)
    r = client.get(f"/tracks/{t['track_id']}/spectrogram.png")
    assert r.status_code == 200 and r.headers["content-type"] == "image/png" and r.content[:8] == b"\x89PNG\r\n\x1a\n"
    assert client.get(f"/tracks/{t['track_id']}/spectrogram.png").content == r.content
    assert client.get("/tracks/ffffffffffff/spectrogram.png").status_code == 404


def test_spectrogram_of_an_unanalysed_track_is_404(lib_copy, served):
    t = track_of(served, 0)
    shutil.rmtree(lib_copy / "arrays")
    with TestClient(create_app(lib_copy)) as c:
        r = c.get(f"/tracks/{t['track_id']}/spectrogram.png")
    assert r.status_code == 404 and "mir analyze" in r.json()["detail"]


# --- similar ----------------------------------------------------------------------------------------
def test_similar_by_track_seeds_and_tags(client, served):
    a, b = served["ids"][0], served["ids"][5]
    one = client.get("/similar", params={"track": a, "k": 3}).json()
    assert one["model_id"] == served["model_id"] and len(one["results"]) == 3
    assert a not in {r["track_id"] for r in one["results"]} and all(r["explanation"] for r in one["results"])
    with_seed = client.get("/similar", params={"track": a, "k": 3, "include_seeds": True}).json()["results"]
    assert with_seed[0]["track_id"] == a and with_seed[0]["score"] == pytest.approx(1.0, abs=1e-5)
    two = client.get("/similar", params=[("track", a), ("track", b), ("k", 4)]).json()
    assert two["seeds"]["tracks"] == [a, b] and not {a, b} & {r["track_id"] for r in two["results"]}
    by_tags = client.get("/similar", params={"tags": "tag1,tag2", "k": 5}).json()["results"]
    assert len(by_tags) == 5 and set(by_tags[0]["why"]["tag_probs"]) == {"tag1", "tag2"}
    folk = client.get("/similar", params={"track": a, "k": 10, "file_genre": "folk"}).json()
    assert (folk["k"], folk["found"]) == (10, 4) and folk["shortfall"].startswith("4 of 10 results: 4 of the")
    folk = folk["results"]
    assert len(folk) == 4 and all(r["track_id"] in folk_ids(client) for r in folk)
    predicted = client.get(f"/tracks/{a}").json()["genre_pred"]
    same = client.get("/similar", params={"track": a, "k": 10, "genre": predicted}).json()["results"]
    assert {client.get(f"/tracks/{r['track_id']}").json()["genre_pred"] for r in same} <= {predicted}
    capped = client.get("/similar", params={"track": a, "k": 7, "max_per_artist": 1}).json()["results"]
    assert len({r["artist"] for r in capped}) == len(capped) == 3


def folk_ids(client) -> set:
    return {t["track_id"] for t in client.get("/tracks", params={"file_genre": "folk"}).json()["tracks"]}


@pytest.mark.parametrize("params, status", [
    ({}, 422), ({"track": "ffffffffffff"}, 404), ({"tags": "no-such-tag"}, 422), ({"track": "../../etc/passwd"}, 422),
    ({"track": "/etc/passwd"}, 422), ({"tags": "tag1", "k": 0}, 422), ({"tags": "tag1", "bpm": "x"}, 422),
    ({"tags": "tag1", "key": "Q"}, 422)])
def test_similar_refusals(client, params, status):
    r = client.get("/similar", params=params)
    assert r.status_code == status, r.text


def test_similar_to_an_uploaded_file(client, served):
    t = track_of(served, 3)
    r = client.post("/similar", params={"k": 2}, files={"file": ("clip.flac", clip_bytes(served, 3))})
    assert r.status_code == 200, r.text
    res = r.json()["results"]
    assert res[0]["track_id"] == t["track_id"] and res[0]["score"] == pytest.approx(1.0, abs=1e-4)
    raw = client.post("/similar?k=2", content=clip_bytes(served, 3), headers={"content-type": "audio/flac"})
    assert [x["track_id"] for x in raw.json()["results"]] == [x["track_id"] for x in res]


def test_stale_index_is_409_with_the_fix(lib_copy, served):
    shutil.rmtree(lib_copy / "indexes")
    with TestClient(create_app(lib_copy)) as c:
        r = c.get("/similar", params={"track": served["ids"][0]})
        assert r.status_code == 409 and "mir index build" in r.json()["detail"]
        assert c.get("/tracks").json()["total"] == N_CLIPS  # listing works from the tags alone


# --- uploads ----------------------------------------------------------------------------------------
def test_analyze_returns_what_tagging_stored(client, served):
    t = track_of(served, 4)
    stored = track_tags(Library(served["lib"]), t["hash"], served["model_id"])
    r = client.post("/analyze", files={"file": ("mine.flac", clip_bytes(served, 4), "audio/flac")})
    assert r.status_code == 200, r.text
    a = r.json()
    assert a["file"] == "mine.flac" and a["model_id"] == served["model_id"] and a["added"] is None
    assert a["tags"] == stored["tags"] and a["genre"] == stored["genre"]
    assert a["tag_probs"] == pytest.approx(stored["tag_probs"], abs=1e-5)
    assert np.allclose(a["embedding"], stored["embedding"], atol=1e-5) and a["similar"] is None
    d = client.get(f"/tracks/{t['track_id']}").json()["descriptors"]
    assert a["bpm"] == pytest.approx(d["tempo"]) and (a["key"], a["mode"]) == (d["key"], d["mode"])
    with_similar = client.post("/analyze?similar=3", content=clip_bytes(served, 4),
                               headers={"content-type": "application/octet-stream"}).json()
    assert with_similar["similar"][0]["track_id"] == t["track_id"] and len(with_similar["similar"]) == 3


def test_uploads_leave_nothing_in_the_temp_area(client, served):
    client.post("/analyze", files={"file": ("a.flac", clip_bytes(served))})
    client.post("/analyze", files={"file": ("bad.flac", b"junk" * 100)})
    assert not any((served["lib"] / "tmp" / "serve").iterdir())


@pytest.mark.parametrize("body, ctype", [(b"this is not audio" * 50, "application/octet-stream"),
                                         (b"RIFF\x00\x00\x00\x00WAVEfmt broken", "audio/wav")])
def test_non_audio_upload_is_422_with_the_decode_error(client, body, ctype):
    r = client.post("/analyze", content=body, headers={"content-type": ctype})
    assert r.status_code == 422 and "upload" in r.json()["detail"] and "format" in r.json()["detail"].lower()
    assert "tmp" not in r.json()["detail"]  # the temp path is never shown


@pytest.mark.parametrize("kwargs", [{"files": {"other": ("x.flac", b"abc")}}, {"content": b""},
                                    {"content": b"--x\r\nbroken", "headers": {"content-type": "multipart/form-data"}}])
def test_uploads_without_a_file_are_422(client, kwargs):
    assert client.post("/analyze", **kwargs).status_code == 422


def test_upload_over_the_limit_is_413(served):
    with TestClient(create_app(served["lib"], max_upload_mb=0.05)) as c:  # 52 KB; the clip is ~136 KB
        r = c.post("/analyze", files={"file": ("big.flac", clip_bytes(served))})
        assert r.status_code == 413 and "upload limit" in r.json()["detail"]
        assert r.headers["x-request-id"]
        assert c.post("/similar", content=clip_bytes(served), headers={"content-type": "audio/flac"}).status_code == 413
    temp = served["lib"] / "tmp" / "serve"
    assert not temp.exists() or not any(temp.iterdir())


def test_body_limit_stops_reading_a_stream_without_content_length(tmp_path):
    """The guard counts chunks as they arrive: a 6.4 MB chunked body under a 1 MB limit is cut off early."""
    upstream_read = []

    async def app(scope, receive, send):  # reads the whole body, like an upload endpoint
        while (await receive()).get("more_body"):
            pass
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    chunks = [b"x" * 65536] * 100

    async def receive():
        upstream_read.append(1)
        i = len(upstream_read) - 1
        return {"type": "http.request", "body": chunks[i], "more_body": i < len(chunks) - 1}

    sent = []

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/analyze", "headers": [], "query_string": b""}
    asyncio.run(Guard(app, token=None, max_body=2**20)(scope, receive, send))
    assert sent[0]["status"] == 413 and len(upstream_read) == 17  # 16 chunks = 1 MB, the 17th passes the limit


def test_add_catalogues_tags_and_indexes_the_upload(lib_copy, served, tmp_path):
    fresh = tmp_path / "new.flac"
    audio.save(fresh, synth(999, 5.0), SR)
    with TestClient(create_app(lib_copy)) as c:
        r = c.post("/analyze?add=true", files={"file": ("../../escape/new.flac", fresh.read_bytes())})
        assert r.status_code == 200, r.text
        added = r.json()["added"]
        assert c.get("/tracks").json()["total"] == N_CLIPS + 1
        assert c.get(f"/tracks/{added}").json()["model_id"] == served["model_id"]
        res = c.get("/similar", params={"track": added, "k": 1, "include_seeds": True}).json()["results"]
        assert res[0]["track_id"] == added
        assert c.get(f"/tracks/{added}/audio").content == fresh.read_bytes()
    kept = list((lib_copy / "uploads").iterdir())
    assert len(kept) == 1 and kept[0].name.endswith("-new.flac")
    assert not (tmp_path / "escape").exists() and not (lib_copy.parent / "escape").exists()


def test_read_only_refuses_add_before_reading_the_upload(served):
    with TestClient(create_app(served["lib"], read_only=True)) as c:
        r = c.post("/analyze?add=true", files={"file": ("a.flac", clip_bytes(served))})
        assert r.status_code == 403 and "read-only" in r.json()["detail"]
        assert c.post("/analyze", files={"file": ("a.flac", clip_bytes(served))}).status_code == 200
        assert c.get("/stats").json()["read_only"] is True
    assert not (served["lib"] / "uploads").exists()


# --- token ------------------------------------------------------------------------------------------
def test_token_guards_every_endpoint_but_health(served):
    with TestClient(create_app(served["lib"], token="s3cret")) as c:
        tid = served["ids"][0]
        for method, url in [("GET", "/tracks"), ("GET", f"/tracks/{tid}"), ("GET", f"/tracks/{tid}/audio"),
                            ("GET", f"/tracks/{tid}/spectrogram.png"), ("GET", f"/similar?track={tid}"),
                            ("POST", "/similar"), ("POST", "/analyze"), ("GET", "/users/u1/recommendations"),
                            ("POST", "/playlists"), ("GET", "/stats"), ("GET", "/openapi.json"), ("GET", "/docs")]:
            r = c.request(method, url)
            assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer", url
            assert c.request(method, url, headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert c.get("/health").status_code == 200
        assert c.get("/").status_code == 200 and c.get("/static/app.js").status_code == 200
        assert c.get("/tracks", headers={"Authorization": "Bearer s3cret"}).status_code == 200
        assert c.get("/tracks", params={"token": "s3cret"}).status_code == 200
        c.cookies.set("mir_token", "s3cret")
        assert c.get(f"/tracks/{tid}/audio").status_code == 200


# --- traversal --------------------------------------------------------------------------------------
@pytest.mark.parametrize("url", [
    "/tracks/..", "/tracks/../../etc/passwd", "/tracks/%2e%2e%2f%2e%2e%2fetc%2fpasswd", "/tracks/%2Fetc%2Fpasswd/audio",
    "/tracks/..%2f..%2fetc%2fpasswd/audio", "/tracks/%252e%252e%252fetc/audio", "/tracks/etc%00passwd/audio",
    "/static/../../../etc/passwd", "/static/%2e%2e/%2e%2e/%2e%2e/etc/passwd", "/static/..%2f..%2fapp.py",
    "/tracks/C:%5Cwindows/audio"])
def test_paths_never_reach_files(client, url):
    r = client.get(url)  # the client resolves plain "..", so "/tracks/.." asks for "/" (the page)
    assert r.status_code in (404, 405, 422) or r.url.path == "/", (url, r.status_code)
    assert b"root:" not in r.content and b"import" not in r.content


def test_absolute_paths_are_not_track_refs(client, served):
    path = str(served["music"] / "clip0.flac")  # a real, catalogued file: still refused as a reference
    assert client.get("/similar", params={"track": path}).status_code == 422
    assert client.post("/playlists", json={"seeds": [path]}).status_code == 422
    assert client.get(f"/tracks/{path}/audio").status_code in (404, 422)


def test_a_file_turned_into_a_symlink_is_not_served(tmp_path, served):
    music = tmp_path / "music"
    shutil.copytree(served["music"], music)
    lib = Library.open_or_create(tmp_path / "lib")
    lib.scan([music])
    secret = tmp_path / "secret.txt"
    secret.write_text("root:x:0:0 do not serve me")
    tid = lib.track(str(music / "clip0.flac"))["track_id"]
    (music / "clip0.flac").unlink()
    os.symlink(secret, music / "clip0.flac")
    with TestClient(create_app(tmp_path / "lib")) as c:
        r = c.get(f"/tracks/{tid}/audio")
        assert r.status_code == 409 and b"root:" not in r.content and "mir scan" in r.json()["detail"]
        (music / "clip0.flac").unlink()
        assert c.get(f"/tracks/{tid}/audio").status_code == 404
        (music / "clip1.flac").write_bytes(b"replaced")
        tid1 = lib.track(str(music / "clip1.flac"))["track_id"]
        assert c.get(f"/tracks/{tid1}/audio").status_code == 409


# --- recommendations and playlists ----------------------------------------------------------------
def test_recommendations(client, served):
    r = client.get("/users/u1/recommendations", params={"k": 3}).json()
    assert r["user"] == "u1" and r["known_user"] is True and r["method"] == "popularity"
    played = set(pd.read_csv(served["events"]).query("user == 'u1'")["track"])
    ids = [x["track_id"] for x in r["recommendations"]]
    assert len(ids) == 3 and not set(ids) & played and [x["rank"] for x in r["recommendations"]] == [1, 2, 3]
    assert all(x["title"].startswith("Song ") for x in r["recommendations"])
    new = client.get("/users/somebody%20new/recommendations", params={"k": 2}).json()
    assert new["known_user"] is False and len(new["recommendations"]) == 2
    assert client.get("/users/u1/recommendations", params={"k": 0}).status_code == 422


def test_recommendations_without_events_or_while_fitting(served, monkeypatch):
    with TestClient(create_app(served["lib"])) as c:
        r = c.get("/users/u1/recommendations")
        assert r.status_code == 404 and "--events" in r.json()["detail"]
    from mir.api.service import Service

    monkeypatch.setattr(Service, "start_recommender", lambda self: None)
    with TestClient(create_app(served["lib"], events=str(served["events"]))) as c:
        r = c.get("/users/u1/recommendations")
        assert r.status_code == 503 and r.headers["retry-after"] == "5"


def test_fitted_recommender_is_saved_and_read_back(served, tmp_path):
    events = tmp_path / "events.csv"
    shutil.copy(served["events"], events)
    for _ in range(2):
        with TestClient(create_app(served["lib"], events=str(events), rec_method="popularity")) as c:
            _wait_for_recommender(c)
            assert c.get("/users/u2/recommendations").status_code == 200
    saved = list((served["lib"] / "serve" / "recommenders").glob("*/model.json"))
    assert len(saved) == 1


def test_broken_events_are_reported_not_raised(served, tmp_path):
    bad = tmp_path / "events.csv"
    bad.write_text("user,track,timestamp\nu1,nothing-here,2024-01-01\n")
    with TestClient(create_app(served["lib"], events=str(bad))) as c:
        _wait_for_recommender(c)
        state = c.get("/stats").json()["recommender"]
        assert state["state"] == "failed" and "no usable event" in state["detail"]
        assert c.get("/users/u1/recommendations").status_code == 503


def test_playlists_json_m3u_and_paths(client, served):
    a, b = served["ids"][0], served["ids"][7]
    pl = client.post("/playlists", json={"seeds": [a], "length": 5}).json()
    assert pl["mode"] == "continue" and pl["seeds"] == [a] and len(pl["tracks"]) == 5
    assert a not in [t["track_id"] for t in pl["tracks"]]
    m3u = client.post("/playlists", json={"seeds": [a], "length": 5, "format": "m3u"})
    assert m3u.headers["content-type"].startswith("audio/x-mpegurl")
    lines = m3u.text.splitlines()
    assert lines[0] == "#EXTM3U" and lines[2::2] == [t["path"] for t in pl["tracks"]]
    path = client.post("/playlists", json={"seeds": [a], "to": b, "length": 4}).json()
    assert path["mode"] == "path" and [path["tracks"][0]["track_id"], path["tracks"][-1]["track_id"]] == [a, b]


@pytest.mark.parametrize("body, status", [
    ({"seeds": []}, 422), ({"seeds": ["ffffffffffff"]}, 404), ({"seeds": ["x" * 8]}, 422),
    ({"seeds": ["SEED", "SEED2"], "to": "SEED3"}, 422), ({"seeds": ["SEED"], "length": 0}, 422),
    ({"seeds": ["SEED"], "format": "pls"}, 422), ({"seeds": ["SEED"], "surprise": 1}, 422)])
def test_playlist_refusals(client, served, body, status):
    ids = served["ids"]
    body = json.loads(json.dumps(body).replace("SEED3", ids[3]).replace("SEED2", ids[2]).replace("SEED", ids[1]))
    assert client.post("/playlists", json=body).status_code == status


# --- CLI --------------------------------------------------------------------------------------------
def test_cli_passes_its_options_to_the_server(served, monkeypatch):
    import mir.api
    from mir.cli.main import main as cli

    seen = {}
    monkeypatch.setattr(mir.api, "serve", lambda lib, **kw: seen.update(lib=lib, **kw))
    monkeypatch.setenv("MIR_TOKEN", "from-env")
    assert cli(["serve", str(served["lib"]), "--port", "8123", "--read-only", "--max-upload-mb", "5",
                "--events", str(served["events"]), "--method", "als"]) == 0
    assert seen == {"lib": str(served["lib"]), "host": "127.0.0.1", "port": 8123, "workers": 1, "token": "from-env",
                    "read_only": True, "max_upload_mb": 5.0, "events": str(served["events"]), "rec_method": "als",
                    "model": None}
    assert cli(["serve", str(served["lib"]), "--port", "0"]) == 1
    assert cli(["serve", str(served["lib"] / "nope")]) == 1


# --- contract ---------------------------------------------------------------------------------------
def test_openapi_contract(served):
    """Generated requests against the app's own OpenAPI schema (schemathesis, 15 examples per operation):
    no 5xx, and status codes, content types and bodies as documented."""
    import schemathesis
    from hypothesis import given
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import (content_type_conformance, response_schema_conformance,
                                                   status_code_conformance)

    app = create_app(served["lib"], events=str(served["events"]), rec_method="popularity", read_only=True)
    failures, operations = [], []
    with TestClient(app) as c:  # runs the app's startup (the recommender fit); schemathesis calls the app in-process
        _wait_for_recommender(c)
        schema = schemathesis.openapi.from_asgi("/openapi.json", app)
        for result in schema.get_all_operations():
            operation = result.ok()
            operations.append(f"{operation.method.upper()} {operation.path}")

            @settings(max_examples=15, deadline=None, derandomize=True, database=None,
                      suppress_health_check=list(HealthCheck))
            @given(case=operation.as_strategy())
            def check(case):
                case.call_and_validate(checks=[not_a_server_error, status_code_conformance, content_type_conformance,
                                               response_schema_conformance])

            try:
                check()
            except Exception as exc:  # every operation runs; failures are reported together
                failures.append(f"{operations[-1]}: {exc}")
    assert len(operations) == 17 and not failures, "\n\n".join(failures)


# --- a real server and a real browser ----------------------------------------------------------------
def test_browser_library_track_upload_and_user_pages(browser, served):
    from selenium.webdriver.common.by import By

    css = lambda sel: browser.find_elements(By.CSS_SELECTOR, sel)  # noqa: E731
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    app = create_app(served["lib"], events=str(served["events"]), rec_method="popularity", read_only=True)
    with live_server(app) as url:
        browser.get(url + "/#/")
        wait_for(browser, lambda d: len(css("#tracks tbody tr")) == N_CLIPS)
        box = css("#q")[0]
        box.send_keys("Song 3")
        css("#search button")[0].click()
        wait_for(browser, lambda d: len(css("#tracks tbody tr")) == 1)
        css("a.track-link")[0].click()
        wait_for(browser, lambda d: css("#track-title")[0].text == "Ann – Song 3")
        wait_for(browser, lambda d: len(css("#similar li")) == N_CLIPS - 1 and len(css("#tags .tagbar")) == len(TAGS))
        # the audio element loads, plays and seeks (range requests)
        state = browser.execute_async_script("""
            const done = arguments[arguments.length - 1], a = document.getElementById('player');
            a.muted = true;
            const played = () => a.currentTime > 0 ? (a.removeEventListener('timeupdate', played),
                a.addEventListener('seeked', () => done({ready: a.readyState, duration: a.duration, seeked: a.currentTime,
                                                         error: a.error && a.error.code}), {once: true}),
                a.currentTime = 2.5) : null;
            a.addEventListener('timeupdate', played);
            a.play().catch((e) => done({error: String(e)}));""")
        assert state.get("error") is None and state["ready"] >= 1, state
        assert state["duration"] == pytest.approx(4.0, abs=0.05) and state["seeked"] == pytest.approx(2.5, abs=0.3)
        widths = [b.get_attribute("style") for b in css("#tags .tagbar .fill")]
        assert len(widths) == len(TAGS) and all(w.startswith("width: ") for w in widths)
        img = browser.execute_script("const i = document.getElementById('spectrogram');"
                                     "return i.complete ? [i.naturalWidth, i.naturalHeight] : null;")
        wait_for(browser, lambda d: d.execute_script("return document.getElementById('spectrogram').naturalWidth") > 0)
        assert img is None or img[0] == 800
        assert all(li.find_elements(By.TAG_NAME, "audio") for li in css("#similar li"))
        assert css("#track-music")[0].text == "–"  # the debug model has no music gate
        browser.save_screenshot(str(ARTIFACTS / "serve-track.png"))

        browser.get(url + "/#/upload")
        css("#file")[0].send_keys(str(served["music"] / "clip5.flac"))
        wait_for(browser, lambda d: css("#upload-result")[0].is_displayed() and len(css("#upload-similar li")) >= 5)
        assert len(css("#upload-tags .tagbar")) == len(TAGS)
        assert css("#upload-similar li a")[0].text == "Cy – Song 5"  # the file itself is in the library: nearest first
        assert css("#upload-music")[0].text == "–"
        browser.save_screenshot(str(ARTIFACTS / "serve-upload.png"))

        browser.get(url + "/#/user/u1")
        wait_for(browser, lambda d: len(css("#recs li")) >= 1 and css("#make-playlist")[0].is_enabled())
        css("#make-playlist")[0].click()
        wait_for(browser, lambda d: len(css("#playlist li")) >= 3 and css("#m3u")[0].is_displayed())
        browser.save_screenshot(str(ARTIFACTS / "serve-user.png"))
        errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"] if hasattr(browser, "get_log") else []
        assert not errors, errors


def test_browser_asks_for_the_token(browser, served):
    from selenium.webdriver.common.by import By

    css = lambda sel: browser.find_elements(By.CSS_SELECTOR, sel)  # noqa: E731
    with live_server(create_app(served["lib"], token="let-me-in")) as url:
        browser.delete_all_cookies()
        browser.get(url + "/#/")
        wait_for(browser, lambda d: css("#token-view")[0].is_displayed())
        css("#token")[0].send_keys("let-me-in")
        css("#token-form button")[0].click()
        wait_for(browser, lambda d: len(css("#tracks tbody tr")) == N_CLIPS)
        browser.delete_all_cookies()


def test_real_server_stops_a_chunked_upload_at_the_limit(served):
    import httpx

    sent = []

    def body():
        for _ in range(1024):  # 64 MB in 64 KB chunks, no Content-Length
            sent.append(1)
            yield b"\0" * 65536

    with live_server(create_app(served["lib"], max_upload_mb=1)) as url:
        try:
            r = httpx.post(url + "/analyze", content=body(), headers={"content-type": "audio/wav"}, timeout=30)
            assert r.status_code == 413 and r.headers["x-request-id"]
        except httpx.TransportError:  # the server may close before the client has written everything
            pass
        assert len(sent) < 256  # the server stopped reading near 1 MB (the rest is what socket buffers took)
        assert httpx.get(url + "/health").status_code == 200
