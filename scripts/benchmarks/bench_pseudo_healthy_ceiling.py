"""How far above the harmonic fill can any pseudo-healthy fill get, case by case? Issue 41 asks for at most 1 case in
10 under +1 dB over the exact harmonic fill; the shipped fill misses it on small holes. This script measures what a
fill that knows everything the phantom generator draws, except what the hole hides, scores on bench_pseudo_healthy's
own cases and masks (same seeds, same masks, same truth, same PSNR).

Inside a healthy phantom's brain a voxel is |A x (1 + a tanh f) + sigma n|: A the anatomy (tissue fractions, tissue
contrast, gain and bias field), f a unit Gaussian field smooth on `MRISpec.texture_mm` (a cubic B-spline lattice of
independent unit knots; a = `MRISpec.texture`, 3%), n complex unit noise (Rician magnitude). Arms, scored inside the
mask against the noisy healthy twin:
- anatomy: A known exactly, the texture at its mean (f = 0), the Rician mean of that signal;
- anatomy + texture: A known, f estimated from the known voxels around the hole (its posterior mode given every
  known voxel within BOX_MARGIN voxels, Gauss-Newton on the exact B-spline lattice, the knots' own unit prior), then
  the Rician mean. This is the posterior mean of the truth up to the tanh's curvature: no fill that is not told the
  hidden texture or noise can expect to beat it;
- noiseless truth: A x (1 + a tanh f) with the true f: knows the texture too, only the noise is left (session 43);
- with --bench, the job's posterior mean from that bench's JSON (same cases), for the side-by-side.
A margin is an arm's PSNR minus the exact harmonic fill's on the same case and mask. Where even the anatomy +
texture arm is under +1 dB, what a fill could add is not in the known voxels: a miss there is the target's, not the
fill's.

    python scripts/benchmarks/bench_pseudo_healthy_ceiling.py [--seeds 800,900,1000] [--cases 5] [--contrast t2f]
        [--bench bench_out/pseudo-healthy-s45/pseudo-healthy.json]
"""
from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
from scipy import ndimage, special
from scipy.sparse.linalg import LinearOperator, cg

from bench_pseudo_healthy import masks, summarise
from volgen.baselines import harmonic_fill
from volgen.metrics import psnr
from volgen.phantom import PhantomSpec, generate_case
from volgen.phantom.anatomy import bspline_basis

BOX_MARGIN = 16           # voxels around the hole whose known values inform the texture (the lattice's support)
DIM_SIGNAL = 3.0          # known voxels with A under this many noise sigmas are left out (Rician, not Gaussian)
ARMS = ("anatomy", "anatomy_texture", "noiseless_truth")


def rician_mean(signal: np.ndarray, sigma: float) -> np.ndarray:
    """E|signal + sigma n| for complex unit n: sigma sqrt(pi/2) L_1/2(-signal^2 / 2 sigma^2), in scaled Bessels."""
    a = signal.astype(np.float64) ** 2 / (2 * sigma ** 2)
    return sigma * np.sqrt(np.pi / 2) * ((1 + a) * special.i0e(a / 2) + a * special.i1e(a / 2))


def texture_posterior(anatomy, observed, known, basis, amplitude: float, sigma: float, iterations: int = 5):
    """The texture field f on the box, its mode given `observed` at `known` voxels: observed ~ A (1 + a tanh f) +
    sigma n, f = B_x B_y B_z k with unit knots k (Gauss-Newton; each step a conjugate-gradient solve)."""
    bx, by, bz = basis
    shape = (bx.shape[1], by.shape[1], bz.shape[1])

    def expand(k):
        return np.einsum("ai,bj,ck,ijk->abc", bx, by, bz, k.reshape(shape), optimize=True)

    def reduce(v):
        return np.einsum("ai,bj,ck,abc->ijk", bx, by, bz, v, optimize=True).ravel()

    knots = np.zeros(int(np.prod(shape)))
    for _ in range(iterations):
        field = expand(knots)
        slope = np.where(known, anatomy * amplitude / np.cosh(field) ** 2, 0.0) / sigma
        residual = np.where(known, observed - anatomy * (1 + amplitude * np.tanh(field)), 0.0) / sigma
        normal = LinearOperator((knots.size, knots.size), dtype=np.float64,
                                matvec=lambda k: reduce(slope ** 2 * expand(k)) + k)
        knots, _ = cg(normal, reduce(slope * (residual + slope * field)), x0=knots, rtol=1e-6, maxiter=200)
    return expand(knots)


def texture_fill(anatomy, truth, mask, brain, spacing, amplitude, texture_mm, sigma) -> np.ndarray:
    """The anatomy + texture arm inside the mask's box (the full volume elsewhere: the anatomy arm's values)."""
    grown = ndimage.binary_dilation(mask, iterations=BOX_MARGIN)
    box = tuple(slice(i.min(), i.max() + 1) for i in np.nonzero(grown))
    rows = [np.arange(n)[s] for n, s in zip(anatomy.shape, box)]
    full = bspline_basis(anatomy.shape, texture_mm, spacing)
    basis = []
    for b, r in zip(full, rows):                          # the box's rows, the knots that reach them
        part = b[r].astype(np.float64)
        basis.append(part[:, np.abs(part).sum(0) > 0])
    a_box = anatomy[box].astype(np.float64)
    known = (~mask[box]) & (brain[box]) & (a_box > DIM_SIGNAL * sigma)
    field = texture_posterior(a_box, truth[box].astype(np.float64), known, basis, amplitude, sigma)
    signal = anatomy.astype(np.float64).copy()
    signal[box] = a_box * (1 + amplitude * np.tanh(field))
    return rician_mean(signal, sigma)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", default="800,900,1000")
    parser.add_argument("--cases", type=int, default=5, help="cases per seed")
    parser.add_argument("--contrast", default="t2f")
    parser.add_argument("--bench", type=Path, help="a bench_pseudo_healthy JSON of the same cases: its mean beside")
    parser.add_argument("--out", default="bench_out/pseudo-healthy-ceiling.json", type=Path)
    args = parser.parse_args()
    spec = PhantomSpec(pet=None)
    plain = replace(spec, mri=replace(spec.mri, noise=(0.0, 0.0), texture=0.0))   # A: same draws, no texture
    noiseless = spec.without_noise()
    bench = {}
    if args.bench:
        bench = {(r["case"], r["kind"]): r["margin_mean"] for r in json.loads(args.bench.read_text())["rows"]}
    rows = []
    for seed in (int(s) for s in args.seeds.split(",")):
        for index in range(args.cases):
            case = generate_case(seed, index, spec)
            anatomy = generate_case(seed, index, plain).healthy[args.contrast]
            clean = generate_case(seed, index, noiseless).healthy[args.contrast]
            sigma = case.info["noise_sigma"][args.contrast]
            truth = case.healthy[args.contrast].astype(np.float64)
            brain = case.brain > 0
            peak = float(np.percentile(truth[brain], 99.9))
            spacing = float(np.linalg.norm(case.affine[:3, 0]))
            rng = np.random.default_rng([seed, index, 7])                       # bench_pseudo_healthy's masks
            for kind, (mask, on_tumour) in masks(case, rng).items():
                image = case.images[args.contrast] if on_tumour else case.healthy[args.contrast]
                arms = {"harmonic": harmonic_fill(image, mask),
                        "anatomy": rician_mean(anatomy, sigma),
                        "anatomy_texture": texture_fill(anatomy, truth, mask, brain, spacing, spec.mri.texture,
                                                        spec.mri.texture_mm, sigma),
                        "noiseless_truth": clean}
                score = {arm: psnr(x, truth, mask, data_range=peak) for arm, x in arms.items()}
                row = {"case": case.name, "kind": kind, "voxels": int(mask.sum()), **score,
                       **{f"margin_{a}": score[a] - score["harmonic"] for a in ARMS}}
                if (case.name, kind) in bench:
                    row["margin_volgen"] = bench[(case.name, kind)]
                rows.append(row)
                shown = ", ".join(f"{a} {row['margin_' + a]:+.2f}" for a in (*ARMS, "volgen") if "margin_" + a in row)
                print(f"{case.name} {kind:10} {row['voxels']:6d} voxels: harmonic {score['harmonic']:.2f} dB; "
                      f"margins {shown}", flush=True)
    summary = summarise(rows, (*ARMS, "volgen"))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"contrast": args.contrast, "seeds": args.seeds, "cases_per_seed": args.cases,
                                    "summary": summary, "rows": rows}, indent=1))
    print_table(summary)
    print(f"wrote {args.out}")


def print_table(summary: dict) -> None:
    print("\nMargin over the exact harmonic fill inside the mask (dB): mean, worst case, share of cases under +1 dB")
    arms = [a for a in (*ARMS, "volgen") if a in next(iter(summary.values()))]
    print(f"{'mask':14} {'cases':>5}   " + "   ".join(f"{a + ': margin worst <1dB':>30}" for a in arms))
    for name, row in summary.items():
        cells = "   ".join(f"{'':8}{row[a]['margin']:+8.2f} {row[a]['worst']:+6.2f} {row[a]['under_1dB']:5.0%}"
                           for a in arms)
        print(f"{name:14} {row['cases']:5d}   {cells}")


if __name__ == "__main__":
    main()
