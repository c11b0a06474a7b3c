"""How well mir's embeddings hear real recordings: the measures of issue 14, in one run.

    python benchmarks/real_audio.py --realmusic DIR --nonmusic DIR [--tracks-per-package 12]
        [--model PATH ...] [--out benchmarks/results/real_audio.json] [--threads 2]

Data: the held-out ``test`` packages of a built ``realmusic`` corpus (``mir dataset build realmusic``),
tracks of at least 40 s, at most ``--tracks-per-package`` per package (evenly spaced through the
sorted list), 4 excerpts of 10 s per track at the centres of its quarters (so they never overlap).
Non-music: the ``test`` split of a built ``nonmusic`` corpus (held-out espeak voices, the test
packages' effects, silence, hum, noise), at most ``--nonmusic-per-kind`` per kind, first 10 s each.

Embeddings compared (each model given; the shipped default always):

- ``<model> indexed``: what ``mir tag`` stores and ``mir index`` searches (the style embedding of a
  model with a style block, else the track head's or the backbone's vector, as the model says),
  computed by :func:`mir.tagging.predict_files` on the excerpt files;
- ``<model> backbone``: the backbone's 256-d chunk embeddings averaged over half-overlapping chunks
  (hop ≈ half a chunk, spread over the excerpt), L2-normalised;
- ``mfcc``: mean and standard deviation of 20 MFCCs (librosa), each dimension standardised with
  the statistics of the original test excerpts.

Measures (cosine similarity throughout; :mod:`mir.train.retrieval_metrics`):

- same-recording P@3: for every excerpt, the share of its 3 nearest other excerpts from its track;
- degraded-copy rank-1, per kind: copies at −12 dB, resampled through 8 kHz, with white noise at
  20 dB SNR, and re-encoded as Ogg Vorbis (``mir.audio.save``), each searched against all originals;
- 5-NN balanced accuracy by package (neighbours from other tracks only); the weak style labels of
  the corpus are too sparse for a style measure, see the JSON's ``style_labels``;
- music vs non-music ROC-AUC: no model has a music head yet, so every embedding gets a logistic
  regression fitted on the TRAIN splits' embeddings (one 10 s excerpt of up to
  ``--train-tracks-per-package`` tracks per train package, and train non-music), applied to the
  test music excerpts and test non-music; and its verdict (probability < 0.5 = non-music) on the
  14 recordings in ``--shared-audio`` (6 non-music should be flagged, 8 music should not).

Not a test: nothing asserts. Prints a table and writes JSON (``--out``).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SR = 22050
SECONDS = 10.0
EXCERPTS = 4
KINDS = ("gain", "8k", "noise", "ogg")
SHARED_MUSIC = ("brahms", "nutcracker", "vibeace", "fishin", "trumpet", "choice", "pistachio", "sweetwaltz")
SHARED_NON_MUSIC = ("speech1", "speech2", "speech3", "robin", "humpback", "pibble")


# --- data ------------------------------------------------------------------------------------------
def pick_evenly(items: list, n: int) -> list:
    """At most ``n`` of ``items``, evenly spaced (first and last included), in order."""
    if len(items) <= n:
        return list(items)
    return [items[i] for i in np.unique(np.rint(np.linspace(0, len(items) - 1, n)).astype(int))]


def excerpt_offsets(duration: float, n: int = EXCERPTS, seconds: float = SECONDS) -> list[float]:
    """Start times of ``n`` excerpts of ``seconds``, centred in the ``n`` equal parts of the track."""
    part = duration / n
    return [round(k * part + (part - seconds) / 2, 3) for k in range(n)]


def degrade(y: np.ndarray, kind: str, rng: np.random.Generator) -> np.ndarray:
    """A degraded copy of ``y`` (``gain``: −12 dB; ``8k``: through 8 kHz; ``noise``: 20 dB SNR white noise)."""
    from mir.audio.load import resample

    if kind == "gain":
        return (y * 10 ** (-12 / 20)).astype(np.float32)
    if kind == "8k":
        return resample(resample(y, SR, 8000), 8000, SR)[: y.size].astype(np.float32)
    if kind == "noise":
        rms = float(np.sqrt(np.mean(y.astype(np.float64) ** 2)))
        return np.clip(y + rng.standard_normal(y.size) * rms / 10, -1, 1).astype(np.float32)
    raise ValueError(kind)


def select_music(rdir: Path, split: str, per_package: int, *, min_seconds: float) -> list[dict]:
    from mir.datasets import realmusic

    rows = [r for r in realmusic.tracks(rdir, split=split) if r["duration"] >= min_seconds]
    out = []
    for package in sorted({r["package"] for r in rows}):
        out += pick_evenly(sorted((r for r in rows if r["package"] == package), key=lambda r: r["path"]), per_package)
    return out


def select_nonmusic(ndir: Path, split: str, per_kind: int) -> list[dict]:
    from mir.datasets import nonmusic

    rows = nonmusic.clips(ndir, split=split)
    out = []
    for kind in sorted({r["kind"] for r in rows}):
        out += pick_evenly(sorted((r for r in rows if r["kind"] == kind), key=lambda r: r["path"]), per_kind)
    return out


def materialise(args, work: Path) -> dict:
    """Write every excerpt, copy and clip the run needs as a file; their paths and labels."""
    from mir import audio
    from mir.errors import AudioError

    test, skipped = [], []
    for row in select_music(args.realmusic, "test", args.tracks_per_package, min_seconds=EXCERPTS * SECONDS):
        try:  # a track with a silent excerpt (a module's silent tail) is left out whole
            test.append((row, [audio.load(row["path"], sr=SR, offset=off, duration=SECONDS)
                               for off in excerpt_offsets(row["duration"])]))
        except AudioError as exc:
            skipped.append(f"{row['path']}: {exc}")
    orig, groups, packages, styles, copies = [], [], [], [], {k: [] for k in KINDS}
    for t, (row, ys) in enumerate(test):
        for y in ys:
            i = len(orig)
            path = work / "orig" / f"{i:05d}.wav"
            audio.save(path, y, SR, subtype="FLOAT")
            orig.append(str(path))
            groups.append(t)
            packages.append(row["package"])
            styles.append(",".join(row["styles"]))
            rng = np.random.default_rng([args.seed, i])
            for kind in KINDS:
                p = work / kind / f"{i:05d}.{'ogg' if kind == 'ogg' else 'wav'}"
                if kind == "ogg":
                    audio.save(p, y, SR)
                else:
                    audio.save(p, degrade(y, kind, rng), SR, subtype="FLOAT")
                copies[kind].append(str(p))
    non_test = _clips(select_nonmusic(args.nonmusic, "test", args.nonmusic_per_kind), work / "nonmusic_test")
    train_music = select_music(args.realmusic, "train", args.train_tracks_per_package, min_seconds=SECONDS)
    tm = []
    for i, row in enumerate(train_music):
        try:
            y = audio.load(row["path"], sr=SR, offset=max(0.0, row["duration"] / 2 - SECONDS / 2), duration=SECONDS)
        except AudioError as exc:
            skipped.append(f"{row['path']}: {exc}")
            continue
        p = work / "music_train" / f"{i:05d}.wav"
        audio.save(p, y, SR, subtype="FLOAT")
        tm.append(str(p))
    non_train = _clips(select_nonmusic(args.nonmusic, "train", args.nonmusic_per_kind), work / "nonmusic_train")
    shared = sorted(str(p) for p in args.shared_audio.iterdir()
                    if audio.is_audio_path(p) and p.stem in SHARED_MUSIC + SHARED_NON_MUSIC) if args.shared_audio.is_dir() else []
    return {"orig": orig, "groups": groups, "packages": packages, "styles": styles, "copies": copies,
            "nonmusic_test": non_test, "music_train": tm, "nonmusic_train": non_train, "shared": shared,
            "test_tracks": [r["path"] for r, _ in test], "skipped": skipped}


def _clips(rows: list[dict], folder: Path) -> list[dict]:
    from mir import audio
    from mir.errors import AudioError

    out = []
    for i, r in enumerate(rows):
        try:
            y = audio.load(r["path"], sr=SR, duration=min(SECONDS, r["duration"]))
        except AudioError:  # a silent effect file: mir refuses it, so it cannot be scored
            continue
        p = folder / f"{i:05d}.wav"
        audio.save(p, y, SR, subtype="FLOAT")
        out.append({"path": str(p), "kind": r["kind"]})
    return out


# --- embeddings -----------------------------------------------------------------------------------------
def mfcc_features(paths: list[str]) -> np.ndarray:
    import librosa

    from mir import audio

    rows = []
    for p in paths:
        m = librosa.feature.mfcc(y=audio.load(p, sr=SR), sr=SR, n_mfcc=20)
        rows.append(np.concatenate([m.mean(axis=1), m.std(axis=1)]))
    return np.asarray(rows, dtype=np.float64)


def indexed_embeddings(loaded, model, paths: list[str]) -> np.ndarray:
    """What ``mir tag`` stores for each file (track head's vector when the model has one)."""
    from mir.tagging import predict_files

    return predict_files(model, paths, chunk_frames=loaded.config.chunk_frames)["embedding"].astype(np.float64)


def backbone_embeddings(loaded, model, paths: list[str]) -> np.ndarray:
    """Mean unit backbone embedding over half-overlapping chunks, L2-normalised."""
    from mir import audio
    from mir.config import get_config
    from mir.features import log_mel
    from mir.models.inference import aggregate, predict_chunk_outputs

    cfg = get_config().analysis
    chunk = loaded.config.chunk_frames
    out = []
    for b in range(0, len(paths), 64):
        mels = [log_mel(audio.load(p, sr=cfg.sample_rate), sr=cfg.sample_rate, n_fft=cfg.n_fft,
                        hop_length=cfg.hop_length, n_mels=cfg.n_mels, fmin=cfg.fmin, fmax=cfg.fmax)
                for p in paths[b : b + 64]]
        for mel in mels:  # one track at a time: its own number of chunks
            n = 1 + max(0, mel.shape[1] - chunk) // (chunk // 2)
            per_chunk, counts = predict_chunk_outputs(model, [mel], chunk_frames=chunk, n_chunks=n)
            out.append(aggregate(per_chunk, counts)["embedding"][0])
    return np.asarray(out, dtype=np.float64)


# --- measures -----------------------------------------------------------------------------------------------
def gate(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, shared_x: np.ndarray | None):
    """Logistic regression music(1)/non-music(0) on standardised features: (test probs, shared probs)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    clf = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000, class_weight="balanced"))
    clf.fit(train_x, train_y)
    shared = None if shared_x is None or len(shared_x) == 0 else clf.predict_proba(shared_x)[:, 1]
    return clf.predict_proba(test_x)[:, 1], shared


def measure(name: str, emb: dict[str, np.ndarray], data: dict, *, standardise: bool = False) -> dict:
    from mir.train.metrics import roc_auc
    from mir.train.retrieval_metrics import copy_rank1, knn_balanced_accuracy, same_recording_precision

    orig = emb["orig"]
    copies = {k: emb[k] for k in KINDS}
    if standardise:  # MFCC: z-score each dimension with the originals' statistics
        mu, sd = orig.mean(axis=0), orig.std(axis=0) + 1e-9
        orig = (orig - mu) / sd
        copies = {k: (v - mu) / sd for k, v in copies.items()}
    src = np.arange(len(orig))
    rank1 = {k: copy_rank1(v, orig, src) for k, v in copies.items()}
    res = {
        "embedding": name, "dim": int(orig.shape[1]),
        "same_recording_p_at_3": same_recording_precision(orig, data["groups"], k=3),
        "copy_rank1": rank1, "copy_rank1_overall": float(np.mean(list(rank1.values()))),
        "knn5_package_balanced": knn_balanced_accuracy(orig, data["packages"], data["groups"], k=5),
    }
    labelled = [i for i, s in enumerate(data["styles"]) if s]
    if len({data["styles"][i] for i in labelled}) >= 2 and len({data["groups"][i] for i in labelled}) >= 6:
        res["knn5_style_balanced_labelled_only"] = knn_balanced_accuracy(
            orig[labelled], [data["styles"][i] for i in labelled], [data["groups"][i] for i in labelled], k=5)
    train_x = np.vstack([emb["music_train"], emb["nonmusic_train"]])
    train_y = np.r_[np.ones(len(emb["music_train"])), np.zeros(len(emb["nonmusic_train"]))]
    test_x = np.vstack([emb["orig"], emb["nonmusic_test"]])
    test_y = np.r_[np.ones(len(emb["orig"])), np.zeros(len(emb["nonmusic_test"]))]
    p_test, p_shared = gate(train_x, train_y, test_x, emb.get("shared"))
    res["music_auc"] = roc_auc(test_y, p_test)
    kinds = [c["kind"] for c in data["nonmusic_test"]]
    res["music_auc_per_kind"] = {k: roc_auc(np.r_[np.ones(len(emb["orig"])), np.zeros(kinds.count(k))],
                                            np.r_[p_test[: len(emb["orig"])],
                                                  p_test[len(emb["orig"]):][np.array(kinds) == k]])
                                 for k in sorted(set(kinds))}
    if p_shared is not None:
        names = [Path(p).stem for p in data["shared"]]
        res["shared_audio"] = {n: round(float(p), 3) for n, p in zip(names, p_shared)}
        res["shared_non_music_flagged"] = int(sum(p < 0.5 for n, p in zip(names, p_shared) if n in SHARED_NON_MUSIC))
        res["shared_music_kept"] = int(sum(p >= 0.5 for n, p in zip(names, p_shared) if n in SHARED_MUSIC))
    return res


def table(results: list[dict]) -> str:
    head = (f"{'embedding':28s} {'dim':>4s} {'P@3':>6s} {'copy':>6s} {'-12dB':>6s} {'8kHz':>6s} {'noise':>6s} "
            f"{'ogg':>6s} {'5NN-pkg':>8s} {'AUC':>6s} {'flag6':>5s} {'keep8':>5s}")
    lines = [head, "-" * len(head)]
    for r in results:
        c = r["copy_rank1"]
        lines.append(f"{r['embedding']:28s} {r['dim']:4d} {r['same_recording_p_at_3']:6.3f} {r['copy_rank1_overall']:6.3f} "
                     f"{c['gain']:6.3f} {c['8k']:6.3f} {c['noise']:6.3f} {c['ogg']:6.3f} {r['knn5_package_balanced']:8.3f} "
                     f"{r['music_auc']:6.3f} {r.get('shared_non_music_flagged', '-')!s:>5s} {r.get('shared_music_kept', '-')!s:>5s}")
    lines.append("AUC / flag6 / keep8: logistic regression fitted on the train split's embeddings (no model has a music head)")
    return "\n".join(lines)


def _plain(value):
    """numpy scalars as Python numbers for the JSON report."""
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"cannot write {type(value).__name__} to JSON")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--realmusic", type=Path, default=Path("data/realmusic"), help="built realmusic corpus")
    ap.add_argument("--nonmusic", type=Path, default=Path("data/nonmusic"), help="built nonmusic corpus")
    ap.add_argument("--shared-audio", type=Path,
                    default=Path(os.environ.get("MIR_SHARED_AUDIO", ROOT.parent / "shared" / "audio")),
                    help="folder of the 14 real recordings, 8 music and 6 non-music (default: $MIR_SHARED_AUDIO "
                         "or ../shared/audio beside the repository)")
    ap.add_argument("--model", type=Path, action="append", default=[], help="extra checkpoint(s) to compare")
    ap.add_argument("--tracks-per-package", type=int, default=12, help="test tracks per test package (cap)")
    ap.add_argument("--train-tracks-per-package", type=int, default=8, help="train tracks per package for the gate")
    ap.add_argument("--nonmusic-per-kind", type=int, default=40, help="non-music clips per kind and split (cap)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", type=Path, default=None, help="folder for the excerpt files (default: a temp folder)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "real_audio.json")
    args = ap.parse_args(argv)

    import torch

    from mir.models import load_checkpoint
    from mir.models.inference import prepare_model
    from mir.models.checkpoint import default_checkpoint

    torch.set_num_threads(args.threads)
    if not args.shared_audio.is_dir():
        print(f"note: {args.shared_audio} not found: no verdict on the shared recordings", file=sys.stderr)
    t0 = time.time()
    with tempfile.TemporaryDirectory(prefix="mir-real-audio-") as tmp:
        work = args.work or Path(tmp)
        data = materialise(args, work)
        t_data = time.time() - t0
        sets = {"orig": data["orig"], **{k: data["copies"][k] for k in KINDS},
                "nonmusic_test": [c["path"] for c in data["nonmusic_test"]], "music_train": data["music_train"],
                "nonmusic_train": [c["path"] for c in data["nonmusic_train"]], "shared": data["shared"]}
        print(f"{len(data['test_tracks'])} test tracks, {len(data['orig'])} excerpts, {len(sets['nonmusic_test'])} "
              f"test non-music, {len(sets['music_train'])}+{len(sets['nonmusic_train'])} train clips for the gate, "
              f"{len(sets['shared'])} shared recordings ({t_data:.0f} s to prepare)", flush=True)
        results, timings = [], {"prepare_s": round(t_data, 1)}
        t = time.time()
        mfcc = {k: mfcc_features(v) if v else np.zeros((0, 40)) for k, v in sets.items()}
        timings["mfcc_s"] = round(time.time() - t, 1)
        models = [("default", default_checkpoint())] + [(p.stem, p) for p in args.model]
        for label, path in models:
            loaded = load_checkpoint(path)
            model = prepare_model(loaded.model)
            tag = f"{label} {loaded.model_id}"
            t = time.time()
            idx = {k: indexed_embeddings(loaded, model, v) if v else None for k, v in sets.items()}
            timings[f"{tag} indexed_s"] = round(time.time() - t, 1)
            t = time.time()
            bb = {k: backbone_embeddings(loaded, model, v) if v else None for k, v in sets.items()}
            timings[f"{tag} backbone_s"] = round(time.time() - t, 1)
            results.append(measure(f"{tag} indexed", idx, data))
            results.append(measure(f"{tag} backbone", bb, data))
            print(table(results[-2:]), flush=True)
        results.append(measure("mfcc mean/std 20", mfcc, data, standardise=True))
    print()
    print(table(results))
    styles = [s for s in data["styles"] if s]
    report = {
        "command": " ".join([Path(sys.argv[0]).name] + (sys.argv[1:] if argv is None else list(argv))),
        "test_packages": sorted(set(data["packages"])), "test_tracks": len(data["test_tracks"]),
        "excerpts": len(data["orig"]), "excerpt_seconds": SECONDS, "excerpts_per_track": EXCERPTS,
        "nonmusic_test": {k: sum(c["kind"] == k for c in data["nonmusic_test"]) for k in {c["kind"] for c in data["nonmusic_test"]}},
        "gate_train": {"music": len(data["music_train"]), "nonmusic": len(data["nonmusic_train"])},
        "style_labels": {"excerpts_labelled": len(styles), "labels": sorted(set(styles))},
        "skipped": data["skipped"],
        "results": results, "timings": timings, "threads": args.threads,
        "machine": {"python": platform.python_version(), "platform": platform.platform()},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1, default=_plain))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
