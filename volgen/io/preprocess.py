"""Put a volume on a model grid (RAS, target spacing, shape divisible by 2^k, robust intensity) and back exactly.

Exact back means: the output has the source's shape, affine, orientation, dtype and header. Orientation and
crop/pad are exact permutations; when the spacing changes the values are interpolated both ways (no interpolation
happens when the source already has the model spacing).
"""
from __future__ import annotations

from dataclasses import dataclass

import nibabel as nib
import numpy as np

from volgen.errors import InputError
from volgen.io.resample import grid_spacing, resample, same_grid
from volgen.io.volume import Volume


@dataclass(frozen=True)
class GridSpec:
    """What the model wants. `spacing=None` keeps the source's; `shape=None` pads up to a multiple of `multiple`.
    `align` (per RAS axis) makes the window start a multiple of it, so blocks of the source (thick slices repeated
    onto a thin grid) stay whole blocks on the model grid."""

    spacing: tuple[float, float, float] | None = (2.0, 2.0, 2.0)
    shape: tuple[int, int, int] | None = None
    multiple: int = 16
    align: tuple[int, int, int] = (1, 1, 1)


@dataclass(frozen=True)
class GridMap:
    """Geometry from a source grid to the model grid: reorient -> resample -> crop/pad window."""

    source_shape: tuple[int, int, int]
    source_affine: np.ndarray
    ornt: np.ndarray                     # nibabel orientation transform, source axes -> RAS axes
    ras_shape: tuple[int, int, int]
    ras_affine: np.ndarray
    resampled_shape: tuple[int, int, int]
    resampled_affine: np.ndarray
    offset: tuple[int, int, int]         # model voxel 0 sits at this resampled voxel (negative: padding)
    model_shape: tuple[int, int, int]
    model_affine: np.ndarray

    @property
    def resamples(self) -> bool:
        return self.resampled_shape != self.ras_shape or not np.allclose(self.resampled_affine, self.ras_affine)

    @classmethod
    def plan(cls, shape, affine, spec: GridSpec = GridSpec(), foreground: np.ndarray | None = None) -> "GridMap":
        shape = tuple(int(s) for s in shape[:3])
        affine = np.asarray(affine, dtype=np.float64)
        ornt = nib.orientations.io_orientation(affine)
        ras_shape = _apply_ornt_shape(shape, ornt)
        ras_affine = affine @ nib.orientations.inv_ornt_aff(ornt, shape)
        res_shape, res_affine = _resampled_grid(ras_shape, ras_affine, spec.spacing)
        model_shape = tuple(spec.shape) if spec.shape else tuple(
            int(-(-s // spec.multiple) * spec.multiple) for s in res_shape)
        if spec.shape and any(s % spec.multiple for s in spec.shape):
            raise ValueError(f"model shape {spec.shape} is not divisible by {spec.multiple}")
        centre = _foreground_centre(foreground, ornt, res_shape, ras_shape, ras_affine, res_affine)
        offset = tuple(_window_start(n, m, c, a) for n, m, c, a in zip(res_shape, model_shape, centre, spec.align))
        model_affine = res_affine.copy()
        model_affine[:3, 3] = res_affine[:3, :3] @ np.array(offset, dtype=np.float64) + res_affine[:3, 3]
        return cls(shape, affine, ornt, ras_shape, ras_affine, res_shape, res_affine, offset, model_shape,
                   model_affine)

    def matches(self, volume: Volume) -> bool:
        return same_grid(volume.shape, volume.affine, self.source_shape, self.source_affine)

    def forward(self, array: np.ndarray, *, order: int = 1, fill: float = 0.0) -> np.ndarray:
        """Source-grid array -> model-grid array."""
        ras = nib.orientations.apply_orientation(array, self.ornt)
        if self.resamples:
            ras = resample(ras, self.ras_affine, self.resampled_shape, self.resampled_affine, order=order)
        return _window(ras, self.offset, self.model_shape, fill)

    def inverse(self, array: np.ndarray, *, order: int = 1, fill: float = 0.0) -> np.ndarray:
        """Model-grid array -> source-grid array (voxels outside the model window get `fill`)."""
        neg = tuple(-o for o in self.offset)
        res = _window(np.asarray(array), neg, self.resampled_shape, fill)
        if self.resamples:
            res = resample(res, self.resampled_affine, self.ras_shape, self.ras_affine, order=order)
        return nib.orientations.apply_orientation(res, _invert_ornt(self.ornt))


def _apply_ornt_shape(shape, ornt) -> tuple[int, int, int]:
    out = [0, 0, 0]
    for src_axis, (dst_axis, _flip) in enumerate(ornt):
        out[int(dst_axis)] = shape[src_axis]
    return tuple(out)


def _invert_ornt(ornt: np.ndarray) -> np.ndarray:
    """Orientation transform that undoes `ornt` (RAS axes -> source axes)."""
    inv = np.zeros_like(ornt)
    for src_axis, (dst_axis, flip) in enumerate(ornt):
        inv[int(dst_axis)] = (src_axis, flip)
    return inv


def _resampled_grid(ras_shape, ras_affine, spacing):
    """Grid with the same directions and field-of-view centre as the RAS grid, at `spacing` mm."""
    old = grid_spacing(ras_affine)
    if spacing is None or np.allclose(old, spacing, rtol=1e-4, atol=1e-5):
        return tuple(ras_shape), ras_affine.copy()
    new = np.broadcast_to(np.asarray(spacing, dtype=np.float64), (3,))
    new_shape = tuple(int(max(1, round(n * o / s))) for n, o, s in zip(ras_shape, old, new))
    directions = ras_affine[:3, :3] / old
    centre = ras_affine[:3, :3] @ ((np.array(ras_shape) - 1) / 2.0) + ras_affine[:3, 3]
    affine = np.eye(4)
    affine[:3, :3] = directions * new
    affine[:3, 3] = centre - affine[:3, :3] @ ((np.array(new_shape) - 1) / 2.0)
    return new_shape, affine


def _foreground_centre(foreground, ornt, res_shape, ras_shape, ras_affine, res_affine):
    """Centre (resampled voxels) of the foreground's bounding box; the grid centre without a foreground."""
    if foreground is None or not np.any(foreground):
        return [(n - 1) / 2.0 for n in res_shape]
    fg = nib.orientations.apply_orientation(np.asarray(foreground, dtype=bool), ornt)
    idx = np.argwhere(fg)
    centre_ras = (idx.min(0) + idx.max(0)) / 2.0
    to_res = np.linalg.solve(res_affine, ras_affine)
    return list(to_res[:3, :3] @ centre_ras + to_res[:3, 3])


def _window_start(n: int, m: int, centre: float, align: int = 1) -> int:
    """Start of an m-voxel window over n voxels: the whole axis centred when it fits, else around `centre`; a
    multiple of `align` either way."""
    if m >= n:
        return -((m - n) // 2 // align * align)
    return int(np.clip(round((centre - (m - 1) / 2.0) / align) * align, 0, (n - m) // align * align))


def _window(array: np.ndarray, offset, shape, fill) -> np.ndarray:
    """out[i] = array[i + offset] where that exists, else `fill`."""
    out = np.full(tuple(shape) + array.shape[3:], fill, dtype=array.dtype)
    src, dst = [], []
    for o, n, m in zip(offset, array.shape[:3], shape):
        lo, hi = max(0, o), min(n, o + m)
        if hi <= lo:
            return out
        src.append(slice(lo, hi))
        dst.append(slice(lo - o, hi - o))
    out[tuple(dst)] = array[tuple(src)]
    return out


def background_level(array: np.ndarray) -> float:
    """A scan's background value: its minimum where at least 1% of the voxels hold it (a skull-stripped or
    zero-filled scan), else the lowest value that 1% of the voxels share, else the minimum (a noisy background has no
    such value). A few voxels under the background (interpolation ringing, noise added to a dark region) would
    otherwise become it: every voxel of the scan then counts as head and the head's median lands on the background."""
    a = np.asarray(array)
    low = a.min()
    if np.count_nonzero(a == low) >= 0.01 * a.size:
        return float(low)
    sample = a.ravel()[::8]
    values, counts = np.unique(sample, return_counts=True)
    shared = values[counts >= 0.01 * sample.size]
    return float(shared[0]) if shared.size else float(low)


# Where each MRI contrast's head median sits on [0, 1]. A lesion cannot move a median much, while it sets the 99.9th
# percentile of a t1c (the enhancing rim), whose scale would then follow the contrast agent's dose, which no other
# contrast shows. The levels are the 48 training phantoms' mean under the old 0.1-99.9th percentile scale, so the
# models' scale did not move on average (bench_voxelwise_ceiling.py measures both references).
MEDIAN_LEVEL = {"t1n": 0.757, "t1c": 0.502, "t2w": 0.460, "t2f": 0.669}


@dataclass(frozen=True)
class IntensityScale:
    """Robust linear scaling onto `out_range`. The lower bound is a low percentile of the foreground but never above
    the background (the minimum), so the background maps exactly to the bottom of the range and comes back exactly.
    The upper bound puts the foreground's median at `median_level` of the range when one is given, else it is a high
    percentile of the foreground. Values beyond the upper bound are clipped."""

    low: float
    high: float
    out_range: tuple[float, float] = (0.0, 1.0)

    @classmethod
    def fit(cls, array: np.ndarray, percentiles=(0.1, 99.9), out_range=(0.0, 1.0), mask=None,
            median_level: float | None = None) -> "IntensityScale":
        values = np.asarray(array, dtype=np.float64)
        background = background_level(values)
        values = values[mask] if mask is not None else values[values > background]
        if values.size == 0:
            values = np.asarray(array, dtype=np.float64).ravel()
        low, high = np.percentile(values, percentiles)
        low = min(float(low), background)
        if median_level is not None:
            if not 0.0 < median_level < 1.0:
                raise ValueError(f"median_level must lie in (0, 1), got {median_level}")
            high = low + (float(np.median(values)) - low) / median_level
        if high <= low:  # e.g. a binary image: fall back to the full range
            high = float(values.max())
        if high <= low:
            high = low + 1.0
        return cls(float(low), float(high), tuple(float(v) for v in out_range))

    def forward(self, array: np.ndarray) -> np.ndarray:
        a, b = self.out_range
        unit = np.clip((np.asarray(array, dtype=np.float32) - self.low) / (self.high - self.low), 0.0, 1.0)
        return (unit * (b - a) + a).astype(np.float32)

    def inverse(self, array: np.ndarray) -> np.ndarray:
        a, b = self.out_range
        return (np.asarray(array, dtype=np.float64) - a) / (b - a) * (self.high - self.low) + self.low


@dataclass
class Preprocessed:
    """A volume on the model grid, with what is needed to put a prediction back on its source grid."""

    array: np.ndarray
    grid: GridMap
    scale: IntensityScale | None
    source: Volume   # the source volume (geometry, dtype, header, name); its voxels are not used again

    def restore(self, model_array: np.ndarray, *, label: bool = False, unscale: bool = True, fill=None,
                dtype=None) -> Volume:
        """A model-grid prediction as a Volume on the source grid, in the source's dtype and header."""
        values = np.asarray(model_array)
        if unscale and self.scale is not None and not label:
            # Below the range's bottom is below the scan's own background (a sample overshooting dark tissue): MRI
            # magnitude never goes there, and one negative voxel would become the written image's new minimum.
            values = self.scale.inverse(np.maximum(values, self.scale.out_range[0]))
        background = fill if fill is not None else (0 if label else float(np.min(values)))
        out = self.grid.inverse(values if label else values.astype(np.float32), order=0 if label else 1,
                                fill=background)
        return self.source.with_array(cast_like(out, dtype or self.source.array.dtype))


    def restore_spread(self, model_spread: np.ndarray) -> Volume:
        """A model-grid spread (a standard deviation) on the source grid, float32, in the source's intensity units
        (the intensity scale's slope, without its offset), 0 outside the model grid."""
        values = np.asarray(model_spread, dtype=np.float64)
        if self.scale is not None:
            a, b = self.scale.out_range
            values = values * (self.scale.high - self.scale.low) / (b - a)
        return self.source.with_array(self.grid.inverse(values.astype(np.float32), order=1, fill=0.0)
                                      .astype(np.float32))


def cast_like(array: np.ndarray, dtype) -> np.ndarray:
    """Cast to `dtype`, rounding and clipping into range for integer types."""
    dtype = np.dtype(dtype)
    if np.issubdtype(dtype, np.integer) and not np.issubdtype(array.dtype, np.integer):
        info = np.iinfo(dtype)
        array = np.clip(np.rint(array), info.min, info.max)
    return array.astype(dtype)


def preprocess(volume: Volume, spec: GridSpec = GridSpec(), *, grid: GridMap | None = None, label: bool = False,
               contrast: str | None = None, percentiles=(0.1, 99.9), out_range=(0.0, 1.0)) -> Preprocessed:
    """Volume -> model grid. Share `grid` between the volumes of one case so they land on the same voxels. An MRI
    `contrast` (t1n, t1c, t2w, t2f) scales the intensity by its head median (MEDIAN_LEVEL); any other image (PET,
    or no contrast given) by its percentiles."""
    if volume.array.ndim != 3:
        raise InputError(volume.meta.get("path", volume.name), f"expected a 3D volume, got shape {volume.shape}")
    background = background_level(volume.array)
    foreground = volume.array > background
    if grid is None:
        grid = GridMap.plan(volume.shape, volume.affine, spec, foreground=foreground)
    elif not grid.matches(volume):
        raise InputError(volume.meta.get("path", volume.name), "grid differs from the case's reference volume")
    if label:
        return Preprocessed(grid.forward(volume.array, order=0, fill=0), grid, None, volume)
    model = grid.forward(volume.array.astype(np.float32), order=1, fill=background)
    if out_range is None:
        return Preprocessed(model, grid, None, volume)
    scale = IntensityScale.fit(model, percentiles, out_range, mask=covered_by_foreground(foreground, grid),
                               median_level=MEDIAN_LEVEL.get(contrast))
    return Preprocessed(scale.forward(model), grid, scale, volume)


def covered_by_foreground(foreground: np.ndarray, grid: GridMap) -> np.ndarray | None:
    """The model-grid voxels at least half inside the source's foreground, where `grid` resamples (None where it
    does not: every voxel is a source voxel). Resampling a skull-stripped 1 mm scan to 2 mm blends the head's edge
    with the background into a rim of dim voxels, 12% of the head, that no native 2 mm scan has; counted as head they
    lower its median, the scale then brightens the tissue, and the synthesis table read the brightest tissue of such
    cases as enhancing tumour (session 53). Fitting the scale on these voxels puts a resampled head on the scale of a
    native one."""
    if not grid.resamples:
        return None
    return grid.forward(foreground.astype(np.float32), order=1, fill=0.0) >= 0.5
