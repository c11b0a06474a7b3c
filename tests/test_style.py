"""The style embedding: statistics against exact references (scipy's DCT, librosa's MFCC, numpy), the
model and config plumbing, and `mir train-style` on a tiny generated corpus with a debug model."""
from __future__ import annotations

import dataclasses
import json

import librosa
import numpy as np
import pytest
import scipy.fft
import torch

from mir import audio
from mir.errors import ModelError, ParameterError
from mir.models import build_model, debug, load_checkpoint, save_checkpoint
from mir.models.builders import ModelConfig
from mir.models.inference import predict_chunk_outputs, predict_logmels
from mir.models.style import StyleStats, channel_stats, dct_matrix
from mir.train.style import train_style

SR = 22050


def test_dct_matrix_is_scipys_orthonormal_dct2():
    x = np.random.default_rng(0).normal(size=(96, 7))
    np.testing.assert_allclose(dct_matrix(96, 13) @ x, scipy.fft.dct(x, axis=0, type=2, norm="ortho")[:13], atol=1e-10)
    with pytest.raises(ParameterError, match="n_mfcc must be in"):
        dct_matrix(16, 17)


def test_mfcc_part_equals_librosas_mfcc_of_the_log_mel():
    mel = np.random.default_rng(1).normal(-40, 15, size=(1, 1, 32, 50)).astype(np.float32)
    stats = StyleStats(channels=3, n_mels=32, n_mfcc=12, mfcc_weight=0.5)
    out = stats(torch.zeros(1, 3, 4, 5), torch.from_numpy(mel)).numpy()[0]
    ref = librosa.feature.mfcc(S=mel[0, 0], n_mfcc=12)
    np.testing.assert_allclose(out[6:18], ref.mean(axis=1), rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(out[18:], ref.std(axis=1), rtol=1e-5, atol=1e-3)


def test_channel_stats_are_mean_and_population_std():
    h = torch.randn(2, 3, 4, 5)
    ref = h.numpy().reshape(2, 3, -1)
    np.testing.assert_allclose(channel_stats(h).numpy(), np.hstack([ref.mean(2), ref.std(2)]), rtol=1e-5, atol=1e-6)


def test_embed_standardises_weights_and_normalises():
    s = StyleStats(channels=2, n_mels=8, n_mfcc=1, mfcc_weight=0.5)
    x = np.random.default_rng(2).normal(3, 2, size=(10, s.dim))
    s.set_standardisation(x)
    z = (x - x.mean(0)) / x.std(0)
    unit = lambda a: a / np.linalg.norm(a, axis=1, keepdims=True)  # noqa: E731
    ref = unit(np.hstack([unit(z[:, :4]), 0.5 * unit(z[:, 4:])]))
    np.testing.assert_allclose(s.embed(x), ref, rtol=1e-5, atol=1e-6)
    with pytest.raises(ParameterError, match=r"shape \(n, 6\)"):
        s.embed(np.zeros((1, 5)))
    with pytest.raises(ParameterError, match="at least|≥ 2 tracks"):
        s.set_standardisation(x[:1])


def styled_config(**kw) -> ModelConfig:
    return dataclasses.replace(debug(n_tags=3, n_genres=2), style_block=1, style_mfcc=4, **kw)


def test_config_keeps_old_ids_and_round_trips_style():
    plain = debug(n_tags=3, n_genres=2)
    assert not any(k.startswith("style") for k in plain.to_dict())  # old checkpoints hash what they did
    cfg = styled_config(style_weight=0.25)
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.output_dim == 2 * cfg.widths[1] + 2 * 4
    with pytest.raises(ParameterError, match="style_block must be"):
        dataclasses.replace(plain, style_block=len(plain.widths))
    with pytest.raises(ParameterError, match="style_weight"):
        dataclasses.replace(plain, style_block=0, style_weight=-1.0)


def test_model_with_a_style_block_indexes_the_style_embedding():
    torch.manual_seed(0)
    cfg = styled_config()
    model = build_model(cfg).eval()
    mels = [np.random.default_rng(i).normal(-40, 10, size=(cfg.n_mels, 70)).astype(np.float32) for i in range(3)]
    per_chunk, counts = predict_chunk_outputs(model, mels, chunk_frames=cfg.chunk_frames)
    assert per_chunk["stats"].shape == (counts.sum(), model.style.dim)
    out = predict_logmels(model, mels, chunk_frames=cfg.chunk_frames)
    assert "stats" not in out and out["embedding"].shape == (3, cfg.output_dim)
    np.testing.assert_allclose(np.linalg.norm(out["embedding"], axis=1), 1.0, rtol=1e-5)
    # the tag and genre outputs are the plain model's: the style block only adds statistics
    plain = build_model(dataclasses.replace(cfg, style_block=-1)).eval()
    plain.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("style.")})
    ref = predict_logmels(plain, mels, chunk_frames=cfg.chunk_frames)
    np.testing.assert_array_equal(out["tag_probs"], ref["tag_probs"])
    assert ref["embedding"].shape[1] == cfg.embed_dim


def tone(seed: int, seconds: float = 3.0) -> np.ndarray:
    g = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    f = g.choice([220.0, 330.0, 440.0], int(seconds * 4) + 1)[(t * 4).astype(int)]
    return (0.3 * np.sin(2 * np.pi * f * t) + 0.02 * g.normal(size=t.size)).astype(np.float32)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """A realmusic-shaped corpus: two train packages, two valid packages, 3 short tracks each."""
    root = tmp_path_factory.mktemp("realmusic")
    rows = []
    for p, (package, split) in enumerate([("a", "train"), ("b", "train"), ("c", "valid"), ("d", "valid")]):
        for i in range(3):
            rel = f"packages/{package}/{i}.wav"
            y = tone(10 * p + i) * (0.3 if p % 2 else 1.0)  # the second package of each split is quieter
            audio.save(root / rel, y, SR)
            rows.append({"path": rel, "package": package, "split": split, "kind": "music", "duration": 3.0, "styles": []})
    (root / "manifest.json").write_text(json.dumps({"name": "realmusic", "version": 1, "tracks": rows}))
    torch.manual_seed(0)
    cfg = debug(n_tags=3, n_genres=2)
    base = root / "base.pt"
    save_checkpoint(base, build_model(cfg).eval(), config=cfg, tags=["x", "y", "z"], genres=["g", "h"],
                    thresholds=[0.5] * 3, metrics={}, analysis={}, extra={})
    return root, base


def test_train_style_writes_a_model_that_indexes_style(corpus, tmp_path):
    root, base = corpus
    report = train_style(root, base, tmp_path / "styled.pt", block=1, n_mfcc=8, weight=0.5, max_seconds=2.0)
    assert report["train_tracks"] == 6 and report["valid_tracks"] == 6
    assert set(report["valid_knn5_package"]) == {"style", "backbone", "chance"}
    loaded = load_checkpoint(tmp_path / "styled.pt")  # weights_only inside
    before = load_checkpoint(base)
    assert loaded.model_id == report["model_id"] != before.model_id
    assert loaded.config.style_block == 1 and loaded.metrics["style"]["block"] == 1
    for name, w in before.model.state_dict().items():  # same weights
        assert torch.equal(w, loaded.model.state_dict()[name]), name
    assert not torch.equal(loaded.model.style.scale, torch.ones_like(loaded.model.style.scale))  # fitted
    with pytest.raises(ParameterError, match="--block must name"):
        train_style(root, base, tmp_path / "bad.pt", block=9)


def test_edited_style_statistics_change_the_id(corpus, tmp_path):
    root, base = corpus
    train_style(root, base, tmp_path / "styled.pt", block=0, n_mfcc=4, max_seconds=2.0)
    raw = torch.load(tmp_path / "styled.pt", weights_only=True)
    raw["state_dict"]["style.shift"] += 1.0
    torch.save(raw, tmp_path / "edited.pt")
    with pytest.raises(ModelError, match="do not match the stored model_id"):
        load_checkpoint(tmp_path / "edited.pt")


def test_cli_train_style_reports_and_writes(corpus, tmp_path, capsys):
    from mir.cli.main import main as cli

    root, base = corpus
    assert cli(["train-style", "--music", str(root), "--model", str(base), "--out", str(tmp_path / "s.pt"),
                "--block", "0", "--mfcc", "4", "--max-seconds", "2", "--json", str(tmp_path / "r.json"), "-q"]) == 0
    out = capsys.readouterr().out
    assert "standardised on 6 train tracks" in out and "valid 5-NN package accuracy (6 tracks)" in out
    assert json.loads((tmp_path / "r.json").read_text())["model_id"] == load_checkpoint(tmp_path / "s.pt").model_id


def test_train_style_defaults_to_the_last_block(corpus, tmp_path):
    root, base = corpus
    report = train_style(root, base, tmp_path / "styled.pt", n_mfcc=4, max_seconds=2.0)
    config = load_checkpoint(tmp_path / "styled.pt").config
    assert report["block"] == config.style_block == config.n_blocks - 1
    assert report["mfcc_weight"] == config.style_weight == 0.7


def test_shrunk_whitening_inverts_the_shrunk_covariance():
    from mir.models.style import shrunk_whitening

    x = np.random.default_rng(2).normal(size=(40, 6)) @ np.diag([5.0, 2.0, 1.0, 1.0, 0.5, 0.1])
    for s in (0.3, 0.5, 1.0):
        mean, w = shrunk_whitening(x, s)
        cov = np.cov(x, rowvar=False, bias=True)
        shrunk = (1 - s) * cov + s * np.trace(cov) / 6 * np.eye(6)
        np.testing.assert_allclose(mean, x.mean(axis=0))
        np.testing.assert_allclose(w, w.T, atol=1e-12)
        np.testing.assert_allclose(w @ shrunk @ w, np.eye(6), atol=1e-10)
    np.testing.assert_allclose(shrunk_whitening(x, 1.0)[1], np.eye(6) / np.sqrt(np.trace(cov) / 6))  # no rotation
    with pytest.raises(ParameterError, match=r"shrinkage must be in \(0, 1\]"):
        shrunk_whitening(x, 0.0)
    with pytest.raises(ParameterError, match="vectors that vary"):
        shrunk_whitening(np.ones((5, 3)), 0.5)


def test_whitened_style_embedding_is_the_whitened_combination(corpus, tmp_path):
    from mir.models.style import shrunk_whitening
    from mir.train.style import corpus_stats

    root, base = corpus
    report = train_style(root, base, tmp_path / "w.pt", block=1, n_mfcc=8, whiten=0.5, max_seconds=2.0)
    plain = train_style(root, base, tmp_path / "p.pt", block=1, n_mfcc=8, whiten=0.0, max_seconds=2.0)
    w, p = load_checkpoint(tmp_path / "w.pt"), load_checkpoint(tmp_path / "p.pt")
    assert report["whiten"] == w.config.style_whiten == 0.5 and "style_whiten" in w.config.to_dict()
    assert p.config.style_whiten == 0.0 and "style_whiten" not in p.config.to_dict()  # unwhitened: config as before
    assert "style.whiten" in w.model.state_dict() and "style.whiten" not in p.model.state_dict()
    assert report["model_id"] != plain["model_id"]
    stats, _, _ = corpus_stats(w.model, root, "train", chunk_frames=w.config.chunk_frames, max_seconds=2.0)
    v = w.model.style.combine(stats)
    mean, white = shrunk_whitening(v, 0.5)
    ref = (v - mean) @ white
    np.testing.assert_allclose(w.model.style.embed(stats), ref / np.linalg.norm(ref, axis=1, keepdims=True), atol=1e-5)
    np.testing.assert_allclose(p.model.style.embed(stats), v / np.linalg.norm(v, axis=1, keepdims=True), atol=1e-6)
    with pytest.raises(ParameterError, match="--whiten must be a shrinkage"):
        train_style(root, base, tmp_path / "bad.pt", whiten=1.5)


def test_cli_train_style_defaults_equal_the_functions():
    import inspect

    from mir.cli.main import build_parser

    args = build_parser().parse_args(["train-style", "--music", "m", "--out", "o.pt"])
    defaults = inspect.signature(train_style).parameters
    assert (args.block, args.mfcc, args.mfcc_weight, args.whiten, args.max_seconds) == tuple(
        defaults[k].default for k in ("block", "n_mfcc", "weight", "whiten", "max_seconds"))
