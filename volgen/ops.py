"""Pure operators on volumes, shared by training, sampling, the jobs and the phantoms: the bottom layer, importing
nothing of volgen's.

- Thick slices: a thick slice is the mean of the `factor` thin slices it covers; `ThickSlices` projects onto the
  volumes with given thick slices, `KnownVoxels` onto those with given voxels outside a mask. They are classes, not
  closures, so a codec can fuse them with its transform (Haar: one pass).
- `dilate` grows a binary mask; `smooth_inside` smooths within a mask without pulling the background in.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

FWHM_PER_SIGMA = 2.0 * np.sqrt(2.0 * np.log(2.0))


def thick_slices(x: torch.Tensor, factor: int, dim: int) -> torch.Tensor:
    """Thick-slice acquisition along `dim`: the mean of each block of `factor` slices (the size must divide)."""
    n = x.shape[dim]
    if n % factor:
        raise ValueError(f"size {n} along axis {dim} is not divisible by the factor {factor}")
    shape = list(x.shape)
    shape[dim:dim + 1] = [n // factor, factor]
    return x.reshape(shape).mean(dim=dim + 1)


def repeat_slices(x: torch.Tensor, factor: int, dim: int) -> torch.Tensor:
    """Each thick slice repeated `factor` times: the thin grid's view of a thick-slice volume."""
    return x.repeat_interleave(factor, dim=dim)


class ThickSlices:
    """The orthogonal projection onto {x : thick_slices(x) = observed}: each block's mean is replaced by the observed
    one, the detail within the block kept."""

    def __init__(self, observed: torch.Tensor, factor: int, dim: int):
        self.observed, self.factor, self.dim = observed, factor, dim

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return x + repeat_slices(self.observed - thick_slices(x, self.factor, self.dim), self.factor, self.dim)


def thick_slice_projection(observed: torch.Tensor, factor: int, dim: int) -> ThickSlices:
    return ThickSlices(observed, factor, dim)


class KnownVoxels:
    """Keep the known voxels (mask = 0) and the estimate inside the mask (mask = 1): RePaint's replacement, applied to
    the x0 estimate at every step."""

    def __init__(self, known: torch.Tensor, mask: torch.Tensor):
        self.known, self.mask = known, mask

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.known * (1 - self.mask) + x * self.mask


def known_voxel_projection(known: torch.Tensor, mask: torch.Tensor) -> KnownVoxels:
    return KnownVoxels(known, mask)


def dilate(mask: torch.Tensor, radius: int) -> torch.Tensor:
    """A (B, 1, D, H, W) float mask grown by `radius` voxels (a cube)."""
    if radius <= 0:
        return mask
    return F.max_pool3d(mask, 2 * radius + 1, stride=1, padding=radius)


def smooth_inside(image: np.ndarray, mask: np.ndarray, fwhm_mm: float, spacing) -> np.ndarray:
    """Gaussian smoothing that neither pulls the background in nor pushes the maps out: normalised by the mask."""
    if fwhm_mm <= 0:
        return image
    sigma = [fwhm_mm / FWHM_PER_SIGMA / s for s in spacing]
    m = mask.astype(np.float64)
    num = ndimage.gaussian_filter(image * m, sigma, mode="constant")
    den = ndimage.gaussian_filter(m, sigma, mode="constant")
    return np.where(mask, num / np.maximum(den, 1e-12), 0.0)
