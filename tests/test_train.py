"""Training (mir.train: labels, splits, loop, resume, reproducibility) and evaluation, on the tiny demo collection.

The collection (84 clips of 6 s, 21 two-level genres, 21 tags) is built, scanned and analysed once per session;
every training run uses the ``debug`` model, so each takes a second or two on CPU.
"""
from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from mir.catalog import Library, analyze
from mir.datasets import GENRES
from mir.datasets._build import split_targets
from mir.datasets._spec import SIZES
from mir.cli.main import main as cli
from mir.errors import LabelError, ModelError, ParameterError
from mir.models import load_checkpoint
from mir.models.inference import predict_logmels
from mir.train import (
    Augment, LabelWarning, TrainConfig, evaluate, last_path, load_state, prepare, resolve_labels, train, write_report,
)
from mir.train.data import hash_splits
from mir.train.loop import class_weights, init_model, tagging_loss
from mir.train.metrics import MetricWarning, calibrate_thresholds, f1

QUICK = dict(model="debug", batch_size=8, chunks_per_track=4, lr=1e-2, warmup_epochs=0.0, patience=0)
N_GENRES = len(GENRES)
SPLIT_N = {k: v * N_GENRES for k, v in split_targets(SIZES["tiny"].clips_per_genre).items()}  # train/valid/test
N_TINY = sum(SPLIT_N.values())
STEPS = SPLIT_N["train"] * QUICK["chunks_per_track"] // QUICK["batch_size"]  # one epoch


@pytest.fixture(scope="session")
def tiny(tmp_path_factory, mirdemo_tiny) -> dict:
    """A copy of the tiny demo collection (tests add label files to it), a library of it (scanned and
    analysed), and its prepared training data."""
    root = tmp_path_factory.mktemp("train")
    shutil.copytree(mirdemo_tiny.path, root / "data")
    labels_path = root / "data" / Path(mirdemo_tiny.labels_path).name
    lib = Library.open_or_create(root / "lib")
    lib.scan([root / "data" / "audio"])
    analyze(lib, workers=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LabelWarning)
        data = prepare(lib, labels_path, splits=root / "data" / "clips.parquet")
    return {"root": root, "data": root / "data", "labels": labels_path, "lib": lib, "prepared": data,
            "splits": root / "data" / "clips.parquet"}


def run(tiny, out: Path, **overrides):
    config = TrainConfig(**{**QUICK, "epochs": 1, **overrides})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", (LabelWarning, MetricWarning))
        return train(tiny["prepared"], out, config=config)


def weights(path: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(path).model.state_dict()


def assert_same_weights(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert different == []


def write_csv(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


# --- labels and splits -------------------------------------------------------------------------
def test_labels_resolve_by_path_and_by_track_id(tiny, tmp_path):
    lib = tiny["lib"]
    labels = pd.read_csv(tiny["labels"], keep_default_na=False)
    files = lib.files().set_index("path")["hash"]
    tracks = lib.tracks().set_index("hash")["track_id"]
    # ids (and unique id prefixes), absolute paths, and paths relative to the labels file's folder
    refs = []
    for i, t in enumerate(labels["track"]):
        h = files[str((tiny["data"] / t).resolve())]
        refs.append(tracks[h] if i % 3 == 0 else tracks[h][:10] if i % 3 == 1 else str(tiny["data"] / t))
    moved = labels.assign(track=refs)
    moved.to_csv(tmp_path / "labels.csv", index=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LabelWarning)
        a = resolve_labels(lib, tiny["labels"])
        b = resolve_labels(lib, tmp_path / "labels.csv")
    assert len(a) == N_TINY and a.hashes == b.hashes
    np.testing.assert_array_equal(a.y_tags, b.y_tags)
    np.testing.assert_array_equal(a.y_genre, b.y_genre)
    assert len(a.genres) == N_GENRES and (a.y_genre >= 0).all()


def rare_tag_labels(tiny, path: Path, tag: str = "synth_pad") -> Path:
    """The tiny labels with ``tag`` kept on its first track only (absolute paths, so ``path`` may be anywhere)."""
    frame = pd.read_csv(tiny["labels"], keep_default_na=False)
    first = frame.index[frame["tags"].str.split("|").map(lambda ts: tag in ts)][0]
    frame["tags"] = [t if i == first else "|".join(x for x in t.split("|") if x != tag) for i, t in enumerate(frame["tags"])]
    frame["track"] = [str(tiny["data"] / t) for t in frame["track"]]
    frame.to_csv(path, index=False)
    return path


def test_tag_seen_once_warns_and_is_dropped(tiny, tmp_path):
    with pytest.warns(LabelWarning, match=r"1 tag\(s\) occur on fewer than 2 tracks and are dropped.*'synth_pad'"):
        labels = resolve_labels(tiny["lib"], rare_tag_labels(tiny, tmp_path / "labels.csv"))
    assert "synth_pad" not in labels.tags and "piano" in labels.tags
    assert labels.y_tags.shape == (N_TINY, 20)


def test_wrong_columns_is_an_error(tiny, tmp_path):
    bad = write_csv(tmp_path / "labels.csv", "file,genre,tags\naudio/x.wav,jig,piano\n")
    with pytest.raises(LabelError, match=r"columns are \['file', 'genre', 'tags'\]; expected exactly"):
        resolve_labels(tiny["lib"], bad)


def weighted_labels(tiny, path: Path, weight_of) -> Path:
    """The tiny labels (absolute paths) with a ``weight`` column: ``weight_of(row index)`` (a string)."""
    frame = pd.read_csv(tiny["labels"], keep_default_na=False)
    frame["track"] = [str(tiny["data"] / t) for t in frame["track"]]
    frame["weight"] = [weight_of(i) for i in range(len(frame))]
    frame.to_csv(path, index=False)
    return path


def test_label_weights_are_read_checked_and_kept_by_subsets(tiny, tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LabelWarning)
        plain = resolve_labels(tiny["lib"], tiny["labels"])
        weighted = resolve_labels(tiny["lib"], weighted_labels(tiny, tmp_path / "w.csv", lambda i: ["", "2", "0.5"][i % 3]))
    assert plain.weights is None
    assert weighted.hashes == plain.hashes and weighted.weights.tolist() == [[1.0, 2.0, 0.5][i % 3] for i in range(N_TINY)]
    assert weighted.subset(np.arange(3)).weights.tolist() == [1.0, 2.0, 0.5]
    assert weighted.fingerprint() != plain.fingerprint()
    for bad in ("-1", "x", "inf", "nan"):
        path = weighted_labels(tiny, tmp_path / "bad.csv", lambda i: bad if i == 4 else "1")
        with pytest.raises(LabelError, match=rf"bad.csv line 6: weight '{bad}' is not a number ≥ 0"):
            resolve_labels(tiny["lib"], path)
    zero = weighted_labels(tiny, tmp_path / "zero.csv", lambda i: "0")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LabelWarning)
        data = prepare(tiny["lib"], zero, splits=tiny["splits"])
    with pytest.raises(LabelError, match="every training track has weight 0"):
        train(data, tmp_path / "m.pt", config=TrainConfig(**{**QUICK, "epochs": 1}))


def test_draw_counts_have_the_weights_as_expectation(rng):
    from mir.train.data import draw_counts

    assert draw_counts(None, 4, rng).tolist() == [1, 1, 1, 1]
    w = np.array([0.0, 1.0, 3.0, 0.25, 2.5])
    draws = np.stack([draw_counts(w, 5, rng) for _ in range(4000)])
    assert (draws[:, :3] == [0, 1, 3]).all() and set(np.unique(draws[:, 3])) == {0, 1} and set(np.unique(draws[:, 4])) == {2, 3}
    np.testing.assert_allclose(draws.mean(axis=0), w, atol=0.03)


def test_weighted_epochs_draw_tracks_by_weight(tiny, tmp_path):
    """A weight-0 track is never drawn, a weight-3 track three times as often as a weight-1 track; in
    chunk training, with genre-balanced sampling on top, and in track-head training."""
    from mir.train.loop import _Batches, _check_splits
    from mir.train.track_head import _HeadEpochs

    path = weighted_labels(tiny, tmp_path / "w.csv", lambda i: ["0", "1", "3"][i % 3])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LabelWarning)
        data = prepare(tiny["lib"], path, splits=tiny["splits"])
    train_idx, _ = _check_splits(data)
    w = data.labels.weights
    for balance in ("loss", "sampling"):
        batches = _Batches(data, TrainConfig(**{**QUICK, "balance": balance}), train_idx)
        rows = np.concatenate([batches.order(np.random.default_rng(s)) for s in range(30)])
        counts = np.bincount(rows, minlength=len(w))[train_idx]
        assert counts[w[train_idx] == 0].sum() == 0
        if balance == "loss":  # exact multiples: integer weights
            assert (counts == 30 * QUICK["chunks_per_track"] * w[train_idx]).all()
        else:
            assert counts[w[train_idx] == 3].mean() > 2 * counts[w[train_idx] == 1].mean()
    epochs = _HeadEpochs.__new__(_HeadEpochs)  # just its draw: the order of one epoch
    epochs.weights, epochs.train_idx, epochs.rng = w[train_idx], train_idx, np.random.default_rng(0)
    assert (np.bincount(epochs.order(), minlength=len(train_idx)) == w[train_idx]).all()


def test_empty_label_set_is_an_error(tiny, tmp_path):
    first = tiny["labels"].read_text().splitlines()[1].split(",")[0]
    bad = write_csv(tmp_path / "labels.csv", f"track,genre,tags\n{first},,\n")
    with pytest.raises(LabelError, match="has neither a genre nor tags"):
        resolve_labels(tiny["lib"], bad)


def test_unknown_tracks_warn_with_count_and_examples_or_fail_when_none_resolve(tiny, tmp_path):
    lines = tiny["labels"].read_text().splitlines()
    text = "\n".join(lines + ["audio/nowhere/a.wav,jig,piano|organ", "deadbeefdeadbeef,reel,piano"]) + "\n"
    labels_file = write_csv(tiny["data"] / "labels-extra.csv", text)
    try:
        with pytest.warns(LabelWarning, match=rf"2 of {N_TINY + 2} labelled tracks are not in the library.*'audio/nowhere/a.wav'"):
            labels = resolve_labels(tiny["lib"], labels_file)
        assert len(labels) == N_TINY
    finally:
        labels_file.unlink()
    none = write_csv(tmp_path / "labels.csv", "track,genre,tags\nnope.wav,jig,piano\nabcdef12,reel,organ\n")
    with pytest.raises(LabelError, match=r"none of its 2 tracks is in library"):
        resolve_labels(tiny["lib"], none)


def test_tracks_not_analysed_tell_the_user_to_run_analyze(tiny, tmp_path):
    lib = Library.open_or_create(tmp_path / "lib")
    lib.scan([tiny["data"] / "audio" / "folk" / "jig"])  # scanned, never analysed
    rows = [ln for ln in tiny["labels"].read_text().splitlines() if ln.startswith("audio/folk/jig/")]
    labels_file = write_csv(tiny["data"] / "labels-jig.csv", "track,genre,tags\n" + "\n".join(rows) + "\n")
    try:
        with pytest.raises(LabelError, match=r"4 of 4 labelled tracks have no log-mel yet .*run `mir analyze "):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", LabelWarning)
                prepare(lib, labels_file, splits=tiny["splits"])
    finally:
        labels_file.unlink()


def test_splits_file_csv_and_errors_and_hash_split_warning(tiny, tmp_path):
    lib, clips = tiny["lib"], pd.read_parquet(tiny["splits"])
    data = tiny["prepared"]
    assert data.counts() == SPLIT_N
    # the same splits as CSV, with absolute paths, give the same assignment
    csv = tmp_path / "splits.csv"
    clips.assign(track=[str(tiny["data"] / t) for t in clips["track"]])[["track", "split"]].to_csv(csv, index=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LabelWarning)
        again = prepare(lib, tiny["labels"], splits=csv)
    assert list(again.split) == list(data.split)
    bad = write_csv(tmp_path / "bad.csv", "track,fold\naudio/x.wav,1\n")
    with pytest.raises(LabelError, match=r"lacks column\(s\) \['split'\]"):
        prepare(lib, tiny["labels"], splits=bad)
    bad = write_csv(tmp_path / "bad2.csv", "track,split\naudio/x.wav,holdout\n")
    with pytest.raises(LabelError, match=r"unknown split name\(s\) \['holdout'\]"):
        prepare(lib, tiny["labels"], splits=bad)
    with pytest.warns(LabelWarning, match="excerpts of the same work may land in different splits"):
        hashed = prepare(lib, tiny["labels"])
    assert list(hashed.split) == list(hash_splits(hashed.labels.hashes))  # deterministic
    assert set(hashed.split) <= {"train", "valid", "test"} and (hashed.split == "train").sum() > SPLIT_N["train"]


def test_augment_changes_chunks_reproducibly_and_off_is_identity(tiny, rng):
    bank = tiny["prepared"].bank
    x = bank.chunks(np.arange(4), np.zeros(4, int), 160)
    a = Augment()(x.copy(), np.random.default_rng(1))
    b = Augment()(x.copy(), np.random.default_rng(1))
    np.testing.assert_array_equal(a, b)
    assert a.shape == x.shape and a.dtype == np.float32 and np.isfinite(a).all() and not np.array_equal(a, x)
    np.testing.assert_array_equal(Augment.off()(x.copy(), rng), x)
    gain = Augment(gain_db=6.0, noise=0.0, time_masks=0, freq_masks=0)(x.copy(), np.random.default_rng(2)) - x
    assert np.allclose(gain, gain[:, :1, :1], atol=1e-4) and np.abs(gain).max() <= 6.0  # one offset per chunk
    starts = bank.random_starts(np.arange(N_TINY), 160, rng, shift=False)
    assert np.all(starts % 160 == 0) and np.all(starts + 160 <= bank.lengths)


# --- training ----------------------------------------------------------------------------------
def _fixed_batch_loss(model: nn.Module, data, idx) -> float:
    """Loss on a fixed batch: batch-norm on the batch's own statistics (as in training), no dropout."""
    model.eval()
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.train()
    x = torch.from_numpy(data.bank.chunks(idx, np.full(len(idx), 40), 160)).unsqueeze(1)
    pos_weight, genre_w = class_weights(data.labels, idx, "loss")
    with torch.no_grad():
        out = model(x)
    y_t, y_g = torch.from_numpy(data.labels.y_tags[idx]), torch.from_numpy(data.labels.y_genre[idx])
    return float(tagging_loss(out, y_t, y_g, pos_weight=pos_weight, genre_weight_vec=genre_w))


def test_one_epoch_lowers_the_loss_and_writes_a_complete_checkpoint(tiny, tmp_path):
    data = tiny["prepared"]
    result = run(tiny, tmp_path / "m.pt", chunks_per_track=8)
    config = TrainConfig(**{**QUICK, "epochs": 1})
    before = _fixed_batch_loss(init_model(config.model_config(data.labels, 128), seed=0), data, data.index("train"))
    loaded = load_checkpoint(tmp_path / "m.pt")
    after = _fixed_batch_loss(loaded.model, data, data.index("train"))
    # measured over seeds 0-3: the loss falls 8-15 % (3.6 -> 3.2), mostly tag priors and genre
    assert after < 0.95 * before and before - after > 0.15, (before, after)
    steps = result.step_losses
    assert len(steps) == 2 * STEPS and np.mean(steps[-5:]) < np.mean(steps[:5])
    assert loaded.tags == data.labels.tags and loaded.genres == data.labels.genres
    assert loaded.config.widths == (4, 8, 8) and loaded.analysis["n_mels"] == 128
    for split in ("valid", "test"):
        assert 0.0 <= loaded.metrics[split]["tags/roc_auc_macro"] <= 1.0
        assert loaded.metrics[split]["n_tracks"] == SPLIT_N[split] and "genre/accuracy" in loaded.metrics[split]
    assert loaded.metrics["best_epoch"] == 1 and len(loaded.metrics["history"]) == 1
    assert loaded.extra["train_config"]["seed"] == 0 and loaded.extra["n_tracks"]["train"] == SPLIT_N["train"]
    history = json.loads((tmp_path / "m.history.json").read_text())
    assert history[0]["epoch"] == 1 and "val_score" in history[0]


def test_same_seed_same_weights_other_seed_other_weights(tiny, tmp_path):
    run(tiny, tmp_path / "a.pt", seed=3)
    run(tiny, tmp_path / "b.pt", seed=3)
    run(tiny, tmp_path / "c.pt", seed=4)
    assert_same_weights(weights(tmp_path / "a.pt"), weights(tmp_path / "b.pt"))
    assert not torch.equal(weights(tmp_path / "a.pt")["tag_head.weight"], weights(tmp_path / "c.pt")["tag_head.weight"])


def test_early_stopping_keeps_the_best_epoch(tiny, tmp_path):
    # a learning rate too small to learn: the validation score only drifts (batch-norm statistics),
    # so the run stops 2 epochs after its best one and keeps that epoch's weights
    result = run(tiny, tmp_path / "m.pt", epochs=12, lr=1e-12, patience=2)
    best, history = result.best_epoch, result.history
    assert result.stopped_early and len(history) == best + 2 < 12
    assert history[best - 1]["best"] and not any(e["best"] for e in history[best:])
    assert load_state(last_path(tmp_path / "m.pt"))["stopped"]
    loaded = load_checkpoint(tmp_path / "m.pt")
    assert loaded.metrics["epochs_run"] == best + 2 and loaded.metrics["best_epoch"] == best
    assert_same_weights(loaded.model.state_dict(), load_state(last_path(tmp_path / "m.pt"))["best"]["state"])


@pytest.mark.parametrize("balance", ["sampling", "none"])
def test_other_balancing_modes_train(tiny, tmp_path, balance):
    result = run(tiny, tmp_path / "m.pt", balance=balance)
    assert len(result.step_losses) == STEPS and np.isfinite(result.step_losses).all()


def test_interrupted_run_resumes_to_the_same_weights(tiny, tmp_path):
    full = run(tiny, tmp_path / "full.pt", epochs=2)

    def interrupt(entry):
        if entry["epoch"] == 1:
            raise KeyboardInterrupt

    config = TrainConfig(**{**QUICK, "epochs": 2})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", (LabelWarning, MetricWarning))
        with pytest.raises(KeyboardInterrupt):
            train(tiny["prepared"], tmp_path / "cut.pt", config=config, on_epoch_end=interrupt)
        assert not (tmp_path / "cut.pt").exists()
        state = load_state(last_path(tmp_path / "cut.pt"))  # weights_only=True inside
        assert state["epoch"] == 1 and set(state) >= {"model", "optimizer", "scheduler", "rng", "best", "history"}
        resumed = train(tiny["prepared"], tmp_path / "cut.pt", config=config)
    assert resumed.resumed_from == 1 and len(resumed.step_losses) == STEPS
    assert_same_weights(weights(tmp_path / "full.pt"), weights(tmp_path / "cut.pt"))
    assert_same_weights(load_state(last_path(tmp_path / "full.pt"))["model"],
                        load_state(last_path(tmp_path / "cut.pt"))["model"])
    np.testing.assert_array_equal(full.thresholds, resumed.thresholds)
    assert [h["loss"] for h in full.history] == [h["loss"] for h in resumed.history]
    # a state from other settings: --resume refuses it, the default warns and starts afresh
    other = TrainConfig(**{**QUICK, "epochs": 2, "seed": 9})
    with pytest.raises(ModelError, match="other labels, splits or settings"):
        train(tiny["prepared"], tmp_path / "cut.pt", config=other, resume=True)
    with pytest.raises(ModelError, match="nothing to resume"):
        train(tiny["prepared"], tmp_path / "none.pt", config=other, resume=True)


def test_thresholds_are_calibrated_on_valid_stored_and_used_by_evaluate(tiny, tmp_path):
    data, lib = tiny["prepared"], tiny["lib"]
    run(tiny, tmp_path / "m.pt")
    loaded = load_checkpoint(tmp_path / "m.pt")
    valid = data.index("valid")
    y = data.labels.y_tags[valid]
    preds = predict_logmels(loaded.model, [data.bank.mels[i] for i in valid], chunk_frames=160)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MetricWarning)
        exact = calibrate_thresholds(y, preds["tag_probs"])
        # F1-optimal on valid: the stored thresholds make exactly the calibrated decisions there
        np.testing.assert_array_equal(preds["tag_probs"] >= loaded.thresholds, preds["tag_probs"] >= exact)
        assert np.all(loaded.thresholds <= exact) and not np.allclose(loaded.thresholds, 0.5)
        # evaluate decides with the stored thresholds, on float32 log-mels read from the library
        scores = evaluate(lib, tmp_path / "m.pt", tiny["labels"], splits=tiny["splits"], split="valid")
        probs = predict_logmels(loaded.model, [lib.logmel(data.labels.hashes[i]) for i in valid], chunk_frames=160)
        decided = f1(y, probs["tag_probs"] >= loaded.thresholds, average=None)
        at_half = f1(y, probs["tag_probs"] >= 0.5, average=None)
    assert scores["n_tracks"] == SPLIT_N["valid"] and scores["model_id"] == loaded.model_id
    assert list(scores["thresholds"].values()) == pytest.approx(list(loaded.thresholds))
    got = np.array([scores["tags/f1"][t] for t in loaded.tags])
    np.testing.assert_allclose(got, decided, equal_nan=True)
    assert not np.allclose(got, at_half, equal_nan=True)
    assert scores["tags/roc_auc_macro"] == pytest.approx(loaded.metrics["valid"]["tags/roc_auc_macro"], abs=1e-3)


# --- command line ------------------------------------------------------------------------------
def test_cli_train_then_evaluate_writes_json_and_pngs(tiny, tmp_path, capsys):
    lib = str(tiny["lib"].root)
    out = tmp_path / "cli.pt"
    labels = str(rare_tag_labels(tiny, tmp_path / "labels.csv"))
    assert cli(["train", lib, "--labels", labels, "--splits", str(tiny["splits"]), "--preset", "debug",
                "--epochs", "1", "--batch-size", "8", "--out", str(out), "-q"]) == 0
    text = capsys.readouterr()
    assert "epoch   1/1" in text.out and "wrote" in text.out and "synth_pad" in text.err
    assert out.exists() and last_path(out).exists()
    report = tmp_path / "eval"
    assert cli(["evaluate", lib, "--model", str(out), "--labels", labels, "--splits", str(tiny["splits"]),
                "--split", "test", "--out", str(report)]) == 0
    text = capsys.readouterr().out
    assert "macro ROC-AUC" in text and "confusion matrix" in text and "piano" in text
    metrics = json.loads((report / "metrics.json").read_text())
    assert metrics["split"] == "test" and metrics["n_tracks"] == SPLIT_N["test"]
    assert len(metrics["genre/confusion_matrix"]) == N_GENRES and "genre, top level" in text
    for png in ("roc_auc_per_tag.png", "confusion_matrix.png"):
        assert (report / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # a label error reaches the user as one line, exit code 1
    bad = write_csv(tmp_path / "bad.csv", "file,genre,tags\nx.wav,jig,piano\n")
    assert cli(["train", lib, "--labels", str(bad), "--preset", "debug", "--out", str(tmp_path / "x.pt")]) == 1
    assert "expected exactly" in capsys.readouterr().err


def test_a_preset_has_one_spelling():
    assert TrainConfig(model="short_chunk").model == "short_chunk"
    with pytest.raises(ParameterError, match="'short-chunk'; choose one of short_chunk, fast, debug"):
        TrainConfig(model="short-chunk")


def test_write_report_handles_nan_scores(tmp_path):
    scores = {"split": "test", "n_tracks": 3, "tags/roc_auc_macro": 0.75, "tags/roc_auc": {"a": 0.75, "b": float("nan")},
              "tags/pr_auc": {"a": 0.5, "b": float("nan")}}
    paths = write_report(scores, tmp_path)
    assert [p.name for p in paths] == ["metrics.json", "roc_auc_per_tag.png"]
    assert json.loads(paths[0].read_text())["tags/roc_auc"]["b"] is None


def test_track_head_trains_on_the_frozen_backbone_evaluates_and_tags(tiny, tmp_path, capsys):
    from mir.catalog.predictions import STAGE
    from mir.tagging import tag
    from mir.train.track_head import HeadConfig, train_track_head

    data = tiny["prepared"]
    assert data.context is not None and data.context.shape[0] == len(data.labels)
    backbone = tmp_path / "backbone.pt"
    run(tiny, backbone)
    config = HeadConfig(hidden=16, epochs=6, patience=0, seed=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", (LabelWarning, MetricWarning))
        result = train_track_head(data, backbone, tmp_path / "head.pt", config=config)
        again = train_track_head(data, backbone, tmp_path / "again.pt", config=config)
    assert result.model_id == again.model_id  # seeded: reproducible
    assert result.history[-1]["loss"] < result.history[0]["loss"]
    loaded = load_checkpoint(result.path)
    assert loaded.config.track_hidden == 16 and loaded.extra["backbone"] == result.backbone_id
    frozen = {k: v for k, v in loaded.model.state_dict().items() if not k.startswith("track_head.")}
    assert_same_weights(frozen, weights(backbone))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", (LabelWarning, MetricWarning))
        scores = evaluate(tiny["lib"], result.path, tiny["labels"], splits=tiny["splits"], split="test")
    # training scored float16 bank mels, evaluate reads the library's float32 ones (probabilities within 1e-3):
    # with 21 test tracks of a debug model, near-tied scores may swap, so the macro ROC-AUC agrees to 0.01
    assert scores["tags/roc_auc_macro"] == pytest.approx(result.metrics["test"]["tags/roc_auc_macro"], abs=0.01, nan_ok=True)
    # batch tagging stores the head's track outputs: 16-d embeddings, equal to a direct prediction
    report = tag(tiny["lib"], model=result.path)
    assert report.done == len(tiny["lib"].tracks(include_missing=False)) and report.failed == 0
    rows = tiny["lib"].stages.table(STAGE, result.model_id).read().set_index("hash")
    h = data.labels.hashes[0]
    direct = predict_logmels(loaded.model, [data.bank.mels[0].astype(np.float32)], chunk_frames=loaded.config.chunk_frames,
                             context=data.context[:1])
    assert len(rows.loc[h, "embedding"]) == 16
    np.testing.assert_allclose(rows.loc[h, "tag_probs"], direct["tag_probs"][0], atol=1e-3)  # bank mels are float16
    # worker processes read the descriptors themselves and store the same rows (to 1e-6: with the 84 clips of
    # mirdemo v2, 11 of 1,764 probabilities differ in the last float32 bit between the two batchings)
    import shutil

    copy = Library(shutil.copytree(tiny["lib"].root, tmp_path / "copy"))
    shutil.rmtree(copy.stages.table(STAGE, result.model_id).folder)
    assert tag(copy, model=result.path, workers=2, group_chunks=8).done == report.done  # several groups: the pool runs
    pooled = copy.stages.table(STAGE, result.model_id).read().set_index("hash").sort_index()
    for col in ("tag_probs", "genre_probs", "embedding"):
        np.testing.assert_allclose(np.stack(pooled[col].to_numpy()), np.stack(rows.sort_index()[col].to_numpy()),
                                   rtol=0, atol=1e-6)
    # the CLI trains the same kind of head
    assert cli(["train", str(tiny["lib"].root), "--labels", str(tiny["labels"]), "--splits", str(tiny["splits"]),
                "--track-head", str(backbone), "--track-hidden", "8", "--epochs", "2", "--out", str(tmp_path / "cli.pt")]) == 0
    assert "track head on backbone" in capsys.readouterr().out
    assert load_checkpoint(tmp_path / "cli.pt").config.track_hidden == 8


def test_track_head_on_a_training_state_uses_its_best_weights_so_far(tiny, tmp_path):
    from mir.train.track_head import HeadConfig, load_backbone, train_track_head

    backbone = tmp_path / "backbone.pt"
    run(tiny, backbone, epochs=2)
    from_state = load_backbone(last_path(backbone))  # what a still-running training has kept as best
    assert from_state.model_id == load_checkpoint(backbone).model_id and from_state.metrics["epochs_run"] == 2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", (LabelWarning, MetricWarning))
        result = train_track_head(tiny["prepared"], last_path(backbone), tmp_path / "head.pt",
                                  config=HeadConfig(hidden=8, epochs=2))
    extra = load_checkpoint(result.path).extra
    assert extra["backbone"] == from_state.model_id and extra["backbone_extra"]["training_state"].endswith(".last.pt")


def test_track_head_refuses_a_backbone_with_other_vocabularies(tiny, tmp_path):
    from mir.models import build_model, debug, save_checkpoint
    from mir.train.track_head import train_track_head

    other = tmp_path / "other.pt"
    save_checkpoint(other, build_model(debug()), config=debug(), tags=[f"x{i}" for i in range(8)], genres=list("abcd"),
                    thresholds=np.full(8, 0.5), metrics={}, analysis={})
    with pytest.raises(LabelError, match="vocabularies"):
        train_track_head(tiny["prepared"], other, tmp_path / "head.pt")


def test_head_model_on_a_library_with_older_descriptors_analyses_them_first(tiny, tmp_path, monkeypatch):
    import shutil

    from mir.catalog import stages as stages_mod
    from mir.tagging import tag
    from mir.train.track_head import HeadConfig, train_track_head

    backbone = tmp_path / "backbone.pt"
    run(tiny, backbone)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", (LabelWarning, MetricWarning))
        head = train_track_head(tiny["prepared"], backbone, tmp_path / "head.pt", config=HeadConfig(hidden=8, epochs=2))
    copy = Library(shutil.copytree(tiny["lib"].root, tmp_path / "copy"))
    monkeypatch.setattr(stages_mod, "DESCRIPTORS_CODE_VERSION", stages_mod.DESCRIPTORS_CODE_VERSION + "-next")
    n = len(copy.tracks(include_missing=False))
    skipped = tag(copy, model=head.path, analyze_missing=False)
    assert skipped.done == 0 and skipped.skipped_unanalysed == n and "run `mir analyze`" in skipped.summary()
    report = tag(copy, model=head.path)
    assert report.analysed == n and report.done == n and report.failed == 0


# --- two-level genres ----------------------------------------------------------------------------
def test_top_level_scores_of_two_level_and_of_flat_mirdemo_genres():
    from mir.train.evaluate import top_level_scores

    probs = np.eye(3)[[1, 1, 2]]  # predicted: reel, reel, rock
    for genres in (("folk/jig", "folk/reel", "rock/rock"), ("jig", "reel", "rock")):
        s = top_level_scores(np.array([0, 1, 2]), probs, genres)  # true: jig, reel, rock
        assert s == {"genre_top/accuracy": 1.0, "genre_top/balanced_accuracy": 1.0, "genre_top/names": ["folk", "rock"]}
    s = top_level_scores(np.array([0, 2, 2]), probs, ("folk/jig", "folk/reel", "rock/rock"))
    assert s["genre_top/accuracy"] == pytest.approx(2 / 3) and s["genre_top/balanced_accuracy"] == pytest.approx(0.75)
    assert top_level_scores(np.array([0, 1]), np.eye(2), ("blues", "jazz")) == {}  # flat genres with no coarser level


def test_a_model_trained_on_flat_genres_is_evaluated_at_its_granularity_on_two_level_labels(tiny, tmp_path):
    lib = tiny["lib"]
    frame = pd.read_csv(tiny["labels"], keep_default_na=False)
    assert frame["genre"].str.count("/").eq(1).all()
    flat = frame.assign(genre=[g.rsplit("/", 1)[-1] for g in frame["genre"]],  # the labels of dataset version 1
                        track=[str(tiny["data"] / t) for t in frame["track"]])
    flat.to_csv(tmp_path / "flat.csv", index=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", (LabelWarning, MetricWarning))
        data = prepare(lib, tmp_path / "flat.csv", splits=tiny["splits"])
        train(data, tmp_path / "flat.pt", config=TrainConfig(**{**QUICK, "epochs": 1}))
        assert "jig" in load_checkpoint(tmp_path / "flat.pt").genres
        on_two = evaluate(lib, tmp_path / "flat.pt", tiny["labels"], splits=tiny["splits"], split="test")
        on_flat = evaluate(lib, tmp_path / "flat.pt", tmp_path / "flat.csv", splits=tiny["splits"], split="test")
    assert on_two["genre/n_tracks"] == on_flat["genre/n_tracks"] == SPLIT_N["test"]  # every two-level label resolved
    assert on_two["genre/confusion_matrix"] == on_flat["genre/confusion_matrix"]
    assert on_two["genre/accuracy"] == on_flat["genre/accuracy"]
    assert on_two["genre_top/names"] == sorted({g.split("/")[0] for g in GENRES})
    assert on_two["genre_top/accuracy"] == on_flat["genre_top/accuracy"] >= on_two["genre/accuracy"]


def test_a_run_can_start_from_a_checkpoint_keeping_the_heads_whose_vocabulary_matches(tiny, tmp_path):
    from mir.catalog.labels import genre_top

    run(tiny, tmp_path / "base.pt")
    base = weights(tmp_path / "base.pt")
    config = TrainConfig(**{**QUICK, "epochs": 0})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", (LabelWarning, MetricWarning))
        same = train(tiny["prepared"], tmp_path / "same.pt", config=config, base=tmp_path / "base.pt")
        assert_same_weights(base, weights(same.path))  # same vocabularies: backbone and both heads
        assert load_checkpoint(same.path).extra["base_heads_kept"] == ["tag", "genre"]
        # the genres one level up: a new genre head, the backbone and the tag head as the base's
        frame = pd.read_csv(tiny["labels"])
        frame["genre"] = [genre_top(g) for g in frame["genre"]]
        top_csv = Path(tiny["labels"]).with_name(f"top-{tmp_path.name}.csv")  # beside the audio: paths resolve
        frame.to_csv(top_csv, index=False)
        top = prepare(tiny["lib"], top_csv, splits=tiny["data"] / "clips.parquet")
        assert len(top.labels.genres) < len(tiny["prepared"].labels.genres)
        other = train(top, tmp_path / "top.pt", config=config, base=tmp_path / "base.pt")
        scratch = train(top, tmp_path / "scratch.pt", config=config)
    w, w0 = weights(other.path), weights(scratch.path)
    assert w["genre_head.weight"].shape[0] == len(top.labels.genres)
    assert all(torch.equal(w[k], base[k]) for k in w if not k.startswith("genre_head."))
    assert torch.equal(w["genre_head.weight"], w0["genre_head.weight"])  # the seed's fresh head
    assert load_checkpoint(other.path).extra["base_heads_kept"] == ["tag"]
    # a state from a run with a base is not resumed by one without, and a preset that does not fit says so
    one = TrainConfig(**{**QUICK, "epochs": 1})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", (LabelWarning, MetricWarning))
        train(top, tmp_path / "one.pt", config=one, base=tmp_path / "base.pt")
    with pytest.raises(ModelError, match="other labels, splits or settings"):
        train(top, tmp_path / "one.pt", config=one, resume=True)
    with pytest.raises(ModelError, match="choose the matching --preset"):
        train(top, tmp_path / "x.pt", config=TrainConfig(**{**QUICK, "model": "fast", "epochs": 0}),
              base=tmp_path / "base.pt")


def test_a_frozen_backbone_run_trains_only_the_heads(tiny, tmp_path):
    run(tiny, tmp_path / "base.pt")
    base = weights(tmp_path / "base.pt")
    config = TrainConfig(**{**QUICK, "epochs": 2, "freeze_backbone": True})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", (LabelWarning, MetricWarning))
        with pytest.raises(ParameterError, match="needs a base model"):
            train(tiny["prepared"], tmp_path / "nobase.pt", config=config)
        frozen = train(tiny["prepared"], tmp_path / "frozen.pt", config=config, base=tmp_path / "base.pt")
    w = weights(frozen.path)
    heads = [k for k in w if k.startswith(("tag_head.", "genre_head."))]
    assert all(torch.equal(w[k], base[k]) for k in w if k not in heads)  # batch-norm statistics included
    assert any(not torch.equal(w[k], base[k]) for k in heads)
    assert load_checkpoint(frozen.path).extra["train_config"]["freeze_backbone"] is True


def test_fingerprint_of_whole_model_runs_is_unchanged_by_the_freeze_option():
    """States saved before ``freeze_backbone`` existed still resume: the field is hashed only when set."""
    import hashlib
    import json

    from mir.models import debug
    from mir.train.loop import _fingerprint

    class Data:
        def fingerprint(self):
            return "data"

    model_config = debug(n_tags=3, n_genres=2)
    cfg = TrainConfig(**QUICK).to_dict()
    for key in ("epochs", "patience", "freeze_backbone"):
        cfg.pop(key)
    before = hashlib.blake2b(json.dumps({"data": "data", "train": cfg, "model": model_config.to_dict()},
                                        sort_keys=True).encode(), digest_size=8).hexdigest()
    assert _fingerprint(Data(), TrainConfig(**QUICK), model_config) == before
    assert _fingerprint(Data(), TrainConfig(**{**QUICK, "freeze_backbone": True}), model_config) != before
