"""Tag decisions (mir.models.decisions): one member per exclusive group, measured tempo and mode win
where confident, and the tagging job re-decides stored tags when the rules change."""
from __future__ import annotations

import dataclasses
import json
import shutil

import numpy as np
import pytest
import torch

from mir import audio
from mir.catalog import Library, analyze
from mir.catalog.predictions import load_tags
from mir.config import get_config
from mir.datasets import TAG_GROUPS
from mir.errors import ParameterError
from mir.models import build_model, debug, save_checkpoint
from mir.models.decisions import DECISION_RULES, EXCLUSIVE_GROUPS, Measured, decide, tempo_bucket
from mir.tagging import tag

VOCAB = ["piano", "slow", "medium", "fast", "major", "minor", "duple", "triple", "compound", "solo", "ensemble"]
THRESHOLDS = np.array([0.5, 0.776, 0.189, 0.71, 0.395, 0.487, 0.214, 0.221, 0.819, 0.543, 0.418])


def probs(**p) -> np.ndarray:
    return np.array([[p.get(t, 0.0) for t in VOCAB]])


def test_an_exclusive_group_keeps_its_most_probable_member_above_threshold():
    # the trumpet recording: medium, compound 0.89, duple 0.25, minor 0.56, major 0.44 all above threshold
    d = decide(probs(piano=0.9, medium=1.0, major=0.44, minor=0.56, duple=0.25, compound=0.89, solo=0.99),
               THRESHOLDS, VOCAB)[0]
    assert d.tags == ["medium", "solo", "piano", "compound", "minor"]
    assert set(d.why) == {"mode", "meter"} and d.why["mode"].startswith("minor: most probable")
    # a member under its threshold is never decided, however the others rank
    assert decide(probs(slow=0.7, medium=0.1), THRESHOLDS, VOCAB)[0].tags == []


@pytest.mark.parametrize("bpm, confidence, expected", [
    (136.7, 0.76, "fast"),  # Brahms: the model said medium 0.57 and fast 0.61; the measured 137 BPM wins
    (100.0, 0.76, "medium"),
    (60.0, 0.9, "slow"),  # measured wins even when the model has no candidate above threshold
    (136.7, 0.44, "medium"),  # speech-like pulse (0.44 < 0.6): the model's most probable candidate
])
def test_a_confident_measured_tempo_decides_the_tempo_bucket(bpm, confidence, expected):
    rhythm = np.zeros(13)
    rhythm[6] = confidence  # tempogram ratio at factor 1
    measured = Measured.from_descriptors({"tempo": bpm, "rhythm": rhythm, "mode": "minor", "key_confidence": 0.1})
    d = decide(probs(medium=0.9 if bpm != 60.0 else 0.1, fast=0.8), THRESHOLDS, VOCAB, measured=[measured])[0]
    assert [t for t in d.tags if t in EXCLUSIVE_GROUPS["tempo"]] == [expected]
    assert ("BPM" in d.why["tempo"]) == (confidence >= 0.6)


def test_mode_follows_a_confident_key_estimate_and_not_an_unsure_one():
    model = probs(major=0.37, minor=0.63)  # the humpback recording: key B major at confidence 0.24
    unsure = Measured(bpm=129.8, tempo_confidence=None, mode="major", key_confidence=0.24)
    assert decide(model, THRESHOLDS, VOCAB, measured=[unsure])[0].tags == ["minor"]
    sure = Measured(mode="major", key_confidence=0.9)
    d = decide(model, THRESHOLDS, VOCAB, measured=[sure])[0]
    assert d.tags == ["major"] and "key estimate is major, confidence 0.90" in d.why["mode"]
    assert "minor 0.63" in d.why["mode"]  # says what the model thought


def test_decisions_apply_only_to_groups_in_the_vocabulary_and_check_shapes():
    vocab = ["major", "rock"]  # one member of a group: nothing to exclude
    assert decide(np.array([[0.9, 0.9]]), [0.5, 0.5], vocab)[0].tags == ["major", "rock"]
    with pytest.raises(ParameterError, match="thresholds"):
        decide(np.zeros((1, 2)), [0.5], vocab)
    with pytest.raises(ParameterError, match="one measurement per track"):
        decide(np.zeros((2, 2)), [0.5, 0.5], vocab, measured=[None])
    assert tempo_bucket(75.9) == "slow" and tempo_bucket(76) == "medium" and tempo_bucket(112) == "fast"


def test_the_demo_collection_labels_use_the_same_exclusive_groups():
    assert {g: m for g, m in TAG_GROUPS.items() if g != "instrument"} == EXCLUSIVE_GROUPS


# --- the tagging job ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def analysed(tmp_path_factory):
    root = tmp_path_factory.mktemp("decisions")
    sr = 22050
    t = np.arange(int(6 * sr)) / sr
    for i, f in enumerate((220.0, 330.0, 440.0)):
        clicks = (np.sin(2 * np.pi * 2.0 * t) > 0.95).astype(np.float32)  # a pulse at 120 BPM
        audio.save(root / f"c{i}.wav", (0.3 * np.sin(2 * np.pi * f * t) + 0.3 * clicks).astype(np.float32), sr)
    lib = Library.open_or_create(root / "lib")
    lib.scan([root])
    analyze(lib, workers=1)
    torch.manual_seed(0)
    config = debug(n_tags=len(VOCAB), n_genres=2)
    model = root / "m.pt"
    # thresholds of 0: every tag is a candidate, so every group has to be narrowed down
    model_id = save_checkpoint(model, build_model(config), config=config, tags=VOCAB, genres=["a", "b"],
                               thresholds=np.zeros(len(VOCAB)), metrics={},
                               analysis=dataclasses.asdict(get_config().analysis))
    return lib, model, model_id


def test_stored_tags_hold_at_most_one_member_of_each_group(analysed, tmp_path):
    lib, model, model_id = analysed
    shutil.copytree(lib.root, tmp_path / "lib")
    lib = Library(tmp_path / "lib")
    tag(lib, model=model)
    frame = load_tags(lib, model_id)
    assert len(frame) == 3
    for tags in frame["tags"]:
        assert "piano" in tags
        for members in EXCLUSIVE_GROUPS.values():
            assert len(set(tags) & set(members)) == 1, tags
    info = json.loads((lib.stages.table("tags", model_id).folder / "model.json").read_text())
    assert info["decision_rules"] == DECISION_RULES


def test_tags_decided_by_older_rules_are_re_decided_and_probabilities_kept(analysed, tmp_path):
    lib, model, model_id = analysed
    shutil.copytree(lib.root, tmp_path / "lib")
    lib = Library(tmp_path / "lib")
    tag(lib, model=model)
    table = lib.stages.table("tags", model_id)
    before = table.read()
    old = before.copy()
    old["tags"] = [list(VOCAB) for _ in range(len(old))]  # as the per-tag rule decided with thresholds 0
    table.append(old)
    table.compact()
    info_path = table.folder / "model.json"
    info = json.loads(info_path.read_text())
    del info["decision_rules"]  # written by a mir that decided each tag on its own
    info_path.write_text(json.dumps(info))
    assert tag(lib, model=model).done == 0
    after = table.read()
    assert [list(t) for t in after["tags"]] == [list(t) for t in before["tags"]]
    for col in ("tag_probs", "genre_probs", "embedding"):
        np.testing.assert_array_equal(np.stack(after[col].to_numpy()), np.stack(before[col].to_numpy()))
