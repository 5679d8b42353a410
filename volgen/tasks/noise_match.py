"""Noise matching: a sample drawn on the 2 mm model grid and resampled to the scan is smoother than the scan around it
(real tumours carry the scan's noise and the tissue's grain; an inserted one that does not is a giveaway, and a
segmenter trained on such cases learns that tumours are smooth). White Gaussian noise is added inside the region
until its noise level matches the scan's in the rest of the brain.

The noise level is the robust estimate of Donoho and Johnstone: the median absolute value of the finest diagonal
wavelet detail (the 2x2x2 Haar filter of alternating signs, at every voxel), over 0.6745. For white noise of sd s that
detail has sd s; anatomy, smooth or with edges along the axes, leaves it almost untouched, so oedema and healthy
tissue of one scan give the same level (within about 10% on the phantoms), where a Laplacian would call the cortex
rougher. A region at level s_in in a scan at s_out gets noise of sd sqrt(s_out^2 - s_in^2): s for a flat region,
nothing for a region already as rough. Noise never takes a voxel below the scan's minimum: a magnitude image has
nothing darker than its background, and one voxel under it moves every later job's background (in 7 of 120 made
cases it did, and the segmenter's preprocessing flattened their whole t2f).
"""
from __future__ import annotations

import numpy as np

MAD_TO_SD = 1 / 0.6745               # sd of a zero-mean normal distribution per unit of its median |value|


def noise_level(image: np.ndarray, where: np.ndarray) -> float:
    """The noise sd of `image` over `where`, from its finest diagonal wavelet detail (each voxel's 2x2x2 block
    towards the far corner; blocks that would leave the grid are not counted)."""
    x = np.asarray(image, dtype=np.float64)
    detail = np.zeros(tuple(n - 1 for n in x.shape))
    for i in (0, 1):
        for j in (0, 1):
            for k in (0, 1):
                detail += (-1) ** (i + j + k) * x[i:x.shape[0] - 1 + i, j:x.shape[1] - 1 + j, k:x.shape[2] - 1 + k]
    return MAD_TO_SD * float(np.median(np.abs(detail[where[:-1, :-1, :-1]]))) / np.sqrt(8.0)


def with_matched_noise(image: np.ndarray, region: np.ndarray, scan: np.ndarray, elsewhere: np.ndarray,
                       rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """(image as float32 with white noise added inside `region` up to the noise level of `scan` over `elsewhere`, the
    noise's sd); voxels outside `region` are unchanged, none inside goes below the scan's minimum."""
    return with_noise_up_to(image, region, noise_level(scan, elsewhere), float(np.min(scan)), rng)


def with_noise_up_to(image: np.ndarray, region: np.ndarray, level: float, floor: float,
                     rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """(image as float32 with white noise added inside `region` until its noise level there is `level`, the noise's
    sd); voxels outside `region` are unchanged, none inside goes below `floor`."""
    sd = float(np.sqrt(max(level ** 2 - noise_level(image, region) ** 2, 0.0)))
    out = np.asarray(image, dtype=np.float32).copy()
    if sd > 0:
        noisy = out[region] + (sd * rng.standard_normal(int(region.sum()))).astype(np.float32)
        out[region] = np.maximum(noisy, np.float32(floor))
    return out, sd


def relative_noise(scans, where: np.ndarray) -> float:
    """The median over `scans` of each one's noise level over `where` per unit of its median there: an estimate of
    the noise, relative to the signal, of another contrast of the same session (relative, because a synthesised
    contrast is on its own intensity scale, not on any of theirs)."""
    return float(np.median([noise_level(s, where) / float(np.median(s[where])) for s in scans]))
