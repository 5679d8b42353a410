"""How far can any per-voxel estimate of a contrast from the other three go, and how much of its error is one
number per case (the intensity scale)? The question behind t1c synthesis missing its target (issue 10).

On the held-out cases it scores, in brain PSNR on [0, 1]:
- linear regression (bench_quality's baseline);
- the non-parametric conditional mean E[target | the other three intensities], a table of `--bins`^3 cells filled
  from every head voxel of the training cases: the best any per-voxel map can do;
- the same with each case's best affine rescale of the prediction (an oracle: fitted to the truth), inside the brain
  and outside the tumour.
A large gain from the oracle means the error is the case's scale, which the other contrasts do not carry.
`--reference percentile` loads the cases with the old intensity reference (every contrast's 0.1-99.9th head
percentiles onto [0, 1]) instead of the preprocessing's head median (MEDIAN_LEVEL), to compare the two.

It also asks how far any uncertainty map can go (issue 10's target: Spearman(uncertainty, |error|) >= 0.4 in the
brain), for the conditional mean's error:
- the table's conditional standard deviation, sd[target | the other three]: the per-voxel spread a perfect sampler
  of this per-voxel model would show;
- an oracle that knows the true error of every other voxel: the local RMS of the true error in a Gaussian window
  (sigma 1 voxel) leaving the voxel itself out. No map that is smooth at the scale of a voxel can do much better.

    python scripts/benchmarks/bench_voxelwise_ceiling.py [--target t1c] [--bins 32] [--cases 20] [--reference percentile]
"""
from __future__ import annotations

import argparse
import contextlib
import json
from pathlib import Path
from unittest import mock

import numpy as np

from scipy.stats import spearmanr

from volgen.io.preprocess import MEDIAN_LEVEL
from bench_harness import local_rms_without_centre
from volgen.training.config import DataConfig
from volgen.training.data import load_cases

CONTRASTS = ["t1n", "t1c", "t2w", "t2f"]


def unit(x: np.ndarray) -> np.ndarray:
    return ((x + 1) / 2).clip(0, 1)


def psnr(error: np.ndarray) -> float:
    return float(10 * np.log10(1 / np.mean(error ** 2)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target", default="t1c", choices=CONTRASTS)
    parser.add_argument("--bins", type=int, default=32)
    parser.add_argument("--cases", type=int, default=20)
    parser.add_argument("--train", default="phantoms/train")
    parser.add_argument("--heldout", default="phantoms/heldout")
    parser.add_argument("--reference", choices=["median", "percentile"], default="median",
                        help="percentile: load the cases with the old reference (0.1-99.9th head percentiles) instead "
                             "of the preprocessing's lesion-robust head median")
    args = parser.parse_args()
    k = CONTRASTS.index(args.target)
    sources = [i for i in range(4) if i != k]
    # without MEDIAN_LEVEL's entries the preprocessing falls back to the percentiles
    percentile = args.reference == "percentile"
    with mock.patch.dict(MEDIAN_LEVEL, clear=True) if percentile else contextlib.nullcontext():
        train = load_cases(DataConfig(root=args.train), 8)
        heldout = load_cases(DataConfig(root=args.heldout, max_cases=args.cases), 8, with_healthy=True)
    x, y = [], []
    for case in train:
        flat = case.images.numpy().reshape(4, -1)
        head = (flat > -1 + 1e-3).any(0)
        x.append(flat[sources][:, head].T)
        y.append(flat[k, head])
    x, y = np.concatenate(x), np.concatenate(y)
    n = args.bins

    def cell(v: np.ndarray) -> np.ndarray:
        i = np.clip(((v + 1) / 2 * n).astype(int), 0, n - 1)
        return (i[:, 0] * n + i[:, 1]) * n + i[:, 2]

    cells = cell(x)
    counts = np.bincount(cells, minlength=n ** 3)
    table = np.where(counts > 0, np.bincount(cells, weights=y, minlength=n ** 3) / np.maximum(counts, 1), y.mean())
    second = np.bincount(cells, weights=y * y, minlength=n ** 3) / np.maximum(counts, 1)
    spread = np.sqrt(np.clip(second - table ** 2, 0, None))
    spread[counts < 5] = spread[counts >= 5].max()          # a cell seen too rarely: as unsure as the worst seen
    design = np.c_[x, np.ones(len(x))]
    linear = np.linalg.lstsq(design, y, rcond=None)[0]
    rows = []
    for case in heldout:
        images = case.images.numpy()
        brain, tumour = case.brain.numpy().astype(bool), case.seg.numpy() > 0
        truth = unit(images[k])
        flat = images[sources].reshape(3, -1).T
        lin = unit((np.c_[flat, np.ones(len(flat))] @ linear).reshape(truth.shape))
        where = cell(flat)
        best = unit(table[where].reshape(truth.shape))
        a, b = np.linalg.lstsq(np.c_[best[brain], np.ones(brain.sum())], truth[brain], rcond=None)[0]
        oracle = a * best + b
        rest = brain & ~tumour
        error = np.abs(best - truth)
        rows.append([psnr((lin - truth)[brain]), psnr((best - truth)[brain]), psnr((oracle - truth)[brain]),
                     psnr((best - truth)[rest]), psnr((oracle - truth)[rest]), a,
                     spearmanr(spread[where].reshape(truth.shape)[brain], error[brain]).correlation,
                     spearmanr(local_rms_without_centre(error ** 2)[brain], error[brain]).correlation])
    r = np.array(rows)
    print(f"{args.target} from the other three, {len(heldout)} held-out cases, {len(y)} training voxels, "
          f"{n}^3 cells")
    for name, col in (("linear regression, brain", 0), ("conditional mean, brain", 1),
                      ("conditional mean + per-case affine oracle, brain", 2),
                      ("conditional mean, brain outside the tumour", 3),
                      ("conditional mean + oracle, brain outside the tumour", 4)):
        print(f"  {name:52} {r[:, col].mean():6.2f} dB")
    print(f"  oracle slopes: {r[:, 5].min():.2f} to {r[:, 5].max():.2f}")
    gd = [phantom_info(args.heldout, case.name).get("gd_mM") for case in heldout]
    if None not in gd:        # what sets the scale: the case's gadolinium dose, which only t1c shows
        print(f"  Spearman(oracle slope, the phantom's gadolinium concentration): "
              f"{spearmanr(r[:, 5], gd).correlation:.2f}")
    for name, col in (("conditional sd", 6), ("oracle: local RMS of the true error, centre left out", 7)):
        print(f"  Spearman(|error|, {name}): mean {r[:, col].mean():.3f}, from {r[:, col].min():.3f} "
              f"to {r[:, col].max():.3f}")


def phantom_info(root: str, name: str) -> dict:
    path = Path(root) / name / f"{name}-phantom.json"
    return json.loads(path.read_text()) if path.is_file() else {}


if __name__ == "__main__":
    main()
