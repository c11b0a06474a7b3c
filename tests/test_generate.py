"""Generation: the beats stage, the generator's training, constrained sampling, rendering, provenance, CLI."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from mir import audio
from mir.catalog import Library, analyze
from mir.cli.main import main as cli
from mir.errors import CatalogError, ModelError, ParameterError
from mir.features import TrackAnalyzer, tempo
from mir.features.beats import BeatState, meter_from_strength
from mir.features.descriptors import PITCH_CLASSES, chroma_fft_size, key_from_chroma
from mir.generate import Constraints, find_provenance, generate, train_generator
from mir.generate.model import load_generator
from mir.generate.render import equal_power, fit_shifts, limit
from mir.generate.sample import Pool, longest_source_run, max_share, nucleus, sample_piece
from mir.generate.segments import load_segments
from mir.similar import build_library_index
from mir.tagging import tag
from helpers import SR, clicks, save_debug_model

pytestmark = pytest.mark.usefixtures("one_faiss_thread")

N_CLIPS = 8


def beat_result(y: np.ndarray) -> dict:
    state = BeatState()
    an = TrackAnalyzer(sr=SR, on_frames=state.frames, on_chroma=state.chroma)
    an.update(y)
    desc = an.finalize()
    return state.result(sr=SR, hop_length=512, chroma_hop=chroma_fft_size(SR) // 2, tempo=desc["tempo"])


# --- beats ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("meter", [4, 3])
def test_beats_downbeats_and_features_of_a_click_track(meter):
    r = beat_result(clicks(120, 12, meter=meter))
    truth = np.arange(0.25, 11.9, 0.5)
    err = np.abs(r["beats"][:, None] - truth[None, :]).min(axis=1)
    assert len(r["beats"]) >= len(truth) - 2 and err.max() < 0.03  # within about one hop of a click
    assert r["meter"] == meter
    on_accent = np.round((r["beats"] - 0.25) / 0.5).astype(int) % meter == 0
    assert (r["bar_pos"][on_accent] == 0).all() and (r["bar_pos"][~on_accent] != 0).all()
    assert r["features"].shape == (len(r["beats"]) - 1, 30) and np.isfinite(r["features"]).all()
    assert meter_from_strength(np.ones(20)) == 4  # no accents: the default


@pytest.fixture(scope="module")
def gen_lib(tmp_path_factory) -> dict:
    """8 click tracks (104-132 BPM, different pitches), analysed, tagged by a debug model, indexed,
    and a debug generator trained on them (read-only; copy before writing)."""
    root = tmp_path_factory.mktemp("generate")
    music = root / "music"
    music.mkdir()
    for i in range(N_CLIPS):
        audio.save(music / f"clip{i}.flac", clicks(104 + 4 * i, 10.0, pitch=196.0 * 2 ** (i / 12), seed=i), SR)
    lib = Library.open_or_create(root / "lib")
    lib.scan([music])
    analyze(lib, workers=1)
    save_debug_model(root / "tagger.pt")
    tag(lib, model=root / "tagger.pt")
    build_library_index(lib)
    metrics = train_generator(lib, preset="debug", epochs=3, seed=0)
    return {"root": root, "lib": root / "lib", "metrics": metrics}


@pytest.fixture
def lib(gen_lib, tmp_path) -> Library:
    shutil.copytree(gen_lib["lib"], tmp_path / "lib")
    return Library(tmp_path / "lib")


def test_analyze_stores_the_beats_stage(gen_lib):
    seg = load_segments(Library(gen_lib["lib"]))
    assert len(seg.tracks) == N_CLIPS and (seg.tracks["n"] >= 15).all()
    assert len(seg) == seg.tracks["n"].sum() and seg.features.shape == (len(seg), 30)
    assert (seg.end > seg.start).all() and set(np.unique(seg.bar_pos)) == {0, 1, 2, 3}
    succ = seg.successor()
    assert (succ[succ >= 0] == np.flatnonzero(succ >= 0) + 1).all()


def test_no_beats_stage_says_run_analyze(tmp_path):
    audio.save(tmp_path / "m" / "a.wav", clicks(120, 3.0), SR)
    lib = Library.open_or_create(tmp_path / "lib")
    lib.scan([tmp_path / "m"])
    with pytest.raises(CatalogError, match="run `mir analyze"):
        load_segments(lib)


# --- training -------------------------------------------------------------------------------------
def test_debug_generator_checkpoint_and_resume(gen_lib, lib):
    m = gen_lib["metrics"]
    assert m["epochs_run"] == 3 and m["preset"] == "debug" and m["tracks"]["test"] >= 1
    assert set(m["baselines"]) == {"bigram", "neighbour_unigram"} and m["test_perplexity"] > 1
    assert set(m["mixture"]["weights"]) == {"transformer", "bigram", "cache"}
    assert np.isclose(sum(m["mixture"]["weights"].values()), 1.0) and m["transformer_perplexity"] > 1
    loaded = load_generator(lib.root / "generator.pt")  # weights-only load
    assert loaded.model_id == m["model_id"] and loaded.config.d_model == 16
    assert np.allclose(loaded.mixture.weights, list(m["mixture"]["weights"].values()))
    p = loaded.mixture.probs(np.full(loaded.codebook.size, 1 / loaded.codebook.size), [0, 1, 0])
    assert p.shape == (loaded.codebook.size,) and np.isclose(p.sum(), 1.0)  # what sampling draws from
    assert loaded.codebook.size == loaded.config.n_tokens
    r = train_generator(lib, preset="debug", epochs=5, seed=0)  # resumes from generator.pt.last.pt
    assert r["epochs_run"] == 5 and [h["epoch"] for h in r["history"]] == [1, 2, 3, 4, 5]
    with pytest.raises(ModelError, match="other settings"):
        train_generator(lib, preset="debug", epochs=5, seed=1)


def test_cli_train_generator_reports_the_mixture(lib, tmp_path, capsys):
    assert cli(["train-generator", str(lib.root), "--preset", "debug", "--epochs", "1", "--out", str(tmp_path / "g.pt")]) == 0
    out = capsys.readouterr().out
    assert "held-out token perplexity: model" in out and "fitted on validation" in out and "Transformer (" in out
    assert load_generator(tmp_path / "g.pt").mixture is not None


def test_mixture_weights_are_fitted_to_the_better_component(rng):
    from mir.generate.mixture import MAX_CACHE, Mixture, cache_probs, fit_mixture, fit_weights

    # component 0 gives the observed tokens 0.6, component 1 gives them 0.1: all weight on component 0
    w, nll = fit_weights(np.c_[np.full(200, 0.6), np.full(200, 0.1)])
    assert np.allclose(w, [1, 0]) and np.isclose(nll, -np.log(0.6))
    # each clearly better on half the tokens: the mixture beats both
    p = np.r_[np.c_[np.full(100, 0.9), np.full(100, 0.01)], np.c_[np.full(100, 0.01), np.full(100, 0.9)]]
    w, nll = fit_weights(p)
    assert np.allclose(w, [0.5, 0.5]) and nll < min(-np.log(p[:, 0]).mean(), -np.log(p[:, 1]).mean())
    # a sequence that repeats one token: the cache wins over a uniform Transformer and bigram
    k, seq = 8, np.zeros(60, np.int64)
    uni, table = np.full(k, 1 / k), np.full((k + 1, k), 1 / k)
    assert np.allclose(cache_probs(np.array([3, 3]), k, uni, 1.0, 1.0)[1], (np.eye(k)[3] + uni) / 2)
    val = {"model": np.full(60, 1 / k), "bigram": np.full(60, 1 / k)}
    mix, nll = fit_mixture(val, table, uni, [seq], max_cache=1.0)
    assert np.allclose(mix.weights, [0, 0, 1]) and nll < np.log(k) / 2
    capped, capped_nll = fit_mixture(val, table, uni, [seq])  # the default cap on the cache's weight
    assert np.isclose(capped.weights[2], MAX_CACHE) and nll < capped_nll < np.log(k)
    step = mix.probs(np.full(k, 1 / k), [0, 0, 0])  # the distribution sampling draws from
    assert step.argmax() == 0 and np.isclose(step.sum(), 1.0)
    assert np.allclose(Mixture.from_dict(mix.to_dict()).probs(np.full(k, 1 / k), [0, 0, 0]), step)



def test_sampling_cache_equals_the_fitted_cache(rng):
    """Mixture.probs (sampling, one step at a time) and cache_probs (fitting, a whole sequence) agree."""
    from mir.generate.mixture import Mixture, cache_probs

    k = 6
    uni = rng.dirichlet(np.ones(k))
    tokens = rng.integers(0, k, size=40)
    for gamma, decay in ((1.0, 1.0), (3.0, 0.95)):
        fitted = cache_probs(tokens, k, uni, gamma, decay)
        mix = Mixture(np.array([0.0, 0.0, 1.0]), np.full((k + 1, k), 1 / k), uni, gamma, decay)
        for t in (0, 1, 7, 39):
            assert np.allclose(mix.probs(np.full(k, 1 / k), tokens[:t].tolist()), fitted[t])


# --- sampling -------------------------------------------------------------------------------------
def make_pool(n_tracks: int, per_track: int, k: int, rng) -> Pool:
    track = np.repeat(np.arange(n_tracks), per_track)
    succ = np.where(np.r_[track[1:] == track[:-1], False], np.arange(1, len(track) + 1), -1)
    pred = np.full(len(track), -1)
    pred[succ[succ >= 0]] = np.flatnonzero(succ >= 0)
    return Pool(track, rng.integers(0, k, len(track)), np.tile(np.arange(per_track) % 4, n_tracks), succ, pred,
                rng.standard_normal((len(track), 5)).astype(np.float32))


def test_constraints_hold_during_sampling(rng):
    pool = make_pool(6, 24, 10, rng)

    def greedy_copy(tokens, bars):  # a model that wants track 0's tokens in source order
        logits = np.full(10, -5.0)
        logits[pool.token[len(tokens) % 24]] = 5.0
        return logits

    for seed in range(5):
        picks = sample_piece(greedy_copy, pool, 24, meter=4, rng=np.random.default_rng(seed), temperature=0.5)
        assert longest_source_run(pool.track[picks], picks) <= 4
        assert max_share(pool.track[picks]) <= 0.25
        assert (pool.bar_pos[picks] == np.arange(24) % 4).all()  # every beat on its bar position
    a = sample_piece(greedy_copy, pool, 24, meter=4, rng=np.random.default_rng(7))
    b = sample_piece(greedy_copy, pool, 24, meter=4, rng=np.random.default_rng(7))
    assert (a == b).all()
    with pytest.raises(ParameterError, match="retrieve at least 5"):
        sample_piece(greedy_copy, make_pool(4, 24, 10, rng), 21, meter=4, rng=rng)  # 5 beats each at most
    aaba = sample_piece(lambda t, b: np.zeros(10), pool, 64, meter=4, rng=np.random.default_rng(1), structure="AABA",
                        constraints=Constraints(max_share=0.3))
    assert (pool.token[aaba[:32]] == pool.token[aaba[32:64]]).mean() > 0.8  # A repeats (where constraints allow)


def test_continuity_steers_tokens_toward_smooth_seams(rng):
    from mir.generate.sample import seam_cost

    pool = make_pool(8, 32, 12, rng)

    def mean_seam(picks):
        return np.mean([seam_cost(pool, np.array([b]), a)[0] for a, b in zip(picks[:-1], picks[1:])])

    flat = lambda tokens, bars: np.zeros(12)  # noqa: E731 - a model with no opinion
    costs = {c: [mean_seam(sample_piece(flat, pool, 48, meter=4, rng=np.random.default_rng(s),
                                        constraints=Constraints(continuity=c))) for s in range(4)] for c in (0.0, 4.0)}
    assert max(costs[4.0]) < min(costs[0.0])
    picks = sample_piece(flat, pool, 48, meter=4, rng=np.random.default_rng(0), constraints=Constraints(continuity=4.0))
    assert longest_source_run(pool.track[picks], picks) <= 4 and max_share(pool.track[picks]) <= 0.25


def test_nucleus_keeps_the_top_mass_of_allowed_tokens():
    p = nucleus(np.log([0.5, 0.3, 0.15, 0.05]), np.array([True, True, True, False]), temperature=1.0, top_p=0.7)
    assert np.allclose(p, [0.5 / 0.8, 0.3 / 0.8, 0, 0])
    with pytest.raises(ParameterError, match="temperature"):
        nucleus(np.zeros(3), np.ones(3, bool), temperature=0, top_p=0.9)


def test_render_helpers():
    fin, fout = equal_power(441)
    assert np.allclose(fin**2 + fout**2, 1)
    y = np.sin(np.linspace(0, 300, 22050)).astype(np.float32) * 3
    assert np.abs(limit(y, SR)).max() <= 10 ** (-1 / 20) + 1e-6
    stereo = np.stack([y, -y])
    out = limit(stereo, SR)
    assert np.abs(out).max() <= 10 ** (-1 / 20) + 1e-6 and np.allclose(out[0], -out[1])  # one gain for both channels


# Albrecht & Shanahan profiles (C tonic) as a source's chroma, as in mir.features.descriptors
MAJOR = np.array([0.238, 0.006, 0.111, 0.006, 0.137, 0.094, 0.016, 0.214, 0.009, 0.080, 0.008, 0.081])
MINOR = np.array([0.220, 0.006, 0.104, 0.123, 0.019, 0.103, 0.012, 0.214, 0.062, 0.022, 0.061, 0.052])


def test_fit_shifts_makes_the_mix_read_as_the_target_key(rng):
    assert list(fit_shifts(np.roll(MAJOR, 2)[None, :], np.ones(1), "C", "major")) == [-2]  # D major down a tone
    assert list(fit_shifts(np.roll(MINOR, 9)[None, :], np.ones(1), "A", "minor")) == [0]
    assert list(fit_shifts(np.zeros((1, 12)), np.ones(1), "C", "major")) == [0]  # no pitch content: no shift
    misses = 0
    for _ in range(40):  # mixes of 4-10 sources in random keys and modes, random shares
        k = int(rng.integers(4, 11))
        chroma = np.stack([np.roll(MAJOR if rng.random() < 0.5 else MINOR, int(rng.integers(12))) for _ in range(k)])
        chroma *= rng.uniform(0.5, 2.0, (k, 1))
        w = rng.integers(1, 8, k).astype(float)
        tonic, mode = PITCH_CLASSES[int(rng.integers(12))], ("major", "minor")[int(rng.integers(2))]
        s = fit_shifts(chroma, w, tonic, mode)
        assert ((-6 <= s) & (s <= 5)).all()
        mix = sum(wi * np.roll(c / c.sum(), si) for c, wi, si in zip(chroma, w, s))
        misses += key_from_chroma(mix)[:2] != (tonic, mode)
    assert misses == 0


# --- generation -----------------------------------------------------------------------------------
def test_generate_is_deterministic_on_tempo_and_says_what_it_is_made_of(lib, tmp_path):
    seed_track = lib.tracks()["track_id"].iloc[0]
    kw = dict(tracks=[seed_track], neighbours=N_CLIPS, duration=12, tempo=120.0, key="D major", stretch="librosa")
    r1 = generate(lib, out=tmp_path / "a.wav", seed=5, **kw)
    generate(lib, out=tmp_path / "b.wav", seed=5, **kw)
    r3 = generate(lib, out=tmp_path / "c.wav", seed=6, **kw)
    assert (tmp_path / "a.wav").read_bytes() == (tmp_path / "b.wav").read_bytes()
    assert [b["track_id"] for b in r1.provenance["beats"]] != [b["track_id"] for b in r3.provenance["beats"]]
    p = find_provenance(tmp_path / "a.wav")
    assert p["seed"] == 5 and p["generator_id"] == r1.provenance["generator_id"] and p["key"] == "D major"
    assert len(p["neighbours"]) == N_CLIPS and all({"track_id", "score"} <= set(n) for n in p["neighbours"])
    assert p["n_beats"] == 24 and len(p["beats"]) == 24
    assert all({"track_id", "source_time", "stretch", "semitones"} <= set(b) for b in p["beats"])
    assert p["checks"]["longest_run"] <= 4 and p["checks"]["max_share"] <= 0.25
    y = audio.load(tmp_path / "a.wav", sr=SR)
    assert abs(len(y) / SR - p["duration"]) < 0.01 and np.abs(y).max() < 0.9
    assert abs(tempo(y, sr=SR) / 120.0 - 1) < 0.02
    assert all(0.8 < b["stretch"] < 1.25 for b in p["beats"])  # sources at 104-132 BPM onto 120


@pytest.mark.skipif(shutil.which("rubberband") is None, reason="rubberband-cli not installed")
def test_generate_with_rubber_band_is_deterministic(lib, tmp_path):
    t = lib.tracks()["track_id"].iloc[1]
    kw = dict(tracks=[t], neighbours=N_CLIPS, duration=10, seed=2, stretch="rubberband")
    r = generate(lib, out=tmp_path / "a.flac", **kw)
    generate(lib, out=tmp_path / "b.flac", **kw)
    assert r.provenance["stretcher"] == "rubberband"
    assert (tmp_path / "a.flac").read_bytes() == (tmp_path / "b.flac").read_bytes()
    # every source sounds throughout, so silence means a run landed off its place: one time map per run
    # left 92 of these 10 ms frames silent (the tool's output ends early), one ratio per run and a
    # stretched tail that is dropped leave none
    y = audio.load(tmp_path / "a.flac", sr=SR)
    frames = np.sqrt(np.mean(y[: len(y) // 220 * 220].reshape(-1, 220) ** 2, axis=1))
    assert (frames < 1e-3).sum() == 0


def test_in_process_rubber_band_lands_on_the_grid_in_the_key(lib, tmp_path):
    t = lib.tracks()["track_id"].iloc[1]
    kw = dict(tracks=[t], neighbours=N_CLIPS, duration=12, seed=4, tempo=120.0, key="F# minor", stretch="pedalboard")
    r = generate(lib, out=tmp_path / "a.wav", **kw)
    generate(lib, out=tmp_path / "b.wav", **kw)
    assert r.provenance["stretcher"] == "pedalboard"
    assert (tmp_path / "a.wav").read_bytes() == (tmp_path / "b.wav").read_bytes()
    y = audio.load(tmp_path / "a.wav", sr=SR)
    assert abs(tempo(y, sr=SR) / 120.0 - 1) < 0.02
    frames = np.sqrt(np.mean(y[: len(y) // 220 * 220].reshape(-1, 220) ** 2, axis=1))
    assert (frames < 1e-3).sum() == 0  # no run lands off its place
    # sources are tones on 12 different pitches: each is transposed so that the piece reads as F# minor
    assert len({b["semitones"] for b in r.provenance["beats"]}) > 1
    from mir.features import key

    assert key(y, sr=SR)[:2] == ("F#", "minor")


def test_stereo_output_at_44k1_keeps_the_channels_and_the_provenance(lib, tmp_path):
    from mir.audio.load import load

    t = lib.tracks()["track_id"].iloc[3]
    kw = dict(tracks=[t], neighbours=N_CLIPS, duration=10, seed=1)
    mono = generate(lib, out=tmp_path / "m.wav", **kw)
    st = generate(lib, out=tmp_path / "s.flac", stereo=True, **kw)
    info = audio.probe(tmp_path / "s.flac")
    assert (info.sample_rate, info.channels) == (44100, 2) and audio.probe(tmp_path / "m.wav").channels == 1
    assert (st.provenance["sample_rate"], st.provenance["channels"]) == (44100, 2)
    assert st.provenance["beats"] == mono.provenance["beats"] and st.provenance["sources"] == mono.provenance["sources"]
    y = load(tmp_path / "s.flac", sr=44100, stereo=True)
    assert y.shape == (2, info.frames) and np.array_equal(y[0], y[1])  # mono sources: both channels the same
    assert abs(st.provenance["loudness"] - st.provenance["target_loudness"]) <= 1.0 and np.abs(y).max() < 1.0
    # a stereo file keeps its two channels; a mono one is doubled
    left = np.sin(np.arange(SR) * 2 * np.pi * 440 / SR).astype(np.float32) * 0.5
    audio.save(tmp_path / "lr.wav", np.stack([left, 0.5 * left]), SR)
    lr = load(tmp_path / "lr.wav", sr=2 * SR, stereo=True)
    assert lr.shape == (2, 2 * SR) and np.allclose(lr[1], 0.5 * lr[0], atol=1e-4) and np.abs(lr[0]).max() > 0.45
    assert load(tmp_path / "m.wav", stereo=True).shape[0] == 2


def test_generate_errors_name_what_to_do(lib, tmp_path):
    t = lib.tracks()["track_id"].iloc[0]
    with pytest.raises(ParameterError, match="not understood"):
        generate(lib, tracks=[t], key="H minor", out=tmp_path / "x.wav")
    with pytest.raises(ParameterError, match="raise --neighbours"):
        generate(lib, tracks=[t], neighbours=3, out=tmp_path / "x.wav")
    with pytest.raises(ParameterError, match="outside 10-600"):
        generate(lib, tracks=[t], duration=5, out=tmp_path / "x.wav")
    (lib.root / "generator.pt").unlink()
    with pytest.raises(ModelError, match="run `mir train-generator"):
        generate(lib, tracks=[t], out=tmp_path / "x.wav")


def test_cli_generate_and_show(lib, tmp_path, capsys):
    t = lib.tracks()["track_id"].iloc[2]
    out = tmp_path / "piece.wav"
    assert cli(["generate", str(lib.root), "--track", t, "--neighbours", "8", "--duration", "10", "--out", str(out),
                "--seed", "3", "--stretch", "librosa", "--key", "E minor"]) == 0
    assert "E minor" in capsys.readouterr().out and out.exists()
    assert cli(["show", str(lib.root), str(out)]) == 0
    shown = capsys.readouterr().out
    assert "generated" in shown and "seed 3" in shown
    assert cli(["show", str(lib.root), str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["seed"] == 3
    assert cli(["generate", str(lib.root), "--track", t, "--key", "Q", "--out", str(out)]) == 1
    assert "not understood" in capsys.readouterr().err


def test_generate_from_a_listeners_taste_and_from_tags(lib, tmp_path):
    ids = sorted(lib.tracks()["track_id"])
    events = tmp_path / "events.csv"
    events.write_text("user,track,timestamp,plays\n" + "".join(f"u1,{t},2024-01-0{i + 1},{i + 1}\n"
                                                              for i, t in enumerate(ids[:3])))
    r = generate(lib, user="u1", events=events, neighbours=N_CLIPS, duration=10, out=tmp_path / "u.wav",
                 stretch="librosa")
    assert r.provenance["seeds"] == {"user": "u1", "events": str(events), "played": 3}
    assert len(r.provenance["neighbours"]) == N_CLIPS
    with pytest.raises(ParameterError, match="no usable event"):
        generate(lib, user="nobody", events=events, out=tmp_path / "x.wav")
    t = generate(lib, tags=["tag1"], neighbours=N_CLIPS, duration=10, out=tmp_path / "t.wav", stretch="librosa")
    assert t.provenance["seeds"]["tags"] == ["tag1"]


def test_batch_is_resumable(lib, tmp_path, capsys):
    ids = sorted(lib.tracks()["track_id"])
    spec = tmp_path / "spec.csv"
    spec.write_text("out,track,seed,duration\n" + f"p0.wav,{ids[0]},1,10\n" + f"p1.wav,{ids[1]};{ids[2]},2,10\n"
                    + "bad.wav,,3,10\n")
    args = ["generate", str(lib.root), "--batch", str(spec), "--neighbours", "8", "--stretch", "librosa"]
    assert cli(args) == 1  # the row without seeds fails, the others are made
    assert "2 pieces made, 0 already done, 1 failed" in capsys.readouterr().out
    first = (tmp_path / "p0.wav").read_bytes()
    (tmp_path / "p1.provenance.json").unlink()  # as if killed before p1 finished
    assert cli(args) == 1
    assert "1 pieces made, 1 already done, 1 failed" in capsys.readouterr().out
    assert (tmp_path / "p0.wav").read_bytes() == first


def test_batch_on_a_dask_cluster_makes_the_same_pieces(lib, tmp_path):
    from distributed import Client, LocalCluster

    from mir.generate.batch import generate_batch

    ids = sorted(lib.tracks()["track_id"])
    rows = "out,track,seed,duration\n" + f"p0.wav,{ids[0]},1,10\n" + f"p1.wav,{ids[1]},2,10\n" + "bad.wav,,3,10\n"
    for name in ("local", "dask"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "spec.csv").write_text(rows)
    kw = dict(neighbours=8, stretch="librosa")
    local = generate_batch(lib, tmp_path / "local" / "spec.csv", **kw)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as cluster, \
            Client(cluster):
        remote = generate_batch(lib, tmp_path / "dask" / "spec.csv", scheduler=cluster.scheduler_address, **kw)
    assert (local["done"], local["failed"]) == (remote["done"], remote["failed"]) == (2, 1)
    assert remote["failures"][0].startswith("bad.wav: ")
    for name in ("p0.wav", "p1.wav"):
        assert (tmp_path / "dask" / name).read_bytes() == (tmp_path / "local" / name).read_bytes()


def test_demo_generation_step_writes_the_piece_its_picture_and_measures(lib, tmp_path, capsys):
    from mir.cli.demo import generation

    tagger = load_generator(lib.root / "generator.pt").tagger_id
    lines = generation(lib, tagger, tmp_path, progress=False)
    assert "reused" in capsys.readouterr().out  # the fixture's debug generator fits the library
    p = find_provenance(tmp_path / "piece.wav")
    assert p is not None and abs(p["duration"] - 30) < 1 and (tmp_path / "piece.png").read_bytes()[:4] == b"\x89PNG"
    text = "\n".join(lines)
    for part in ("generated piece:", "longest run of source beats in source order: ", "largest share of one source",
                 f"tempo: target {p['tempo']:.1f} BPM, estimated", f"key: target {p['key']}, estimated", "dBFS; loudness",
                 "seams marked"):
        assert part in text, part
    assert f"longest run of source beats in source order: {p['checks']['longest_run']} (limit 4)" in text
    for name in ("generator.pt", "generator.pt.last.pt"):  # none: the demo trains one
        (lib.root / name).unlink()
    generation(lib, tagger, tmp_path, progress=False)
    assert "trained (small" in capsys.readouterr().out and (lib.root / "generator.pt").is_file()


def test_a_generated_piece_goes_back_into_the_library_and_is_tagged(lib, gen_lib, tmp_path):
    from mir.catalog.predictions import load_tags, tagged_models

    folder = tmp_path / "pieces"
    folder.mkdir()
    piece = folder / "piece.wav"
    generate(lib, tracks=[sorted(lib.tracks()["track_id"])[0]], neighbours=N_CLIPS, duration=10, out=piece,
             stretch="librosa", seed=1)
    before = len(lib.tracks())
    lib.scan([folder])
    tracks = lib.tracks()
    assert len(tracks) == before + 1  # the piece only: its provenance JSON is not audio
    added = tracks.loc[tracks["path"] == str(piece), "track_id"]
    assert len(added) == 1
    analyze(lib, workers=1)
    tag(lib, model=gen_lib["root"] / "tagger.pt")
    tags = load_tags(lib, tagged_models(lib)[0])
    row = tags[tags["track_id"] == added.iloc[0]]
    assert len(row) == 1 and np.isfinite(np.stack(row["tag_probs"].to_numpy())).all()
