"""How the style embedding's block, MFCC weight and whitening are chosen: grouped cross-validation over the
packages of the ``train`` and ``valid`` splits (never the ``test`` packages).

    python benchmarks/style_choice.py --realmusic DIR [--model M] [--subsets 40] [--against B,W[,S]]
                                      [--out benchmarks/results/style_choice.json]

Data (as ``benchmarks/real_audio.py``): for every ``train`` and ``valid`` package, its tracks of at
least 40 s, at most 12 per package, 4 excerpts of 10 s each at the centres of the track's quarters.

Measure: ``--subsets`` random draws of 4 packages (as many as the test split has), each scored with
the other packages' excerpts as the standardisation and whitening statistics: same-recording P@3 and 5-NN balanced
accuracy by package (neighbours from other tracks), averaged over the draws, with a standard error.
A single split of three valid packages (what chose the first style block) is too small to rank
candidates: neighbouring settings differ there by more than the effects being chosen.

For every backbone block of the model (``--model``, default the shipped one) the excerpts get that
block's channel statistics (:func:`mir.models.style.channel_stats`, averaged over non-overlapping
chunks) and MFCC statistics (:func:`mir.models.style.mfcc_stats`), standardised and combined as
:meth:`~mir.models.style.StyleStats.embed` does, for each MFCC weight and whitening shrinkage
(:func:`mir.models.style.shrunk_whitening`; 0 = none); the backbone's chunk mean and the MFCC part
alone are scored beside them.

The rule: the block, weight and shrinkage with the highest mean of the two measures. ``--against``
compares the chosen setting draw by draw with another. Prints a table and writes JSON; nothing
asserts.
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
SHRINKAGES = (0.0, 0.3, 0.5, 0.7)  # whitening's covariance shrinkage; 0 = no whitening


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


def draws(packages: list[str], n: int, size: int = 4, seed: int = 0) -> list[list[str]]:
    """``n`` random ``size``-package subsets (seeded; the same for every candidate)."""
    rng = np.random.default_rng(seed)
    names = sorted(set(packages))
    if len(names) <= size:
        raise SystemExit(f"style_choice: need more than {size} train+valid packages, found {len(names)}")
    return [sorted(rng.choice(names, size, replace=False).tolist()) for _ in range(n)]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--realmusic", type=Path, default=Path("data/realmusic"), help="built realmusic corpus")
    ap.add_argument("--model", type=Path, default=None, help="checkpoint whose backbone to measure (default: the shipped one)")
    ap.add_argument("--subsets", type=int, default=40, help="random 4-package draws to average over")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "style_choice.json")
    ap.add_argument("--against", default=None, metavar="B,W[,S]",
                    help="also compare the chosen setting draw by draw with block B at MFCC weight W (whitening S)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)

    import torch

    from mir.models import load_checkpoint
    from mir.models.checkpoint import default_checkpoint
    from mir.models.style import shrunk_whitening
    from mir.train.retrieval_metrics import knn_balanced_accuracy, same_recording_precision

    torch.set_num_threads(args.threads)
    t0 = time.time()
    loaded = load_checkpoint(args.model or default_checkpoint())
    waves, groups, packages = [], [], []
    for split in ("train", "valid"):
        w, g, p = excerpts(args.realmusic, split, 12, whole=True)
        waves += w
        groups += [f"{split}/{x}" for x in g]
        packages += p
    feats = features(loaded.model, waves, loaded.config.chunk_frames)
    groups_a, packages_a = np.asarray(groups), np.asarray(packages)
    subsets = draws(packages, args.subsets)

    def z(key: str, fit: np.ndarray, ev: np.ndarray) -> np.ndarray:
        mu, sd = feats[key][fit].mean(0), feats[key][fit].std(0)
        return (feats[key][ev] - mu) / np.where(sd > 1e-6, sd, 1.0)

    def score(name: str, embed) -> dict:
        """``embed(fit, ev)``: the embeddings of rows ``ev``, standardised on rows ``fit``."""
        k5, p3 = [], []
        for s in subsets:
            ev = np.isin(packages_a, s)
            emb = embed(~ev, ev)
            k5.append(knn_balanced_accuracy(emb, packages_a[ev], groups_a[ev], k=5))
            p3.append(same_recording_precision(emb, groups_a[ev], k=3))
        return {"embedding": name, "p_at_3": float(np.mean(p3)), "knn5_package": float(np.mean(k5)),
                "mean": float((np.mean(p3) + np.mean(k5)) / 2), "draws_p_at_3": p3, "draws_knn5_package": k5,
                "se_p_at_3": float(np.std(p3) / np.sqrt(len(p3))), "se_knn5_package": float(np.std(k5) / np.sqrt(len(k5)))}

    rows = [score("backbone chunk mean", lambda fit, ev: feats["backbone"][ev]),
            score("mfcc statistics", lambda fit, ev: z("mfcc", fit, ev))]
    def style(fit: np.ndarray, ev: np.ndarray, b: int, w: float, shrink: float) -> np.ndarray:
        """As StyleStats.embed: parts standardised on ``fit``, unit-normed, weighted; whitened on ``fit``."""
        def combined(rows):
            return np.hstack([_unit(z(f"block {b}", fit, rows)), w * _unit(z("mfcc", fit, rows))])
        v = combined(ev)
        if shrink:
            mean, white = shrunk_whitening(combined(fit), shrink)
            v = (v - mean) @ white
        return _unit(v)

    candidates = []
    for b in range(len(loaded.model.blocks)):
        for w in WEIGHTS:
            for shrink in SHRINKAGES:
                name = f"block {b} + mfcc x {w}" + (f", whiten {shrink}" if shrink else "")
                r = score(name, lambda fit, ev, b=b, w=w, shrink=shrink: style(fit, ev, b, w, shrink))
                candidates.append({**r, "block": b, "weight": w, "whiten": shrink})
    rows += candidates
    best = max(candidates, key=lambda r: r["mean"])
    print(f"{len(set(groups))} tracks, {len(groups)} excerpts from {len(set(packages))} train+valid packages; "
          f"{len(subsets)} draws of 4 packages ({time.time() - t0:.0f} s)")
    print(f"{'embedding':40s} {'P@3':>6s} {'±':>5s} {'5NN-pkg':>8s} {'±':>5s} {'mean':>6s}")
    for r in rows:
        print(f"{r['embedding']:40s} {r['p_at_3']:6.3f} {r['se_p_at_3']:5.3f} {r['knn5_package']:8.3f} "
              f"{r['se_knn5_package']:5.3f} {r['mean']:6.3f}")
    print(f"chosen: block {best['block']}, MFCC weight {best['weight']}, whitening shrinkage {best['whiten']}")
    paired = None
    if args.against:
        b, w, shrink = (args.against.split(",") + ["0"])[:3]
        other = next(r for r in candidates
                     if r["block"] == int(b) and r["weight"] == float(w) and r["whiten"] == float(shrink))
        paired = {"against": other["embedding"]}
        for key in ("p_at_3", "knn5_package"):
            d = np.asarray(best[f"draws_{key}"]) - np.asarray(other[f"draws_{key}"])
            paired[key] = {"mean_difference": float(d.mean()), "draws_ahead": int((d > 0).sum()),
                           "draws_behind": int((d < 0).sum())}
            print(f"chosen against {other['embedding']}, {key}: {d.mean():+.3f} on average, ahead on "
                  f"{(d > 0).sum()} and behind on {(d < 0).sum()} of {len(d)} draws")
    report = {"model": loaded.model_id, "packages": sorted(set(packages)), "tracks": len(set(groups)),
              "excerpts": len(groups), "subsets": subsets, "results": rows,
              "chosen": {"block": best["block"], "weight": best["weight"], "whiten": best["whiten"]}, "paired": paired}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
