"""A job's estimate of one phantom case on the model grid, as bench_quality.py scores it and calibrate_uncertainty.py
fits the uncertainty on it: the same conditions, projection, timesteps and seeds as the jobs use.

Each function returns (Estimate, truth, region): the truth in the model's range (D, H, W) and the boolean region its
error is scored in (the brain; the inpainted mask).
"""
from __future__ import annotations

import numpy as np
import torch

from volgen.backbones import Backbone
from volgen.ops import known_voxel_projection, thick_slice_projection, thick_slices
from volgen.tasks import generate
from volgen.tasks.inpainting import MEAN_OF as INPAINTING_MEAN_OF
from volgen.tasks.models import default_timesteps
from volgen.ops import dilate

CONTRASTS = ["t1n", "t1c", "t2w", "t2f"]
DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
SR_FACTOR, SR_AXIS = 4, 2          # 4x through-plane, the last axis


def steps_for(model, steps):
    """The asked steps, else the jobs' default timesteps for this model on this device."""
    backbone = model if isinstance(model, Backbone) else model.backbone
    return steps or default_timesteps(backbone.denoiser.schedule, DEVICE, finished=False)


def brain_of(case) -> np.ndarray:
    return case.brain.numpy() if case.brain is not None else case.images[0].numpy() > -0.99


def synthesis(model, case, target: str, *, steps=None, samples: int, seed: int):
    """`target` from the other three contrasts."""
    k = CONTRASTS.index(target)
    present = torch.ones(1, len(CONTRASTS))
    present[0, k] = 0
    conditions = case.images[None].clone()
    conditions[:, k] = 0
    est = generate(model, (1, *case.images.shape[1:]), contrast=target, conditions=conditions, present=present,
                   steps=steps_for(model, steps), samples=samples, seed=seed)
    return est, case.images[k].numpy(), brain_of(case)


def thick(case, contrast: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(the volume (1, 1, D, H, W), its thick slices): 4 slices averaged along the last axis."""
    volume = case.images[CONTRASTS.index(contrast)][None, None]
    return volume, thick_slices(volume, SR_FACTOR, 2 + SR_AXIS)


def super_resolution(model, case, contrast: str, *, steps=None, samples: int, seed: int):
    """4x through-plane super-resolution of `contrast` from its thick slices."""
    volume, observed = thick(case, contrast)
    est = generate(model, (1, *volume.shape[2:]), contrast=contrast,
                   conditions=observed.repeat_interleave(SR_FACTOR, dim=2 + SR_AXIS), steps=steps_for(model, steps),
                   samples=samples, seed=seed,
                   projection=thick_slice_projection(observed.to(DEVICE), SR_FACTOR, 2 + SR_AXIS))
    return est, volume[0, 0].numpy(), brain_of(case)


def tumour_mask(case) -> torch.Tensor:
    """(1, 1, D, H, W): the tumour grown by one voxel, the region the inpainting rows fill."""
    return dilate((case.seg > 0).float()[None, None], 1)


def pseudo_healthy(model, case, contrast: str, *, steps=None, samples: int, seed: int, with_module: bool = True):
    """Healthy tissue filled into the tumour mask, scored against the healthy twin; `with_module=False` samples the
    bare backbone of `model` (a Backbone) with the same known-voxel replacement."""
    c = CONTRASTS.index(contrast)
    image, mask = case.images[c][None, None], tumour_mask(case)
    conditions = None
    if with_module:
        conditions = torch.cat([image * (1 - mask) - mask, mask, torch.zeros_like(mask)], dim=1)
    est = generate(model, (1, *image.shape[2:]), contrast=contrast, conditions=conditions,
                   steps=steps_for(model, steps), samples=samples, seed=seed, mean_of=INPAINTING_MEAN_OF,
                   projection=known_voxel_projection(image.to(DEVICE), mask.to(DEVICE)))
    return est, case.healthy[c].numpy(), mask[0, 0].numpy() > 0


JOBS = {"synthesis": synthesis, "super_resolution": super_resolution, "inpainting": pseudo_healthy}
