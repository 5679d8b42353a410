"""Baselines that learn nothing, which every volgen job must beat on the same cases, and which the modules' priors
build on (the per-voxel regression baseline of synthesis is the benches' own harness).

- `cubic_upsample`: thick slices back to thin ones by cubic spline interpolation;
- `harmonic_fill`: the voxels under a mask replaced by the solution of Laplace's equation whose boundary values are
  the known voxels around the mask (the smoothest fill, what "inpaint from the boundary" means without a model).
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage, sparse
from scipy.sparse.linalg import spsolve


def cubic_upsample(thick: np.ndarray, factor: int, axis: int) -> np.ndarray:
    """Each thick slice (a block mean) to `factor` thin ones by cubic splines, sampled at the thin slices' centres."""
    zoom = [1.0] * thick.ndim
    zoom[axis] = factor
    return ndimage.zoom(np.asarray(thick, dtype=np.float64), zoom, order=3, mode="nearest", grid_mode=True)


def harmonic_fill(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """`image` with the voxels under `mask` (bool) replaced by the discrete harmonic function (6-neighbour
    Laplacian = 0 inside) that equals the image on the mask's boundary. Voxels outside the mask are unchanged."""
    image = np.asarray(image, dtype=np.float64)
    mask = np.asarray(mask, dtype=bool)
    out = image.copy()
    if not mask.any():
        return out
    index = -np.ones(mask.shape, dtype=np.int64)
    coords = np.argwhere(mask)
    index[mask] = np.arange(len(coords))
    n = len(coords)
    rows, cols, vals = [np.arange(n)], [np.arange(n)], [np.zeros(n)]
    rhs = np.zeros(n)
    degree = np.zeros(n)
    for axis in range(3):
        for step in (-1, 1):
            nb = coords.copy()
            nb[:, axis] += step
            inside = (nb[:, axis] >= 0) & (nb[:, axis] < mask.shape[axis])   # the volume's edge is no neighbour
            degree += inside
            nb_c = tuple(nb[inside].T)
            unknown = mask[nb_c]
            rows.append(np.arange(n)[inside][unknown])
            cols.append(index[nb_c][unknown])
            vals.append(-np.ones(unknown.sum()))
            np.add.at(rhs, np.arange(n)[inside][~unknown], image[nb_c][~unknown])
    vals[0] = degree
    laplacian = sparse.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n))
    out[mask] = spsolve(laplacian, rhs)
    return out
