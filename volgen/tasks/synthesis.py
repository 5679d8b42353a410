"""Missing-contrast MRI synthesis: any missing contrast from whichever others are there, with one module.

synthesize(case, cond=..., target=...) reads the case (a BraTS-layout folder, a {contrast: path or Volume} dict, or
a `Case`), puts the conditions on the model grid, samples each target with the synthesis module, and returns them
on the source grid (the first condition's affine and header). Synthesised volumes are float32 in [0, 1] (the
model's intensity scale: 0 outside the head, the head's median at the contrast's MEDIAN_LEVEL); segmentation
pipelines normalise per contrast anyway.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from volgen.errors import InputError
from volgen.io.bias_field import without_bias
from volgen.io.contrasts import MRI_CONTRASTS, Case, canonical_contrast, case_from_paths, find_case
from volgen.io.preprocess import GridSpec, background_level, preprocess
from volgen.io.resample import align_grids
from volgen.io.volume import Volume
from volgen.tasks.detail import at_median_level, transfer_detail
from volgen.tasks.job import JobResult, Sampling, Timer, as_volume, model_spacing, to_unit
from volgen.tasks.models import backbone_of
from volgen.tasks.noise_match import relative_noise, with_noise_up_to
from volgen.taskspec import TASKS

SPEC = TASKS["synthesis"]           # its conditions (volgen/taskspec.py)


def default_conditions(have, target=None) -> list[str]:
    """The conditions when --cond is not given: every MRI contrast the case has, except the --target ones (a complete
    case asked for its t1c conditions on the other three)."""
    targets = {canonical_contrast(t) for t in ([target] if isinstance(target, str) else target or [])}
    return [c for c in MRI_CONTRASTS if c in have and c not in targets]


def read_case(case, cond=None, target=None) -> tuple[str, dict[str, Volume]]:
    """(case name, {contrast: Volume}) for the conditions: `cond` (names or aliases) or `default_conditions`. A
    named condition the case lacks is an error naming the case."""
    name, items = _case_items(case)
    wanted = [canonical_contrast(c) for c in cond] if cond else default_conditions(items, target)
    for contrast in wanted:
        if contrast not in MRI_CONTRASTS:
            raise InputError(None, f"'{contrast}' cannot be a condition; use MRI contrasts ({', '.join(MRI_CONTRASTS)})")
        if contrast not in items:
            raise InputError(name, f"no {contrast} file in this case (it has: {', '.join(sorted(items)) or 'none'})")
    if not wanted:
        raise InputError(name, "no MRI contrast to condition on")
    volumes = {c: as_volume(items[c], what=c) for c in wanted}
    return name, align_grids(volumes, wanted[0])


def _case_items(case) -> tuple[str, dict]:
    if isinstance(case, (str, Path)):
        case = find_case(case)
    if isinstance(case, Case):
        return case.name, dict(case.paths)
    if isinstance(case, dict):
        items = {canonical_contrast(k): v for k, v in case.items()}
        paths = {k: v for k, v in items.items() if not isinstance(v, Volume)}
        name = case_from_paths(paths).name if paths else next(iter(items.values())).name or "case"
        return name, items
    raise TypeError(f"case: expected a folder, a Case or a dict of contrasts, got {type(case).__name__}")


def pick_targets(conditions, target=None, module_contrasts=MRI_CONTRASTS) -> list[str]:
    """The contrasts to synthesise: `target`, or every contrast the module knows that is not a condition."""
    if target:
        targets = [canonical_contrast(t) for t in ([target] if isinstance(target, str) else target)]
        clash = [t for t in targets if t in conditions]
        if clash:
            raise InputError(None, f"--target {', '.join(clash)} is also a condition; drop it from --cond")
    else:
        targets = [c for c in module_contrasts if c not in conditions]
        if not targets:
            raise InputError(None, "nothing to synthesise: every contrast is a condition; pass --target and leave "
                                   "it out of --cond")
    unknown = [t for t in targets if t not in module_contrasts]
    if unknown:
        raise InputError(None, f"the model cannot synthesise {', '.join(unknown)} (it knows "
                               f"{', '.join(module_contrasts)})")
    return targets


# A grid this much finer than the model's along every axis gets the detail transfer by default: measured at 1 mm
# (bench_quality.py --spacing 1); a thick-slice or 1.5 mm case keeps the model-grid estimate resampled.
FINER_GRID = 0.75


def finer_than_model(volume: Volume, model_spacing_mm: float) -> bool:
    return all(s <= FINER_GRID * model_spacing_mm for s in volume.spacing)


def with_scans_noise(image: np.ndarray, head: np.ndarray, relative_level: float, seed: int, index: int):
    """(a sample fitted to 1 mm conditions, with white noise up to `relative_level` (the conditions' noise relative to
    their signal, noise_match.relative_noise) times its head median, the noise's sd): the fit keeps the conditions'
    anatomy but smooths their noise away, and a sample is for users who want the acquired scan's look, e.g. a
    segmenter's training case (volgen/tasks/noise_match.py)."""
    level = relative_level * float(np.median(image[head]))
    noisy, sd = with_noise_up_to(image, head, level, 0.0, np.random.default_rng([seed, index]))
    return np.minimum(noisy, np.float32(1.0)), sd             # the [0, 1] every synthesised volume is on


def synthesize(case, *, cond=None, target=None, sampling: Sampling | None = None, detail: bool | None = None,
               bias_correction: bool = True, **settings) -> JobResult:
    """Synthesise the missing contrast(s) of `case`. `settings` are `Sampling` fields (model, steps, seed, ...).
    `detail` gives a case on a grid finer than the model's its conditions' detail (volgen/tasks/detail.py), its
    head's median at the contrast's level, instead of the model-grid estimate resampled; None (the default) does so
    on grids `finer_than_model` (a 1 mm case)."""
    sampling = sampling or Sampling(**settings)
    timer = Timer()
    with timer("read"):
        name, given = read_case(case, cond, target)
    with timer("bias field"):
        volumes = without_bias(given) if bias_correction else given
    with timer("load model"):
        model = sampling.load("synthesis")
    module_contrasts = tuple(getattr(model, "conditions", MRI_CONTRASTS))
    targets = pick_targets(list(volumes), target, module_contrasts)
    with timer("preprocess"):
        spec = GridSpec(spacing=(model_spacing(model),) * 3, multiple=backbone_of(model).image_multiple)
        (reference_contrast, reference), *_ = volumes.items()
        first = preprocess(reference, spec, contrast=reference_contrast, out_range=(-1.0, 1.0))
        prepared = {c: (first if v is reference else
                        preprocess(v, spec, grid=first.grid, contrast=c, out_range=(-1.0, 1.0)))
                    for c, v in volumes.items()}
        inputs = SPEC.inputs(volumes={c: torch.from_numpy(pre.array) for c, pre in prepared.items()},
                             contrasts=module_contrasts, shape=first.grid.model_shape)
        # the head: voxels above the background in any condition; the synthesised volume is 0 outside it
        head = np.any([v.array > background_level(v.array) for v in volumes.values()], axis=0)
    if detail is None:
        detail = finer_than_model(reference, spec.spacing[0])
    if detail:
        # the detail transfer fits the estimate to the conditions itself, at their resolution; fitted on the model
        # grid first, the 1 mm t2f came out blurrier (validation, session 37: gradient ratio 0.83 -> 0.77)
        inputs.pop("refine")
    # the conditions' noise relative to their signal, measured once for every target a sample gets it on
    scans_noise = relative_noise([v.array for v in volumes.values()], head) \
        if detail and sampling.estimate == "sample" else None
    outputs, uncertainty, noise_sd = {}, {}, {}
    for index, contrast in enumerate(targets):
        with timer(f"sample {contrast}"):
            array, spread = sampling.run(model, first.grid.model_shape, contrast=contrast, **inputs)
        with timer("restore"):
            if detail:
                fine = to_unit(transfer_detail(model, prepared, volumes, contrast, array, SPEC.inputs))
                fine = at_median_level(fine, head, contrast)
                if scans_noise is not None:
                    fine, noise_sd[contrast] = with_scans_noise(fine, head, scans_noise, sampling.seed, index)
                restored = reference.with_array(fine)
            else:
                restored = first.restore(to_unit(array), unscale=False, fill=0.0, dtype=np.float32)
            outputs[contrast] = restored.with_array(np.where(head, restored.array, 0.0).astype(np.float32),
                                                    name=f"{name}-{contrast}", meta={})
            if spread is not None:       # [-1, 1] -> [0, 1] halves a spread
                spread = first.restore(spread / 2, unscale=False, fill=0.0, dtype=np.float32).array
                uncertainty[contrast] = restored.with_array(np.where(head, spread, 0.0).astype(np.float32),
                                                            name=f"{name}-{contrast}-uncertainty", meta={})
    info = {"job": "synthesis", "case": name, "conditions": list(volumes), "targets": targets,
            **sampling.describe(model, contrasts=targets), "model_grid": list(first.grid.model_shape),
            "detail_transfer": bool(detail), "bias_correction": bool(bias_correction),
            **({"matched_noise_sd": noise_sd} if noise_sd else {}),
            "intensity": "float32 in [0, 1], 0 outside the head",
            "seconds": timer.seconds}
    return JobResult(outputs=outputs, uncertainty=uncertainty, inputs=given, info=info)
