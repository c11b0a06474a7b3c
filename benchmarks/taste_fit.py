"""The default hybrid with its exact taste fit against the fit over cells of tracks, on a library's histories.

    python benchmarks/taste_fit.py [--library mir-demo/library] [--events mir-demo/collection/events.parquet]
                                   [--cells 8,4,2] [--content-users 100] [--out FILE]

The same split and metric as ``mir recommend-eval`` (last 20 % of each user's events held out,
recall@50 of the new tracks there): the hybrid fitted with ``taste_fit="exact"`` (every track in
every normaliser) and with ``taste_fit="cells"`` at ``n_tracks / c`` cells for each ``c`` of
``--cells`` (mir.recommend.taste_cells; over cells at most 10 rounds in each fit, the scaled path's
default), with fit times. The last row is the whole path the hybrid takes above 2,000 tracks:
cells (the first ``c``), lists and validation as inner products (``scoring="blend"``,
mir.recommend.blend_topk) and the cold users' content model on them plus ``--content-users`` others.
``make demo`` writes the default folders. Writes JSON to benchmarks/results/taste_fit.json.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from mir import atomic  # noqa: E402
from mir.catalog import Library  # noqa: E402
from mir.recommend import Hybrid  # noqa: E402
from mir.recommend.evaluate import evaluate  # noqa: E402
from mir.recommend.inputs import load_inputs  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--library", default="mir-demo/library")
    ap.add_argument("--events", default="mir-demo/collection/events.parquet")
    ap.add_argument("--cells", default="8,4,2", help="tracks per cell, comma-separated")
    ap.add_argument("--content-users", type=int, default=100, help="sample of the scaled path's content model")
    ap.add_argument("--out", default=str(HERE / "results" / "taste_fit.json"))
    args = ap.parse_args(argv)
    inputs = load_inputs(Library(args.library), args.events)
    n = inputs.interactions.n_items
    models = {"exact": Hybrid(taste_fit="exact")}
    per_cell = [int(x) for x in args.cells.split(",")]
    for c in per_cell:
        models[f"cells n/{c} ({n // c})"] = Hybrid(taste_fit="cells", cells=n // c)
    models[f"scaled path (cells n/{per_cell[0]}, blend, content on {args.content_users} + cold)"] = Hybrid(
        taste_fit="cells", cells=n // per_cell[0], scoring="blend", content_users=args.content_users)
    table = evaluate(models, inputs.interactions, inputs.tracks, k=50)
    cols = ["recall@50", "ndcg@50", "recall@50_cold_users", "fit_s", "recommend_s"]
    table["recall_vs_exact"] = table["recall@50"] - table.loc["exact", "recall@50"]
    print(f"{n} tracks, {len(inputs.interactions.users)} users; {table.attrs['evaluated_users']} scored")
    print(table[cols + ["recall_vs_exact"]].to_string(float_format=lambda v: f"{v:.4f}"))
    doc = {"tracks": n, "rows": json.loads(table[cols + ["recall_vs_exact"]].reset_index().to_json(orient="records"))}
    atomic.write_text(Path(args.out), json.dumps(doc, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
