"""Synthesis on 1 mm cases, where users' data is: volgen's 2 mm module through the job on fresh 1 mm phantoms, as the
job runs by default (the conditions divided by their bias fields, volgen/io/bias_field.py; the detail transfer,
volgen/tasks/detail.py: the module's 2 mm estimate fitted locally on its guides, the fit applied to the 1 mm guides,
the head's median put at the contrast's level) and with the detail transfer turned off (`synthesize(...,
detail=False)`: the 2 mm estimate resampled), against the per-voxel linear regression fitted at 1 mm, and the same
regression with its conditions divided by their bias fields as the job divides them (fitted on training cases treated
alike): what the bias correction alone gives a baseline that learns nothing else.

Cases: --cases fresh phantoms per seed of --seeds at 1 mm (generated in memory; no model has seen them). The
regression is fitted on --train-cases 1 mm versions of training seeds (seed 100). Every image is put on the [0, 1]
scale the job writes (each volume's head median at its contrast's level). Scores in the brain, per target:
- PSNR (data range 1);
- sharpness: the mean gradient magnitude's ratio to the truth's (target 0.9-1.1), and the PSNR of the high-pass part
  (the image minus its Gaussian blur of 1 mm sigma) against the truth's high-pass part;
- seconds for the job (the detail transfer included).
The job's one sample (`--estimate sample`) is scored beside its posterior mean: on a finer grid it carries the
conditions' noise level relative to their signal (volgen/tasks/synthesis.py, `with_scans_noise`), an acquired scan's
look rather than the best estimate of the signal.
Beside the arms, the noiseless truth (the same case drawn without its Rician noise, on the noisy truth's scale):
what a perfect estimate of the signal scores under the same measures. Its gradient ratio is below 1 (0.82-0.94 on
validation phantoms), because the noise adds gradient that no estimate of the signal has.

    python scripts/benchmarks/bench_one_mm.py [--seeds 800,900,1000] [--cases 3] [--targets t1c,t2f]
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from bench_harness import LinearRegression
from volgen.io.bias_field import without_bias
from volgen.io.contrasts import MRI_CONTRASTS
from volgen.io.preprocess import MEDIAN_LEVEL, IntensityScale
from volgen.io.volume import Volume
from volgen.metrics import psnr, sharpness
from volgen.phantom import PhantomSpec, generate_case
from volgen.tasks.synthesis import synthesize

SPEC = PhantomSpec(spacing=1, pet=None)
NOISELESS = SPEC.without_noise()


def unit(case, scaled_like=None, images: dict | None = None) -> np.ndarray:
    """(4, ...) every contrast on the job's [0, 1] scale (head median at the contrast's level); with `scaled_like`
    (another draw of the same case), on that case's scale instead; `images` in place of the case's own."""
    out = []
    for c in MRI_CONTRASTS:
        image = (images or case.images)[c].astype(np.float32)
        reference = image if scaled_like is None else scaled_like.images[c].astype(np.float32)
        scale = IntensityScale.fit(reference, median_level=MEDIAN_LEVEL[c])
        out.append(scale.forward(image))
    return np.stack(out)


def with_conditions_unbiased(case, target: str) -> np.ndarray:
    """`unit(case)` with every contrast but `target` divided by its bias field, estimated as the job does
    (volgen/io/bias_field.py) on the conditions together."""
    conditions = {c: Volume(case.images[c].astype(np.float32), case.affine) for c in MRI_CONTRASTS if c != target}
    unbiased = {c: v.array for c, v in without_bias(conditions).items()}
    return unit(case, images={**case.images, **unbiased})


ARMS = ("regression (1 mm)", "regression, unbiased conditions", "volgen, 2 mm resampled",
        "volgen job (detail transfer)", "volgen job, one sample", "noiseless truth")


def measure(seeds: list[int], cases: int, train_cases: int, targets: list[str]) -> list[dict]:
    """One row per case, target and arm: PSNR in the brain, sharpness, seconds."""
    train = [generate_case(100, i, SPEC) for i in range(train_cases)]
    train_images = [unit(c) for c in train]
    train_brains = [c.brain > 0 for c in train]
    plain, unbiased = {}, {}       # per target, fitted once: on the training cases as drawn, and bias-corrected
    for t in targets:
        sources = [MRI_CONTRASTS.index(c) for c in MRI_CONTRASTS if c != t]
        plain[t] = LinearRegression(sources, MRI_CONTRASTS.index(t)).fit(train_images, train_brains)
        unbiased[t] = LinearRegression(sources, MRI_CONTRASTS.index(t)).fit(
            [with_conditions_unbiased(c, t) for c in train], train_brains)
    rows = []
    for seed in seeds:
        for index in range(cases):
            case = generate_case(seed, index, SPEC)
            images, brain = unit(case), case.brain > 0
            noiseless = unit(generate_case(seed, index, NOISELESS), scaled_like=case)
            for target in targets:
                k = MRI_CONTRASTS.index(target)
                others = [c for c in MRI_CONTRASTS if c != target]
                volumes = {c: Volume(case.images[c].astype(np.float32), case.affine, name=f"{case.name}-{c}")
                           for c in others}
                regression = plain[target].predict(images)
                unbiased_regression = unbiased[target].predict(with_conditions_unbiased(case, target))
                began = time.perf_counter()
                resampled = synthesize(volumes, target=target, seed=index, progress=False,
                                       detail=False).outputs[target].array
                resampled_seconds = time.perf_counter() - began
                began = time.perf_counter()
                job = synthesize(volumes, target=target, seed=index, progress=False).outputs[target].array
                job_seconds = time.perf_counter() - began
                began = time.perf_counter()
                sample = synthesize(volumes, target=target, seed=index, progress=False,
                                    estimate="sample").outputs[target].array
                sample_seconds = time.perf_counter() - began
                truth = images[k]
                arms = zip(ARMS, (regression, unbiased_regression, resampled, job, sample, noiseless[k]),
                           (0.0, 0.0, resampled_seconds, job_seconds, sample_seconds, 0.0))
                for arm, image, seconds in arms:
                    row = {"case": case.name, "target": target, "arm": arm,
                           "psnr": psnr(image, truth, brain, data_range=1.0), **sharpness(image, truth, brain),
                           "seconds": seconds}
                    rows.append(row)
                    print(f"{case.name} {target} {arm:28} PSNR {row['psnr']:.2f} gradient {row['gradient_ratio']:.2f} "
                          f"high-pass {row['highpass_psnr']:.2f} ({seconds:.1f} s)", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", default="800,900,1000",
                        help="fresh phantom seeds (100-600 and 3100-3600 are trained, held out, validated or "
                             "calibrated on)")
    parser.add_argument("--cases", type=int, default=3)
    parser.add_argument("--train-cases", type=int, default=4)
    parser.add_argument("--targets", default="t1c,t2f")
    parser.add_argument("--out", default="bench_out/one-mm.json", type=Path)
    args = parser.parse_args()
    targets = args.targets.split(",")
    rows = measure([int(s) for s in args.seeds.split(",")], args.cases, args.train_cases, targets)
    summary = {}
    for target in targets:
        for arm in ARMS:
            sel = [r for r in rows if r["target"] == target and r["arm"] == arm]
            summary[f"{target} {arm}"] = {k: float(np.mean([r[k] for r in sel])) for k in
                                          ("psnr", "gradient_ratio", "highpass_psnr", "seconds")}
    print(f"\n{'target arm':36} {'PSNR':>7} {'margin':>7} {'grad':>6} {'high-pass':>9} {'s':>6}")
    for name, s in summary.items():
        base = summary[f"{name.split()[0]} regression (1 mm)"]["psnr"]
        print(f"{name:36} {s['psnr']:7.2f} {s['psnr'] - base:+7.2f} {s['gradient_ratio']:6.2f} "
              f"{s['highpass_psnr']:9.2f} {s['seconds']:6.1f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"summary": summary, "rows": rows}, indent=1))
    print(f"wrote {args.out}")

if __name__ == "__main__":
    main()
