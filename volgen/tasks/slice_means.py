"""Thick slices as means of thin ones: measuring it, and projecting a thin volume onto it exactly.

A thick slice is the mean of the `factor` thin slices it covers (along one array axis). A super-resolved volume is
made consistent with its input by a projection onto {x : every block's mean is the input slice, low <= x <= high}:
per block, x = clip(y - tau, low, high) with the one tau that gives the block its mean (the Euclidean projection
onto that set, which is never empty while the input slice lies in [low, high]). Integer outputs are rounded so that
every block's sum, and so its mean, stays exact.
"""
from __future__ import annotations

import numpy as np
import torch

from volgen.ops import thick_slices


def block_means(array: np.ndarray, factor: int, axis: int) -> np.ndarray:
    tensor = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float64))
    return thick_slices(tensor, factor, axis).numpy()


def consistency_error(output: np.ndarray, observed: np.ndarray, factor: int, axis: int) -> float:
    """max |mean of each `factor` output slices - the input slice|, relative to the input's intensity range."""
    span = float(observed.max() - observed.min()) or 1.0
    return float(np.abs(block_means(output, factor, axis) - observed).max() / span)


def _blocks(array: np.ndarray, factor: int, axis: int) -> np.ndarray:
    """(..., n_thick, factor) view-like copy: each block's `factor` thin values on the last axis."""
    moved = np.moveaxis(array, axis, -1)
    return moved.reshape(*moved.shape[:-1], moved.shape[-1] // factor, factor)


def _unblocks(blocks: np.ndarray, axis: int) -> np.ndarray:
    return np.moveaxis(blocks.reshape(*blocks.shape[:-2], -1), -1, axis)


def project_block_means(values: np.ndarray, observed: np.ndarray, factor: int, axis: int, *,
                        low: float = -np.inf, high: float = np.inf, iterations: int = 60) -> np.ndarray:
    """The closest array to `values` (float64) whose blocks of `factor` along `axis` have the means `observed` and
    whose voxels lie in [low, high]. `observed` must lie in [low, high]."""
    y = _blocks(np.asarray(values, dtype=np.float64), factor, axis)
    m = np.moveaxis(np.asarray(observed, dtype=np.float64), axis, -1)[..., None]
    x = y + (m - y.mean(-1, keepdims=True))         # the projection wherever the shifted block stays in bounds
    bounded = ((x < low) | (x > high)).any(-1)
    if bounded.any():
        x[bounded] = _clipped_block_means(y[bounded], m[bounded], low, high, iterations)
    return _unblocks(x, axis)


def _clipped_block_means(y: np.ndarray, m: np.ndarray, low: float, high: float, iterations: int) -> np.ndarray:
    """Blocks (n, factor) projected onto {mean = m, low <= x <= high}: clip(y - tau) with tau found by bisection."""
    factor = y.shape[-1]
    # g(tau) = mean(clip(y - tau, low, high)) falls from >= m to <= m over [below, above]: bisect for g(tau) = m.
    # Without an upper bound g(tau) >= mean(y) - tau, without a lower one g(tau) <= mean(y) - tau.
    shift = y.mean(-1, keepdims=True) - m
    below = y.min(-1, keepdims=True) - high if np.isfinite(high) else shift
    above = y.max(-1, keepdims=True) - low if np.isfinite(low) else shift
    for _ in range(iterations):
        tau = (below + above) / 2
        too_high = np.clip(y - tau, low, high).mean(-1, keepdims=True) > m
        below = np.where(too_high, tau, below)
        above = np.where(too_high, above, tau)
    x = np.clip(y - (below + above) / 2, low, high)
    # the bisection's last rounding: spread the residual over the voxels not at a bound
    free = (x > low) & (x < high)
    residual = (m - x.mean(-1, keepdims=True)) * factor
    return x + np.where(free, residual / np.maximum(free.sum(-1, keepdims=True), 1), 0.0)


def round_keeping_block_sums(values: np.ndarray, factor: int, axis: int, *, low: float, high: float) -> np.ndarray:
    """Integers nearest `values` whose block sums equal the (integer) sums of `values`: every voxel is rounded
    down, then the units the block lacks go to its voxels with the largest fractional parts."""
    y = _blocks(np.asarray(values, dtype=np.float64), factor, axis)
    floor = np.floor(y)
    missing = np.rint(y.sum(-1, keepdims=True) - floor.sum(-1, keepdims=True))
    rank = np.argsort(np.argsort(-(y - floor), axis=-1, kind="stable"), axis=-1, kind="stable")
    rounded = np.clip(floor + (rank < missing), low, high)
    return _unblocks(rounded, axis)
