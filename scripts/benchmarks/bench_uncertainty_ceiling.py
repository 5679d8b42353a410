"""How well could the exact posterior spread of a synthesised contrast rank the error? Issue 10 asks for
Spearman(uncertainty, |error|) >= 0.4 inside the brain; the shipped synthesis module's spread gets about 0.

Under the phantom generator, what the other three contrasts cannot tell about the target is the target's own draws:
its bias field and its noise (each contrast has its own), and for t1c the gadolinium dose. This script redraws those
R times for each held-out case, with the anatomy, tissues and the other contrasts unchanged (checked), and puts each
redraw through the same preprocessing as the case. The spread over the redraws is what a perfect sampler's spread
would be (a lower bound: the anatomy is taken as known). It reports, inside the brain:
- ideal: Spearman(spread over the redraws, |their mean - one more redraw|), the posterior's own error ranked by its
  own spread: the most any spread over samples can reach on these phantoms;
- the shipped module: Spearman(spread over the redraws, |the module's mean - the truth|), and Spearman(the module's
  own spread, same error).
The local-RMS oracle of bench_quality reaches about 0.5 because it knows the case's realised bias field; no spread
over samples can.

    python scripts/benchmarks/bench_uncertainty_ceiling.py [--target t1c] [--cases 20] [--redraws 16]
"""
from __future__ import annotations

import argparse
from dataclasses import replace
from unittest import mock

import numpy as np
import torch
from scipy.stats import spearmanr

from volgen import hub
from volgen.io.contrasts import MRI_CONTRASTS
from volgen.io.preprocess import GridSpec, preprocess
from volgen.io.volume import Volume
from volgen.phantom import case as phantom_case
from volgen.phantom.case import PhantomSpec, generate_case
from volgen.phantom.mri import MRISpec, RicianNoise, bias_field
from volgen.tasks import generate
from volgen.tasks.models import default_timesteps
from volgen.training.config import DataConfig
from volgen.training.data import load_cases

SEED = 200                      # the held-out phantoms (make phantoms/heldout/.done)
GRID = GridSpec(spacing=(2.0,) * 3, multiple=16)


def unit(x) -> np.ndarray:
    return ((np.asarray(x, dtype=np.float64) + 1) / 2).clip(0, 1)


def redrawn_case(index: int, target: str, stream: int | None) -> phantom_case.PhantomCase:
    """The held-out case, with the target's own draws (bias field, noise, t1c's gadolinium dose) taken
    from `stream` instead (None: the original case). The original streams are still advanced by the draws that are
    replaced, so every other draw, and every other contrast, stays as it was."""
    spec = PhantomSpec(pet=None)
    if stream is None:
        return generate_case(SEED, index, spec)
    fresh = np.random.default_rng([SEED, index, stream])
    if target == "t1c":                     # only t1c sees the dose; a fixed range still takes one draw of the stream
        dose = fresh.uniform(*spec.mri.gd_mM)
        spec = replace(spec, mri=replace(MRISpec(), gd_mM=(dose, dose)))
    nth = MRI_CONTRASTS.index(target) + 1   # the generator draws each contrast's field and noise in this order
    calls = {"bias": 0, "noise": 0}

    def bias(shape, rng, strength):
        calls["bias"] += 1
        field = bias_field(shape, rng, strength)
        return bias_field(shape, fresh, strength) if calls["bias"] == nth else field

    original_draw = RicianNoise.draw

    def draw(shape, rng):
        calls["noise"] += 1
        noise = original_draw(shape, rng)
        return original_draw(shape, fresh) if calls["noise"] == nth else noise

    with mock.patch.object(phantom_case, "bias_field", bias), mock.patch.object(RicianNoise, "draw", draw):
        return generate_case(SEED, index, spec)


def spearman(a, b, region) -> float:
    return float(spearmanr(a[region], b[region]).correlation)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target", default="t1c", choices=MRI_CONTRASTS)
    parser.add_argument("--cases", type=int, default=20)
    parser.add_argument("--redraws", type=int, default=16)
    parser.add_argument("--model", default="volgen-vcm-synthesis-2mm")
    parser.add_argument("--heldout", default="phantoms/heldout")
    args = parser.parse_args()
    k = MRI_CONTRASTS.index(args.target)
    model = hub.from_pretrained(args.model)
    timesteps = default_timesteps(model.backbone.denoiser.schedule, torch.device("cpu"), finished=False)
    cases = load_cases(DataConfig(root=args.heldout, contrasts=list(MRI_CONTRASTS), max_cases=args.cases), 16)
    present = torch.ones(1, 4)
    present[0, k] = 0
    rows = []
    for index, case in enumerate(cases):
        if case.name != phantom_case.case_name(SEED, index):
            raise SystemExit(f"{args.heldout}: expected {phantom_case.case_name(SEED, index)}, found {case.name}")
        brain = case.brain.numpy() > 0
        truth = unit(case.images[k])
        original_case = redrawn_case(index, args.target, None)
        original, affine = original_case.images, original_case.affine
        first = preprocess(Volume(original["t1n"], affine), GRID, contrast="t1n", out_range=(-1.0, 1.0))

        def model_grid(images):
            return unit(preprocess(Volume(images[args.target], affine), GRID, grid=first.grid, contrast=args.target,
                                   out_range=(-1.0, 1.0)).array)

        if np.abs(model_grid(original) - truth).max() > 1e-6:
            raise SystemExit(f"{case.name}: the regenerated {args.target} differs from the file's")
        draws = []
        for stream in range(args.redraws):
            images = redrawn_case(index, args.target, stream).images
            if any(not np.array_equal(images[c], original[c]) for c in MRI_CONTRASTS if c != args.target):
                raise SystemExit(f"{case.name}: redrawing {args.target} changed another contrast")
            draws.append(model_grid(images))
        draws = np.stack(draws)
        conditions = case.images[None].clone()
        conditions[:, k] = 0
        est = generate(model, (1, *truth.shape), contrast=args.target, conditions=conditions, present=present,
                       steps=timesteps, samples=2, seed=index)
        error = np.abs(unit(est.image[0, 0]) - truth)
        rows.append([spearman(draws[1:].std(0), np.abs(draws[1:].mean(0) - draws[0]), brain),
                     spearman(draws.std(0), error, brain),
                     spearman(est.spread[0, 0].numpy(), error, brain)])
        print(f"{case.name}: ideal {rows[-1][0]:.3f}, module's error by the posterior spread {rows[-1][1]:.3f}, "
              f"by its own spread {rows[-1][2]:.3f}", flush=True)
    r = np.array(rows)
    print(f"\n{args.target} from the other three, {len(rows)} held-out cases, {args.redraws} redraws each; Spearman "
          f"inside the brain (target >= 0.4):")
    for name, col in (("ideal: the posterior's error by its own spread", 0),
                      ("the module's error by the posterior spread", 1),
                      ("the module's error by its own spread (2 samples)", 2)):
        print(f"  {name:52} mean {r[:, col].mean():.3f}, from {r[:, col].min():.3f} to {r[:, col].max():.3f}")


if __name__ == "__main__":
    main()
