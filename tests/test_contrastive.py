"""Contrastive (self-supervised) training: the loss, the views, and a resumable run with a debug model."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from mir.audio.codec import reencode
from mir.errors import ParameterError
from mir.models import debug, build_model, load_checkpoint, save_checkpoint
from mir.train.contrastive import SSLConfig, WaveBank, nt_xent, state_path, train_ssl
from mir.train.views import Views


def brute_nt_xent(z1, z2, t):
    z = torch.nn.functional.normalize(torch.cat([z1, z2]), dim=-1).double()
    n, total = z1.shape[0], 0.0
    for i in range(2 * n):
        pos = (i + n) % (2 * n)
        sims = [float(z[i] @ z[j]) / t for j in range(2 * n) if j != i]
        total += -(float(z[i] @ z[pos]) / t - np.log(np.sum(np.exp(sims))))
    return total / (2 * n)


def test_nt_xent_equals_its_definition(rng):
    z1, z2 = torch.from_numpy(rng.standard_normal((5, 7))), torch.from_numpy(rng.standard_normal((5, 7)))
    assert float(nt_xent(z1, z2, 0.2)) == pytest.approx(brute_nt_xent(z1, z2, 0.2), rel=1e-5)


def test_nt_xent_prefers_matching_views(rng):
    z = torch.from_numpy(rng.standard_normal((8, 16))).float()
    assert float(nt_xent(z, z + 0.01)) < float(nt_xent(z, z[torch.randperm(8)])) - 1.0
    with pytest.raises(ParameterError, match="batch ≥ 2"):
        nt_xent(z[:1], z[:1])


def test_views_length_determinism_and_off(rng):
    y = (0.1 * np.random.default_rng(0).standard_normal(30000)).astype(np.float32)
    v = Views(codec=1.0, band_limit=1.0, reverb=1.0, noise=1.0)
    a = v(y, 22050, 20000, np.random.default_rng(3), speed=1.05)
    b = v(y, 22050, 20000, np.random.default_rng(3), speed=1.05)
    assert a.shape == (20000,) and a.dtype == np.float32 and np.isfinite(a).all()
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(Views.off()(y, 22050, 20000, np.random.default_rng(3)), y[:20000])
    with pytest.raises(ParameterError, match="probability"):
        Views(noise=1.5)


def test_reencode_keeps_length_and_content():
    t = np.arange(22050) / 22050
    y = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    for codec in ("ogg", "mp3"):
        z = reencode(y, 22050, codec=codec)
        assert z.shape == y.shape
        assert np.corrcoef(y[4000:18000], z[4000:18000])[0, 1] > 0.5  # same tone, up to codec delay
    with pytest.raises(ParameterError, match="codec"):
        reencode(y, 22050, codec="flac9")


@pytest.fixture
def base_model(tmp_path):
    torch.manual_seed(0)
    config = debug(n_tags=3, n_genres=2)
    path = tmp_path / "base.pt"
    save_checkpoint(path, build_model(config), config=config, tags=["a", "b", "c"], genres=["x", "y"],
                    thresholds=[0.5] * 3, metrics={}, analysis={"n_mels": 128})
    return path


def _bank():
    g = np.random.default_rng(1)
    waves = [(0.2 * np.sin(2 * np.pi * f * np.arange(22050 * 5) / 22050) + 0.01 * g.standard_normal(22050 * 5))
             .astype(np.float32) for f in (220, 330, 440, 550)]
    return WaveBank(waves, [f"t{i}" for i in range(4)], 22050)


def test_ssl_run_resumes_to_the_same_weights(tmp_path, base_model):
    torch.set_num_threads(1)
    config = SSLConfig(steps=4, batch_size=3, save_every=1, views=Views(codec=0.0))
    whole = train_ssl(base_model, _bank(), tmp_path / "whole.pt", config=config)
    part = train_ssl(base_model, _bank(), tmp_path / "part.pt", config=config, stop_after=2)
    assert part.model_id == "" and state_path(tmp_path / "part.pt").exists()
    rest = train_ssl(base_model, _bank(), tmp_path / "part.pt", config=config)
    assert rest.resumed_from == 2 and rest.model_id == whole.model_id
    loaded = load_checkpoint(tmp_path / "whole.pt")
    assert loaded.extra["ssl"]["base_model"] == load_checkpoint(base_model).model_id
    assert loaded.model_id != load_checkpoint(base_model).model_id  # the backbone moved


def test_adapt_keeps_the_head_records_the_model_and_tag_uses_it(tmp_path, rng):
    """mir adapt on a tiny library: a new model with the base's track head, recorded as the library's model."""
    from helpers import write_clip

    from mir.catalog import Library, analyze
    from mir.catalog.predictions import library_model, resolve_model
    from mir.cli.main import main as cli
    from mir.models.checkpoint import DEFAULT_CHECKPOINT

    torch.set_num_threads(1)
    for i in range(3):
        write_clip(tmp_path / "music" / f"c{i}.wav", seed=i, seconds=5.0)
    lib = Library.open_or_create(tmp_path / "lib")
    lib.scan([tmp_path / "music"])
    assert library_model(lib) is None
    assert cli(["adapt", str(lib.root), "--steps", "2", "--batch-size", "2", "-q"]) == 0
    adapted = load_checkpoint(library_model(lib))
    base = load_checkpoint(DEFAULT_CHECKPOINT)
    assert adapted.config == base.config and adapted.model_id != base.model_id
    head = {k: v for k, v in adapted.model.state_dict().items() if k.startswith("track_head.")}
    assert head and all(torch.equal(v, base.model.state_dict()[k]) for k, v in head.items())
    assert resolve_model(lib, None, tagged=False).checkpoint == library_model(lib)
    analyze(lib, workers=1)
    assert cli(["tag", str(lib.root), "-q"]) == 0
    assert resolve_model(lib).model_id == adapted.model_id


def test_distillation_holds_the_outputs_where_plain_ssl_lets_them_drift(tmp_path, base_model):
    torch.set_num_threads(1)
    drift = {}
    for w in (0.0, 10.0):
        config = SSLConfig(steps=6, batch_size=3, lr=1e-2, distill_weight=w, views=Views(codec=0.0))
        out = train_ssl(base_model, _bank(), tmp_path / f"d{w}.pt", config=config)
        x = torch.from_numpy(np.random.default_rng(0).standard_normal((4, 128, 40)).astype(np.float32))
        with torch.no_grad():
            before = load_checkpoint(base_model).model(x).tags
            drift[w] = float((load_checkpoint(out.path).model(x).tags - before).abs().mean())
    assert drift[10.0] < drift[0.0]


def test_ssl_with_replayed_labels_trains_the_heads_too(tmp_path, base_model):
    """The supervised replay path: labelled chunks of the train split add the tagging loss."""
    from types import SimpleNamespace

    from mir.train.data import LogmelBank

    torch.set_num_threads(1)
    g = np.random.default_rng(2)
    labels = SimpleNamespace(tags=["c", "b", "a", "extra"], genres=["y", "x"],
                             y_tags=g.integers(0, 2, size=(6, 4)).astype(np.float32),
                             y_genre=np.array([0, 1, -1, 0, 1, 0]))
    split = np.array(["train"] * 4 + ["valid"] * 2)
    replay = SimpleNamespace(labels=labels, bank=LogmelBank([g.normal(-40, 10, (128, 200)).astype(np.float16)] * 6),
                             index=lambda name: np.flatnonzero(split == name), fingerprint=lambda: "replay")
    config = SSLConfig(steps=2, batch_size=3, supervised_batch=4, views=Views(codec=0.0))
    with_replay = train_ssl(base_model, _bank(), tmp_path / "r.pt", config=config, replay=replay)
    without = train_ssl(base_model, _bank(), tmp_path / "n.pt", config=config)
    assert load_checkpoint(with_replay.path).extra["ssl"]["replay"] is True
    assert with_replay.model_id != without.model_id and with_replay.losses != without.losses


def brute_sup_con(z, groups, t):
    z = torch.nn.functional.normalize(z, dim=-1).double()
    total, rows = 0.0, 0
    for i in range(len(z)):
        pos = [j for j in range(len(z)) if j != i and groups[j] == groups[i]]
        if not pos:
            continue
        denom = np.log(np.sum([np.exp(float(z[i] @ z[j]) / t) for j in range(len(z)) if j != i]))
        total += -np.mean([float(z[i] @ z[p]) / t - denom for p in pos])
        rows += 1
    return total / rows


def test_sup_con_equals_its_definition_and_prefers_grouped_embeddings(rng):
    from mir.train.contrastive import sup_con

    z = torch.from_numpy(rng.standard_normal((7, 5)))
    groups = torch.tensor([0, 0, 1, 1, 1, 2, 3])  # rows 5 and 6 have no partner and are left out
    assert float(sup_con(z, groups, 0.2)) == pytest.approx(brute_sup_con(z, groups.tolist(), 0.2), rel=1e-5)
    centres = torch.from_numpy(rng.standard_normal((2, 16))).float()
    g = torch.tensor([0, 0, 0, 1, 1, 1])
    grouped = centres[g] + 0.05 * torch.randn(6, 16)
    assert float(sup_con(grouped, g)) < float(sup_con(grouped, g[torch.tensor([0, 3, 1, 4, 2, 5])])) - 1.0
    with pytest.raises(ParameterError, match="share a group"):
        sup_con(z[:3], torch.tensor([0, 1, 2]))


def test_group_batches_hold_group_size_tracks_of_each_drawn_group():
    bank = WaveBank([np.zeros(100, np.float32)] * 9, [f"t{i}" for i in range(9)], 22050,
                    groups=["a", "a", "a", "b", "b", "b", "c", "c", "c"])
    config = SSLConfig(batch_size=6, group_weight=1.0, group_size=3)
    idx = bank.draw(config, np.random.default_rng(0))
    codes = bank.group_codes()[idx]
    assert len(idx) == 6 and len(set(codes[:3])) == 1 and len(set(codes[3:])) == 1 and codes[0] != codes[3]
    with pytest.raises(ParameterError, match="carry no groups"):
        WaveBank([np.zeros(100, np.float32)] * 2, ["x", "y"], 22050).draw(config, np.random.default_rng(0))
    with pytest.raises(ParameterError, match="one group per track"):
        WaveBank([np.zeros(100, np.float32)] * 2, ["x", "y"], 22050, groups=["a"])


def test_group_run_resumes_to_the_same_weights_and_moves_the_backbone(tmp_path, base_model):
    torch.set_num_threads(1)
    bank = _bank()
    grouped = WaveBank(bank.waves, bank.names, bank.sr, groups=["low", "low", "high", "high"])
    config = SSLConfig(steps=3, batch_size=4, group_size=2, group_weight=1.0, save_every=1, views=Views(codec=0.0))
    whole = train_ssl(base_model, grouped, tmp_path / "whole.pt", config=config)
    train_ssl(base_model, grouped, tmp_path / "part.pt", config=config, stop_after=1)
    rest = train_ssl(base_model, grouped, tmp_path / "part.pt", config=config)
    assert rest.resumed_from == 1
    a, b = load_checkpoint(whole.path).model.state_dict(), load_checkpoint(rest.path).model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    plain = train_ssl(base_model, grouped, tmp_path / "plain.pt",
                      config=SSLConfig(steps=3, batch_size=4, save_every=1, views=Views(codec=0.0)))
    c = load_checkpoint(plain.path).model.state_dict()
    assert any(not torch.equal(a[k], c[k]) for k in a)  # the group loss changes what is learned


def test_audio_tracks_group_a_corpus_by_package_and_a_folder_by_subfolder(tmp_path):
    import json

    from mir.train.contrastive import audio_tracks

    (tmp_path / "corpus").mkdir()
    (tmp_path / "corpus" / "manifest.json").write_text(json.dumps({"tracks": [
        {"path": "p/a.ogg", "package": "pkg-a", "split": "train", "kind": "music"},
        {"path": "p/b.ogg", "package": "pkg-b", "split": "test", "kind": "music"},
        {"path": "p/c.ogg", "package": "pkg-a", "split": "train", "kind": "effects"}]}))
    assert [(p.name, g) for p, g in audio_tracks(tmp_path / "corpus")] == [("a.ogg", "pkg-a")]
    for rel in ("album1/x.wav", "album1/y.wav", "album2/z.flac"):
        (tmp_path / "music" / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "music" / rel).write_bytes(b"")
    assert [(p.name, g) for p, g in audio_tracks(tmp_path / "music")] == [
        ("x.wav", "album1"), ("y.wav", "album1"), ("z.flac", "album2")]
