"""Dynamic FDG PET of the phantom's anatomy, made so that it does not flatter a Patlak estimator.

- Kinetics: the irreversible two-tissue compartment model (K1, k2, k3, k4 = 0) with a blood volume vB,

      C_T(t) = (1 - vB) K1 [ k2/kappa (e^{-kappa t} * Cp)(t) + k3/kappa int_0^t Cp ] + vB Cp(t),  kappa = k2 + k3,

  whose late-time linearisation is the Patlak model with Ki = (1 - vB) K1 k3 / kappa (the true Ki map). The Patlak
  intercept V is not a constant of the tissue alone (it depends on how fast the input falls relative to kappa), so
  the true V map is the intercept of the noiseless, blur-free frames fitted after the default t*. Early frames do
  not follow Patlak, so t* matters. (`model="patlak"` gives exact Patlak frames from t = 0, for tests.)
- Heterogeneity: each rate constant is its tissue's value (jittered per case) times a smooth log-normal field, so
  tissue is not piecewise constant.
- The scanner: every frame is blurred by the point-spread function (Gaussian, `psf_fwhm_mm`), then gets noise with
  the variance of Poisson counts (activity x duration x sensitivity x voxel volume x dose x decay, divided back to
  decay-corrected activity: short and late frames are noisier) and the spatial correlation of a reconstruction
  (white noise smoothed by a Gaussian of `noise_fwhm_mm`, rescaled to keep each voxel's variance).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from volgen.kinetics import (FDG_60MIN, FrameSchedule, default_tstar, input_samples, patlak_frames,
                             patlak_regressors, patlak_statistics)
from volgen.ops import FWHM_PER_SIGMA
from volgen.phantom.pet_beds import bed_slices, bed_validity, multi_pass_schedule

F18_HALF_LIFE_MIN = 109.77

# FDG rate constants per tissue: (K1 mL/mL/min, k2 1/min, k3 1/min, vB mL/mL). Grey and white matter from the
# classic human FDG studies (Huang 1980, Phelps 1979: grey Ki ~ 0.033, white ~ 0.016 /min); tumour values make an
# enhancing rim hotter than grey matter, a cold necrotic core and a mildly reduced oedema.
TISSUE_RATES = {
    "csf": (0.0, 0.0, 0.0, 0.0),
    "gm": (0.102, 0.130, 0.062, 0.05),
    "wm": (0.054, 0.109, 0.045, 0.03),
    "necrotic": (0.020, 0.150, 0.010, 0.01),
    "oedema": (0.060, 0.150, 0.030, 0.03),
    "enhancing": (0.150, 0.200, 0.100, 0.06),
}
MODELS = ("2tcm", "patlak")
LESION_TISSUES = ("necrotic", "oedema", "enhancing")
# Spots of extreme uptake in healthy brain for the bench's bias check (`PetSpec.focal`): K1, and so Ki, times these
FOCAL_K1 = {"hot": 2.5, "cold": 0.3}
FOCAL_RADIUS_MM = 8.0


@dataclass(frozen=True)
class PetSpec:
    rates: dict = field(default_factory=lambda: dict(TISSUE_RATES))
    model: str = "2tcm"                  # 2tcm (realistic) | patlak (exact Patlak frames from t = 0)
    schedule: tuple = FDG_60MIN          # ((count, seconds), ...)
    dose: float | None = 1.0             # relative injected dose; None gives noiseless frames
    sensitivity: float = 8.0             # counts / (s x activity unit x mL) at dose 1 (grey-matter LS Ki ~6% noise)
    input_step_s: float = 1.0            # sampling of the plasma input function written to TSV
    jitter: float = 0.1                  # relative per-case jitter of each tissue's rate constants (0: off)
    heterogeneity: float = 0.15          # log-normal sigma of the within-tissue variation of each rate (0: off)
    heterogeneity_mm: float = 8.0        # its correlation length (Gaussian sigma of the smoothing, mm)
    psf_fwhm_mm: float = 5.0             # scanner resolution (0: none)
    noise_fwhm_mm: float = 4.0           # spatial correlation of the noise (0: independent voxels)
    beds: int = 1                        # > 1: bed positions scanned in passes (`pet_beds`) instead of `schedule`
    focal: bool = False                  # add a hot and a cold spot in healthy brain (FOCAL_K1)
    lesion_k1_scale: float = 1.0         # the tumour's K1, so its Ki, times this: a second scan after a response
    lesion_k1_range: tuple | None = None  # (low, high): each case's tumour K1 scale drawn log-uniformly in it (a
                                          # prior's training set with a wide range of tumour uptake)


@dataclass
class PetStudy:
    frames: np.ndarray       # (n_frames, *shape), activity per mL, decay corrected
    ki: np.ndarray           # 1/min
    v: np.ndarray            # mL/mL
    schedule: FrameSchedule
    input_time: np.ndarray   # min
    input_activity: np.ndarray
    valid: np.ndarray | None = None           # beds: (n_frames, *shape), which frames each voxel has (else NaN)
    bed_of_frame: np.ndarray | None = None    # beds: the bed of each frame
    bed_slices: list | None = None            # beds: [(first, end) axial slice of each bed]
    regions: dict | None = None               # focal: {"hot", "cold"} masks of the spots


def _decay_mean(schedule: FrameSchedule) -> np.ndarray:
    lam = np.log(2.0) / F18_HALF_LIFE_MIN
    return (np.exp(-lam * schedule.start) - np.exp(-lam * schedule.end)) / (lam * schedule.duration)


def exponential_regressors(t, cp, frames: FrameSchedule, kappas) -> np.ndarray:
    """(len(kappas), n_frames): frame means of (e^{-kappa t} * Cp)(t) for Cp linear between the samples (t, cp):
    y(t + h) = e^{-kappa h} y(t) + the step's exact integral, then the trapezoid of y over each frame."""
    t = np.asarray(t, dtype=np.float64)
    cp = np.asarray(cp, dtype=np.float64)
    grid = np.union1d(t, np.concatenate([frames.start, frames.end]))
    c = np.interp(grid, t, cp)
    h = np.diff(grid)[None, :]
    kappa = np.maximum(np.asarray(kappas, dtype=np.float64), 1e-12)[:, None]
    x = kappa * h
    decay = np.exp(-x)
    # int_0^h e^{-kappa (h - s)} (c0 (1 - s/h) + c1 s/h) ds = w0 c0 + w1 c1 (series where kappa h is tiny)
    w1 = np.where(x > 1e-6, (x - 1.0 + decay) / (kappa * np.maximum(x, 1e-300)), h * (0.5 - x / 6.0))
    w0 = np.where(x > 1e-6, (1.0 - decay) / kappa, h * (1.0 - x / 2.0)) - w1
    drive = w0 * c[None, :-1] + w1 * c[None, 1:]
    y = np.zeros((kappa.shape[0], len(grid)))
    for i in range(h.shape[1]):
        y[:, i + 1] = decay[:, i] * y[:, i] + drive[:, i]
    cum = np.concatenate([np.zeros((len(y), 1)), np.cumsum(h * (y[:, :-1] + y[:, 1:]) / 2.0, axis=1)], axis=1)
    i0, i1 = np.searchsorted(grid, frames.start), np.searchsorted(grid, frames.end)
    return (cum[:, i1] - cum[:, i0]) / frames.duration


def smooth_field(shape, sigma_vox: float, rng: np.random.Generator) -> np.ndarray:
    """A zero-mean, unit-variance Gaussian random field with Gaussian correlation of `sigma_vox` voxels."""
    field_ = ndimage.gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma_vox, mode="wrap")
    return (field_ - field_.mean()) / max(float(field_.std()), 1e-12)


def rate_maps(fractions: dict[str, np.ndarray], spacing: float, rng: np.random.Generator, spec: PetSpec) -> dict:
    """K1, k2, k3, vB per voxel: tissue fractions x the tissue's (jittered) rates x a smooth log-normal field."""
    shape = next(iter(fractions.values())).shape
    lesion_scale = spec.lesion_k1_scale
    if spec.lesion_k1_range is not None:            # drawn only when asked: other corpora keep their random stream
        low, high = spec.lesion_k1_range
        lesion_scale *= float(np.exp(rng.uniform(np.log(low), np.log(high))))
    maps = {}
    for p, name in enumerate(("K1", "k2", "k3", "vB")):
        value = np.zeros(shape, np.float32)
        for tissue, frac in fractions.items():
            jit = 1.0 + rng.uniform(-spec.jitter, spec.jitter) if spec.jitter > 0 else 1.0
            scale = lesion_scale if name == "K1" and tissue in LESION_TISSUES else 1.0
            value += np.float32(spec.rates[tissue][p] * jit * scale) * frac
        if spec.heterogeneity > 0:
            g = smooth_field(shape, spec.heterogeneity_mm / spacing, rng)
            value *= np.exp(spec.heterogeneity * g - spec.heterogeneity ** 2 / 2).astype(np.float32)
        maps[name] = value
    return maps


def focal_spots(fractions: dict[str, np.ndarray], spacing: float, rng: np.random.Generator) -> dict:
    """{"hot", "cold"}: balls of FOCAL_RADIUS_MM in healthy grey and white matter, away from the tumour and from
    each other."""
    tissue = fractions["gm"] + fractions["wm"]
    lesion = sum((fractions[t] for t in LESION_TISSUES if t in fractions), np.zeros_like(tissue)) > 0.1
    radius = FOCAL_RADIUS_MM / spacing
    far = ndimage.distance_transform_edt(~lesion) > 2.5 * radius if lesion.any() else np.ones(tissue.shape, bool)
    deep = ndimage.binary_erosion(tissue > 0.9, iterations=int(np.ceil(radius / 2)))
    grid = np.indices(tissue.shape)
    spots = {}
    for name in FOCAL_K1:
        where = np.argwhere(deep & far)
        centre = where[rng.integers(len(where))]
        squared = ((grid - centre.reshape(3, 1, 1, 1)) ** 2).sum(0)
        spots[name] = (squared <= radius ** 2) & (tissue > 0.5)
        far &= squared > (3 * radius) ** 2
    return spots


def two_tissue_frames(maps: dict, t, cp, schedule: FrameSchedule,
                      valid=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(frames (n_frames, *shape), true Ki, true V) of the irreversible 2TCM; e^{-kappa t} * Cp is tabulated on a
    log grid of kappa and interpolated per voxel (kappa = k2 + k3 varies smoothly). V is fitted on each voxel's
    own frames (`valid`) after t*: it depends on the timing."""
    k1, k2, k3, vb = (maps[n].astype(np.float64) for n in ("K1", "k2", "k3", "vB"))
    kappa = k2 + k3
    safe = np.where(kappa > 0, kappa, 1.0)
    a = np.where(kappa > 0, (1 - vb) * k1 * k2 / safe, 0.0)           # weight of the reversible compartment
    ki = np.where(kappa > 0, (1 - vb) * k1 * k3 / safe, 0.0)
    grid = np.geomspace(1e-3, 5.0, 160)
    table = exponential_regressors(t, cp, schedule, grid)              # (kappas, frames)
    reg = patlak_regressors(t, cp, schedule)
    log_kappa = np.log(np.clip(kappa, grid[0], grid[-1])).ravel()
    frames = np.empty((len(schedule),) + kappa.shape, np.float32)
    for f in range(len(schedule)):
        exp_term = np.interp(log_kappa, np.log(grid), table[:, f]).reshape(kappa.shape)
        frames[f] = a * exp_term + ki * reg[f, 0] + vb * reg[f, 1]
    late = schedule.start >= default_tstar(schedule) - 1e-9
    v = patlak_statistics(frames[late], reg[late], valid=None if valid is None else valid[late]).v
    return frames, ki.astype(np.float32), v.astype(np.float32)


def blur(frames: np.ndarray, spacing: float, fwhm_mm: float) -> np.ndarray:
    """Every frame through the scanner's point-spread function (Gaussian; no activity outside the volume)."""
    if fwhm_mm <= 0:
        return frames
    sigma = fwhm_mm / FWHM_PER_SIGMA / spacing
    return np.stack([ndimage.gaussian_filter(f, sigma, mode="constant") for f in frames])


def add_noise(frames: np.ndarray, schedule: FrameSchedule, spacing: float, rng: np.random.Generator, dose: float,
              spec: PetSpec = PetSpec()) -> np.ndarray:
    """Noisy frames: Poisson variance (activity x duration x sensitivity x voxel mL x dose x decay, divided back to
    decay-corrected activity) with the spatial correlation of a reconstruction (`spec.noise_fwhm_mm`)."""
    scale = schedule.duration * 60.0 * spec.sensitivity * spacing ** 3 / 1000.0 * dose * _decay_mean(schedule)
    noise_sigma = spec.noise_fwhm_mm / FWHM_PER_SIGMA / spacing
    gain = 1.0
    if noise_sigma > 0:   # smoothing white noise by a normalised kernel divides its variance by sum(kernel^2)
        impulse = np.zeros((int(8 * noise_sigma) + 1,) * 3, np.float32)
        impulse[(len(impulse) // 2,) * 3] = 1.0
        gain = float(np.sqrt((ndimage.gaussian_filter(impulse, noise_sigma, mode="constant") ** 2).sum()))
    noisy = np.empty_like(frames, dtype=np.float32)
    for f in range(len(frames)):
        expected = np.maximum(frames[f], 0)
        white = rng.standard_normal(expected.shape).astype(np.float32)
        if noise_sigma > 0:
            white = ndimage.gaussian_filter(white, noise_sigma, mode="wrap") / gain
        noisy[f] = np.where(expected > 0, expected + np.sqrt(expected / scale[f]) * white, 0.0)
    return noisy


def simulate_pet(fractions: dict[str, np.ndarray], spacing: float, rng: np.random.Generator,
                 spec: PetSpec = PetSpec()) -> PetStudy:
    if spec.model not in MODELS:
        raise ValueError(f"PET model '{spec.model}' is not one of {', '.join(MODELS)}")
    shape = next(iter(fractions.values())).shape
    valid = bed_of_frame = slices = None
    if spec.beds > 1:
        schedule, bed_of_frame = multi_pass_schedule(spec.beds)
        slices = bed_slices(shape[-1], spec.beds)
        valid = bed_validity(shape, slices, bed_of_frame)
    else:
        schedule = FrameSchedule.from_durations(spec.schedule)
    t, cp = input_samples(schedule.end[-1], spec.input_step_s)
    maps = rate_maps(fractions, spacing, rng, spec)
    spots = focal_spots(fractions, spacing, rng) if spec.focal else None
    for name, ball in (spots or {}).items():
        maps["K1"] = np.where(ball, maps["K1"] * FOCAL_K1[name], maps["K1"]).astype(np.float32)
    if spec.model == "2tcm":
        frames, ki, v = two_tissue_frames(maps, t, cp, schedule, valid)
    else:
        k1, k2, k3, vb = (maps[n] for n in ("K1", "k2", "k3", "vB"))
        kappa = np.where(k2 + k3 > 0, k2 + k3, 1.0)
        ki = np.where(k2 + k3 > 0, (1 - vb) * k1 * k3 / kappa, 0).astype(np.float32)
        v = (np.where(k2 + k3 > 0, (1 - vb) * k1 * k2 / kappa ** 2, 0) + vb).astype(np.float32)
        frames = patlak_frames(ki, v, patlak_regressors(t, cp, schedule).astype(np.float32))
    frames = blur(frames, spacing, spec.psf_fwhm_mm)
    if spec.dose is not None:
        frames = add_noise(frames, schedule, spacing, rng, spec.dose, spec)
    if valid is not None:
        frames = np.where(valid, frames, np.nan)    # a bed not under the scanner was not measured
    return PetStudy(frames.astype(np.float32), ki, v, schedule, t, cp, valid, bed_of_frame, slices, spots)
