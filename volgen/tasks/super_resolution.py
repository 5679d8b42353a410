"""Through-plane super-resolution: a thick-slice volume to thin slices, consistent with the input.

The output grid is the input's with each slice along the thick axis split into `factor` slices (same field of
view, orientation and in-plane voxels). The model runs on an isotropic grid at the output's thin spacing, with the
thick slices as its condition and thick-slice data consistency at every step; a final exact projection on the
output grid makes the mean of every `factor` output slices equal the input slice (to float32 rounding), whatever
resampling the model grid needed. The output is float32 in the input's intensity units.
"""
from __future__ import annotations

import nibabel as nib
import numpy as np
import torch

from volgen.errors import InputError
from volgen.io.contrasts import contrast_of_file
from volgen.io.preprocess import GridSpec, preprocess
from volgen.io.volume import Volume
from volgen.modules.prior import InterpolationPrior
from volgen.sampling.consistency import thick_slice_projection, thick_slices
from volgen.tasks.job import JobResult, Sampling, Timer, as_volume, volume_path
from volgen.tasks.models import backbone_of

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


def block_means(array: np.ndarray, factor: int, axis: int) -> np.ndarray:
    tensor = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float64))
    return thick_slices(tensor, factor, axis).numpy()


def consistency_error(output: np.ndarray, observed: np.ndarray, factor: int, axis: int) -> float:
    """max |mean of each `factor` output slices - the input slice|, relative to the input's intensity range."""
    span = float(observed.max() - observed.min()) or 1.0
    return float(np.abs(block_means(output, factor, axis) - observed).max() / span)


def super_resolve(volume, *, factor: int = 4, axis: str = "z", contrast: str | None = None,
                  sampling: Sampling | None = None, **settings) -> JobResult:
    """`volume` (Volume or path) with `factor`x thinner slices along `axis`. `contrast` (t1n, t1c, t2w, t2f) picks
    the backbone's class; by default it is read from the file name, else t2f."""
    sampling = sampling or Sampling(**settings)
    timer = Timer()
    with timer("read"):
        source = as_volume(volume)
    if int(factor) != factor or factor < 2:
        raise InputError(None, f"--factor must be an integer of at least 2, got {factor}")
    factor = int(factor)
    array_axis, ras_axis = thick_array_axis(source, axis)
    contrast = contrast or contrast_of_file(volume_path(source)) or "t2f"
    with timer("load model"):
        model = sampling.load("super_resolution")
    with timer("preprocess"):
        shape, affine = thin_grid(source, array_axis, factor)
        observed = source.array.astype(np.float32)
        repeated = Volume(np.repeat(observed, factor, axis=array_axis), affine, source.header, source.name,
                          dict(source.meta))
        thin = float(np.linalg.norm(affine[:3, array_axis]))
        align = [1, 1, 1]
        align[ras_axis] = factor
        spec = GridSpec(spacing=(thin,) * 3, multiple=backbone_of(model).image_multiple, align=tuple(align))
        pre = preprocess(repeated, spec, contrast=contrast, out_range=(-1.0, 1.0))
        grid_in = torch.from_numpy(pre.array)[None, None]
        dim = 2 + ras_axis
        if grid_in.shape[dim] % factor:
            raise InputError(volume_path(source), f"model grid size {grid_in.shape[dim]} along {axis} is not a "
                                                  f"multiple of {factor}")
        lowres = thick_slices(grid_in, factor, dim)
        prior = getattr(model, "prior", None)
        if isinstance(prior, InterpolationPrior):     # the module's interpolation follows this volume's slices
            prior.factor, prior.dim = factor, dim
    device, _ = sampling.device_and_steps(model)   # the projection's tensors live where the model samples
    with timer("sample"):
        array, spread = sampling.run(model, pre.grid.model_shape, contrast=contrast, conditions=grid_in,
                                     projection=thick_slice_projection(lowres.to(device), factor, dim))
    with timer("restore"):
        restored = pre.restore(array, fill=float(observed.min()), dtype=np.float32).array.astype(np.float64)
        # exact data consistency on the output grid: each block's mean is the input slice
        correction = observed - block_means(restored, factor, array_axis)
        output = (restored + np.repeat(correction, factor, axis=array_axis)).astype(np.float32)
        # blocks that are pure background in the input stay pure background (their mean is kept exactly)
        background = np.repeat(observed == observed.min(), factor, axis=array_axis)
        output[background] = observed.min()
    error = consistency_error(output, observed, factor, array_axis)
    name = f"{source.name}-sr{factor}x"
    result = Volume(output, affine, source.header, name, {})
    info = {"job": "super_resolution", "input": volume_path(source), "factor": factor, "axis": axis,
            "contrast": contrast, "input_spacing": [round(float(s), 4) for s in source.spacing],
            "output_spacing": [round(float(s), 4) for s in result.spacing],
            **sampling.describe(model, contrasts=[contrast]), "model_grid": list(pre.grid.model_shape),
            "consistency_error": error,
            "seconds": timer.seconds}
    uncertainty = {}
    if spread is not None:            # where the input is pure background the output is exact
        spread = np.where(background, 0.0, pre.restore_spread(spread).array).astype(np.float32)
        uncertainty["sr"] = Volume(spread, affine, source.header, f"{name}-uncertainty", {})
    return JobResult(outputs={"sr": result}, uncertainty=uncertainty, inputs={"input (thick slices)": repeated},
                     info=info)
