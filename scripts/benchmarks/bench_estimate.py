"""How many samples, steps and which sampler the estimate needs: quality against time, to choose the jobs' defaults.

For each setting (K samples as one batch, S steps, sampler) on held-out cases: brain PSNR of the posterior mean
(mean first-step prediction) and of the mean of the K finished samples, of one sample, Spearman(uncertainty,
|error of the mean|) in the brain, and seconds per estimate, for one synthesis target.

    python scripts/benchmarks/bench_estimate.py [--cases 3] [--target t1c] [--settings 4x10:ddim,4x10:ddpm,4x5:ddpm]
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from volgen import hub
from volgen.metrics import psnr
from volgen.tasks import generate
from volgen.training.config import DataConfig
from volgen.training.data import load_cases

CONTRASTS = ["t1n", "t1c", "t2w", "t2f"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--heldout", default="phantoms/heldout")
    parser.add_argument("--cases", type=int, default=3)
    parser.add_argument("--model", default="volgen-vcm-synthesis-2mm")
    parser.add_argument("--target", default="t1c")
    parser.add_argument("--settings", default="1x10:ddim,4x10:ddim,4x10:ddpm,4x5:ddpm,2x5:ddpm",
                        help="comma-separated KxS:sampler")
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    from scipy.stats import spearmanr

    model = hub.from_pretrained(args.model)
    k = CONTRASTS.index(args.target)
    cases = load_cases(DataConfig(root=args.heldout, max_cases=args.cases), multiple=16)
    present = torch.ones(1, 4)
    present[0, k] = 0
    print(f"{args.model}: {args.target} from the other three, {len(cases)} held-out cases")
    print(f"{'setting':14} {'mean (first)':>12} {'mean (final)':>12} {'one sample':>11} {'spearman':>9} {'s/case':>7}")
    for setting in args.settings.split(","):
        ks, sampler = setting.split(":")
        samples, steps = (int(v) for v in ks.split("x"))
        scores = {"first": [], "final": [], "sample": [], "spearman": [], "seconds": []}
        for index, case in enumerate(cases):
            truth, brain = (case.images[k].numpy() + 1) / 2, case.brain.numpy()
            conditions = case.images[None].clone()
            conditions[:, k] = 0
            start = time.perf_counter()
            est = generate(model, (1, *case.images.shape[1:]), contrast=args.target, conditions=conditions,
                           present=present, steps=steps, samples=samples, sampler=sampler, seed=index)
            scores["seconds"].append(time.perf_counter() - start)
            mean = ((est.image[0, 0].numpy() + 1) / 2).clip(0, 1)
            final = ((est.draws.mean(0)[0].numpy() + 1) / 2).clip(0, 1)
            scores["first"].append(psnr(mean, truth, brain, data_range=1.0))
            scores["final"].append(psnr(final, truth, brain, data_range=1.0))
            scores["sample"].append(psnr(((est.draws[0, 0].numpy() + 1) / 2).clip(0, 1), truth, brain,
                                         data_range=1.0))
            if est.spread is not None:
                rho = spearmanr(est.spread[0, 0].numpy()[brain], np.abs(mean - truth)[brain]).correlation
                scores["spearman"].append(rho)
        m = {key: float(np.mean(v)) if v else float("nan") for key, v in scores.items()}
        print(f"{setting:14} {m['first']:>12.2f} {m['final']:>12.2f} {m['sample']:>11.2f} {m['spearman']:>9.3f} "
              f"{m['seconds']:>7.1f}")


if __name__ == "__main__":
    main()
