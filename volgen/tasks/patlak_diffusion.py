"""Patlak Ki and V under a diffusion prior: a backbone trained on static PET images samples the Ki and the V image
(normalised like images, as one coupled pair per sample), and at every step the Patlak proximal step
(`volgen.sampling.patlak`) pulls both toward the measured frames. The estimate is the mean of the K finished
samples (each carries the data through its trajectory; the first-step prediction would be the plain LS fit), its
uncertainty the expected absolute error where the prior is calibrated (volgen/tasks/patlak_error.py), else the
samples' spread.

Everything the data say is carried by the least-squares fit's statistics on the PET grid (`kinetics.PatlakStatistics`:
c = A^T W y, the residual variance, smoothed inside the mask here since 6 degrees of freedom per voxel are too few,
and the Gram matrix, shared or per voxel when voxels have their own frame times); they are resampled onto the model's
grid, sampled there, and the maps come back.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import torch

from volgen.io.preprocess import GridMap, GridSpec
from volgen.io.volume import Volume
from volgen.kinetics import PatlakStatistics
from volgen.ops import smooth_alike, smooth_inside
from volgen.sampling.patlak import PatlakProjection
from volgen.tasks.job import Sampling, model_spacing
from volgen.tasks.models import backbone_of
from volgen.tasks.patlak_error import expected_error, patlak_error_model

# How much the prior's x0 is doubted: a scale on its error at each noise level (large: follow the data, the LS fit;
# small: follow the prior). Tuned on training phantoms at 1/10 dose with the floor below in place (bench_patlak.py
# --tune-doubt, 8 cases): brain Ki NRMSE 0.100 at 6 (the value tuned before the floor existed), 0.092 at 1.5, 0.084
# at 0.75, 0.077 at 0.2 and flat below (0.077 at 0.1, 0.077 at 0): once the floor holds the last steps to the data,
# the early steps gain from trusting the prior. The largest doubt on the flat part.
PRIOR_DOUBT = 0.2
# The prior's own x0 error at the lowest noise, in model units (measured on true Ki and V maps of training phantoms
# noised to t = 0): without this floor the doubt falls to zero at the end and the prior's own error, a bias on hot
# tumours, becomes the estimate.
PRIOR_ERROR_FLOOR = 0.1
# The doubt and the floor were tuned with 5 DDIM steps; without --steps the job takes them on every device.
PATLAK_STEPS = 5
RESIDUAL_FWHM_MM = 6.0
# The least-squares fit is unbiased and the prior's estimate is not (it is pulled toward the images it was trained
# on): the estimate's residual to the fit, smoothed inside the mask, is added back, so regional means follow the
# data while the estimate keeps its detail. The smoothing averages each voxel only with voxels whose estimate is
# alike (sd DEBIAS_SIMILARITY x the map's scale, volgen.ops.smooth_alike): a tumour is corrected by its own residual,
# not by the surrounding brain's, which a plain 16 mm smoothing mixed in (tumour Ki still 7% low at 1/10 dose).
# Chosen on 6 training phantoms (bench_patlak.py --tune-debias at 1/4, 1/10, 1/20 dose; FWHM 8, 12, 16 mm x
# similarity 0, 0.05, 0.1, 0.2): the lowest 1/10-dose Ki NRMSE of the 5 settings whose GM, WM and tumour biases meet
# issue 42's targets. At 1/10 dose tumour Ki bias -6.8% (plain 16 mm) -> -2.8%, GM / WM -1.4 / -1.2% -> -1.0 / -1.9%
# (least squares itself: -1.0 / -1.8%), brain Ki NRMSE 0.076 -> 0.082. V keeps the plain smoothing: among alike voxels
# its NRMSE rose (0.176 -> 0.193 at 1/10 dose) for regional means that no target reads, at 2.8 s more per map.
DEBIAS_FWHM_MM = 16.0
DEBIAS_SIMILARITY = 0.05
# Each map's scale is the 99.5th percentile of the least-squares map smoothed by this much first: the raw map's
# percentile rides on its noise (on training phantoms 1.03x / 1.07x / 1.16x the truth's at 1/4, 1/10, 1/20 dose), so
# the prior saw a dimmer map the lower the dose; smoothed it is 0.93x +-0.03 at every dose (SCALE_SMOOTHING_RATIO
# divides that out). Chosen on 6 training phantoms: brain Ki NRMSE 0.073 / 0.104 / 0.137 -> 0.070 / 0.099 / 0.130,
# tumour Ki bias -2.4 / -4.8 / -6.7% -> -2.4 / -5.0 / -7.5%, GM and WM within 0.2 points.
SCALE_FWHM_MM = 6.0
SCALE_SMOOTHING_RATIO = 0.93


def patlak_sampling(sampling: Sampling) -> Sampling:
    """The sampling settings with the job's own default steps (what the doubt was tuned at) when none are asked."""
    return sampling if sampling.steps else dataclasses.replace(sampling, steps=PATLAK_STEPS)


def diffusion_patlak(fit: PatlakStatistics, inside: np.ndarray, pet: Volume, sampling: Sampling,
                     doubt: float | None = None, debias_fwhm: float | None = None,
                     debias_similarity: float | None = None) -> dict:
    """{"Ki", "V", "Ki prior", "V prior", "Ki spread", "V spread", "Ki SE", "V SE", "Ki error", "V error",
    "scales"} on the PET grid (zero outside `inside`), from the least-squares fit's statistics on that grid: the
    estimates, the same before their debiasing, the samples' spread (two or more samples), the least-squares
    standard errors (smoothed residual variance), the expected absolute errors (where the prior has a Patlak
    calibration, volgen/tasks/patlak_error.py) and each map's scale."""
    doubt = PRIOR_DOUBT if doubt is None else doubt
    debias_fwhm = DEBIAS_FWHM_MM if debias_fwhm is None else debias_fwhm
    debias_similarity = DEBIAS_SIMILARITY if debias_similarity is None else debias_similarity   # Ki's; V: plain
    sampling = patlak_sampling(sampling)
    model = sampling.load("patlak")
    backbone = backbone_of(model)
    contrasts = backbone.config.contrasts
    contrast = "pet" if "pet" in contrasts else (contrasts[0] if contrasts else None)
    s2 = smooth_inside(fit.residual_variance, inside, RESIDUAL_FWHM_MM, pet.spacing)
    spec = GridSpec(spacing=(model_spacing(model),) * 3, multiple=backbone.image_multiple)
    grid = GridMap.plan(inside.shape, pet.affine, spec, foreground=inside)
    device, _ = sampling.device_and_steps(model)

    def to_model(array, fill=0.0):
        return torch.from_numpy(grid.forward(np.asarray(array, dtype=np.float32), order=1, fill=fill))[None, None]

    region = to_model(inside.astype(np.float32)) > 0.5
    scales = map_scales(fit, inside, pet.spacing)
    if fit.gram.ndim == 2:
        gram = torch.as_tensor(fit.gram, dtype=torch.float32)
    else:                                   # each voxel's own (beds): outside the region anything finite will do
        gram = torch.stack([torch.stack([to_model(np.where(inside, fit.gram[i, j], float(i == j))) for j in (0, 1)])
                            for i in (0, 1)])
    projection = PatlakProjection(
        torch.stack([to_model(fit.c[0]), to_model(fit.c[1])]).to(device), to_model(s2, fill=1.0).to(device),
        gram.to(device), scales, region[0].to(device),
        backbone.denoiser.schedule, doubt, PRIOR_ERROR_FLOOR)
    estimate = sampling.estimate_of(model, tuple(region.shape[2:]), contrast=contrast, group=2, mean_of="final",
                                    projection=projection)
    with np.errstate(divide="ignore", invalid="ignore"):   # voxels outside the mask may have no fit
        standard_errors = dataclasses.replace(fit, residual_variance=s2).standard_errors()
    calibration = patlak_error_model(model)
    out = {"scales": dict(zip(("Ki", "V"), scales))}
    for g, name in enumerate(("Ki", "V")):
        mean = (estimate.image[g, 0].float().cpu().numpy() + 1) / 2 * scales[g]
        out[name] = np.where(inside, grid.inverse(mean, order=1, fill=0.0), 0.0)
        out[f"{name} prior"] = out[name]
        out[name] = out[name] + debiased(out[name], (fit.ki, fit.v)[g], inside, debias_fwhm, pet.spacing,
                                           debias_similarity if name == "Ki" else 0.0)
        if estimate.spread is not None:
            spread = estimate.spread[g, 0].float().cpu().numpy() / 2 * scales[g]
            out[f"{name} spread"] = np.where(inside, grid.inverse(spread, order=1, fill=0.0), 0.0)
        out[f"{name} SE"] = np.where(inside, np.nan_to_num(standard_errors[g]), 0.0)
        fitted = calibration.fits.get(name) if calibration is not None else None
        if fitted is not None and f"{name} spread" in out:
            out[f"{name} error"] = expected_error(fitted, out[name], out[f"{name} spread"], out[f"{name} SE"],
                                                  scales[g], inside)
    return out


def map_scales(fit: PatlakStatistics, inside: np.ndarray, spacing, fwhm_mm: float | None = None) -> tuple:
    """Each map's intensity scale: x = 2 * map / scale - 1 puts the map's range where the prior's images live. The
    99.5th percentile in the mask of the least-squares map, smoothed by `fwhm_mm` first (none: raw)."""
    fwhm_mm = SCALE_FWHM_MM if fwhm_mm is None else fwhm_mm
    out = []
    for m in (fit.ki, fit.v):
        m = np.where(inside & np.isfinite(m), m, 0.0)
        if fwhm_mm > 0:
            m = smooth_inside(m, inside, fwhm_mm, spacing) / SCALE_SMOOTHING_RATIO
        out.append(float(max(np.percentile(m[inside], 99.5), 1e-12)))
    return tuple(out)


def debiased(estimate: np.ndarray, least_squares: np.ndarray, inside: np.ndarray, fwhm_mm: float, spacing,
             similarity: float = DEBIAS_SIMILARITY):
    """What to add to `estimate` so that its local means over alike voxels are the least-squares fit's: their
    difference smoothed by `fwhm_mm` inside the mask among voxels whose estimate is within about `similarity` x the
    estimate's 99.5th percentile (0: all voxels alike); zero for no smoothing; voxels without a fit count as no
    difference."""
    if fwhm_mm <= 0:
        return np.zeros_like(estimate)
    residual = np.where(inside & np.isfinite(least_squares), least_squares - estimate, 0.0)
    width = similarity * float(np.percentile(estimate[inside], 99.5))
    return smooth_alike(residual, estimate, inside, fwhm_mm, spacing, width)
