"""Resampling between voxel grids defined by (shape, affine), and grid comparison."""
from __future__ import annotations

import nibabel as nib
import numpy as np
from scipy import ndimage

from volgen.errors import InputError
from volgen.io.volume import Volume


def grid_spacing(affine: np.ndarray) -> np.ndarray:
    return np.linalg.norm(np.asarray(affine)[:3, :3], axis=0)


def resample(array: np.ndarray, src_affine, dst_shape, dst_affine, *, order: int = 1, antialias: bool = True,
             mode: str = "nearest") -> np.ndarray:
    """Values of `array` (on src grid) at the voxel centres of the dst grid; world space is shared.

    `antialias` blurs before shrinking (sigma = (factor - 1) / 2 source voxels, as scikit-image's resize does), so
    downsampling does not alias; labels (order 0) are never blurred.
    """
    src_affine = np.asarray(src_affine, dtype=np.float64)
    dst_affine = np.asarray(dst_affine, dtype=np.float64)
    dst_to_src = np.linalg.solve(src_affine, dst_affine)  # dst voxel -> src voxel
    data = np.asarray(array, dtype=np.float32 if order > 0 else array.dtype)
    if antialias and order > 0:
        factors = np.linalg.norm(dst_to_src[:3, :3], axis=0)  # src voxels per dst voxel, along each dst axis
        # For (near) axis-aligned maps the dst axis j runs along src axis argmax|column j|.
        sigma = np.zeros(3)
        for j in range(3):
            i = int(np.argmax(np.abs(dst_to_src[:3, j])))
            sigma[i] = max(sigma[i], (factors[j] - 1.0) / 2.0)
        if np.any(sigma > 0):
            data = ndimage.gaussian_filter(data, sigma=sigma, mode="nearest")
    dst_shape = tuple(int(s) for s in dst_shape)
    if order == 1 and mode == "nearest" and _is_diagonal(dst_to_src[:3, :3]):
        return _separable_linear(data, np.diag(dst_to_src[:3, :3]), dst_to_src[:3, 3], dst_shape)
    return ndimage.affine_transform(data, dst_to_src[:3, :3], offset=dst_to_src[:3, 3], output_shape=dst_shape,
                                    order=order, mode=mode, prefilter=order > 1)


def _is_diagonal(matrix: np.ndarray) -> bool:
    return bool(np.all(np.abs(matrix - np.diag(np.diag(matrix))) <= 1e-9 * np.abs(matrix).max()))


def _interpolation_matrix(n_out: int, n_in: int, scale: float, shift: float) -> np.ndarray:
    """(n_out, n_in) weights of linear interpolation at x = scale * i + shift, clamped to the edges (mode nearest)."""
    x = np.clip(scale * np.arange(n_out, dtype=np.float64) + shift, 0, n_in - 1)
    below = np.minimum(np.floor(x).astype(np.intp), max(n_in - 2, 0))
    share = x - below
    weights = np.zeros((n_out, n_in))
    rows = np.arange(n_out)
    np.add.at(weights, (rows, below), 1 - share)
    np.add.at(weights, (rows, np.minimum(below + 1, n_in - 1)), share)
    return weights.astype(np.float32)


def _separable_linear(data: np.ndarray, scale, shift, dst_shape) -> np.ndarray:
    """affine_transform(order=1, mode="nearest") for a map that scales and shifts each axis on its own: trilinear
    interpolation is a linear interpolation along each axis in turn, here a small matrix product per axis (BLAS,
    threaded) instead of scipy's single-threaded general path (a BraTS-size 1 mm restore 0.58 -> 0.13 s)."""
    (m0, m1, m2), (n0, n1, n2) = dst_shape, data.shape
    w0, w1, w2 = (_interpolation_matrix(m, n, a, b) for m, n, a, b in zip(dst_shape, data.shape, scale, shift))
    out = np.ascontiguousarray(data, dtype=np.float32).reshape(n0 * n1, n2) @ w2.T     # (n0 n1, m2)
    out = np.matmul(w1, out.reshape(n0, n1, m2))                                          # (n0, m1, m2)
    out = (w0 @ out.reshape(n0, m1 * m2)).reshape(m0, m1, m2)
    return out.astype(data.dtype, copy=False)


def same_grid(shape_a, affine_a, shape_b, affine_b, *, atol_mm: float = 1e-3) -> bool:
    """True when two grids have the same shape and voxel centres within `atol_mm` everywhere."""
    if tuple(shape_a[:3]) != tuple(shape_b[:3]):
        return False
    corners = np.array([[i, j, k, 1.0] for i in (0, shape_a[0] - 1) for j in (0, shape_a[1] - 1)
                        for k in (0, shape_a[2] - 1)])
    diff = (np.asarray(affine_a) - np.asarray(affine_b)) @ corners.T
    return bool(np.abs(diff).max() <= atol_mm)


def grid_difference(shape_a, affine_a, shape_b, affine_b) -> str:
    """What tells grid a from grid b, in words: 'shape (96, 112, 96) vs (96, 112, 80)', 'origin (0, 0, 4) mm vs
    (0, 0, 0) mm' ... (for refusals that name the difference, not two identical-looking summaries)."""
    affine_a, affine_b = np.asarray(affine_a, dtype=np.float64), np.asarray(affine_b, dtype=np.float64)
    if tuple(shape_a[:3]) != tuple(shape_b[:3]):
        return f"shape {tuple(shape_a[:3])} vs {tuple(shape_b[:3])}"
    codes = ["".join(nib.orientations.aff2axcodes(a)) for a in (affine_a, affine_b)]
    if codes[0] != codes[1]:
        return f"orientation {codes[0]} vs {codes[1]}"
    spacings = [tuple(float(x) for x in np.round(grid_spacing(a), 3)) for a in (affine_a, affine_b)]
    if not np.allclose(*spacings, atol=1e-3):
        return f"voxel size {spacings[0]} mm vs {spacings[1]} mm"
    origins = [tuple(float(x) for x in np.round(a[:3, 3], 2)) for a in (affine_a, affine_b)]
    if not np.allclose(*origins, atol=1e-3):
        return f"origin {origins[0]} mm vs {origins[1]} mm (shifted by " \
               f"{float(np.linalg.norm(affine_a[:3, 3] - affine_b[:3, 3])):.2f} mm)"
    return "voxel axes rotated against each other"


def resample_like(volume: Volume, reference: Volume, *, order: int = 1) -> Volume:
    """`volume` resampled onto the grid of `reference` (its shape and affine), keeping its own dtype and name."""
    out = resample(volume.array, volume.affine, reference.shape[:3], reference.affine, order=order)
    if np.issubdtype(volume.array.dtype, np.integer):
        info = np.iinfo(volume.array.dtype)
        out = np.clip(np.rint(out), info.min, info.max)
    return Volume(array=out.astype(volume.array.dtype), affine=reference.affine.copy(),
                  header=reference.header.copy() if reference.header is not None else None,
                  name=volume.name, meta=dict(volume.meta))


def align_grids(volumes: dict[str, Volume], reference: str, *, resample_to_reference: bool = False,
                label_keys=("seg",)) -> dict[str, Volume]:
    """Refuse (or, when asked, resample onto `reference`) volumes whose grid differs from the reference's."""
    ref = volumes[reference]
    out = {}
    for key, vol in volumes.items():
        if same_grid(vol.shape, vol.affine, ref.shape, ref.affine):
            out[key] = vol
        elif resample_to_reference:
            out[key] = resample_like(vol, ref, order=0 if key in label_keys else 1)
        else:
            raise InputError(vol.meta.get("path", key),
                             f"grid differs from {reference}'s: "
                             f"{grid_difference(vol.shape, vol.affine, ref.shape, ref.affine)}; pass --resample to "
                             f"put it on the reference grid")
    return out
