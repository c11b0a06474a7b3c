"""`mir dataset`: build the built-in demo collection offline, or describe a built one.

    mir dataset build NAME --size tiny|demo|full --out DIR [--seed N] [--workers N] [--soundfonts A,B] [--quiet]
    mir dataset build realmusic --out DIR [--packages P,P,...] [--quiet]
    mir dataset build nonmusic --out DIR --realmusic DIR [--seed N] [--quiet]
    mir dataset info DIR
    mir dataset list
"""
from __future__ import annotations

import argparse
import json

from .library import positive_workers


def register(subparsers) -> None:
    p = subparsers.add_parser("dataset", help="build or inspect built-in datasets (offline)",
                              description="Build or inspect the built-in datasets.")
    sub = p.add_subparsers(dest="dataset_command", metavar="ACTION")

    b = sub.add_parser("build", help="render a dataset into a folder (resumes when interrupted)")
    b.add_argument("name", help="dataset name (see `mir dataset list`)")
    b.add_argument("--size", choices=["tiny", "demo", "full"],
                   help="mirdemo only (required there): tiny: 84 x 6 s clips; demo: 714 x 30 s; full: 9,660 x 30 s")
    b.add_argument("--out", required=True, help="output folder")
    b.add_argument("--seed", type=int, default=0, help="random seed; same seed -> identical files (default 0)")
    b.add_argument("--workers", type=positive_workers, default=None,
                   help="worker processes (default: the config's runtime.workers, where 0 = all cores)")
    b.add_argument("--quiet", action="store_true", help="no progress bars")
    b.add_argument("--soundfonts", default=None,
                   help="mirdemo only: comma-separated GM soundfonts to draw from per clip (TimGM6mb, FluidR3_GM, "
                        "MuseScore_General; default every installed one)")
    b.add_argument("--packages", default=None,
                   help="realmusic only: comma-separated subset of its Debian packages (default all)")
    b.add_argument("--realmusic", default=None,
                   help="nonmusic only: a built realmusic folder, whose sound-effect folders it uses")
    b.set_defaults(func=_build)

    i = sub.add_parser("info", help="summarise a built dataset folder")
    i.add_argument("dir", help="dataset folder (holds manifest.json)")
    i.add_argument("--json", action="store_true", help="print the manifest as JSON")
    i.set_defaults(func=_info)

    ls = sub.add_parser("list", help="list dataset names")
    ls.set_defaults(func=_list)

    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


REAL_DATASETS = {
    "realmusic": "Debian game-music packages fetched with apt-get download: unlabelled real music, split by package",
    "nonmusic": "espeak-ng speech, the realmusic packages' sound effects, silence, hum and noise, with splits",
}


def _build(args: argparse.Namespace) -> int:
    from ..datasets import build
    from ..errors import ParameterError

    if args.name == "realmusic":
        from ..datasets import realmusic

        packages = None if args.packages is None else [p.strip() for p in args.packages.split(",") if p.strip()]
        print(realmusic.summary(realmusic.build(args.out, packages=packages, progress=not args.quiet)))
        return 0
    if args.name == "nonmusic":
        from ..datasets import nonmusic

        print(nonmusic.summary(nonmusic.build(args.out, realmusic_dir=args.realmusic, seed=args.seed,
                                              progress=not args.quiet)))
        return 0
    if args.size is None:
        raise ParameterError(f"dataset {args.name!r} needs --size tiny|demo|full")

    fonts = None if args.soundfonts is None else [f.strip() for f in args.soundfonts.split(",") if f.strip()]
    info = build(args.name, args.size, args.out, seed=args.seed, workers=args.workers, progress=not args.quiet,
                 soundfonts=fonts)
    _summary(info)
    return 0


def _info(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..datasets import info, nonmusic, realmusic

    path = Path(args.dir) / "manifest.json"
    name = json.loads(path.read_text()).get("name") if path.is_file() else None
    if name in REAL_DATASETS:
        module = realmusic if name == "realmusic" else nonmusic
        manifest = module.load_manifest(args.dir)
        print(json.dumps(manifest, indent=2, sort_keys=True) if args.json else module.summary(manifest))
        return 0

    ds = info(args.dir)
    if args.json:
        print(json.dumps(ds.manifest, indent=2, sort_keys=True))
    else:
        _summary(ds)
    return 0


def _list(args: argparse.Namespace) -> int:
    from ..datasets import REGISTRY

    for name, spec in sorted(REGISTRY.items()):
        print(f"{name}\t{'|'.join(spec.sizes)}\t{spec.description}")
    for name, description in REAL_DATASETS.items():
        print(f"{name}\t-\t{description}")
    return 0


def _summary(ds) -> None:
    hours = ds.duration_s / 3600
    print(f"{ds.name} ({ds.size}, seed {ds.seed}) in {ds.path}")
    print(f"  clips: {ds.n_clips} ({hours:.2f} h of audio, {ds.size_bytes / 1e6:.1f} MB), rejected: {ds.n_rejected}")
    print("  splits: " + ", ".join(f"{k} {v}" for k, v in ds.splits.items()))
    print("  genres: " + ", ".join(f"{k} {v}" for k, v in ds.genres.items()))
    fonts = ds.manifest.get("counts", {}).get("soundfonts")
    if fonts:
        print("  soundfonts: " + ", ".join(f"{k} {v}" for k, v in fonts.items()))
    print("  tags:   " + ", ".join(f"{k} {v}" for k, v in ds.tags.items()))
    c = ds.manifest.get("counts", {})
    if c.get("users"):
        print(f"  listening: {c['users']} users, {c['events']} events, {c['plays']} plays, "
              f"{c.get('cold_users', 0)} cold users, {c.get('tracks_never_played', 0)} tracks never played")
    print(f"  build time: {ds.build_seconds:.1f} s; labels: {ds.labels_path}")
