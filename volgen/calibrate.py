"""Fit a module's error model on cases it never trained on (`volgen calibrate`): its uncertainty maps then hold the
expected absolute error of the posterior mean (volgen/error_model.py), not the plain spread over the samples.

For every target contrast, each calibration case's estimate is made on the model grid exactly as the jobs make it
(the task's spec gives the conditions, projection and estimate rule; the jobs' default timesteps and samples on this
device), from the case's own contrasts (synthesis: the other three, their bias fields divided out; super-resolution:
4x thick slices along the last axis) or its healthy twin (inpainting: the tumour filled, so only phantoms serve). The
fit maps the mean's and the spread's features to log |error| inside the brain (the mask for inpainting); with `write`
it is stored in the model folder's config.json metadata ("error_model"; the weights and their sha256 are untouched).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr

from volgen import hub
from volgen.backbones import Backbone
from volgen.error_model import METADATA_KEY, ErrorModel, fit_error
from volgen.errors import InputError
from volgen.io.bias_field import without_bias_on_model_grid
from volgen.io.contrasts import MRI_CONTRASTS
from volgen.ops import dilate, thick_slices
from volgen.tasks import generate
from volgen.tasks.job import model_spacing
from volgen.tasks.models import default_samples, default_timesteps
from volgen.taskspec import TASKS
from volgen.training.config import DataConfig
from volgen.training.data import load_cases

CONTRASTS = list(MRI_CONTRASTS)
DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
SR_FACTOR, SR_AXIS = 4, 2          # 4x through-plane, the last axis


def steps_for(model, steps):
    """The asked steps, else the jobs' default timesteps for this model on this device."""
    backbone = model if isinstance(model, Backbone) else model.backbone
    return steps or default_timesteps(backbone.denoiser.schedule, DEVICE, finished=False)


def brain_of(case) -> np.ndarray:
    return case.brain.numpy() if case.brain is not None else case.images[0].numpy() > -0.99


def conditions_of(model, case, target: str) -> dict[str, torch.Tensor]:
    """The other three contrasts as the synthesis job hands them to `model`: their bias fields divided out."""
    given = {c: case.images[i].numpy() for i, c in enumerate(CONTRASTS) if c != target}
    unbiased = without_bias_on_model_grid(given, (model_spacing(model),) * 3)
    return {c: torch.from_numpy(a) for c, a in unbiased.items()}


def synthesis_inputs(model, case, target: str) -> dict:
    """The synthesis spec's inputs for `target` from the case's other three contrasts, as the job makes them."""
    return TASKS["synthesis"].inputs(volumes=conditions_of(model, case, target),
                                     contrasts=tuple(getattr(model, "conditions", CONTRASTS)),
                                     shape=tuple(case.images.shape[1:]))


def synthesis(model, case, target: str, *, steps=None, samples: int, seed: int, inputs: dict | None = None):
    """`target` from the other three contrasts (`inputs`: `synthesis_inputs`, when the caller has them already)."""
    inputs = inputs or synthesis_inputs(model, case, target)
    est = generate(model, (1, *case.images.shape[1:]), contrast=target, steps=steps_for(model, steps),
                   samples=samples, seed=seed, **inputs)
    return est, case.images[CONTRASTS.index(target)].numpy(), brain_of(case)


def thick(case, contrast: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(the volume (1, 1, D, H, W), its thick slices): 4 slices averaged along the last axis."""
    volume = case.images[CONTRASTS.index(contrast)][None, None]
    return volume, thick_slices(volume, SR_FACTOR, 2 + SR_AXIS)


def super_resolution(model, case, contrast: str, *, steps=None, samples: int, seed: int):
    """4x through-plane super-resolution of `contrast` from its thick slices."""
    volume, observed = thick(case, contrast)
    inputs = TASKS["super_resolution"].inputs(lowres=observed.repeat_interleave(SR_FACTOR, dim=2 + SR_AXIS),
                                              factor=SR_FACTOR, dim=2 + SR_AXIS, device=DEVICE)
    est = generate(model, (1, *volume.shape[2:]), contrast=contrast, steps=steps_for(model, steps),
                   samples=samples, seed=seed, **inputs)
    return est, volume[0, 0].numpy(), brain_of(case)


def tumour_mask(case) -> torch.Tensor:
    """(1, 1, D, H, W): the tumour grown by one voxel, the region the inpainting rows fill."""
    return dilate((case.seg > 0).float()[None, None], 1)


def pseudo_healthy(model, case, contrast: str, *, steps=None, samples: int, seed: int, with_module: bool = True):
    """Healthy tissue filled into the tumour mask, scored against the healthy twin; `with_module=False` samples the
    bare backbone of `model` (a Backbone) with the same known-voxel replacement."""
    c = CONTRASTS.index(contrast)
    image, mask = case.images[c][None, None], tumour_mask(case)
    inputs = TASKS["inpainting"].inputs(image=image, mask=mask, insert=False, device=DEVICE)
    if not with_module:
        inputs["conditions"] = None
    est = generate(model, (1, *image.shape[2:]), contrast=contrast, steps=steps_for(model, steps),
                   samples=samples, seed=seed, **inputs)
    return est, case.healthy[c].numpy(), mask[0, 0].numpy() > 0


JOBS = {"synthesis": synthesis, "super_resolution": super_resolution, "inpainting": pseudo_healthy}


def estimates(model, task: str, cases, contrast: str, samples: int) -> list:
    """(mean, spread, truth, region) of each case, arrays in the model's range."""
    out = []
    for index, case in enumerate(cases):
        est, truth, region = JOBS[task](model, case, contrast, samples=samples, seed=index)
        out.append((est.image[0, 0].cpu().numpy(), est.spread[0, 0].cpu().numpy(), truth, region))
    return out


def spearman_of(maps, examples) -> float:
    """The mean over cases of Spearman(map, |mean - truth|) inside each case's region."""
    return float(np.mean([spearmanr(m[r], np.abs(mean - truth)[r]).correlation
                          for m, (mean, _, truth, r) in zip(maps, examples)]))


def calibrate(model_name, cases_root, *, task: str | None = None, contrasts=MRI_CONTRASTS, max_cases: int = 12,
              write: bool = False, report=print) -> ErrorModel:
    """The error model of `model_name` (a name or folder) fitted on the cases under `cases_root`; `report` gets one
    line per contrast (the spread's and the fitted map's Spearman with |error| on those cases)."""
    model = hub.from_pretrained(model_name, device=DEVICE)
    task = task or (getattr(model, "hub_metadata", None) or {}).get("task")
    if task not in JOBS:
        raise InputError(model_name, f"cannot tell which task this module was trained for; pass --task "
                                     f"({', '.join(JOBS)})")
    with torch.no_grad():
        cases = load_cases(DataConfig(root=str(cases_root), contrasts=list(MRI_CONTRASTS), max_cases=max_cases),
                           multiple=16, with_healthy=TASKS[task].needs_healthy)
        samples = default_samples(DEVICE)
        fits = {}
        for contrast in contrasts:
            examples = estimates(model, task, cases, contrast, samples)
            fits[contrast] = fit = fit_error(examples)
            calibrated = [fit.expected_error(mean, spread) for mean, spread, _, _ in examples]
            report(f"{contrast}: Spearman with |error| on {len(cases)} calibration cases: spread "
                   f"{spearman_of([s for _, s, _, _ in examples], examples):.3f}, calibrated "
                   f"{spearman_of(calibrated, examples):.3f}")
    error_model = ErrorModel(fits, {"cases": f"{cases_root} ({len(cases)} cases)", "job": task, "samples": samples,
                                    "timesteps": [float(t) for t in steps_for(model, None)],
                                    "device": DEVICE.type})
    if write:
        store_error_model(model_name, error_model, report)
    return error_model


def store_error_model(model_name, error_model: ErrorModel, report=print) -> Path:
    """Write `error_model` into the model folder's config.json metadata ("error_model"; the weights and their
    sha256 are untouched)."""
    folder, _ = hub.resolve(model_name)
    path = Path(folder) / hub.CONFIG_FILE
    config = json.loads(path.read_text())
    config.setdefault("metadata", {})[METADATA_KEY] = error_model.to_dict()
    path.write_text(json.dumps(config, indent=2) + "\n")
    report(f"wrote the error model into {path}")
    return path
