"""Random anatomy: a small affine and a smooth elastic deformation of the atlas, and smooth random fields."""
from __future__ import annotations

import numpy as np
from scipy import ndimage


def _bspline_matrix(n: int, knots: int) -> np.ndarray:
    """(n, knots) cubic B-spline basis sampled at n points spread over the knots' interior."""
    x = np.linspace(1.0, knots - 2.0, n)[:, None] - np.arange(knots)[None, :]
    a = np.abs(x)
    w = np.where(a < 1, (4 - 6 * a ** 2 + 3 * a ** 3) / 6, np.where(a < 2, (2 - a) ** 3 / 6, 0.0))
    return (w / np.sqrt((w ** 2).sum(1, keepdims=True))).astype(np.float32)  # unit variance for unit noise


def smooth_field(shape, rng: np.random.Generator, control_mm: float, spacing: float, channels: int = 1) -> np.ndarray:
    """(channels, *shape) unit-variance random fields, smooth on the scale of `control_mm`: white noise on a coarse
    lattice expanded by a separable cubic B-spline (three small matrix products, far cheaper than zoom)."""
    bx, by, bz = bspline_basis(shape, control_mm, spacing)
    noise = rng.standard_normal((channels, bx.shape[1], by.shape[1], bz.shape[1])).astype(np.float32)
    return np.einsum("ai,bj,ck,nijk->nabc", bx, by, bz, noise, optimize=True)


def bspline_basis(shape, control_mm: float, spacing: float) -> list[np.ndarray]:
    """Per axis, the (n, knots) basis `smooth_field` expands its lattice by: field = B_x B_y B_z knots."""
    return [_bspline_matrix(n, int(np.ceil(n * spacing / control_mm)) + 3) for n in shape]


def random_warp(shape, spacing: float, rng: np.random.Generator, *, rotation_deg: float = 6.0, scale: float = 0.06,
                shift_mm: float = 4.0, elastic_mm: float = 3.0, control_mm: float = 24.0) -> np.ndarray:
    """Sampling coordinates (3, *shape) into the atlas grid: output voxel v reads atlas voxel coords[:, v].

    x_atlas = c + R S (v - c) + (t + u(v)) / spacing, with R a rotation of up to `rotation_deg` about each axis,
    S a per-axis scale of up to `scale`, t a shift of up to `shift_mm`, and u a smooth elastic field of about
    `elastic_mm` RMS on a `control_mm` lattice.
    """
    angles = np.deg2rad(rng.uniform(-rotation_deg, rotation_deg, 3))
    rot = np.eye(3)
    for axis, angle in enumerate(angles):
        c, s = np.cos(angle), np.sin(angle)
        i, j = [a for a in range(3) if a != axis]
        r = np.eye(3)
        r[i, i], r[i, j], r[j, i], r[j, j] = c, -s, s, c
        rot = rot @ r
    matrix = rot @ np.diag(1.0 + rng.uniform(-scale, scale, 3))
    shift = rng.uniform(-shift_mm, shift_mm, 3) / spacing
    centre = (np.array(shape) - 1) / 2.0
    grid = np.indices(shape, dtype=np.float32).reshape(3, -1) - centre[:, None].astype(np.float32)
    coords = (matrix.astype(np.float32) @ grid).reshape((3,) + tuple(shape))
    coords += (centre + shift).astype(np.float32)[:, None, None, None]
    coords += smooth_field(shape, rng, control_mm, spacing, channels=3) * np.float32(elastic_mm / spacing)
    return coords


def warp(array: np.ndarray, coords: np.ndarray, order: int = 1) -> np.ndarray:
    return ndimage.map_coordinates(array, coords, order=order, mode="constant", cval=0.0).astype(np.float32)
