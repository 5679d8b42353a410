"""Mass effect: a growing tumour pushes the tissue around it aside (ventricles compressed, sulci closed, the midline
bent), before the tumour itself is drawn in (`insert_lesion(..., mass_effect_mm=...)`).

Model: the tumour, taken as a sphere of its labels' volume (radius a) about their centroid, grew from a sphere of
radius a - push inside incompressible tissue. A shell now at distance r from the centre was then at
r0 = cbrt(r^3 - (a^3 - (a - push)^3)): the displacement is push at the tumour's edge and falls off as 1/r^2. The skull
does not move, so the displacement fades to zero over the brain's outer RIM_MM and beyond REACH tumour radii from
the centre: every voxel outside that zone is copied bit for bit. Images are resampled linearly, label maps by
nearest neighbour; inside the tumour the image is drawn afresh by the lesion module anyway.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

from volgen.errors import InputError

RIM_MM = 8.0            # the brain's outer rim over which the push fades out (the skull holds it)
REACH = 3.0             # tumour radii from the centre at which the push has faded out
MOVED_MM = 0.01         # a voxel displaced by less than this keeps its value exactly


def smoothstep(t: np.ndarray) -> np.ndarray:
    t = np.clip(t, 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def displacement_mm(labels: np.ndarray, brain: np.ndarray, spacing: np.ndarray, push_mm: float) -> tuple:
    """(box, unit directions from the tumour's centre (3, box), displacement in mm (box)) of the tissue around
    the tumour of `labels` (> 0) inside `brain`; the box holds every voxel that moves."""
    tumour = labels > 0
    volume_mm3 = float(tumour.sum()) * float(np.prod(spacing))
    radius = (3.0 * volume_mm3 / (4.0 * np.pi)) ** (1.0 / 3.0)
    if push_mm >= radius:
        raise InputError(None, f"mass effect of {push_mm:g} mm is not less than the tumour's radius "
                               f"({radius:.1f} mm, from its volume)")
    centre = np.array(ndimage.center_of_mass(tumour))
    half = np.ceil((REACH * radius) / spacing).astype(int) + 1
    lo = np.maximum(np.floor(centre).astype(int) - half, 0)
    hi = np.minimum(np.ceil(centre).astype(int) + half + 1, labels.shape)
    box = tuple(slice(a, b) for a, b in zip(lo, hi))
    offset = (np.indices(hi - lo, dtype=np.float64) + lo[:, None, None, None] - centre[:, None, None, None]) \
        * spacing[:, None, None, None]
    r = np.sqrt((offset ** 2).sum(0))
    grown = radius ** 3 - (radius - push_mm) ** 3
    shift = r - np.cbrt(np.maximum(r ** 3 - grown, 0.0))
    # the brain's depth, measured on the box grown by the rim so that the brain's edge just outside it counts
    pad = np.ceil(RIM_MM / spacing).astype(int) + 1
    outer = tuple(slice(max(s.start - p, 0), min(s.stop + p, n)) for s, p, n in zip(box, pad, labels.shape))
    # (padded: the grid's own edge is the brain's edge where the brain fills the grid)
    depth = ndimage.distance_transform_edt(np.pad(brain[outer], 1), sampling=spacing)
    depth = depth[tuple(slice(s.start - o.start + 1, s.stop - o.start + 1) for s, o in zip(box, outer))]
    fade = smoothstep(depth / RIM_MM) * smoothstep(REACH - r / radius)
    directions = offset / np.maximum(r, 1e-9)
    return box, directions, shift * fade


def push_aside(arrays: dict, labels: np.ndarray, brain: np.ndarray, affine, push_mm: float,
               nearest: tuple = ()) -> tuple[dict, np.ndarray]:
    """({name: array with the tissue pushed aside}, the voxels that changed) for arrays on one grid; names in
    `nearest` (label maps) are resampled by nearest neighbour, the others linearly."""
    spacing = np.linalg.norm(np.asarray(affine, dtype=np.float64)[:3, :3], axis=0)
    box, directions, shift = displacement_mm(labels, brain, spacing, push_mm)
    moved = np.zeros(labels.shape, bool)
    moved[box] = shift > MOVED_MM
    # each voxel takes its value from where its tissue was: nearer the centre by `shift`
    lo = np.array([s.start for s in box], dtype=np.float64)
    source = (np.indices(shift.shape, dtype=np.float64) + lo[:, None, None, None]
              - directions * (shift / spacing[:, None, None, None]))
    where = source[:, moved[box]]
    out = {}
    for name, array in arrays.items():
        values = ndimage.map_coordinates(array, where, order=0 if name in nearest else 1, mode="nearest")
        result = array.copy()
        result[moved] = values.astype(array.dtype)
        out[name] = result
    return out, moved
