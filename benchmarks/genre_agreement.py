"""Genre agreement of nearest neighbours: the model's embeddings against mean-MFCC vectors.

    python benchmarks/genre_agreement.py [--lib mir-demo/library] [--data mir-demo/collection]
                                         [--model MODEL_ID] [--k 10] [--out benchmarks/results/genre_agreement.json]

The defaults are the folders that ``make demo`` (``mir demo --dir mir-demo``) writes under the current
directory: the rendered collection and its library, tagged with the default model and indexed.

For every tagged track of the library: its ``k`` nearest other tracks (exact cosine search with
:class:`mir.index.ExactIndex`, the track itself excluded) and the share of them whose genre
(``labels.csv`` of the collection, joined by file path) equals the track's. Averaged over tracks.

Representations
- embedding: the model's track embedding (stage ``tags/<model_id>``, what `mir similar` searches)
- mean-MFCC (z): 20 MFCCs of each track's cached log-mel (``librosa.feature.mfcc(S=...)``), averaged
  over time, each coefficient standardised over the collection (else MFCC 0, loudness, dominates)
- mean-MFCC (raw): the same without standardising
- chance: the share expected when neighbours are drawn at random
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
DEMO_DIR = Path("mir-demo")  # `make demo` writes the collection and its library here
sys.path.insert(0, str(HERE.parent))

from mir.catalog import Library, stage_versions  # noqa: E402
from mir.index import ExactIndex  # noqa: E402
from mir.catalog.predictions import load_embeddings, resolve_model_id  # noqa: E402
from mir.similar.query import neighbour_agreement as agreement_in  # noqa: E402


def neighbour_agreement(ids: np.ndarray, vectors: np.ndarray, genre: np.ndarray, k: int) -> tuple[float, np.ndarray]:
    """Mean share of the ``k`` nearest other tracks with the same genre, and the per-track shares."""
    return agreement_in(ExactIndex().build(ids, vectors), ids, vectors, genre, k)


def mean_mfcc(lib: Library, hashes: np.ndarray, n_mfcc: int = 20) -> np.ndarray:
    import librosa

    version = stage_versions()["logmel"]
    out = np.empty((len(hashes), n_mfcc), np.float32)
    for i, h in enumerate(hashes):
        mel_db = lib.arrays.load("logmel", version, h)
        out[i] = librosa.feature.mfcc(S=mel_db, n_mfcc=n_mfcc).mean(axis=1)
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--lib", default=str(DEMO_DIR / "library"), help="tagged library (default %(default)s)")
    p.add_argument("--data", default=str(DEMO_DIR / "collection"),
                   help="collection folder with labels.csv (default %(default)s)")
    p.add_argument("--model", default=None, help="model id (default: the latest that tagged the library)")
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--out", default=str(HERE / "results" / "genre_agreement.json"))
    args = p.parse_args()
    for path, what in ((Path(args.lib) / "library.json", "--lib"), (Path(args.data) / "labels.csv", "--data")):
        if not path.is_file():
            p.error(f"{path} not found: run `make demo` (builds {DEMO_DIR}/collection and {DEMO_DIR}/library) "
                    f"or pass {what}")

    lib = Library(args.lib)
    model_id = resolve_model_id(lib, args.model)
    ids, hashes, emb = load_embeddings(lib, model_id)
    data = Path(args.data)
    labels = pd.read_csv(data / "labels.csv")
    labels["path"] = [str((data / t).resolve()) for t in labels["track"]]
    files = lib.files()
    genre_by_hash = dict(zip(files.merge(labels, on="path")["hash"], files.merge(labels, on="path")["genre"]))
    keep = np.array([h in genre_by_hash for h in hashes])
    ids, hashes, emb = ids[keep], hashes[keep], emb[keep]
    genre = np.array([genre_by_hash[h] for h in hashes])
    counts = pd.Series(genre).value_counts()
    n = len(genre)
    chance = float(((counts / n) * ((counts - 1) / (n - 1))).sum())

    mfcc = mean_mfcc(lib, hashes)
    mfcc_z = (mfcc - mfcc.mean(0)) / (mfcc.std(0) + 1e-9)
    results, shares = {}, {}
    for name, vectors in (("embedding", emb), ("mean-MFCC (z)", mfcc_z), ("mean-MFCC (raw)", mfcc)):
        results[name], shares[name] = neighbour_agreement(ids, vectors, genre, args.k)
    results["chance"] = chance

    print(f"library {lib.root}, model {model_id}: {n} tracks with a genre label, {len(counts)} genres")
    print(f"share of a track's {args.k} nearest neighbours with the same genre:")
    for name, value in results.items():
        print(f"  {name:16s} {value:.3f}")
    per_genre = pd.DataFrame({"genre": genre, "embedding": shares["embedding"], "mean-MFCC (z)": shares["mean-MFCC (z)"]})
    table = per_genre.groupby("genre").mean().round(3)
    print(table.to_string())
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"library": str(lib.root), "model_id": model_id, "tracks": n, "k": args.k,
                               "agreement": results, "per_genre": table.to_dict(orient="index")}, indent=1))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
