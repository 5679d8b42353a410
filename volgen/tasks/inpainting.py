"""Lesion inpainting: fill a masked region with healthy tissue (`mode="healthy"`) or grow a lesion inside it
(`mode="lesion"`). Voxels outside the mask are copied from the input bit for bit; only the mask is model output.
"""
from __future__ import annotations

import numpy as np
import torch

from volgen.errors import InputError
from volgen.io.contrasts import contrast_of_input
from volgen.io.preprocess import GridSpec, background_level, cast_like, preprocess
from volgen.io.resample import grid_difference, same_grid
from volgen.tasks.fine_fill import atlas_detail, case_registration, prior_options
from volgen.tasks.job import JobResult, Sampling, Timer, as_volume, model_spacing, volume_path
from volgen.tasks.models import backbone_of
from volgen.tasks.noise_match import with_matched_noise
from volgen.tasks.seam import restored_and_met
from volgen.tasks.synthesis import finer_than_model
from volgen.taskspec import TASKS

MODES = ("healthy", "lesion")
SPEC = TASKS["inpainting"]          # its conditions, projection and estimate rule (volgen/taskspec.py)


def inpaint(volume, mask, *, mode: str = "healthy", contrast: str | None = None, sampling: Sampling | None = None,
            **settings) -> JobResult:
    """`volume` with the voxels under `mask` (non-zero; Volume or path, same grid) re-synthesised."""
    sampling = sampling or Sampling(**settings)
    if mode not in MODES:
        raise InputError(None, f"--mode must be one of {', '.join(MODES)}, got '{mode}'")
    timer = Timer()
    with timer("read"):
        source = as_volume(volume)
        mask_volume = as_volume(mask, allow_constant=True, what="mask")
    if not same_grid(mask_volume.shape, mask_volume.affine, source.shape, source.affine):
        raise InputError(volume_path(mask_volume), "mask grid differs from the image's: " + grid_difference(
            mask_volume.shape, mask_volume.affine, source.shape, source.affine))
    inside = mask_volume.array > 0
    if not inside.any():
        raise InputError(volume_path(mask_volume), "mask is empty: nothing to inpaint")
    contrast = contrast_of_input(volume_path(source), contrast)
    with timer("load model"):
        model = sampling.load("inpainting")
    with timer("preprocess"):
        pre, image, keep = on_model_grid(source, inside, model, contrast)
    device, _ = sampling.device_and_steps(model)   # the projection's tensors live where the model samples
    with timer("sample"):
        # a healthy fill on a finer grid gets the atlas's finer detail (tasks/fine_fill.py): the case's warp, once
        registration = case_registration(model, source, image, keep, contrast) if mode == "healthy" else None
        array, spread = sampling.run(model, pre.grid.model_shape, contrast=contrast,
                                     prior_options=prior_options(registration, device),
                                     **SPEC.inputs(image=image, mask=keep, insert=mode == "lesion", device=device))
    with timer("restore"):
        detail = atlas_detail(model, pre, source, image, keep, inside, contrast, registration)
        restored = restored_and_met(pre, array, source, inside, model_spacing(model), detail=detail)
        noise_sd = None
        if sampling.estimate == "sample" and finer_than_model(source, model_spacing(model)):
            # a sample is for texture: drawn on the model grid it lacks the finer scan's grain (tasks/noise_match.py)
            head = source.array > background_level(source.array)
            restored, noise_sd = with_matched_noise(restored, inside & head, source.array, head & ~inside,
                                                    np.random.default_rng(sampling.seed))
        output = source.array.copy()
        output[inside] = cast_like(restored, output.dtype)[inside]
    name = f"{source.name}-{'healthy' if mode == 'healthy' else 'lesion'}"
    info = {"job": "inpainting", "input": volume_path(source), "mask": volume_path(mask_volume), "mode": mode,
            "contrast": contrast, "mask_voxels": int(inside.sum()), **sampling.describe(model, SPEC.mean_of, [contrast]),
            "model_grid": list(pre.grid.model_shape), **({} if noise_sd is None else {"matched_noise_sd": noise_sd}),
            "seconds": timer.seconds}
    uncertainty = {}
    if spread is not None:            # outside the mask nothing was synthesised: no uncertainty there
        spread = pre.restore_spread(spread).array
        uncertainty["inpainted"] = source.with_array(np.where(inside, spread, 0.0).astype(np.float32),
                                                     name=f"{name}-uncertainty", meta={})
    return JobResult(outputs={"inpainted": source.with_array(output, name=name, meta={})}, uncertainty=uncertainty,
                     inputs={"input": source}, info=info, labels=mask_volume.with_array(inside.astype(np.int16)))


def on_model_grid(source, inside: np.ndarray, model, contrast: str):
    """(the preprocessed image, it and the mask as (1, 1, ...) tensors): what the module sees of a volume and mask."""
    spec = GridSpec(spacing=(model_spacing(model),) * 3, multiple=backbone_of(model).image_multiple)
    pre = preprocess(source, spec, contrast=contrast, out_range=(-1.0, 1.0))
    # linear interpolation then > 0: a model voxel touched by the mask at all is re-synthesised
    grid_mask = pre.grid.forward(inside.astype(np.float32), order=1, fill=0.0) > 1e-3
    return pre, torch.from_numpy(pre.array)[None, None], torch.from_numpy(grid_mask.astype(np.float32))[None, None]


@torch.no_grad()
def prior_fill(volume, mask: np.ndarray, model, contrast: str) -> np.ndarray:
    """The module's prior on its own, healthy mode, on the volume's grid: what the module corrects (benchmarks)."""
    pre, image, keep = on_model_grid(volume, mask, model, contrast)
    conditions = SPEC.inputs(image=image, mask=keep, insert=False)["conditions"]
    registration = case_registration(model, volume, image, keep, contrast)
    filled = model.prior(conditions, None, backbone_of(model).class_labels(contrast),
                         **prior_options(registration))[0, 0].numpy()
    detail = atlas_detail(model, pre, volume, image, keep, mask, contrast, registration)
    restored = restored_and_met(pre, filled, volume, mask, model_spacing(model), detail=detail)
    return np.where(mask, cast_like(restored, volume.array.dtype), volume.array)
