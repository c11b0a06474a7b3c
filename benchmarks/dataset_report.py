"""Report on a built demo collection: counts, audio audit, log-mel pictures, a learnability baseline.

    python benchmarks/dataset_report.py DIR [--workers N] [--n-png 11]

Writes ``DIR/report/report.md``, ``DIR/report/report.json``, ``DIR/report/logmel_*.png`` and a
feature cache ``DIR/report/features.npz``.

Audit: every labelled file is decoded; its length, sample rate, peak, loudness and longest
silent stretch are checked (no silent, clipped or wrong-length/endless files).
Baseline: per clip, mean and standard deviation of a 64-band log-mel spectrogram and of 20
MFCCs over the mono signal; StandardScaler + LogisticRegression trained on the train split;
genre accuracy and macro tag ROC-AUC (one-vs-rest) on the test split. Two reference points
frame it: chance, and genre predicted from the ground-truth tags alone (how much of the genre
the tags give away).
"""
from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

SR = 22050
N_MELS = 64
N_MFCC = 20
SILENCE_DB = -50.0
C_GRID = (0.003, 0.01, 0.03, 0.1, 0.3, 1.0)


def analyse(path: str) -> dict:
    """Decode one file; return its audit numbers and its feature vector."""
    import librosa
    import soundfile as sf

    y2, sr = sf.read(path, dtype="float32", always_2d=True)
    y = y2.mean(axis=1)
    peak = float(np.max(np.abs(y2))) if y2.size else 0.0
    rms_db = float(20 * np.log10(np.sqrt(np.mean(y.astype(np.float64) ** 2)) + 1e-12))
    win = int(0.25 * sr)
    frames = y[: len(y) // win * win].reshape(-1, win)
    quiet = 10 * np.log10(np.mean(frames.astype(np.float64) ** 2, axis=1) + 1e-20) < SILENCE_DB
    run = longest = 0
    for q in quiet[:-4]:  # ignore the final second (fade-out)
        run = run + 1 if q else 0
        longest = max(longest, run)
    if sr != SR:
        y = librosa.resample(y, orig_sr=sr, target_sr=SR)
    S = librosa.power_to_db(librosa.feature.melspectrogram(y=y, sr=SR, n_fft=1024, hop_length=512, n_mels=N_MELS))
    mfcc = librosa.feature.mfcc(S=S, n_mfcc=N_MFCC)
    feat = np.concatenate([S.mean(1), S.std(1), mfcc.mean(1), mfcc.std(1)]).astype(np.float32)
    return {"frames": int(y2.shape[0]), "sr": int(sr), "channels": int(y2.shape[1]), "peak": peak,
            "rms_db": rms_db, "longest_silence_s": longest * 0.25, "feature": feat}


def _features(root: Path, tracks: list[str], workers: int) -> tuple[np.ndarray, list[dict]]:
    """Features and audit numbers per track; cached, recomputed only for new or changed files."""
    cache = root / "report" / "features.npz"
    stamps = [f"{(root / t).stat().st_size}:{(root / t).stat().st_mtime_ns}" for t in tracks]
    old: dict[str, tuple] = {}
    z = np.load(cache, allow_pickle=False) if cache.is_file() else None
    if z is not None and "stamps" in z.files:
        old_audit = json.loads(str(z["audit"]))
        for i, (t, st) in enumerate(zip(z["tracks"], z["stamps"])):
            old[f"{t}|{st}"] = (z["X"][i], old_audit[i])
    todo = [i for i, (t, st) in enumerate(zip(tracks, stamps)) if f"{t}|{st}" not in old]
    t0 = time.time()
    paths = [str(root / tracks[i]) for i in todo]
    if workers > 1 and len(paths) > 1:
        with cf.ProcessPoolExecutor(workers) as pool:
            results = list(pool.map(analyse, paths, chunksize=8))
    else:
        results = [analyse(p) for p in paths]
    print(f"decoded and analysed {len(paths)} files in {time.time() - t0:.1f} s "
          f"({len(tracks) - len(paths)} from the cache)", file=sys.stderr)
    fresh = {i: r for i, r in zip(todo, results)}
    X, audit = [], []
    for i, (t, st) in enumerate(zip(tracks, stamps)):
        if i in fresh:
            r = dict(fresh[i])
            X.append(r.pop("feature"))
            audit.append(r)
        else:
            x, a = old[f"{t}|{st}"]
            X.append(x)
            audit.append(a)
    X = np.stack(X)
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_name(".features.tmp.npz")
    np.savez(tmp, X=X, tracks=np.array(tracks), stamps=np.array(stamps), audit=json.dumps(audit))
    os.replace(tmp, cache)
    return X, audit


def baseline(X, labels, clips, genres, vocab) -> dict:
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, roc_auc_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    split = clips.set_index("track").loc[labels["track"], "split"].to_numpy()
    tr, va, te = split == "train", split == "valid", split == "test"
    y = labels["genre"].to_numpy()
    T = np.array([[t in tags for t in vocab] for tags in labels["tags"]], dtype=int)

    def model(C):
        return make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=3000))

    out: dict = {"n_train": int(tr.sum()), "n_valid": int(va.sum()), "n_test": int(te.sum()),
                 "features": f"log-mel({N_MELS}) + MFCC({N_MFCC}) mean/std", "C_grid": list(C_GRID)}
    # genre: C chosen on the valid split, then refit on train and scored on test
    val_acc = {C: accuracy_score(y[va], model(C).fit(X[tr], y[tr]).predict(X[va])) for C in C_GRID}
    C = max(C_GRID, key=lambda c: (val_acc[c], -c))
    g = model(C).fit(X[tr], y[tr])
    pred = g.predict(X[te])
    out["genre_C"] = C
    out["genre_valid_accuracy"] = round(float(val_acc[C]), 4)
    out["genre_accuracy"] = round(float(accuracy_score(y[te], pred)), 4)
    out["genre_chance"] = round(float(max(np.mean(y[te] == c) for c in genres)), 4)
    out["genre_per_class_recall"] = {c: round(float(np.mean(pred[y[te] == c] == c)), 3) for c in genres if np.any(y[te] == c)}
    out["genre_train_accuracy"] = round(float(accuracy_score(y[tr], g.predict(X[tr]))), 4)
    g_tags = LogisticRegression(C=1.0, max_iter=3000).fit(T[tr], y[tr])
    out["genre_accuracy_from_true_tags"] = round(float(accuracy_score(y[te], g_tags.predict(T[te]))), 4)
    from sklearn.metrics import confusion_matrix

    out["genre_confusion"] = {"labels": list(genres), "matrix": confusion_matrix(y[te], pred, labels=list(genres)).tolist()}
    # two-level genres (folk/jig): the same predictions read at the top level
    top = np.array([str(v).split("/")[0] for v in y])
    top_pred = np.array([str(v).split("/")[0] for v in pred])
    out["genre_top_accuracy"] = round(float(accuracy_score(top[te], top_pred)), 4)
    out["genre_top_per_class_recall"] = {str(t): round(float(np.mean(top_pred[top[te] == t] == t)), 3) for t in sorted(set(top[te]))}
    # is a class one soundfont's timbre? genre accuracy within each font's test clips, and how well the
    # same features tell the font itself
    if "soundfont" in clips.columns and clips["soundfont"].nunique() > 1:
        font = clips.set_index("track").loc[labels["track"], "soundfont"].to_numpy()
        out["genre_accuracy_per_soundfont"] = {f: round(float(np.mean(pred[font[te] == f] == y[te][font[te] == f])), 4)
                                               for f in sorted(set(font[te]))}
        f_model = model(1.0).fit(X[tr], font[tr])
        out["soundfont_accuracy"] = round(float(accuracy_score(font[te], f_model.predict(X[te]))), 4)
        out["soundfont_chance"] = round(float(max(np.mean(font[te] == f) for f in set(font))), 4)

    # tags: one binary model per tag; one C for all tags, chosen on valid macro AUC
    usable = [j for j in range(len(vocab)) if all(len(set(T[m, j])) == 2 for m in (tr, va, te))]

    def tag_aucs(C, fit_mask, eval_mask):
        res = {}
        for j in usable:
            m = model(C).fit(X[fit_mask], T[fit_mask, j])
            res[vocab[j]] = float(roc_auc_score(T[eval_mask, j], m.predict_proba(X[eval_mask])[:, 1]))
        return res

    val_auc = {C: np.mean(list(tag_aucs(C, tr, va).values())) for C in C_GRID}
    C = max(C_GRID, key=lambda c: (val_auc[c], -c))
    out["tag_C"] = C
    out["tag_valid_macro_auc"] = round(float(val_auc[C]), 4)
    aucs = {k: round(v, 4) for k, v in tag_aucs(C, tr, te).items()}
    out["tag_auc"] = aucs
    out["tag_macro_auc"] = round(float(np.mean(list(aucs.values()))), 4) if aucs else None
    return out


def save_pngs(root: Path, labels, clips, genres, n: int) -> list[str]:
    import librosa
    import librosa.display
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    outdir = root / "report"
    picks = []
    for g in genres:
        rows = labels[labels["genre"] == g]
        if len(rows):
            picks.append(rows.iloc[0])
    picks = picks[:n]
    paths = []
    fig, axes = plt.subplots(len(picks), 1, figsize=(10, 1.9 * len(picks)), squeeze=False)
    for ax, row in zip(axes[:, 0], picks):
        y, _ = librosa.load(root / row["track"], sr=SR, mono=True)
        S = librosa.power_to_db(librosa.feature.melspectrogram(y=y, sr=SR, n_mels=128), ref=np.max)
        for target in (ax, None):
            if target is None:
                f1, a1 = plt.subplots(figsize=(10, 3))
                target = a1
            librosa.display.specshow(S, sr=SR, hop_length=512, x_axis="time", y_axis="mel", ax=target)
            target.set_title(f"{row['genre']}: {Path(row['track']).name}  [{'|'.join(row['tags'])}]", fontsize=8)
            if target is not ax:
                f1.tight_layout()
                p = outdir / f"logmel_{row['genre'].replace('/', '-')}.png"
                f1.savefig(p, dpi=80)
                plt.close(f1)
                paths.append(str(p))
    fig.tight_layout()
    grid = outdir / "logmel_grid.png"
    fig.savefig(grid, dpi=70)
    plt.close(fig)
    return [str(grid)] + paths


def du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dir", type=Path)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--n-png", type=int, default=11)
    args = ap.parse_args(argv)

    import pandas as pd

    from mir.datasets import info, load_labels

    root = args.dir
    ds = info(root)
    m = ds.manifest
    labels = load_labels(root / "labels.csv", check_files=True)
    clips = pd.read_parquet(root / "clips.parquet")
    events = pd.read_parquet(root / "events.parquet")
    genres, vocab = m["genres"], [t for g in m["tag_groups"].values() for t in g]
    (root / "report").mkdir(exist_ok=True)

    X, audit = _features(root, list(labels["track"]), args.workers)
    expected = int(round(m["clip_seconds"] * m["sample_rate"]))
    problems = {
        "wrong_length": [t for t, a in zip(labels["track"], audit) if a["frames"] != expected or a["sr"] != m["sample_rate"]],
        "clipped": [t for t, a in zip(labels["track"], audit) if a["peak"] >= 0.999],
        "silent": [t for t, a in zip(labels["track"], audit) if a["rms_db"] < SILENCE_DB],
        "silent_stretch_over_2.5s": [t for t, a in zip(labels["track"], audit) if a["longest_silence_s"] > 2.5],
    }
    t0 = time.time()
    base = baseline(X, labels, clips, genres, vocab)
    base["fit_seconds"] = round(time.time() - t0, 1)
    pngs = save_pngs(root, labels, clips, genres, args.n_png)

    ok = clips[clips["status"] == "ok"]
    per_split = ok.groupby(["genre", "split"]).size().unstack(fill_value=0).reindex(genres).fillna(0).astype(int)
    tag_counts = {t: int(sum(t in tags for tags in labels["tags"])) for t in vocab}
    per_user = events.groupby("user")["plays"].sum()
    report = {
        "dataset": {k: m[k] for k in ("name", "size", "seed", "version", "music21_version", "sample_rate", "channels", "clip_seconds")},
        "clips": int(len(labels)), "rejected": m["counts"]["rejected"], "works": int(ok["work_id"].nunique()),
        "genres": {g: {s: int(per_split.loc[g, s]) for s in ("train", "valid", "test")} for g in genres},
        "tags": tag_counts,
        "formats": m["counts"]["formats"],
        "duration_hours": round(float(ok["duration_s"].sum()) / 3600, 3),
        "audio_bytes": du(root / "audio"),
        "total_bytes_without_report": du(root) - du(root / "report"),
        "build_seconds": m.get("build_seconds"),
        "render_timings": m.get("timings"),
        "render_seconds_per_clip": m.get("render_seconds_per_clip"),
        "audit": {k: len(v) for k, v in problems.items()},
        "audit_examples": {k: v[:5] for k, v in problems.items() if v},
        "loudness_db": {"min": round(min(a["rms_db"] for a in audit), 1), "max": round(max(a["rms_db"] for a in audit), 1)},
        "peak_max": round(max(a["peak"] for a in audit), 4),
        "listening": {"users": int(events["user"].nunique()), "events": int(len(events)), "plays": int(events["plays"].sum()),
                      "users_with_1_to_3_plays": int((per_user <= 3).sum()),
                      "tracks_never_played": int(len(set(labels["track"]) - set(events["track"]))),
                      "max_plays_per_user": int(per_user.max())},
        "baseline": base,
        "pngs": pngs,
    }
    (root / "report" / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    (root / "report" / "report.md").write_text(_markdown(report))
    print(_markdown(report))
    return 0


def _markdown(r: dict) -> str:
    b = r["baseline"]
    d = r["dataset"]
    lines = [
        f"# {d['name']} ({d['size']}, seed {d['seed']}) report", "",
        f"- clips: {r['clips']} from {r['works']} works (rejected at build: {r['rejected']})",
        f"- audio: {r['duration_hours']} h at {d['sample_rate']} Hz, {d['channels']} ch; "
        f"{r['audio_bytes'] / 1e6:.1f} MB of audio, {r['total_bytes_without_report'] / 1e6:.1f} MB in all",
        f"- formats: {r['formats']}",
        f"- build time: {r['build_seconds']} s; render timings: {r['render_timings']}",
        f"- audit (decoded every file): {r['audit']}; loudness {r['loudness_db']} dBFS; max peak {r['peak_max']}",
        f"- listening: {r['listening']}", "",
        "## Clips per genre (train / valid / test)", "", "| genre | train | valid | test | total |", "|---|---|---|---|---|",
    ]
    for g, s in r["genres"].items():
        lines.append(f"| {g} | {s['train']} | {s['valid']} | {s['test']} | {sum(s.values())} |")
    lines += ["", "## Clips per tag", "", "| tag | clips |", "|---|---|"]
    lines += [f"| {t} | {n} |" for t, n in r["tags"].items()]
    lines += ["", "## Baseline (logistic regression on clip-level features)", "",
              f"- features: {b['features']}; train {b['n_train']} / valid {b['n_valid']} / test {b['n_test']} clips",
              f"- genre accuracy (test): **{b['genre_accuracy']}** (C={b['genre_C']} chosen on valid: {b['genre_valid_accuracy']}; chance {b['genre_chance']}, train {b['genre_train_accuracy']}; "
              f"from ground-truth tags alone: {b['genre_accuracy_from_true_tags']})",
              f"- macro tag ROC-AUC (test, {len(b['tag_auc'])} tags): **{b['tag_macro_auc']}** (C={b['tag_C']}, valid {b['tag_valid_macro_auc']})",
              f"- per-genre recall: {b['genre_per_class_recall']}",
              f"- top-level genre accuracy (test): {b.get('genre_top_accuracy')}; per top level: {b.get('genre_top_per_class_recall')}",
              f"- genre accuracy per soundfont (test): {b.get('genre_accuracy_per_soundfont', '-')}; the soundfont "
              f"itself from the same features: {b.get('soundfont_accuracy', '-')} (chance {b.get('soundfont_chance', '-')})",
              f"- per-tag AUC: {b['tag_auc']}", "", "## Log-mel spectrograms", ""]
    lines += [f"![{Path(p).stem}]({Path(p).name})" for p in r["pngs"]]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
