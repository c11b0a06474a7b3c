"""`mir serve` generation jobs: POST /generate, GET /jobs/{id} and its audio, restarts, refusals, the token."""
from __future__ import annotations

import json
import shutil
import time
import warnings

import pytest

from mir import audio
from mir.catalog import Library, analyze
from mir.generate import train_generator
from mir.similar import build_library_index
from mir.tagging import tag
from helpers import SR, TAGS, clicks, save_debug_model

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from mir.api import create_app  # noqa: E402

pytestmark = [pytest.mark.filterwarnings("ignore::DeprecationWarning"), pytest.mark.usefixtures("one_faiss_thread")]
N_CLIPS = 6


@pytest.fixture(scope="module")
def gen_served(tmp_path_factory) -> dict:
    """6 click tracks, analysed (beats), tagged by a debug model, indexed, with a debug generator."""
    root = tmp_path_factory.mktemp("servegen")
    for i in range(N_CLIPS):
        audio.save(root / "music" / f"clip{i}.flac", clicks(104 + 4 * i, 10.0, pitch=196.0 * 2 ** (i / 12), seed=i), SR)
    lib = Library.open_or_create(root / "lib")
    lib.scan([root / "music"])
    analyze(lib, workers=1)
    save_debug_model(root / "tagger.pt")
    tag(lib, model=root / "tagger.pt")
    build_library_index(lib)
    train_generator(lib, preset="debug", epochs=1, seed=0)
    return {"root": root, "lib": root / "lib", "ids": sorted(lib.tracks()["track_id"])}


@pytest.fixture
def lib_path(gen_served, tmp_path):
    shutil.copytree(gen_served["lib"], tmp_path / "lib")
    return tmp_path / "lib"


def wait_done(c, job_id: str, timeout: float = 60.0) -> dict:
    end = time.monotonic() + timeout
    while True:
        job = c.get(f"/jobs/{job_id}").json()
        if job["status"] in ("done", "failed") or time.monotonic() > end:
            return job
        time.sleep(0.05)


def test_generate_job_runs_and_serves_its_audio_with_ranges(lib_path, gen_served):
    seeds = gen_served["ids"][:2]
    with TestClient(create_app(lib_path)) as c:
        r = c.post("/generate", json={"tracks": seeds, "duration": 10, "seed": 3, "neighbours": 6})
        assert r.status_code == 202, r.text
        job = r.json()
        assert job["status"] in ("queued", "running") and r.headers["location"] == f"/jobs/{job['id']}"
        assert job["params"]["track_ids"] == seeds and "server" not in job
        done = wait_done(c, job["id"])
        assert done["status"] == "done" and done["progress"] == 1.0 and done["error"] is None, done
        prov = done["result"]["provenance"]
        assert done["result"]["audio"] == f"/jobs/{job['id']}/audio"
        assert prov["seeds"]["tracks"] == seeds and prov["seed"] == 3 and prov["duration"] >= 10
        assert set(prov["sources"]) <= set(gen_served["ids"])
        data = (lib_path / "serve" / "jobs" / f"{job['id']}.wav").read_bytes()
        whole = c.get(done["result"]["audio"])
        assert whole.status_code == 200 and whole.content == data and whole.headers["content-type"] == "audio/wav"
        part = c.get(done["result"]["audio"], headers={"Range": "bytes=100-1099"})
        assert part.status_code == 206 and part.content == data[100:1100]
        assert part.headers["content-range"] == f"bytes 100-1099/{len(data)}"
        y, sr = audio.load(lib_path / "serve" / "jobs" / f"{job['id']}.wav"), SR
        assert len(y) == pytest.approx(prov["duration"] * sr, abs=2)
        # the same request again gives the same piece (the seed decides)
        again = wait_done(c, c.post("/generate", json={"tracks": seeds, "duration": 10, "seed": 3,
                                                       "neighbours": 6}).json()["id"])
        assert again["result"]["provenance"]["beats"] == prov["beats"]
        by_tags = wait_done(c, c.post("/generate", json={"tags": [TAGS[0]], "duration": 10}).json()["id"])
        assert by_tags["status"] == "done" and by_tags["result"]["provenance"]["seeds"]["tags"] == [TAGS[0]], by_tags


def test_restart_fails_running_jobs_and_keeps_finished_ones(lib_path, gen_served):
    with TestClient(create_app(lib_path)) as c:
        job = wait_done(c, c.post("/generate", json={"tracks": gen_served["ids"][:1], "duration": 10}).json()["id"])
        assert job["status"] == "done"
    jobs = lib_path / "serve" / "jobs"
    record = json.loads((jobs / f"{job['id']}.json").read_text())
    running = {**record, "id": "0" * 32, "status": "running", "progress": 0.4, "result": None, "finished": None}
    (jobs / f"{'0' * 32}.json").write_text(json.dumps(running))  # what a killed server leaves behind
    with TestClient(create_app(lib_path)) as c:
        failed = c.get(f"/jobs/{'0' * 32}").json()
        assert failed["status"] == "failed" and "server stopped" in failed["error"]
        kept = c.get(f"/jobs/{job['id']}").json()
        assert kept["status"] == "done" and kept["result"] == job["result"]
        assert c.get(f"/jobs/{job['id']}/audio").status_code == 200
        assert c.get(f"/jobs/{'0' * 32}/audio").status_code == 409
    assert json.loads((jobs / f"{'0' * 32}.json").read_text())["status"] == "failed"  # written down at start


@pytest.mark.parametrize("body, status, words", [
    ({}, 422, "at least one seed"),
    ({"tracks": ["ffffffffffffffff"]}, 404, "ffffffffffffffff"),
    ({"tracks": ["../../etc/passwd"]}, 422, "not a track id"),
    ({"tags": ["piano"], "key": "H minor"}, 422, "H minor"),
    ({"tags": ["piano"], "filters": {"bpm": "fast"}}, 422, "fast"),
    ({"tags": ["piano"], "duration": 5}, 422, "duration"),
    ({"tags": ["piano"], "surprise": 1}, 422, "surprise"),
    ({"user": "u1"}, 404, "--events"),
])
def test_generate_refusals(gen_served, body, status, words):
    with TestClient(create_app(gen_served["lib"])) as c:
        r = c.post("/generate", json=body)
        assert r.status_code == status and words in r.text, r.text
        assert c.get(f"/jobs/{'a' * 32}").status_code == 404 and c.get("/jobs/nope").status_code == 422


def test_generate_needs_a_generator_and_beats(lib_path, gen_served):
    (lib_path / "generator.pt").unlink()
    with TestClient(create_app(lib_path)) as c:
        r = c.post("/generate", json={"tags": ["piano"]})
        assert r.status_code == 409 and "mir train-generator" in r.json()["detail"]
    shutil.rmtree(lib_path / "stages" / "beats")
    (lib_path / "generator.pt").write_bytes(b"")  # present: now the beats are what is missing
    with TestClient(create_app(lib_path)) as c:
        r = c.post("/generate", json={"tags": ["piano"]})
        assert r.status_code == 409 and "mir analyze" in r.json()["detail"], r.text


def test_read_only_and_token(gen_served):
    with TestClient(create_app(gen_served["lib"], read_only=True)) as c:
        r = c.post("/generate", json={"tags": ["piano"]})
        assert r.status_code == 403 and "read-only" in r.json()["detail"]
    assert not (gen_served["lib"] / "serve" / "jobs").exists()
    with TestClient(create_app(gen_served["lib"], token="s3cret")) as c:
        for method, url in [("POST", "/generate"), ("GET", f"/jobs/{'a' * 32}"), ("GET", f"/jobs/{'a' * 32}/audio")]:
            assert c.request(method, url).status_code == 401, url
        assert c.get(f"/jobs/{'a' * 32}", headers={"Authorization": "Bearer s3cret"}).status_code == 404


def test_page_has_the_generate_form(gen_served):
    with TestClient(create_app(gen_served["lib"])) as c:
        page = c.get("/").text
        assert 'id="generate-form"' in page and 'id="gen-progress"' in page and 'id="gen-player"' in page
        js = c.get("/static/app.js").text
        assert "/generate" in js and "/jobs/${job.id}" in js


def test_jobs_are_listed_and_finished_ones_removed(lib_path, gen_served):
    with TestClient(create_app(lib_path)) as c:
        assert c.get("/jobs").json() == {"total": 0, "jobs": []}
        first = wait_done(c, c.post("/generate", json={"tracks": gen_served["ids"][:1], "duration": 10}).json()["id"])
        second = wait_done(c, c.post("/generate", json={"tags": [TAGS[0]], "duration": 10}).json()["id"])
        listed = c.get("/jobs").json()
        assert listed["total"] == 2 and [j["id"] for j in listed["jobs"]] == [second["id"], first["id"]]
        assert [j["id"] for j in c.get("/jobs?limit=1&offset=1").json()["jobs"]] == [first["id"]]
        assert c.get("/jobs?status=failed").json() == {"total": 0, "jobs": []}
        assert c.get("/jobs?status=nope").status_code == 422
        assert c.post(f"/jobs/{first['id']}/cancel").status_code == 409  # already done
        jobs = lib_path / "serve" / "jobs"
        assert (jobs / f"{first['id']}.wav").is_file()
        assert c.delete(f"/jobs/{first['id']}").status_code == 204
        assert not list(jobs.glob(f"{first['id']}*")) and c.get(f"/jobs/{first['id']}").status_code == 404
        assert c.delete(f"/jobs/{first['id']}").status_code == 404 and c.post(f"/jobs/{'a' * 32}/cancel").status_code == 404
        assert c.get("/jobs").json()["total"] == 1
    with TestClient(create_app(lib_path, read_only=True)) as c:
        assert c.delete(f"/jobs/{second['id']}").status_code == 403
        assert c.post(f"/jobs/{second['id']}/cancel").status_code == 403
        assert c.get("/jobs").json()["total"] == 1


def blocking_run(gate):
    """A job body that makes progress until ``gate`` is set, then writes a file."""
    def run(params, out, progress):
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(b"partial")
        while not gate.wait(0.01):
            progress(0.5, "sampling")
        progress(1.0, "done")
        return {"params": params}
    return run


def wait_status(jobs, job_id, status, timeout=10.0):
    end = time.monotonic() + timeout
    while jobs.get(job_id)["status"] != status:
        assert time.monotonic() < end, jobs.get(job_id)
        time.sleep(0.01)
    return jobs.get(job_id)


def test_cancel_a_queued_and_a_running_job(tmp_path):
    import threading

    from mir.api.jobs import JobFinished, Jobs

    gate = threading.Event()
    jobs = Jobs(tmp_path / "jobs", blocking_run(gate))
    running, queued = jobs.submit({"n": 1}), jobs.submit({"n": 2})
    wait_status(jobs, running["id"], "running")
    now = jobs.cancel(queued["id"])
    assert now["status"] == "cancelled" and jobs.get(queued["id"])["status"] == "cancelled"
    asked = jobs.cancel(running["id"])
    assert asked["status"] == "running" and asked["cancel_requested"]
    (jobs.folder / f"{'0' * 32}.json").write_text("{not json")  # a damaged record is left out of the list
    assert {j["id"] for j in jobs.records()} == {running["id"], queued["id"]}
    stopped = wait_status(jobs, running["id"], "cancelled")
    assert "cancelled by a client" in stopped["error"] and stopped["result"] is None
    assert not jobs.audio_path(running["id"]).exists() and not jobs.cancel_path(running["id"]).exists()
    with pytest.raises(JobFinished, match="already cancelled"):
        jobs.cancel(running["id"])
    gate.set()  # the next job runs to the end
    done = jobs.submit({"n": 3})
    assert wait_status(jobs, done["id"], "done")["result"]["provenance"] == {"params": {"n": 3}}
    assert jobs.get(queued["id"])["started"] is None  # the cancelled queued job never started
    assert [j["id"] for j in jobs.records()] == [done["id"], queued["id"], running["id"]]
    assert [j["id"] for j in jobs.records("cancelled")] == [queued["id"], running["id"]]


def test_a_job_queued_in_another_server_process_is_cancelled_through_the_folder(tmp_path):
    import threading

    from mir.api.jobs import Jobs

    gate = threading.Event()
    owner, other = Jobs(tmp_path / "jobs", blocking_run(gate)), Jobs(tmp_path / "jobs", blocking_run(gate))
    busy, waiting = owner.submit({"n": 1}), owner.submit({"n": 2})
    wait_status(owner, busy["id"], "running")
    other._orphaned = lambda job: False  # in one test process the owner's pid is alive by construction
    assert other.cancel(waiting["id"])["status"] == "cancelled"
    assert other.cancel(busy["id"])["cancel_requested"]  # the owner stops it at its next step
    wait_status(owner, busy["id"], "cancelled")
    gate.set()
    last = owner.submit({"n": 3})
    wait_status(owner, last["id"], "done")
    assert owner.get(waiting["id"])["status"] == "cancelled" and owner.get(waiting["id"])["started"] is None


def test_browser_generates_a_piece_and_cancels_a_job(browser, lib_path, gen_served):
    """The generate page: a real piece plays with its sources listed; a job held running is cancelled by the button."""
    import threading

    from selenium.webdriver.common.by import By

    from browser import ARTIFACTS, live_server, wait_for

    css = lambda sel: browser.find_elements(By.CSS_SELECTOR, sel)  # noqa: E731
    # read the job list in one script call: the page re-renders it, so elements found first can go stale
    jobs_shown = lambda: browser.execute_script(  # noqa: E731
        "return [...document.querySelectorAll('#jobs li')].map((li) => [li.className, "
        "[...li.querySelectorAll('button')].map((b) => b.textContent), li.querySelectorAll('audio').length]);")
    app = create_app(lib_path)
    with live_server(app) as url:
        browser.get(f"{url}/#/generate/{gen_served['ids'][0]}")
        wait_for(browser, lambda d: css("#gen-tracks")[0].get_attribute("value") == gen_served["ids"][0])
        duration = css("#gen-duration")[0]
        duration.clear()
        duration.send_keys("10")
        css("#generate-form button")[0].click()
        wait_for(browser, lambda d: css("#gen-result")[0].is_displayed(), timeout=60)
        assert css("#gen-status")[0].text.startswith("done: job ") and not css("#gen-cancel")[0].is_displayed()
        assert "BPM" in css("#gen-summary")[0].text and len(css("#gen-sources li")) >= 1
        wait_for(browser, lambda d: d.execute_script("return document.getElementById('gen-player').readyState") >= 1)
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        browser.save_screenshot(str(ARTIFACTS / "serve-generate.png"))

        gate = threading.Event()
        app.state.service.jobs.run = blocking_run(gate)  # the next job runs until cancelled
        css("#generate-form button")[0].click()
        wait_for(browser, lambda d: css("#gen-cancel")[0].is_displayed() and "running" in css("#gen-status")[0].text)
        css("#gen-cancel")[0].click()
        wait_for(browser, lambda d: css("#gen-status")[0].text.startswith("cancelled: job "))
        job_id = css("#gen-status")[0].text.split()[-1]
        assert app.state.service.jobs.get(job_id)["status"] == "cancelled" and not css("#gen-result")[0].is_displayed()
        gate.set()
        # the recent pieces: newest first, a player for the done one, Remove for finished ones
        wait_for(browser, lambda d: [c for c, _, _ in jobs_shown()] == ["job cancelled", "job done"])
        assert jobs_shown() == [["job cancelled", ["Remove"], 0], ["job done", ["Remove"], 1]]
        css("#jobs li.cancelled button")[0].click()
        wait_for(browser, lambda d: [c for c, _, _ in jobs_shown()] == ["job done"])
        assert app.state.service.jobs.get(job_id) is None
