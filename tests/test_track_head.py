"""The track-level head: descriptor contexts, chunk pooling, the head in a model, checkpoints, inference."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from mir.errors import CatalogError, ParameterError
from mir.features.descriptors import RHYTHM_FACTORS
from mir.models import build_model, debug, load_checkpoint, model_id, save_checkpoint
from mir.models.inference import predict_logmels
from mir.models.track_head import CONTEXT_DIM, contexts_from_descriptors, pool_chunks, track_context


def _descriptors(rng, n):
    chroma = rng.random((n, 12))
    return chroma / chroma.sum(axis=1, keepdims=True), rng.random((n, len(RHYTHM_FACTORS))), rng.uniform(60, 180, n)


def test_track_context_is_key_invariant_and_keeps_rhythm_and_tempo(rng):
    chroma, rhythm, tempo = _descriptors(rng, 5)
    ctx = track_context(chroma, rhythm, tempo)
    assert ctx.shape == (5, CONTEXT_DIM) and ctx.dtype == np.float32
    for shift in (1, 5, 11):  # the same music transposed: the context does not change
        np.testing.assert_allclose(track_context(np.roll(chroma, shift, axis=1), rhythm, tempo), ctx, atol=1e-6)
    np.testing.assert_array_equal(ctx[:, 16:16 + len(RHYTHM_FACTORS)], rhythm.astype(np.float32))
    np.testing.assert_allclose(ctx[:, -1], np.log2(tempo / 120), rtol=1e-6)
    assert track_context(chroma[:1], rhythm[:1], [0.0])[0, -1] == 0.0  # no pulse
    major_c = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])  # Krumhansl C major
    c = track_context(np.roll(major_c, 7)[None], rhythm[:1], tempo[:1])[0]  # G major: rotated back to tonic first
    assert np.argmax(c[:12]) == 0 and c[12:14].max() > c[14:16].max()  # best major r beats best minor r


def test_track_context_rejects_bad_shapes_and_values(rng):
    chroma, rhythm, tempo = _descriptors(rng, 3)
    with pytest.raises(ParameterError, match="rhythm"):
        track_context(chroma, rhythm[:, :4], tempo)
    bad = chroma.copy()
    bad[1, 2] = np.nan
    with pytest.raises(ParameterError, match="re-analyse"):
        track_context(bad, rhythm, tempo)


def test_contexts_from_descriptors_follow_the_hashes_and_name_missing_tracks(rng):
    chroma, rhythm, tempo = _descriptors(rng, 3)
    table = pd.DataFrame({"hash": ["a", "b", "c"], "chroma": list(chroma), "rhythm": list(rhythm), "tempo": tempo})
    np.testing.assert_array_equal(contexts_from_descriptors(table, ["c", "a"]), track_context(chroma, rhythm, tempo)[[2, 0]])
    with pytest.raises(CatalogError, match="mir analyze"):
        contexts_from_descriptors(table, ["a", "zz"])
    with pytest.raises(CatalogError, match="mir analyze"):  # a table from before descriptors v2
        contexts_from_descriptors(table.drop(columns=["chroma"]), ["a"])


def test_pool_chunks_equals_hand_computed_means_and_stds():
    per_chunk = {"embedding": np.array([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]], np.float32),
                 "tag_probs": np.array([[0.2], [0.4], [0.9]], np.float32),
                 "genre_probs": np.array([[0.5, 0.5], [1.0, 0.0], [0.0, 1.0]], np.float32)}
    pooled = pool_chunks(per_chunk, np.array([2, 1]))
    np.testing.assert_allclose(pooled[0], [0.5, 0.5, 0.5, 0.5, 0.3, 0.4, 0.75, 0.25], atol=1e-6)
    np.testing.assert_allclose(pooled[1], [0.6, 0.8, 0.0, 0.0, 0.9, 0.9, 0.0, 1.0], atol=1e-6)
    assert pool_chunks({k: v[:0] for k, v in per_chunk.items()}, np.zeros(0, int)).shape == (0, 8)


def test_model_with_head_shapes_gradients_and_plain_config_unchanged():
    plain = debug()
    assert "track_hidden" not in plain.to_dict()  # checkpoints without a head keep their config and model id
    config = debug(track_hidden=12)
    assert config.to_dict()["track_hidden"] == 12 and config.output_dim == 12 and plain.output_dim == plain.embed_dim
    model = build_model(config)
    pooled = torch.randn(3, 2 * config.embed_dim + 2 * config.n_tags + config.n_genres)
    out = model.track_head(pooled, torch.randn(3, CONTEXT_DIM))
    assert out.tags.shape == (3, config.n_tags) and out.genre.shape == (3, config.n_genres)
    torch.testing.assert_close(out.embedding.norm(dim=1), torch.ones(3))
    (out.tags.sum() + out.genre.sum()).backward()
    assert all(p.grad is not None for p in model.track_head.parameters())
    with pytest.raises(ParameterError, match="context"):
        model.track_head(pooled, torch.randn(3, CONTEXT_DIM - 1))


def test_inference_with_head_needs_context_and_is_independent_of_batching(rng, tmp_path):
    torch.manual_seed(0)
    model = build_model(debug(track_hidden=12)).eval()
    mels = [rng.normal(-40, 10, (128, n)).astype(np.float32) for n in (500, 170, 320)]
    ctx = track_context(*_descriptors(rng, 3))
    with pytest.raises(ParameterError, match="track head"):
        predict_logmels(model, mels, chunk_frames=160)
    with pytest.raises(ParameterError, match="shape"):
        predict_logmels(model, mels, chunk_frames=160, context=ctx[:2])
    out = predict_logmels(model, mels, chunk_frames=160, context=ctx)
    assert out["embedding"].shape == (3, 12) and out["tag_probs"].shape == (3, 8)
    np.testing.assert_allclose(np.linalg.norm(out["embedding"], axis=1), 1.0, rtol=1e-5)
    alone = predict_logmels(model, mels[1:2], chunk_frames=160, context=ctx[1:2])
    for key in ("tag_probs", "genre_probs", "embedding"):
        np.testing.assert_array_equal(alone[key][0], out[key][1])
    # the round trip keeps the head, its frozen standardisation, and the id
    model.track_head.set_standardisation(rng.random((4, model.track_head.in_dim)), rng.random((4, CONTEXT_DIM)))
    path = tmp_path / "head.pt"
    mid = save_checkpoint(path, model, config=debug(track_hidden=12), tags=[f"t{i}" for i in range(8)],
                          genres=list("abcd"), thresholds=np.full(8, 0.5), metrics={}, analysis={})
    loaded = load_checkpoint(path)
    assert loaded.model_id == mid == model_id(model.state_dict(), debug(track_hidden=12))
    again = predict_logmels(loaded.model, mels, chunk_frames=160, context=ctx)
    np.testing.assert_array_equal(again["tag_probs"], predict_logmels(model, mels, chunk_frames=160, context=ctx)["tag_probs"])


def test_backbone_track_embedding_is_the_mean_chunk_embedding_and_keeps_the_head_outputs(rng):
    from mir.models.inference import aggregate, predict_chunk_outputs

    torch.manual_seed(0)
    head_model = build_model(debug(track_hidden=12)).eval()
    config = debug(track_hidden=12, track_embedding="backbone")
    assert config.output_dim == config.embed_dim and config.to_dict()["track_embedding"] == "backbone"
    assert "track_embedding" not in debug(track_hidden=12).to_dict()  # head-embedding models keep their ids
    model = build_model(config).eval()
    model.load_state_dict(head_model.state_dict())
    mels = [rng.normal(-40, 10, (128, n)).astype(np.float32) for n in (500, 170)]
    ctx = track_context(*_descriptors(rng, 2))
    out = predict_logmels(model, mels, chunk_frames=160, context=ctx)
    same = predict_logmels(head_model, mels, chunk_frames=160, context=ctx)
    np.testing.assert_array_equal(out["tag_probs"], same["tag_probs"])  # only the embedding differs
    assert out["embedding"].shape == (2, config.embed_dim) and same["embedding"].shape == (2, 12)
    for i, mel in enumerate(mels):  # the mean of the chunks' unit embeddings, as the backbone alone gives it
        per_chunk, counts = predict_chunk_outputs(model, [mel], chunk_frames=160)
        np.testing.assert_allclose(out["embedding"][i], aggregate(per_chunk, counts)["embedding"][0], atol=1e-5)
    with pytest.raises(ParameterError, match="track_embedding"):
        debug(track_hidden=12, track_embedding="tail")
