"""`mir similar`: tracks similar to catalogued tracks, an audio file and/or tags."""
from __future__ import annotations

import json

from ..catalog import Library


def _filters(args):
    from ..similar import Filters

    split = lambda v: tuple(x.strip() for x in v.split(",") if x.strip()) if v else ()  # noqa: E731
    return Filters(genres=split(args.genre), file_genres=split(args.file_genre), tags=split(args.with_tags), bpm=args.bpm, keys=tuple(args.key or ()),
                   year=args.year, exclude_tracks=tuple(args.exclude_track or ()),
                   exclude_artists=tuple(args.exclude_artist or ()), max_per_artist=args.max_per_artist,
                   music_only=args.music_only)


def cmd_similar(args) -> int:
    from ..catalog.predictions import resolve_model
    from ..similar import open_library_index, similar
    from .library import music_text

    lib = Library(args.library)
    ref = resolve_model(lib, args.model)
    li = open_library_index(lib, ref.model_id)
    tracks = [lib.track(t)["track_id"] for t in (args.track or [])]
    knobs = {k: v for k, v in (("ef_search", args.ef_search), ("nprobe", args.nprobe)) if v is not None}
    results = similar(li, tracks=tracks, audio=args.audio, tags=args.tags or (), k=args.k, filters=_filters(args),
                      exclude_seeds=not args.include_seeds, checkpoint=ref.checkpoint, **knobs)
    if args.json:
        print(json.dumps({"model_id": li.model_id, "seeds": {"tracks": tracks, "audio": args.audio, "tags": args.tags},
                          "k": results.k, "found": len(results), "shortfall": results.shortfall,
                          "seed_tags": results.seeds, "results": list(results)}, indent=1, default=str))
        return 0
    for seed in results.seeds if args.audio else ():
        if seed["track_id"] is None:
            print(f"query {seed['seed']}" + (f" (library track {seed['same_as'][:12]})" if seed["same_as"] else "")
                  + f": tags {', '.join(seed['tags']) or 'none'}"
                  + (f"; {seed['bpm']:.0f} BPM" if seed["bpm"] else "") + (f"; {seed['key']}" if seed["key"] else "")
                  + (f"; music {music_text(seed['music'])}" if seed["music"] is not None else ""))
    if results:
        print(f"{'#':>2}  {'score':>6}  {'track':12}  {'artist':18}  {'title':28}  why")
    for r in results:
        print(f"{r['rank']:>2}  {r['score']:6.3f}  {r['track_id'][:12]:12}  {clip(r['artist'] or '-', 18):18}  "
              f"{clip(r['title'] or '-', 28):28}  {r['explanation']}")
        print(f"{'':24}{r['path']}")
    if results.shortfall:
        print(results.shortfall)
    return 0


def clip(text, width: int) -> str:
    """``text`` cut to ``width`` characters, ending in an ellipsis when cut."""
    text = str(text)
    return text if len(text) <= width else text[: width - 1] + "…"


def register(sub) -> None:
    p = sub.add_parser("similar", help="find similar tracks by track, audio file, tags or several seeds")
    p.add_argument("library", metavar="LIB")
    p.add_argument("--track", "-t", action="append", metavar="ID",
                   help="seed track (id, id prefix or file path); repeat for several seeds: results near all of them")
    p.add_argument("--audio", metavar="FILE", help="seed audio file, analysed with the library's model (not added)")
    p.add_argument("--tags", metavar="LIST", help="comma-separated tags to match, e.g. 'piano,slow' (alone or with seeds)")
    p.add_argument("-k", type=int, default=10, help="number of results (default 10)")
    p.add_argument("--json", action="store_true", help="JSON output instead of a table")
    p.add_argument("--model", "-m", default=None,
                   help="model id (prefix) whose index to query, or its checkpoint file (which --audio then uses "
                        "when the model is no longer where it tagged from); default: latest tagged")
    f = p.add_argument_group("filters")
    f.add_argument("--genre", metavar="LIST", help="any of these genres as the model predicts them")
    f.add_argument("--file-genre", metavar="LIST", help="any of these genres in the files' own metadata")
    f.add_argument("--with-tags", metavar="LIST", help="only tracks with all of these decided tags")
    f.add_argument("--bpm", metavar="LO-HI", help="tempo range, e.g. 90-120, 90- or -120")
    f.add_argument("--key", action="append", metavar="KEY", help="key, e.g. 'A minor', Am, or F# (any mode); repeatable")
    f.add_argument("--year", metavar="LO-HI", help="year range, e.g. 1990-1999")
    f.add_argument("--exclude-track", action="append", metavar="ID", help="never return this track; repeatable")
    f.add_argument("--exclude-artist", action="append", metavar="NAME", help="never return this artist; repeatable")
    f.add_argument("--max-per-artist", type=int, metavar="N", help="at most N results per artist")
    f.add_argument("--music-only", action="store_true",
                   help="only tracks the model's music gate calls music (a model gated by `mir train-gate`)")
    f.add_argument("--include-seeds", action="store_true", help="let seed tracks appear in the results")
    s = p.add_argument_group("search knobs")
    s.add_argument("--ef-search", type=int, metavar="N", help="HNSW search breadth")
    s.add_argument("--nprobe", type=int, metavar="N", help="IVF lists visited")
    p.set_defaults(func=cmd_similar)
