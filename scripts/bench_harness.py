"""What the benches share: a job's estimate of one phantom case on the model grid, as bench_quality.py scores it and
calibrate_uncertainty.py fits the uncertainty on it. The conditions, projection and estimate rule are the jobs' own
(volgen/taskspec.py); the timesteps are the jobs' defaults on this device.

The benches' own baselines and measures live here too: the per-voxel linear regression synthesis must beat, the
oracle an uncertainty map is ranked against, and the all-frames weighted Patlak fit.

Each job function returns (Estimate, truth, region): the truth in the model's range (D, H, W) and the boolean region its
error is scored in (the brain; the inpainted mask).
"""
from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage

from volgen.backbones import Backbone
from volgen.io.contrasts import MRI_CONTRASTS
from volgen.kinetics import patlak_statistics
from volgen.ops import dilate, thick_slices
from volgen.tasks import generate
from volgen.tasks.models import default_timesteps
from volgen.taskspec import TASKS

CONTRASTS = list(MRI_CONTRASTS)
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
    volumes = {c: case.images[i] for i, c in enumerate(CONTRASTS) if c != target}
    inputs = TASKS["synthesis"].inputs(volumes=volumes, contrasts=tuple(getattr(model, "conditions", CONTRASTS)),
                                       shape=tuple(case.images.shape[1:]))
    est = generate(model, (1, *case.images.shape[1:]), contrast=target, steps=steps_for(model, steps),
                   samples=samples, seed=seed, **inputs)
    return est, case.images[CONTRASTS.index(target)].numpy(), brain_of(case)


def thick(case, contrast: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(the volume (1, 1, D, H, W), its thick slices): 4 slices averaged along the last axis."""
    volume = case.images[CONTRASTS.index(contrast)][None, None]
    return volume, thick_slices(volume, SR_FACTOR, 2 + SR_AXIS)


def super_resolution(model, case, contrast: str, *, steps=None, samples: int, seed: int):
    """4x through-plane super-resolution of `contrast` from its thick slices."""
    volume, observed = thick(case, contrast)
    inputs = TASKS["super_resolution"].inputs(lowres=observed.repeat_interleave(SR_FACTOR, dim=2 + SR_AXIS),
                                              factor=SR_FACTOR, dim=2 + SR_AXIS, device=DEVICE)
    est = generate(model, (1, *volume.shape[2:]), contrast=contrast, steps=steps_for(model, steps),
                   samples=samples, seed=seed, **inputs)
    return est, volume[0, 0].numpy(), brain_of(case)


def tumour_mask(case) -> torch.Tensor:
    """(1, 1, D, H, W): the tumour grown by one voxel, the region the inpainting rows fill."""
    return dilate((case.seg > 0).float()[None, None], 1)


def pseudo_healthy(model, case, contrast: str, *, steps=None, samples: int, seed: int, with_module: bool = True):
    """Healthy tissue filled into the tumour mask, scored against the healthy twin; `with_module=False` samples the
    bare backbone of `model` (a Backbone) with the same known-voxel replacement."""
    c = CONTRASTS.index(contrast)
    image, mask = case.images[c][None, None], tumour_mask(case)
    inputs = TASKS["inpainting"].inputs(image=image, mask=mask, insert=False, device=DEVICE)
    if not with_module:
        inputs["conditions"] = None
    est = generate(model, (1, *image.shape[2:]), contrast=contrast, steps=steps_for(model, steps),
                   samples=samples, seed=seed, **inputs)
    return est, case.healthy[c].numpy(), mask[0, 0].numpy() > 0


JOBS = {"synthesis": synthesis, "super_resolution": super_resolution, "inpainting": pseudo_healthy}


class LinearRegression:
    """target ~ sum_j w_j source_j + b over the voxels inside the given masks."""

    def __init__(self, sources: list[int], target: int):
        self.sources, self.target = list(sources), target
        self.coef: np.ndarray | None = None

    def fit(self, volumes, masks) -> "LinearRegression":
        """volumes: arrays (C, D, H, W) holding every contrast; masks: bool (D, H, W), where to fit."""
        xs, ys = [], []
        for images, mask in zip(volumes, masks):
            xs.append(np.stack([images[i][mask] for i in self.sources] + [np.ones(mask.sum())], axis=1))
            ys.append(images[self.target][mask])
        self.coef, *_ = np.linalg.lstsq(np.concatenate(xs).astype(np.float64), np.concatenate(ys), rcond=None)
        return self

    def predict(self, images: np.ndarray) -> np.ndarray:
        if self.coef is None:
            raise RuntimeError("fit the regression first")
        sources = np.asarray(images[self.sources], dtype=np.float64)
        return np.tensordot(self.coef[:-1], sources, axes=1) + self.coef[-1]


def local_rms_without_centre(squared: np.ndarray, sigma: float = 1.0) -> np.ndarray:
    """sqrt of the Gaussian-weighted mean of `squared` over each voxel's neighbours, the voxel itself left out. Given a
    true squared error, it is the oracle an uncertainty map is measured against: the best a map that is smooth at the
    scale of a voxel, and knew every other voxel's error, could rank the error with."""
    impulse = np.zeros((9, 9, 9))
    impulse[4, 4, 4] = 1
    centre = ndimage.gaussian_filter(impulse, sigma)[4, 4, 4]
    blurred = ndimage.gaussian_filter(np.asarray(squared, dtype=np.float64), sigma)
    return np.sqrt(np.clip((blurred - centre * squared) / (1 - centre), 0, None))


def weighted_patlak(frames: np.ndarray, regressors: np.ndarray, weights: np.ndarray | None = None):
    """(Ki, V, standard error of Ki, of V) per voxel from frames (n, ...) and regressors (n, 2), all frames used."""
    fit = patlak_statistics(frames, regressors, weights)
    return (fit.ki, fit.v, *fit.standard_errors())
