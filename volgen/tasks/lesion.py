"""Lesion insertion: a tumour given by its BraTS label map (1 necrotic core, 2 oedema, 3 enhancing tumour) drawn into
every contrast of a healthy case in one sampling call.

The contrasts are one group of the sampler's batch (`tasks.generate`): each item is one contrast, conditioned on
that contrast's healthy image and the same labels, so the oedema, the enhancing rim and the core sit where the labels
put them in every contrast. Sampling runs on the labels' box on the model grid (plus a margin of context): the
module is local, and a tumour's box is a fraction of the head. A sample gets the scan's noise grain inside the
region it changes (volgen/tasks/noise_match.py: a 2 mm sample is smoother than the scan). Every voxel farther than one
model voxel (2 mm) from the labels (and outside the pushed tissue) is copied from the input bit for bit; the labels
are written as the new case's seg (on top of the case's own labels, if it has a tumour already).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

from volgen.error_model import uncertainty_map
from volgen.errors import InputError
from volgen.io.contrasts import Case, find_case
from volgen.io.preprocess import GridSpec, background_level, cast_like, preprocess
from volgen.io.resample import grid_difference, same_grid
from volgen.modules.label_prior import LabelTablePrior
from volgen.ops import compartments, label_zones
from volgen.tasks.job import JobResult, Sampling, Timer, as_volume, model_spacing, volume_path
from volgen.tasks.mass_effect import push_aside
from volgen.tasks.models import backbone_of
from volgen.tasks.noise_match import with_matched_noise
from volgen.tasks.seam import restored_and_met
from volgen.tasks.synthesis import finer_than_model, read_case
from volgen.taskspec import TASKS

SPEC = TASKS["lesion"]              # its conditions and projection (volgen/taskspec.py)
CONTEXT = 8                         # model voxels of tissue around the labels' region that the module sees
LABELS = (0, 1, 2, 3)


def read_labels(labels, reference, allow_empty: bool = False) -> tuple:
    """(the label Volume, its labels as int16) on the reference's grid; anything but BraTS labels 0-3, or no
    tumour at all (unless `allow_empty`), is refused."""
    volume = as_volume(labels, allow_constant=True, what="labels")
    where = volume_path(volume)
    if not same_grid(volume.shape, volume.affine, reference.shape, reference.affine):
        raise InputError(where, "label grid differs from the case's: " + grid_difference(
            volume.shape, volume.affine, reference.shape, reference.affine))
    values = np.unique(volume.array)
    if not np.all(np.isin(values, LABELS)):
        odd = ", ".join(f"{v:g}" for v in values[~np.isin(values, LABELS)][:5])
        raise InputError(where, f"not a BraTS label map: values {odd} (expected 0 background, 1 necrotic core, "
                                f"2 oedema, 3 enhancing tumour)")
    if not allow_empty and not np.any(volume.array > 0):
        raise InputError(where, "label map is empty: no tumour to insert")
    return volume, volume.array.astype(np.int16)


def read_case_and_labels(case) -> tuple[str, dict, np.ndarray | None]:
    """(name, {contrast: Volume}, the case's own labels on its grid or None) of a folder, Case or {contrast or
    "seg": path or Volume}: a case may have a tumour already, which new labels must keep clear of or sit beside."""
    if isinstance(case, (str, Path)):
        case = find_case(case)
    name, volumes = read_case(case)
    own = case.paths.get("seg") if isinstance(case, Case) else case.get("seg")
    reference = next(iter(volumes.values()))
    return name, volumes, read_labels(own, reference, allow_empty=True)[1] if own is not None else None


def changed_region(labels: np.ndarray, affine, border_mm: float) -> np.ndarray:
    """The source-grid voxels the insertion writes: the labels and every voxel within `border_mm` of them (one model
    voxel: the module re-synthesises the labels and a one-voxel border on its grid)."""
    spacing = np.linalg.norm(np.asarray(affine)[:3, :3], axis=0)
    return ndimage.distance_transform_edt(labels == 0, sampling=spacing) <= border_mm + 1e-6


def crop_window(region: np.ndarray, multiple: int) -> tuple[slice, ...]:
    """The box of `region` plus CONTEXT voxels, each side grown to a multiple of `multiple` (at least 2 of them)
    and kept inside the grid (whose sides are multiples already)."""
    window = []
    for axis, size in enumerate(region.shape):
        hit = np.flatnonzero(region.any(axis=tuple(a for a in range(3) if a != axis)))
        lo, hi = max(int(hit[0]) - CONTEXT, 0), min(int(hit[-1]) + 1 + CONTEXT, size)
        length = min(max(-(-(hi - lo) // multiple) * multiple, 2 * multiple), size)
        start = min(max(lo - (length - (hi - lo)) // 2, 0), size - length)
        window.append(slice(start, start + length))
    return tuple(window)


def foreground(volumes: dict) -> np.ndarray:
    """The brain of a skull-stripped case: voxels above the background in any contrast, holes filled."""
    return ndimage.binary_fill_holes(np.any([v.array > background_level(v.array) for v in volumes.values()], axis=0))


def pushed_case(volumes: dict, own_labels, labels: np.ndarray, brain: np.ndarray | None, push_mm: float,
                where: str | None = None) -> tuple[dict, object, np.ndarray]:
    """(the case's Volumes and own labels with the tissue of `brain` pushed `push_mm` aside by the tumour of
    `labels`, the voxels that moved); nothing moves for push_mm 0. A refusal names `where` (the labels' file)."""
    reference = next(iter(volumes.values()))
    if push_mm <= 0:
        return volumes, own_labels, np.zeros(labels.shape, bool)
    arrays = {c: v.array for c, v in volumes.items()}
    if own_labels is not None:
        arrays["seg"] = own_labels
    try:
        pushed, moved = push_aside(arrays, labels, brain, reference.affine, push_mm, nearest=("seg",))
    except InputError as error:
        raise InputError(where, error.problem) from None
    return ({c: v.with_array(pushed[c]) for c, v in volumes.items()},
            pushed.get("seg") if own_labels is not None else None, moved)


def insert_lesion(case, labels, *, sampling: Sampling | None = None, mass_effect_mm: float = 0.0,
                  **settings) -> JobResult:
    """Every contrast of `case` (folder, Case or {contrast: path or Volume}) with the tumour of `labels` (path or
    Volume on the same grid) inserted, the tissue around it pushed `mass_effect_mm` aside first (0: none);
    outputs {contrast: Volume, "seg": the labels}."""
    sampling = sampling or Sampling(**settings)
    timer = Timer()
    with timer("read"):
        name, originals, own_labels = read_case_and_labels(case)
        (reference_contrast, reference), *_ = originals.items()
        label_volume, label_array = read_labels(labels, reference)
    with timer("mass effect"):
        # the brain: where the push fades out, and where a sample's noise level is measured
        brain = foreground(originals) if mass_effect_mm > 0 or sampling.estimate == "sample" else None
        volumes, own_labels, moved = pushed_case(originals, own_labels, label_array, brain, mass_effect_mm,
                                                 volume_path(label_volume))
    with timer("load model"):
        model = sampling.load("lesion")
    known = tuple(backbone_of(model).config.contrasts)
    unknown = [c for c in volumes if c not in known]
    if unknown:
        raise InputError(name, f"the model cannot draw a tumour into {', '.join(unknown)} (it knows {', '.join(known)})")
    contrasts = list(volumes)
    with timer("preprocess"):
        backbone = backbone_of(model)
        spec = GridSpec(spacing=(model_spacing(model),) * 3, multiple=backbone.image_multiple)
        first = preprocess(reference, spec, contrast=reference_contrast, out_range=(-1.0, 1.0))
        prepared = {c: first if c == reference_contrast else
                    preprocess(v, spec, grid=first.grid, contrast=c, out_range=(-1.0, 1.0)) for c, v in volumes.items()}
        seg = torch.from_numpy(first.grid.forward(label_array, order=0, fill=0).astype(np.int64))[None, None]
        _, region = label_zones(compartments(seg))
        region = region[0, 0].numpy()
        if not region.any():
            raise InputError(volume_path(label_volume), "the tumour lies outside the head's model grid")
        window = crop_window(region, backbone.image_multiple)
        healthy = torch.stack([torch.from_numpy(prepared[c].array[window].copy()) for c in contrasts])[:, None]
    device, _ = sampling.device_and_steps(model)
    # a sample draws its tumour's levels too (the mean keeps the average ones): made cases then vary as real ones do
    level_noise = model.prior.level_noise(sampling.sample_count(model), len(contrasts), sampling.seed) \
        if sampling.estimate == "sample" and isinstance(getattr(model, "prior", None), LabelTablePrior) else None
    with timer("sample"):
        estimate = sampling.estimate_of(model, healthy.shape[2:], contrast=contrasts,
                                        **SPEC.inputs(healthy=healthy, seg=seg[(slice(None), slice(None), *window)],
                                                      device=device, level_noise=level_noise))
    with timer("restore"):
        inside = changed_region(label_array, reference.affine, model_spacing(model))
        written = inside | moved
        border = inside & (label_array == 0) if finer_than_model(reference, model_spacing(model)) else None
        outputs, uncertainty, noise_sd = {}, {}, {}
        for g, contrast in enumerate(contrasts):
            model_array = prepared[contrast].array.copy()
            model_array[window] = estimate.image[g, 0].float().cpu().numpy()
            source = volumes[contrast]
            output = originals[contrast].array.copy()
            output[moved] = source.array[moved]
            # the sample meets the known voxels round the region (tasks/seam.py); on a finer grid the labels' healthy
            # border gets back the source's detail too, and with it the source's noise
            restored = restored_and_met(prepared[contrast], model_array, source, inside, model_spacing(model),
                                        healthy_border=border)
            if sampling.estimate == "sample":        # a sample gets the scan's grain (volgen/tasks/noise_match.py)
                drawn = inside & brain if border is None else inside & brain & ~border
                restored, noise_sd[contrast] = with_matched_noise(restored, drawn, source.array,
                                                                  brain & ~written,
                                                                  np.random.default_rng([sampling.seed, g]))
            output[inside] = cast_like(restored, output.dtype)[inside]
            outputs[contrast] = originals[contrast].with_array(output, name=f"{name}-{contrast}", meta={})
            if estimate.spread is not None:
                spread = np.zeros(region.shape, np.float32)
                spread[window] = uncertainty_map(model, contrast, estimate.image[g, 0].float().cpu().numpy(),
                                                 estimate.spread[g, 0].float().cpu().numpy()) \
                    if sampling.estimate == "mean" else estimate.spread[g, 0].float().cpu().numpy()
                spread = prepared[contrast].restore_spread(spread).array
                uncertainty[contrast] = originals[contrast].with_array(np.where(inside, spread, 0.0).astype(np.float32),
                                                          name=f"{name}-{contrast}-uncertainty", meta={})
        # a case with a tumour of its own keeps its labels where the new tumour has none
        seg_out = label_array if own_labels is None else np.where(label_array > 0, label_array, own_labels)
        outputs["seg"] = label_volume.with_array(seg_out.astype(np.int16), name=f"{name}-seg", meta={})
    counts = {part: int(np.count_nonzero(label_array == v)) for part, v in
              (("necrotic", 1), ("oedema", 2), ("enhancing", 3))}
    info = {"job": "lesion insertion", "case": name, "labels": volume_path(label_volume), "contrasts": contrasts,
            "label_voxels": counts, "changed_voxels": int(written.sum()), "mass_effect_mm": float(mass_effect_mm),
            **sampling.describe(model, SPEC.mean_of, contrasts), "model_grid": list(first.grid.model_shape),
            "sampled_box": [[s.start, s.stop] for s in window],
            **({"matched_noise_sd": noise_sd} if noise_sd else {}), "seconds": timer.seconds}
    return JobResult(outputs=outputs, uncertainty=uncertainty, inputs=originals, info=info,
                     labels=label_volume.with_array(label_array))
