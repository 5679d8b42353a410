"""Fit a shipped model's error model (volgen/error_model.py): its uncertainty maps become the expected absolute error.

For every target contrast, the job's estimate of each calibration case (phantoms the model never trained on nor was
selected on: seed 600, `make phantoms/calib/.done`) is made exactly as bench_quality.py makes it, at the jobs'
defaults on this device; the fit maps the mean's and the spread's features to log |error| inside the brain (the mask
for inpainting). It prints, per contrast, the spread's and the fitted map's Spearman with |error| on the calibration
cases, and with `--write` stores the fit in the model folder's config.json metadata ("error_model"; the weights and
their sha256 are untouched).

    python scripts/calibrate_uncertainty.py volgen-vcm-inpainting-2mm inpainting [--cases 12] [--write]
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
from scipy.stats import spearmanr

import bench_harness
from volgen import hub
from volgen.error_model import METADATA_KEY, ErrorModel, fit_error
from volgen.tasks.models import default_samples
from volgen.training.config import DataConfig
from volgen.training.data import load_cases


def estimates(model, job: str, cases, contrast: str, samples: int) -> list:
    """(mean, spread, truth, region) of each case, arrays in the model's range."""
    out = []
    for index, case in enumerate(cases):
        est, truth, region = bench_harness.JOBS[job](model, case, contrast, samples=samples, seed=index)
        out.append((est.image[0, 0].cpu().numpy(), est.spread[0, 0].cpu().numpy(), truth, region))
    return out


def spearman_of(maps, examples) -> float:
    """The mean over cases of Spearman(map, |mean - truth|) inside each case's region."""
    return float(np.mean([spearmanr(m[r], np.abs(mean - truth)[r]).correlation
                          for m, (mean, _, truth, r) in zip(maps, examples)]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="a shipped model's name or a model folder")
    parser.add_argument("job", choices=sorted(bench_harness.JOBS))
    parser.add_argument("--cases-root", default="phantoms/calib")
    parser.add_argument("--cases", type=int, default=12)
    parser.add_argument("--contrasts", default=",".join(bench_harness.CONTRASTS))
    parser.add_argument("--write", action="store_true", help="store the fit in the model's config.json")
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    folder, _ = hub.resolve(args.model)
    model = hub.from_pretrained(args.model, device=bench_harness.DEVICE)
    cases = load_cases(DataConfig(root=args.cases_root, contrasts=bench_harness.CONTRASTS, max_cases=args.cases),
                       multiple=16, with_healthy=args.job == "inpainting")
    samples = default_samples(bench_harness.DEVICE)
    fits = {}
    for contrast in args.contrasts.split(","):
        start = time.perf_counter()
        examples = estimates(model, args.job, cases, contrast, samples)
        fits[contrast] = fit = fit_error(examples)
        calibrated = [fit.expected_error(mean, spread) for mean, spread, _, _ in examples]
        print(f"{contrast}: Spearman with |error| on {len(cases)} calibration cases: spread "
              f"{spearman_of([s for _, s, _, _ in examples], examples):.3f}, calibrated "
              f"{spearman_of(calibrated, examples):.3f}; weights {np.round(fit.weights, 3).tolist()}, scale "
              f"{fit.scale:.3f} ({time.perf_counter() - start:.0f} s)", flush=True)
    timesteps = bench_harness.steps_for(model, None)
    error_model = ErrorModel(fits, {"cases": f"{args.cases_root} ({len(cases)} phantoms)", "job": args.job,
                                    "samples": samples, "timesteps": [float(t) for t in timesteps],
                                    "device": bench_harness.DEVICE.type})
    if args.write:
        path = folder / hub.CONFIG_FILE
        config = json.loads(path.read_text())
        config.setdefault("metadata", {})[METADATA_KEY] = error_model.to_dict()
        path.write_text(json.dumps(config, indent=2) + "\n")
        print(f"wrote the error model into {path}")
    else:
        print(json.dumps(error_model.to_dict(), indent=1))


if __name__ == "__main__":
    main()
