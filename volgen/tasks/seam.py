"""Where a fill made on the model grid meets the known voxels of the user's grid.

A job that re-synthesises the voxels under a mask samples on its model grid (2 mm) and interpolates the result back.
On a finer grid (BraTS's 1 mm) the interpolated fill does not meet the known voxels around the mask: they carry
detail the model grid does not hold, and the model-grid mask (every model voxel the mask touches) is wider than the
user's. A harmonic fill of the mismatch on the mask's boundary, added to the fill, removes that seam and fades into
the hole. On the model grid itself the inpainting sampler kept the known voxels, the mismatch is nil and so is the
correction.

Lesion insertion re-synthesises the labels and a border of healthy tissue one model voxel deep round them, so that
the tumour blends in; its sample does not keep the voxels round that region exactly even on the model grid (0.2-0.4%
of the median), and it is met to them on every grid. On a finer grid the border, the tissue the labels leave
healthy, also gets back the source's detail that the model grid cannot hold (`healthy_border`): at 1 mm the border had
been the 2 mm version of the scan (session 55, 5 fresh 1 mm phantoms: PSNR in the border +1.0 to +2.4 dB per
contrast, bench_lesion.py).

How deep the correction reaches: one model voxel (`reach_of`; at 1 mm, 2 voxels). Chosen on validation phantoms (seed
300, 1 mm, 3 cases x 5 mask kinds, session 54) among 1, 2, 4 voxels and the plain harmonic function (no fade): the
plain one carried the ring just outside a grown tumour mask (the lesion's partial-volume tail) to the hole's centre
and lost up to 2 dB there; 2 voxels raised every mask kind's margin over the exact harmonic fill (small holes +2.61 ->
+3.34 dB, tumour +4.02 -> +4.80, tumour + 1 voxel +5.29 -> +5.46, + 2 voxels +4.32 -> +5.15, large blobs +5.73 ->
+5.89); 4 voxels lost on the grown masks.
"""
from __future__ import annotations

import numpy as np
import torch

from volgen.modules.prior import bounding_box, harmonic_fill

TOLERANCE = 1e-6            # relative residual: the mismatch is a few per cent of the peak, far below its noise


def reach_of(spacing, model_spacing: float) -> float:
    """One model voxel, in voxels of the finest axis of the user's grid."""
    return model_spacing / min(float(s) for s in spacing)


def met_at_boundary(fill: np.ndarray, source: np.ndarray, inside: np.ndarray, reach: float | None = None) -> np.ndarray:
    """`fill` (the source grid, float) with the harmonic function inside `inside` (bool) that equals source - fill
    on the mask's boundary added to it; voxels outside the mask are returned as `fill` has them. With `reach` (voxels)
    the correction fades over about that depth into the mask (screened) instead of reaching across it."""
    box = bounding_box(torch.from_numpy(inside), margin=1)
    hole = inside[box]
    mismatch = np.where(hole, 0.0, np.asarray(source[box], dtype=np.float64) - fill[box])
    as_tensor = [torch.from_numpy(np.ascontiguousarray(x))[None, None] for x in (mismatch, hole)]
    # CG iterations grow with the hole's width: its largest dimension in voxels bounds what a smooth solution needs
    screening = 0.0 if reach is None else 1.0 / reach ** 2
    correction = harmonic_fill(*as_tensor, tolerance=TOLERANCE, max_iterations=20 * max(hole.shape),
                               screening=screening)[0, 0].numpy()
    out = np.array(fill, dtype=np.float64, copy=True)
    out[box] += np.where(hole, correction, 0.0)
    return out.astype(fill.dtype, copy=False)


def restored_and_met(pre, model_array: np.ndarray, source, inside: np.ndarray, model_spacing: float,
                     healthy_border: np.ndarray | None = None, detail: np.ndarray | None = None) -> np.ndarray:
    """A model-grid fill (`pre`, the preprocessed source, restores it) on the source Volume's grid as float32, met to
    its known voxels round `inside`: on a grid finer than the model's the interpolated fill does not meet them; on the
    model's own grid only what the sampler itself left off them is met. `healthy_border`: voxels of `inside`
    re-synthesised only so that the fill blends in (a lesion's border of healthy tissue); they get back the source's
    detail that the model grid cannot hold. `detail` (source grid): added to the fill before it is met (a healthy
    fill's fine atlas detail, tasks/fine_fill.py)."""
    restored = pre.restore(model_array, dtype=np.float32).array
    if detail is not None:
        restored = restored + detail
    if healthy_border is not None:
        lost = source.array - pre.restore(pre.array, dtype=np.float32).array
        # outside `inside` too: the mismatch the seam meets is then the model's own change there, not that detail
        restored = np.where(healthy_border | ~inside, restored + lost, restored).astype(np.float32)
    return met_at_boundary(restored, source.array, inside, reach_of(source.spacing, model_spacing))
