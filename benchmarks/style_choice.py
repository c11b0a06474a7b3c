"""How the style embedding's block and MFCC weight were chosen: measures on the VALID packages only.

    python benchmarks/style_choice.py --realmusic DIR [--model M] [--out benchmarks/results/style_choice.json]

Data (as ``benchmarks/real_audio.py``, but the ``valid`` split): the valid packages' tracks of at
least 40 s, at most 12 per package, 4 excerpts of 10 s each at the centres of the track's quarters.
Standardisation statistics come from the ``train`` split: one 10 s excerpt from the middle of up to
8 tracks per train package. Nothing from the test packages is read.

For every backbone block of the model (``--model``, default the shipped one) the excerpts get that
block's channel statistics (:func:`mir.models.style.channel_stats`, averaged over non-overlapping
chunks) and MFCC statistics (:func:`mir.models.style.mfcc_stats`), standardised with the train
statistics and combined as :meth:`~mir.models.style.StyleStats.embed` does, for each MFCC weight.
Measures (:mod:`mir.train.retrieval_metrics`): same-recording P@3 and 5-NN balanced accuracy by
package (neighbours from other tracks), beside the backbone's chunk mean and the MFCC part alone.

The rule the shipped model followed: the block with the best P@3 on its own, then the largest MFCC
weight that keeps that P@3. Prints a table and writes JSON; nothing asserts.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from real_audio import SECONDS, SR, excerpt_offsets, select_music  # noqa: E402

WEIGHTS = (0.0, 0.3, 0.5, 0.7, 1.0)


def excerpts(rdir: Path, split: str, per_package: int, *, whole: bool) -> tuple[list[np.ndarray], list[int], list[str]]:
    """Waveforms, track index and package of each excerpt (4 per track, or 1 from the middle)."""
    from mir import audio
    from mir.errors import AudioError

    waves, groups, packages = [], [], []
    for t, row in enumerate(select_music(rdir, split, per_package, min_seconds=4 * SECONDS if whole else SECONDS)):
        offsets = excerpt_offsets(row["duration"]) if whole else [max(0.0, row["duration"] / 2 - SECONDS / 2)]
        try:
            ys = [audio.load(row["path"], sr=SR, offset=o, duration=SECONDS) for o in offsets]
        except AudioError:  # a silent excerpt: the track is left out
            continue
        waves += ys
        groups += [t] * len(ys)
        packages += [row["package"]] * len(ys)
    return waves, groups, packages


def features(model, waves: list[np.ndarray], chunk_frames: int) -> dict[str, np.ndarray]:
    """Per excerpt: every block's channel statistics, the MFCC statistics and the backbone chunk mean."""
    import torch

    from mir.config import get_config
    from mir.features import log_mel
    from mir.models.inference import chunk_starts, cut_chunks
    from mir.models.style import channel_stats, dct_matrix, mfcc_stats

    cfg = get_config().analysis
    dct = torch.from_numpy(dct_matrix(model.n_mels, 20)).float()
    rows: dict[str, list[np.ndarray]] = {}
    model.eval()
    for y in waves:
        mel = log_mel(y, sr=SR, n_fft=cfg.n_fft, hop_length=cfg.hop_length, n_mels=cfg.n_mels, fmin=cfg.fmin, fmax=cfg.fmax)
        x = torch.from_numpy(cut_chunks(mel, chunk_starts(mel.shape[1], chunk_frames), chunk_frames)).unsqueeze(1)
        with torch.inference_mode():
            h = model.input_norm(x)
            for i, block in enumerate(model.blocks):
                h = block(h)
                rows.setdefault(f"block {i}", []).append(channel_stats(h).mean(0).numpy())
            rows.setdefault("mfcc", []).append(mfcc_stats(x, dct).mean(0).numpy())
            emb = torch.nn.functional.normalize(model.features(x), dim=-1).mean(0)
            rows.setdefault("backbone", []).append(torch.nn.functional.normalize(emb, dim=0).numpy())
    return {k: np.asarray(v, np.float64) for k, v in rows.items()}


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--realmusic", type=Path, default=Path("data/realmusic"), help="built realmusic corpus")
    ap.add_argument("--model", type=Path, default=None, help="checkpoint whose backbone to measure (default: the shipped one)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "style_choice.json")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)

    import torch

    from mir.models import load_checkpoint
    from mir.models.checkpoint import default_checkpoint
    from mir.train.retrieval_metrics import knn_balanced_accuracy, same_recording_precision

    torch.set_num_threads(args.threads)
    t0 = time.time()
    loaded = load_checkpoint(args.model or default_checkpoint())
    valid_w, groups, packages = excerpts(args.realmusic, "valid", 12, whole=True)
    train_w, _, _ = excerpts(args.realmusic, "train", 8, whole=False)
    valid = features(loaded.model, valid_w, loaded.config.chunk_frames)
    train = features(loaded.model, train_w, loaded.config.chunk_frames)

    def z(key: str) -> np.ndarray:
        mu, sd = train[key].mean(0), train[key].std(0)
        return (valid[key] - mu) / np.where(sd > 1e-6, sd, 1.0)

    def score(name: str, emb: np.ndarray) -> dict:
        return {"embedding": name, "p_at_3": same_recording_precision(emb, groups, k=3),
                "knn5_package": knn_balanced_accuracy(emb, packages, groups, k=5)}

    rows = [score("backbone chunk mean", valid["backbone"]), score("mfcc statistics", z("mfcc"))]
    for b in range(len(loaded.model.blocks)):
        for w in WEIGHTS:
            rows.append(score(f"block {b} + mfcc x {w}", _unit(np.hstack([_unit(z(f"block {b}")), w * _unit(z("mfcc"))]))))
    print(f"valid: {len(set(groups))} tracks, {len(groups)} excerpts, packages {sorted(set(packages))}; "
          f"train standardisation: {len(train_w)} excerpts ({time.time() - t0:.0f} s)")
    print(f"{'embedding':28s} {'P@3':>6s} {'5NN-pkg':>8s}")
    for r in rows:
        print(f"{r['embedding']:28s} {r['p_at_3']:6.3f} {r['knn5_package']:8.3f}")
    report = {"model": loaded.model_id, "valid_packages": sorted(set(packages)), "valid_tracks": len(set(groups)),
              "valid_excerpts": len(groups), "train_excerpts": len(train_w), "results": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
