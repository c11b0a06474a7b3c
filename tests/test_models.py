"""Taggers (shapes, gradients, embeddings, sizes) and checkpoints (round trip, safe load, errors)."""
from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
import torch
from torch.nn import functional as F
from torch.utils.flop_counter import FlopCounterMode

from mir import __version__
from mir.errors import LabelError, ModelError, ParameterError
from mir.models import (
    FORMAT_VERSION,
    ModelConfig,
    build_model,
    conv_macs_per_chunk,
    count_parameters,
    debug,
    fast,
    load_checkpoint,
    model_id,
    preset,
    save_checkpoint,
    short_chunk,
)

TAGS = ["rock", "jazz", "calm", "vocal", "piano", "drums", "live", "lofi"]
GENRES = ["classical", "electronic", "folk", "pop"]
ANALYSIS = {"sample_rate": 22050, "n_fft": 1024, "hop_length": 512, "n_mels": 128, "fmin": 0.0, "fmax": None}


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def logmel(batch: int, frames: int = 160, n_mels: int = 128) -> torch.Tensor:
    return torch.randn(batch, n_mels, frames)


# --- models -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name, lo, hi",
    [("short_chunk", 2_000_000, 3_000_000), ("fast", 300_000, 1_000_000), ("debug", 1_000, 10_000)],
)
def test_presets_shapes_and_sizes(name, lo, hi):
    config = preset(name, n_tags=50, n_genres=10)
    model = build_model(config).eval()
    assert lo <= count_parameters(model) <= hi
    with torch.no_grad():
        out = model(logmel(2, config.chunk_frames))
    assert out.tags.shape == (2, 50) and out.genre.shape == (2, 10)
    assert out.embedding.shape == (2, config.embed_dim)
    torch.testing.assert_close(out.embedding.norm(dim=1), torch.ones(2))


def test_embed_is_unit_norm_and_matches_forward():
    model = build_model(debug()).eval()
    x = logmel(3) * 5 + 2
    with torch.no_grad():
        e = model.embed(x)
        torch.testing.assert_close(e, model(x).embedding)
    torch.testing.assert_close(e.norm(dim=1), torch.ones(3))


def test_gradients_reach_every_parameter():
    model = build_model(debug()).train()
    out = model(logmel(4, 64))
    loss = F.binary_cross_entropy_with_logits(out.tags, torch.rand(4, 8).round())
    loss = loss + F.cross_entropy(out.genre, torch.tensor([0, 1, 2, 3]))
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.any(p.grad != 0)]
    assert missing == []


@pytest.mark.parametrize("frames", [1, 37, 160, 431])
def test_any_length_and_batch_equals_items(frames):
    model = build_model(debug()).eval()
    x = logmel(3, frames)
    with torch.no_grad():
        batched = model(x).tags
        items = torch.cat([model(x[i : i + 1]).tags for i in range(3)])
    torch.testing.assert_close(batched, items, rtol=1e-4, atol=1e-5)


def test_channels_last_and_bf16_autocast_agree():
    model = build_model(debug()).eval()
    x = logmel(2)
    with torch.no_grad():
        ref = model(x)
        cl = model.to(memory_format=torch.channels_last)(x.unsqueeze(1).to(memory_format=torch.channels_last))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            half = model(x)
    torch.testing.assert_close(cl.tags, ref.tags, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(half.embedding.float(), ref.embedding, rtol=0.05, atol=0.05)


@pytest.mark.parametrize("shape", [(2, 64, 160), (2, 128), (2, 3, 128, 160), (2, 128, 0)])
def test_wrong_input_shape_raises(shape):
    model = build_model(debug())
    with pytest.raises(ParameterError, match="log-mel batch"):
        model(torch.zeros(shape))


def test_analytic_macs_match_flop_counter():
    config = debug(n_tags=5, n_genres=3)
    model = build_model(config).eval()
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(logmel(1, 100))
    assert counter.get_total_flops() == 2 * conv_macs_per_chunk(config, frames=100)


def test_config_round_trip_and_validation():
    config = fast(n_tags=12, n_genres=3, dropout=0.2)
    assert ModelConfig.from_dict(config.to_dict()) == config
    assert config.to_dict()["widths"] == list(config.widths) and config.n_blocks == len(config.widths)
    assert short_chunk(n_tags=2, n_genres=2).n_blocks == 7
    with pytest.raises(ParameterError, match="n_tags"):
        debug(n_tags=0)
    with pytest.raises(ParameterError, match="widths"):
        debug(widths=())
    with pytest.raises(ModelError, match="architecture 'transformer'"):
        ModelConfig.from_dict({**config.to_dict(), "arch": "transformer"})
    stored = config.to_dict()
    assert stored["arch"] == "short_chunk_res"  # stored configs name the one architecture: model ids unchanged
    del stored["arch"]
    assert ModelConfig.from_dict(stored) == config
    with pytest.raises(ParameterError, match="unknown model preset"):
        preset("huge", n_tags=1, n_genres=1)
    with pytest.raises(ModelError, match="unknown field"):
        ModelConfig.from_dict({**config.to_dict(), "depth": 3})


# --- checkpoints ------------------------------------------------------------------------------
def trained_debug():
    """A debug model whose BN statistics and weights differ from a fresh one."""
    config = debug()
    model = build_model(config).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(2):
        out = model(logmel(4, 40) * 3 + 1)
        out.tags.sum().backward()
        opt.step()
        opt.zero_grad()
    return config, model.eval()


def save(path, model, config, **overrides):
    kwargs = dict(
        config=config, tags=TAGS, genres=GENRES, thresholds=np.linspace(0.2, 0.9, 8),
        metrics={"tags/roc_auc_macro": np.float32(0.81), "per_tag": np.array([0.5, 0.75]), "epoch": 3},
        analysis=ANALYSIS, extra={"dataset": "toy", "seed": 7},
    )
    kwargs.update(overrides)
    return save_checkpoint(path, model, **kwargs)


@pytest.fixture
def saved(tmp_path):
    config, model = trained_debug()
    path = tmp_path / "models" / "tagger.pt"
    mid = save(path, model, config)
    return path, model, config, mid


def test_checkpoint_round_trip(saved, monkeypatch):
    path, model, config, mid = saved
    calls = []
    real_load = torch.load

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    loaded = load_checkpoint(path)
    assert calls and all(c.get("weights_only") is True for c in calls)
    assert not loaded.model.training
    x = logmel(2, 90)
    with torch.no_grad():
        a, b = model(x), loaded.model(x)
    for u, v in zip(a, b):
        torch.testing.assert_close(u, v, rtol=0, atol=0)
    assert loaded.config == config and loaded.model_id == mid and len(mid) == 12
    assert loaded.tags == tuple(TAGS) and loaded.genres == tuple(GENRES)
    np.testing.assert_allclose(loaded.thresholds, np.linspace(0.2, 0.9, 8))
    assert loaded.metrics == {"tags/roc_auc_macro": pytest.approx(0.81), "per_tag": [0.5, 0.75], "epoch": 3}
    assert loaded.analysis == ANALYSIS and loaded.extra == {"dataset": "toy", "seed": 7}
    assert loaded.mir_version == __version__
    assert [p.name for p in path.parent.iterdir()] == ["tagger.pt"]  # no temp file left behind


def test_model_id_is_content_hash(saved):
    path, model, config, mid = saved
    state = model.state_dict()
    assert model_id(state, config) == mid
    cl = {k: v.to(memory_format=torch.channels_last) if v.dim() == 4 else v for k, v in state.items()}
    assert model_id(cl, config) == mid  # memory format does not change the id
    changed = dict(state, **{"tag_head.bias": state["tag_head.bias"] + 1e-3})
    assert model_id(changed, config) != mid
    assert model_id(state, debug(dropout=0.2)) != mid


def test_check_analysis(saved):
    from mir.config import AnalysisConfig

    loaded = load_checkpoint(saved[0])
    loaded.check_analysis(AnalysisConfig())
    with pytest.raises(ModelError, match="hop_length: trained with 512, now 256"):
        loaded.check_analysis(AnalysisConfig(hop_length=256))


def tamper(path, **changes):
    payload = torch.load(path, weights_only=True)
    for key, value in changes.items():
        if value is None:
            del payload[key]
        else:
            payload[key] = value(payload[key]) if callable(value) else value
    torch.save(payload, path)


@pytest.mark.parametrize(
    "damage, match",
    [
        (lambda p: p.unlink(), "not found"),
        (lambda p: p.write_bytes(b"this is not a checkpoint"), "cannot read"),
        (lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]), "cannot read"),
        (lambda p: torch.save([1, 2, 3], p), "not a mir tagger checkpoint"),
        (lambda p: torch.save({"format": "mir.tagger", "x": Fraction(1, 3)}, p), "refuses.*fractions.Fraction"),  # foreign object
        (lambda p: tamper(p, format="other"), "not a mir tagger checkpoint"),
        (lambda p: tamper(p, format_version=FORMAT_VERSION + 1), "newer mir"),
        (lambda p: tamper(p, thresholds=None), "lacks field"),
        (lambda p: tamper(p, tags=lambda t: t[:-1]), "vocabulary size mismatch: 7 tags"),
        (lambda p: tamper(p, genres=lambda g: g + ["jazz"]), "vocabulary size mismatch: 5 genres"),
        (lambda p: tamper(p, config=lambda c: {**c, "widths": [4, 8, 16]}), "weights do not match"),
        (lambda p: tamper(p, config=lambda c: {**c, "n_mels": -1}), "invalid model config"),
        (lambda p: tamper(p, state_dict=lambda s: {**s, "tag_head.bias": s["tag_head.bias"] * 2}), "model_id"),
    ],
)
def test_bad_checkpoints_raise_model_error(saved, damage, match):
    path = saved[0]
    damage(path)
    with pytest.raises(ModelError, match=match) as info:
        load_checkpoint(path)
    assert str(path) in str(info.value)


def test_save_validates_inputs(tmp_path):
    config, model = trained_debug()
    path = tmp_path / "m.pt"
    with pytest.raises(ParameterError, match="7 names but the model has 8"):
        save(path, model, config, tags=TAGS[:-1])
    with pytest.raises(LabelError, match="duplicate"):
        save(path, model, config, genres=["pop", "pop", "folk", "rock"])
    with pytest.raises(ParameterError, match=r"thresholds must be finite probabilities"):
        save(path, model, config, thresholds=np.full(8, 1.5))
    with pytest.raises(ParameterError, match=r"metrics\['when'\] holds a object"):
        save(path, model, config, metrics={"when": object()})
    with pytest.raises(ParameterError, match="does not match config"):
        save(path, model, debug(widths=(4, 8, 16)))
    with pytest.raises(ParameterError, match="n_mels"):
        save(path, model, config, analysis={**ANALYSIS, "n_mels": 96})
    assert not path.exists() and list(tmp_path.iterdir()) == []
