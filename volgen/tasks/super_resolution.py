"""Through-plane super-resolution: a thick-slice volume to thin slices, consistent with the input.

The output grid is the input's with each slice along the thick axis split into `factor` slices (same field of
view, orientation and in-plane voxels). The model runs on its own voxel size, whatever the output's (a 1x1x4 mm
volume is sampled at 2 mm, not on a 1 mm grid eight times larger), with the thick slices as its condition and
thick-slice data consistency at every step; the result is brought to the output grid and projected there exactly
onto the input (`slice_means`). The output is in the input's intensity units and dtype.
"""
from __future__ import annotations

import warnings

import nibabel as nib
import numpy as np
import torch

from volgen.errors import InputError, VolgenWarning
from volgen.io.contrasts import contrast_of_file
from volgen.io.preprocess import GridSpec, preprocess
from volgen.io.resample import resample
from volgen.io.volume import Volume
from volgen.tasks.job import JobResult, Sampling, Timer, as_volume, model_spacing, volume_path
from volgen.tasks.models import backbone_of
from volgen.taskspec import TASKS
from volgen.tasks.slice_means import block_means, consistency_error, project_block_means, round_keeping_block_sums

SPEC = TASKS["super_resolution"]
WORLD_AXES = {"x": 0, "y": 1, "z": 2, "lr": 0, "ap": 1, "si": 2}


def thick_array_axis(volume: Volume, axis: str) -> tuple[int, int]:
    """(array axis, RAS axis) of the world axis named `axis` (x = left-right, y = front-back, z = up-down)."""
    key = str(axis).lower()
    if key not in WORLD_AXES:
        raise InputError(None, f"--axis must be x, y or z, got '{axis}'")
    world = WORLD_AXES[key]
    ornt = nib.orientations.io_orientation(volume.affine)
    return int(np.flatnonzero(ornt[:, 0] == world)[0]), world


def thin_grid(volume: Volume, array_axis: int, factor: int) -> tuple[tuple[int, ...], np.ndarray]:
    """Shape and affine of the grid whose voxels split each of `volume`'s along `array_axis` into `factor`."""
    shape = list(volume.shape)
    shape[array_axis] *= factor
    affine = volume.affine.copy()
    affine[:3, array_axis] /= factor
    # thin voxel j sits at thick index (j - (factor - 1) / 2) / factor
    affine[:3, 3] -= affine[:3, array_axis] * (factor - 1) / 2.0
    return tuple(shape), affine


def thick_volume(volume: Volume, factor: int, array_axis: int) -> Volume:
    """`volume` as a scanner with `factor`x thicker slices along `array_axis` would have acquired it (block means):
    the inverse of `thin_grid`, for simulating the input of a super-resolution."""
    affine = volume.affine.copy()
    affine[:3, array_axis] *= factor
    affine[:3, 3] += volume.affine[:3, array_axis] * (factor - 1) / 2.0
    thick = block_means(volume.array, factor, array_axis).astype(np.float32)
    return Volume(thick, affine, None, f"{volume.name}-thick")


AXIS_NAMES = "xyz"


def check_thick_axis(volume: Volume, array_axis: int, ras_axis: int) -> None:
    """Refuse an --axis along which the slices are no thicker than in-plane: it is not the thick one."""
    spacing = [float(s) for s in volume.spacing]
    thick = spacing[array_axis]
    in_plane = [s for i, s in enumerate(spacing) if i != array_axis]
    if thick > 1.05 * max(in_plane):
        return
    ornt = nib.orientations.io_orientation(volume.affine)
    thickest = int(np.argmax(spacing))
    hint = (f"; the thick axis of this volume is {AXIS_NAMES[int(ornt[thickest, 0])]} ({spacing[thickest]:g} mm)"
            if spacing[thickest] > 1.05 * sorted(spacing)[1] else "; it has no thick axis")
    raise InputError(volume_path(volume), f"--axis {AXIS_NAMES[ras_axis]} is not the thick-slice axis: slices along "
                                          f"it are {thick:g} mm, in-plane {' x '.join(f'{s:g}' for s in in_plane)} "
                                          f"mm{hint}")


def model_factor(thick_mm: float, model_mm: float) -> int:
    """How many model-grid voxels a thick slice covers: the thick slice over the module's voxel size, at least 2."""
    return max(2, int(round(thick_mm / model_mm)))


def outside_training(model, factor: int, thick_mm: float, seen: int, model_mm: float) -> str | None:
    """A one-line warning when this volume (`seen` model voxels per thick slice) asks the module for another factor
    than it was trained for."""
    meta = getattr(model, "hub_metadata", None) or {}
    trained = meta.get("sr_factor")
    if not trained or (seen == trained and factor == trained):
        return None
    return (f"--factor {factor} on {thick_mm:g} mm slices asks the module for {seen}x at its {model_mm:g} mm grid; "
            f"it was trained for {trained}x ({trained * model_mm:g} mm slices to {model_mm:g} mm): the result is "
            f"outside what it was trained and tested on")


def super_resolve(volume, *, factor: int = 4, axis: str = "z", contrast: str | None = None,
                  sampling: Sampling | None = None, **settings) -> JobResult:
    """`volume` (Volume or path) with `factor`x thinner slices along `axis`. `contrast` (t1n, t1c, t2w, t2f) picks
    the backbone's class; by default it is read from the file name, else t2f.

    The module runs on its own voxel size (its training metadata; 2 mm for volgen's), with each thick slice covering
    a whole number of model voxels along the axis; the result is brought to the output grid (the input's, each slice
    split in `factor`) and projected there onto the input: every block of `factor` output slices has the input
    slice's mean, and no voxel goes below min(0, the input's minimum), nor outside the source dtype's range. The
    output has the source's dtype (integers rounded with every block's sum kept)."""
    sampling = sampling or Sampling(**settings)
    timer = Timer()
    with timer("read"):
        source = as_volume(volume)
    if int(factor) != factor or factor < 2:
        raise InputError(None, f"--factor must be an integer of at least 2, got {factor}")
    factor = int(factor)
    array_axis, ras_axis = thick_array_axis(source, axis)
    check_thick_axis(source, array_axis, ras_axis)
    contrast = contrast or contrast_of_file(volume_path(source)) or "t2f"
    with timer("load model"):
        model = sampling.load("super_resolution")
    thick_mm = float(source.spacing[array_axis])
    model_mm = model_spacing(model)
    steps = model_factor(thick_mm, model_mm)          # model voxels per thick slice
    warning = outside_training(model, factor, thick_mm, steps, model_mm)
    if warning:
        warnings.warn(warning, VolgenWarning, stacklevel=2)
    with timer("preprocess"):
        observed = source.array.astype(np.float32)
        model_shape, model_affine = thin_grid(source, array_axis, steps)
        repeated = Volume(np.repeat(observed, steps, axis=array_axis), model_affine, source.header, source.name,
                          dict(source.meta))
        spacing = [model_mm] * 3
        spacing[ras_axis] = thick_mm / steps
        align = [1, 1, 1]
        align[ras_axis] = steps
        spec = GridSpec(spacing=tuple(spacing), multiple=backbone_of(model).image_multiple, align=tuple(align))
        pre = preprocess(repeated, spec, contrast=contrast, out_range=(-1.0, 1.0))
        grid_in = torch.from_numpy(pre.array)[None, None]
        dim = 2 + ras_axis
        if grid_in.shape[dim] % steps:
            raise InputError(volume_path(source), f"model grid size {grid_in.shape[dim]} along {axis} is not a "
                                                  f"multiple of {steps}")
    device, _ = sampling.device_and_steps(model)   # the projection's tensors live where the model samples
    with timer("sample"):
        array, spread = sampling.run(model, pre.grid.model_shape, contrast=contrast,
                                     **SPEC.inputs(lowres=grid_in, factor=steps, dim=dim, device=device))
    shape, affine = thin_grid(source, array_axis, factor)
    with timer("restore"):
        restored = pre.restore(array, fill=float(observed.min()), dtype=np.float32).array
        restored = to_output_grid(restored, model_affine, shape, affine)
        output = consistent_output(restored, observed, factor, array_axis, source.array.dtype)
        # blocks that are pure background in the input stay pure background (their mean is kept exactly)
        background = np.repeat(observed == observed.min(), factor, axis=array_axis)
        output[background] = source.array.min()
    error = consistency_error(output, observed, factor, array_axis)
    name = f"{source.name}-sr{factor}x"
    result = Volume(output, affine, source.header, name, {})
    info = {"job": "super_resolution", "input": volume_path(source), "factor": factor, "axis": axis,
            "contrast": contrast, "input_spacing": [round(float(s), 4) for s in source.spacing],
            "output_spacing": [round(float(s), 4) for s in result.spacing],
            **sampling.describe(model, contrasts=[contrast]), "model_grid": list(pre.grid.model_shape),
            "model_spacing": [round(float(s), 4) for s in spacing], "model_factor": steps,
            **({"warnings": [warning]} if warning else {}),
            "consistency_error": error,
            "seconds": timer.seconds}
    uncertainty = {}
    if spread is not None:            # where the input is pure background the output is exact
        spread = to_output_grid(pre.restore_spread(spread).array, model_affine, shape, affine)
        spread = np.where(background, 0.0, np.maximum(spread, 0.0)).astype(np.float32)
        uncertainty["sr"] = Volume(spread, affine, source.header, f"{name}-uncertainty", {})
    # the input as the montage shows it: each thick slice repeated on the output grid (a montage is one grid)
    shown = Volume(np.repeat(observed, factor, axis=array_axis), affine, source.header, source.name, {})
    return JobResult(outputs={"sr": result}, uncertainty=uncertainty, inputs={"input (thick slices)": shown},
                     info=info)


def to_output_grid(array: np.ndarray, model_affine: np.ndarray, shape, affine: np.ndarray) -> np.ndarray:
    """The model-factor grid's array on the output grid (the same grid when the factors agree: no resampling)."""
    if tuple(array.shape) == tuple(shape) and np.allclose(model_affine, affine):
        return array
    return resample(np.asarray(array, dtype=np.float32), model_affine, shape, affine, order=3,
                    antialias=False).astype(np.float32)


def consistent_output(restored: np.ndarray, observed: np.ndarray, factor: int, axis: int, dtype) -> np.ndarray:
    """`restored` projected onto the input (block means exact, nothing below min(0, input minimum) or outside the
    dtype's range), in `dtype`."""
    dtype = np.dtype(dtype)
    low = min(0.0, float(observed.min()))
    high = float(np.iinfo(dtype).max) if dtype.kind in "iu" else np.inf
    if dtype.kind in "iu":
        low = max(low, float(np.iinfo(dtype).min))
    output = project_block_means(restored, observed, factor, axis, low=low, high=high)
    if dtype.kind in "iu":
        output = round_keeping_block_sums(output, factor, axis, low=low, high=high)
    return output.astype(dtype)
