"""`mir demo`: the main job on the built-in demo collection.

Builds (or reuses) the demo collection, scans and analyses it into a library, tags it with the
default model, indexes the embeddings and answers a similarity query, evaluates recommenders
on the collection's listening histories (with one user's list and a playlist), generates a 30 s
piece from a track's neighbours (training the generator the first time), and prints a summary,
including how well the descriptors recover what the renderer actually played.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

from ..features.keys import PITCH_CLASSES
from .library import positive_workers


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
    from ..models.checkpoint import DEFAULT_CHECKPOINT
    from ..tagging import tag

    if not DEFAULT_CHECKPOINT.is_file():
        print(f"[4/7] tagging skipped: no default model at {DEFAULT_CHECKPOINT} (train one with `mir train`)")
        return None
    print("[4/7] tag with the default model (log-mel → CNN → tags, genre, embedding)")
    report = tag(lib, workers=args.workers, progress=progress)
    print(f"      {report.summary()}")
    return report.model_id


def _tag_summary(lib, model_id: str) -> list[str]:
    """Predicted genres against the genres written in the files (the collection's labels)."""
    from ..catalog.predictions import load_tags

    from ..catalog.labels import align_genres

    tags = load_tags(lib, model_id)
    vocab = tags.attrs["genres"]
    tags = tags.merge(lib.tracks()[["hash", "genre", "title"]], on="hash", suffixes=("_pred", ""))
    # the file's top/leaf genre read at the model's granularity (a model trained on flat names predicts leaves)
    alias = align_genres(set(tags["genre"].dropna()), vocab)
    truth = tags["genre"].map(lambda g: alias.get(g, g))
    known = truth.isin(vocab)
    agree = (tags["genre_pred"][known] == truth[known]).mean() if known.any() else float("nan")
    lines = [f"default model {model_id}: predicted genre equals the file's genre tag for {agree:.0%} of the "
             f"{int(known.sum())} tracks in genres it knows (it was trained on the full collection, which shares works "
             "with this one: not a held-out score; see the README for test-split metrics)"]
    if not known.all():
        lines.append(f"  {int((~known).sum())} tracks are in genres the model was not trained on "
                     f"({', '.join(sorted(set(tags['genre'][~known].dropna())))[:120]})")
    for row in tags.head(3).itertuples(index=False):
        lines.append(f"  {row.title!s:32.32s} genre {row.genre_pred:14s} tags {', '.join(row.tags[:6])}")
    return lines


def _similarity(lib, model_id: str, k: int = 10) -> list[str]:
    """Index the embeddings, show one query, and score neighbours' genre agreement."""
    from ..similar import similar, update_library_index
    from ..similar.query import neighbour_agreement

    print("[5/7] index the embeddings (FAISS) and query by track")
    li, report = update_library_index(lib, model_id)
    print(f"      {len(li)} tracks in a {li.manifest.get('index_type', li.manifest.get('kind'))} index "
          f"({report['added']} added, {report['removed']} removed)")
    meta = li.meta
    genre = meta["genre"]
    ids = np.asarray(li.index.ids)
    same, _ = neighbour_agreement(li.index, ids, li.vectors(list(ids)), genre.reindex(ids).to_numpy(), k)
    chance = float((genre.value_counts(normalize=True) ** 2).sum())
    lines = [f"similarity: {same:.0%} of each track's {k} nearest neighbours share its genre "
             f"(chance {chance:.0%})"]
    seed = sorted(ids)[0]
    lines.append(f"tracks most similar to {meta.loc[seed, 'title']!s} ({genre.get(seed)}):")
    for r in similar(li, tracks=[seed], k=5):
        lines.append(f"  {r['score']:.3f}  {str(r['title'])[:36]:36s} {str(genre.get(r['track_id'])):14s} {r['explanation']}")
    return lines


def _label(tracks, i: int) -> str:
    return f"{tracks.label(i)[:52]:52s} {str(tracks.genre[i]):14s}"


def recommendations(lib, model_id: str, data: Path, k: int = 50) -> list[str]:
    """Evaluate popularity / content / ALS / hybrid on the collection's histories (temporal split;
    hidden tastes from tastes.json), then one user's top 5 and a playlist from two of their tracks."""
    from ..recommend import make
    from ..datasets.truth import demo_affinity
    from ..recommend.evaluate import evaluate
    from ..recommend.inputs import load_inputs
    from ..recommend.playlist import continue_from

    events = data / "events.parquet"
    if not events.is_file():
        print("[6/7] recommendations skipped: the collection has no events.parquet")
        return []
    print("[6/7] recommend from the listening histories (popularity, content, ALS, hybrid; temporal split)")
    inputs = load_inputs(lib, events, model_id=model_id)
    X, tracks = inputs.interactions, inputs.tracks
    k = min(k, max(5, X.n_items // 5))  # a list that is a small part of the catalogue (tiny: 44 tracks)
    affinity = demo_affinity(data, X.users, inputs.resolve, X.items) if (data / "tastes.json").is_file() else None
    models = {m: make(m) for m in ("popularity", "content", "als", "hybrid")}
    table = evaluate(models, X, tracks, k=k, affinity=affinity)
    cols = {f"recall@{k}": f"recall@{k}", f"ndcg@{k}": f"nDCG@{k}", "coverage": "coverage"}
    if affinity is not None:
        cols[f"taste_precision@{k}"] = "taste prec."
    a = table.attrs
    lines = [f"recommendations: {a['users']} users, {a['events']} events; last 20% of each user's events held out "
             f"({a['evaluated_users']} users scored; taste prec. = share of picks in the user's top 10% of hidden taste)"]
    lines += ["  " + line for line in table[list(cols)].rename(columns=cols).to_string(
        float_format=lambda v: f"{v:.3f}").splitlines()]
    cf = models["als"]
    lines.append(f"  ALS settings chosen on a validation split of the training events: factors {cf.factors_}, "
                 f"regularization {cf.regularization_:g}, alpha {cf.alpha_:g}")
    # one user's list from a hybrid fitted on all events, and a playlist from their two most played tracks
    hybrid = make("hybrid").fit(X, tracks)
    seen = hybrid.seen_
    user = int(np.argmax(np.diff(seen.indptr)))  # the user with the most distinct tracks
    lo, hi = seen.indptr[user], seen.indptr[user + 1]
    top_played = seen.indices[lo:hi][np.argsort(-seen.data[lo:hi], kind="stable")[:2]]
    lines.append(f"top 5 for user {X.users[user]} ({hi - lo} tracks played; hybrid):")
    for row in hybrid.recommend([X.users[user]], 5).itertuples(index=False):
        lines.append(f"  {row.rank}. {_label(tracks, tracks.index_of(row.track_id))} score {row.score:.2f}")
    seeds = [str(X.items[i]) for i in top_played]
    pl = continue_from(tracks, seeds, 8)
    lines.append("playlist continuing their two most played tracks (the seeds, marked *):")
    for n, tid in enumerate(seeds + pl.track_ids, 1):
        i = tracks.index_of(tid)
        tempo = f"{tracks.tempo[i]:5.1f} BPM" if tracks.tempo[i] == tracks.tempo[i] else "    ? BPM"
        key = str(tracks.key[i] or "?")
        lines.append(f"  {n:2d}{'*' if tid in seeds else ' '} {_label(tracks, i)} {tempo}  {key}")
    return lines


PIECE_SECONDS = 30.0
DEMO_GENERATOR = {"preset": "small", "epochs": 12}  # early stopping ends the default 60 near epoch 20 anyway


def _ensure_generator(lib, model_id: str, progress: bool) -> str:
    """Reuse LIB/generator.pt when it fits the library's beats analysis and tagger, else train one."""
    from ..generate import train_generator
    from ..generate.model import load_generator
    from ..generate.piece import seg_version
    from ..generate.train import default_path

    path = default_path(lib)
    if path.is_file():
        gen = load_generator(path)
        if gen.analysis == seg_version(lib) and gen.tagger_id == model_id:
            return f"      generator {gen.model_id} reused"
        for stale in (path, path.with_name(path.name + ".last.pt")):  # made for another analysis or tagger
            stale.unlink(missing_ok=True)
    r = train_generator(lib, model=model_id, progress=progress, **DEMO_GENERATOR)
    b = r["baselines"]
    return (f"      generator {r['model_id']} trained ({r['preset']}, {r['codebook_size']} tokens, best epoch "
            f"{r['best_epoch']} of {r['epochs_run']}, {r['train_seconds']:.0f} s); held-out perplexity "
            f"{r['test_perplexity']:.1f} (Transformer alone {r['transformer_perplexity']:.1f}, bigram {b['bigram']['perplexity']:.1f}, "
            f"neighbours' unigram {b['neighbour_unigram']['perplexity']:.1f})")


def _piece_picture(res, png: Path) -> list[str]:
    """Cheap measures of the piece and a spectrogram PNG with its seams marked."""
    from .. import audio
    from ..generate.report import measure_lines, piece_figure, piece_measures

    p = res.provenance
    y = audio.load(res.path, sr=p["sample_rate"])
    piece_figure(y, p["sample_rate"], p).savefig(png, dpi=80)
    return ["measures of the piece:"] + measure_lines(piece_measures(y, p["sample_rate"], p)) + [
        f"  spectrogram with the seams marked: {png}"]


def generation(lib, model_id: str, root: Path, progress: bool) -> list[str]:
    """Train (or reuse) the generator, make one 30 s piece from the first track's neighbours,
    and say what it is made of and how it measures."""
    from ..generate import describe_provenance, generate

    print(f"[7/7] generate a {PIECE_SECONDS:.0f} s piece from a track's neighbours (training the generator if needed)")
    print(_ensure_generator(lib, model_id, progress))
    seed = sorted(lib.tracks()["track_id"])[0]
    res = generate(lib, tracks=[seed], duration=PIECE_SECONDS, out=root / "piece.wav", seed=0)
    lines = [f"generated piece: {res.summary()}", f"  provenance: {res.provenance_path}"]
    lines += ["  " + line for line in describe_provenance(res.provenance).splitlines()]
    return lines + _piece_picture(res, root / "piece.png")


def cmd_demo(args) -> int:
    from ..catalog import Library, analyze
    from ..datasets import build_demo

    root = Path(args.dir).expanduser().resolve()
    data, lib_dir = root / "collection", root / "library"
    progress = sys.stderr.isatty()
    print(f"[1/7] demo collection ({args.size}) in {data}")
    ds = build_demo(data, size=args.size, workers=args.workers, progress=progress)
    print(f"      {ds.n_clips} clips, {ds.duration_s / 3600:.2f} h, {len(ds.genres)} genres, {len(ds.tags)} tags")
    print(f"[2/7] scan into library {lib_dir}")
    lib = Library.open_or_create(lib_dir)
    print(f"      {lib.scan([data / 'audio'], progress=progress).summary()}")
    print("[3/7] analyse (decode → log-mel → descriptors)")
    print(f"      {analyze(lib, workers=args.workers, progress=progress).summary()}")
    model_id = _tag_with_default_model(lib, args, progress)
    similarity = _similarity(lib, model_id) if model_id else []
    if model_id:
        recs = recommendations(lib, model_id, data)
    else:
        recs = []
        print("[6/7] recommendations skipped: they need the embeddings of a tagging model")
    if model_id and args.generate:
        piece = generation(lib, model_id, root, progress)
    else:
        piece = []
        print("[7/7] generation skipped: " + ("--no-generate" if model_id else "it needs a tagging model's embeddings"))

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
    for line in similarity + (_tag_summary(lib, model_id) if model_id else []) + recs + piece:
        print(line)
    print(f"\nnext: `mir info {lib_dir}`, `mir show {lib_dir} TRACK`, `mir similar {lib_dir} --track TRACK`, "
          f"`mir export {lib_dir} --format csv`, `mir recommend-eval {lib_dir} --events {data / 'events.parquet'}`")
    print(f"browse it: `mir serve {lib_dir} --events {data / 'events.parquet'}`, then open http://127.0.0.1:8000/")
    return 0


def register(sub) -> None:
    p = sub.add_parser("demo", help="build the demo collection; scan, analyse, tag and index it; query, recommend, generate; print a summary")
    p.add_argument("--dir", default="mir-demo", help="folder for the collection and its library (default: ./mir-demo)")
    p.add_argument("--size", choices=["tiny", "demo", "full"], default="demo")
    p.add_argument("--workers", type=positive_workers, default=None, help="worker processes (default: all cores)")
    p.add_argument("--no-generate", dest="generate", action="store_false",
                   help="skip the generation step (training the generator, one 30 s piece)")
    p.set_defaults(func=cmd_demo)
