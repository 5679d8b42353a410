"""What the benches share: each job's estimate of one phantom case on the model grid (volgen.calibrate's, the
jobs' own conditions, projection, estimate rule and default timesteps), and the benches' own baselines and measures:
the per-voxel linear regression synthesis must beat, the oracle an uncertainty map is ranked against, and the
all-frames weighted Patlak fit.

Each job function returns (Estimate, truth, region): the truth in the model's range (D, H, W) and the boolean region its
error is scored in (the brain; the inpainted mask).
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

from volgen.calibrate import (CONTRASTS, DEVICE, JOBS, SR_AXIS, SR_FACTOR, brain_of, conditions_of,  # noqa: F401
                              pseudo_healthy, steps_for, super_resolution, synthesis, synthesis_inputs, thick,
                              tumour_mask)
from volgen.kinetics import patlak_statistics


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
