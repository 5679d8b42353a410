"""Give an inpainting module the registered template prior without retraining its network.

The atlas is the training cases' healthy twins registered to one another (TemplateFillPrior.fit_atlas); the gate's
bias table is then refitted in closed form on the same cases (volgen/training/gate_refit.py), so that the module
trusts the sharper prior as far as the training cases say. The network's weights, the mean template and the lesion
profile stay as trained; the principal components, which the registration replaces, are dropped.

    python scripts/refit_inpainting_prior.py --model volgen-vcm-inpainting-2mm --cases phantoms/train --out DIR
"""
from __future__ import annotations

import argparse
import time

import torch

from volgen import hub
from volgen.tasks.models import backbone_of
from volgen.training.config import DataConfig
from volgen.training.data import load_cases
from volgen.training.gate_refit import refit_gate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="volgen-vcm-inpainting-2mm")
    parser.add_argument("--cases", default="phantoms/train", help="training cases with healthy twins and segs")
    parser.add_argument("--atlas-cases", type=int, default=48, help="how many of them build the atlas")
    parser.add_argument("--gate-cases", type=int, default=24, help="how many of them refit the gate")
    parser.add_argument("--atlas-from", help="take the atlas from this module instead of building it")
    parser.add_argument("--sampler-steps", type=int, default=10, help="the timesteps the module was trained at")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    model = hub.from_pretrained(args.model)
    data = DataConfig(root=args.cases, crop=[96, 112, 96], flip=False)
    cases = load_cases(data, backbone_of(model).image_multiple, with_healthy=True)
    began = time.perf_counter()
    if args.atlas_from:
        model.prior.use_atlas(hub.from_pretrained(args.atlas_from).prior.atlas)
    else:
        model.prior.fit_atlas([case.healthy for case in cases[:args.atlas_cases]])
    model.config.prior_registered, model.config.prior_components = True, 0
    print(f"atlas {tuple(model.prior.atlas.shape)}: {time.perf_counter() - began:.0f} s", flush=True)
    before = model.gate_bias.detach().clone()
    after = refit_gate(model, cases[:args.gate_cases], data, "inpainting", sampler_steps=args.sampler_steps)
    print("gate bias rows (mean over channels), trained -> refitted:",
          " ".join(f"{a:.3f}->{b:.3f}" for a, b in zip(before.mean(1).tolist(), after.mean(1).tolist())))
    metadata = {**model.hub_metadata, "registered_prior": {
        "atlas_cases": f"{args.cases} ({args.atlas_cases if not args.atlas_from else 'from ' + args.atlas_from})",
        "gate_refit_cases": f"{args.cases} (first {args.gate_cases})", "seconds": round(time.perf_counter() - began)}}
    hub.save_pretrained(model, args.out, dtype=torch.float16, metadata=metadata, overwrite=True, int8=True)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
