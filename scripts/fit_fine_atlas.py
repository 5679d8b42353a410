"""Give the inpainting module's registered atlas its detail at 1 mm (volgen/modules/fine_atlas.py), without
retraining anything: 1 mm training phantoms (their healthy twins, generated in memory from a training seed) are each
registered at 2 mm to the module's 2 mm atlas, sampled at 1 mm through that warp and averaged; the detail is what
of that mean a 2 mm grid cannot hold. The network, the 2 mm atlas and the gate stay as they are.

    python scripts/fit_fine_atlas.py --model volgen-vcm-inpainting-2mm --seed 100 --cases 24 --out DIR
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from tqdm import tqdm

from volgen import hub
from volgen.io.preprocess import GridSpec, preprocess
from volgen.io.volume import Volume
from volgen.modules import fine_atlas
from volgen.modules.registration import register
from volgen.modules.template_prior import _centred
from volgen.phantom import PhantomSpec, generate_case
from volgen.tasks.models import backbone_of


def registered_twin(case, contrasts, atlas: torch.Tensor) -> torch.Tensor:
    """(C, *fine atlas grid): a 1 mm case's healthy twin, each contrast on the job's intensity scale, through the
    warp that registers it (at 2 mm, all contrasts through one warp) to the atlas."""
    grid, on_model, on_source = None, [], []
    for contrast in contrasts:
        twin = Volume(case.healthy[contrast].astype(np.float32), case.affine, name=contrast)
        pre = preprocess(twin, GridSpec(spacing=(2.0,) * 3, multiple=16), grid=grid, contrast=contrast,
                         out_range=(-1.0, 1.0))
        grid = pre.grid
        on_model.append(pre.array)
        on_source.append(pre.scale.forward(twin.array))
    moving = torch.from_numpy(np.stack(on_model)).float()
    if tuple(moving.shape[1:]) != tuple(atlas.shape[1:]):
        raise ValueError(f"the case's model grid {tuple(moving.shape[1:])} is not the atlas's {tuple(atlas.shape[1:])}")
    warp = register(moving, atlas, torch.ones(atlas.shape[1:]))
    model_to_source = torch.from_numpy(np.linalg.solve(case.affine, grid.model_affine))
    return fine_atlas.registered_fine(torch.from_numpy(np.stack(on_source)), warp, atlas.shape[1:], model_to_source)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="volgen-vcm-inpainting-2mm")
    parser.add_argument("--seed", type=int, default=100, help="a training seed: these cases' 1 mm versions")
    parser.add_argument("--cases", type=int, default=24)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    model = hub.from_pretrained(args.model)
    contrasts = backbone_of(model).config.contrasts
    atlas = model.prior.atlas.float()
    began = time.perf_counter()
    total = torch.zeros(len(contrasts), *(fine_atlas.FACTOR * s for s in atlas.shape[1:]), dtype=torch.float64)
    for index in tqdm(range(args.cases), desc="1 mm twins"):
        case = generate_case(args.seed, index, PhantomSpec(pet=None, spacing=1))
        total += registered_twin(case, contrasts, _centred(atlas, atlas.shape[1:])).double()
    model.prior.use_fine_detail(fine_atlas.detail_of((total / args.cases).float()))
    model.config.prior_fine_detail = True
    metadata = {**model.hub_metadata, "fine_atlas": {
        "cases": f"{args.cases} phantoms of seed {args.seed} at 1 mm", "seconds": round(time.perf_counter() - began)}}
    hub.save_pretrained(model, args.out, dtype=torch.float16, metadata=metadata, overwrite=True, int8=True)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
