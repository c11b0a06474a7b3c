"""`mir demo`: the main job on the built-in demo collection.

Builds (or reuses) the demo collection, scans and analyses it into a library, tags it with the
default model, indexes the embeddings and answers a similarity query, and prints a summary,
including how well the descriptors recover what the renderer actually played.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd


PITCH_CLASSES = ["C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B"]


def _truth_check(lib, data: Path) -> list[str]:
    """Compare estimated tempo, key and mode with what the renderer played (clips.parquet)."""
    clips_path = data / "clips.parquet"
    if not clips_path.exists():
        return []
    clips = pd.read_parquet(clips_path, columns=["track", "tempo_bpm", "mode", "tonic", "transpose"])
    files = lib.files()
    by_path = dict(zip(files["path"], files["hash"]))
    clips["hash"] = [by_path.get(str((data / p).resolve())) for p in clips["track"]]
    merged = clips.merge(lib.descriptors(), on="hash", suffixes=("_true", "")).dropna(subset=["tempo"])
    if merged.empty:
        return []
    ratio = merged["tempo"].to_numpy(float) / merged["tempo_bpm"].to_numpy(float)
    exact = np.abs(ratio - 1) <= 0.04
    related = exact | np.any([np.abs(ratio / r - 1) <= 0.04 for r in (0.5, 2.0, 1 / 3, 3.0, 2 / 3, 1.5)], axis=0)
    # `tonic` is the score's key; the renderer transposed it by `transpose` semitones
    tonic = [PITCH_CLASSES[int(t + s) % 12] for t, s in zip(merged["tonic"], merged["transpose"])]
    return [
        f"descriptors against the rendered ground truth ({len(merged)} clips):",
        f"  tempo within 4%: {exact.mean():.0%} ({related.mean():.0%} counting half/double/triple-time answers)",
        f"  mode (major/minor): {(merged['mode_true'] == merged['mode']).mean():.0%}",
        f"  key (tonic and mode): {((tonic == merged['key']) & (merged['mode_true'] == merged['mode'])).mean():.0%}",
    ]


def _tag_with_default_model(lib, args, progress: bool) -> str | None:
    from ..tagging import DEFAULT_MODEL, tag

    if not DEFAULT_MODEL.is_file():
        print(f"[4/5] tagging skipped: no default model at {DEFAULT_MODEL} (train one with `mir train`)")
        return None
    print("[4/5] tag with the default model (log-mel → CNN → tags, genre, embedding)")
    report = tag(lib, workers=args.workers, progress=progress)
    print(f"      {report.summary()}")
    return report.model_id


def _tag_summary(lib, model_id: str) -> list[str]:
    """Predicted genres against the genres written in the files (the collection's labels)."""
    from ..tagging import load_tags

    tags = load_tags(lib, model_id).merge(lib.tracks()[["hash", "genre", "title"]], on="hash", suffixes=("_pred", ""))
    agree = (tags["genre_pred"] == tags["genre"]).mean()
    lines = [f"default model {model_id}: predicted genre equals the file's genre tag for {agree:.0%} of "
             f"{len(tags)} tracks (the model was trained on the full collection, which shares works "
             "with this one: not a held-out score; see the README for test-split metrics)"]
    for row in tags.head(3).itertuples(index=False):
        lines.append(f"  {row.title!s:32.32s} genre {row.genre_pred:14s} tags {', '.join(row.tags[:6])}")
    return lines


def _similarity(lib, model_id: str, k: int = 10) -> list[str]:
    """Index the embeddings, show one query, and score neighbours' genre agreement."""
    from ..index import update_library_index
    from ..index.similar import similar

    print("[5/5] index the embeddings (FAISS) and query by track")
    li, report = update_library_index(lib, model_id)
    print(f"      {len(li)} tracks in a {li.manifest.get('index_type', li.manifest.get('kind'))} index "
          f"({report['added']} added, {report['removed']} removed)")
    meta = li.meta
    genre = meta["genre"]
    ids = np.asarray(li.index.ids)
    _, found = li.index.search(li.vectors(list(ids)), min(k + 1, len(ids)))
    same = [np.mean([genre.get(n) == genre.get(t) for n in row if n and n != t]) for t, row in zip(ids, found)]
    chance = float((genre.value_counts(normalize=True) ** 2).sum())
    lines = [f"similarity: {np.nanmean(same):.0%} of each track's {k} nearest neighbours share its genre "
             f"(chance {chance:.0%})"]
    seed = sorted(ids)[0]
    lines.append(f"tracks most similar to {meta.loc[seed, 'title']!s} ({genre.get(seed)}):")
    for r in similar(li, tracks=[seed], k=5):
        lines.append(f"  {r['score']:.3f}  {str(r['title'])[:36]:36s} {str(genre.get(r['track_id'])):14s} {r['explanation']}")
    return lines


def cmd_demo(args) -> int:
    from ..catalog import Library, analyze
    from ..datasets import build_demo

    root = Path(args.dir).expanduser().resolve()
    data, lib_dir = root / "collection", root / "library"
    progress = sys.stderr.isatty()
    print(f"[1/5] demo collection ({args.size}) in {data}")
    ds = build_demo(data, size=args.size, workers=args.workers, progress=progress)
    print(f"      {ds.n_clips} clips, {ds.duration_s / 3600:.2f} h, {len(ds.genres)} genres, {len(ds.tags)} tags")
    print(f"[2/5] scan into library {lib_dir}")
    lib = Library.open_or_create(lib_dir)
    print(f"      {lib.scan([data / 'audio'], progress=progress).summary()}")
    print("[3/5] analyse (decode → log-mel → descriptors)")
    print(f"      {analyze(lib, workers=args.workers, progress=progress).summary()}")
    model_id = _tag_with_default_model(lib, args, progress)
    similarity = _similarity(lib, model_id) if model_id else []

    info = lib.info()
    desc = lib.descriptors()
    desc = desc[desc["status"] == "ok"]
    print()
    print(f"library: {info['tracks']} tracks, {info['duration_hours']:.2f} h, formats "
          + ", ".join(f"{k} {v}" for k, v in info["formats"].items()) + f", {info['failures']} failures")
    by_genre = desc.groupby("genre").agg(tracks=("track_id", "size"), tempo=("tempo", "median"),
                                         loudness=("loudness", "median"),
                                         minor=("mode", lambda m: 100 * (m == "minor").mean()))
    print("\nper genre (from file tags): median tempo (BPM), median loudness (LUFS), % in minor")
    print(by_genre.to_string(float_format=lambda v: f"{v:.1f}"))
    for line in _truth_check(lib, data):
        print(line)
    for line in similarity + (_tag_summary(lib, model_id) if model_id else []):
        print(line)
    print(f"\nnext: `mir info {lib_dir}`, `mir show {lib_dir} TRACK`, `mir similar {lib_dir} --track TRACK`, "
          f"`mir export {lib_dir} --format csv`")
    return 0


def register(sub) -> None:
    p = sub.add_parser("demo", help="build the demo collection, scan and analyse it, print a summary")
    p.add_argument("--dir", default="mir-demo", help="folder for the collection and its library (default: ./mir-demo)")
    p.add_argument("--size", choices=["tiny", "demo", "full"], default="demo")
    p.add_argument("--workers", type=int, default=None, help="worker processes (default: all cores)")
    p.set_defaults(func=cmd_demo)
