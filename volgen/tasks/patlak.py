"""Patlak parametric imaging: voxel-wise Ki (net influx rate, 1/min) and V (intercept, mL/mL) from dynamic PET
frames and the plasma input function.

    C_T(t) = Ki * int_0^t Cp + V * Cp(t)      for frames starting at or after t*

Methods:
- `ls`: voxel-wise (weighted) least squares over the frames after t*, the field's standard; its uncertainty map is
  the least-squares standard error (residual variance x (A^T W A)^-1);
- `smoothed`: the same maps smoothed by a Gaussian inside the mask (what practitioners do against noise), FWHM
  chosen on training phantoms unless given;
- `diffusion`: Ki and V sampled under a diffusion prior trained on static PET images, with the Patlak model as
  data consistency at every step (`volgen.tasks.patlak_diffusion`); the posterior mean of K samples and their spread.
Inputs follow PET-BIDS (`volgen.io.pet`); a study acquired bed by bed is given as one 4D file per bed, each with
its own sidecar (`volgen.io.pet_beds`), and every voxel is fitted on its own bed's frames and times. Outputs are
named as PET tools name parametric maps: `<stem>_model-patlak_meas-Ki_mimap.nii.gz`, `..._meas-V_mimap.nii.gz`,
on the PET grid with its affine.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from volgen.errors import InputError
from volgen.io.nifti import read_volume
from volgen.io.pet import activity_scale, read_dynamic, read_input_function
from volgen.io.pet_beds import read_beds, study_stem
from volgen.io.resample import grid_difference, same_grid
from volgen.io.volume import Volume
from volgen.kinetics import (MIN_PATLAK_FRAMES, FrameSchedule, default_tstar, patlak_regressors,
                             patlak_statistics)
from volgen.ops import smooth_inside
from volgen.tasks.job import JobResult, Sampling, Timer, volume_path
from volgen.tasks.patlak_diffusion import diffusion_patlak, patlak_sampling
from volgen.tasks.patlak_error import DESCRIPTION as ERROR_DESCRIPTION, patlak_error_model

METHODS = ("ls", "smoothed", "diffusion")
WEIGHTS = ("none", "duration")
# Post-smoothing FWHM (mm) for `smoothed`: the one with the lowest brain Ki error on training phantoms at 1/10 dose
# (the sweep is in the CHANGELOG): less leaves the noise, more blurs the grey-white contrast.
SMOOTHED_FWHM_MM = 6.0


def stem_of(path) -> str:
    """'sub-01_ses-1_pet.nii.gz' -> 'sub-01_ses-1'; 'case-pet.nii.gz' -> 'case'; beds [sub-01_bed-1_pet.nii.gz,
    ...] -> 'sub-01'."""
    if isinstance(path, (list, tuple)):
        return study_stem(stem_of(path[0])) if len(path) > 1 else stem_of(path[0])
    name = Path(str(path)).name
    for suffix in (".nii.gz", ".nii"):
        name = name.removesuffix(suffix)
    for tag in ("_pet", "-pet"):
        name = name.removesuffix(tag)
    return name


def output_names(stem: str) -> dict[str, str]:
    return {"Ki": f"{stem}_model-patlak_meas-Ki_mimap.nii.gz", "V": f"{stem}_model-patlak_meas-V_mimap.nii.gz"}


# PET-BIDS puts the suffix last, so an uncertainty map is another measure: its standard error (least squares), the
# expected absolute error (diffusion, a calibrated prior) or the standard deviation over the diffusion samples
UNCERTAINTY_MEASURES = {"ls": "SE", "diffusion": "SD", "calibrated": "Err"}


def uncertainty_names(stem: str, method: str, calibrated: bool = False) -> dict[str, str]:
    """`<stem>_model-patlak_meas-KiSE_mimap.nii.gz` ... for the methods that write uncertainty maps (`calibrated`:
    the diffusion prior has a Patlak calibration, so its maps are expected errors)."""
    tag = UNCERTAINTY_MEASURES.get("calibrated" if calibrated and method == "diffusion" else method)
    if tag is None:
        return {}
    return {key: f"{stem}_model-patlak_meas-{key}{tag}_mimap.nii.gz" for key in ("Ki", "V")}


def _map_volume(array: np.ndarray, pet: Volume, description: str) -> Volume:
    header = pet.header.copy() if pet.header is not None else None
    if header is not None:
        header.set_data_shape(array.shape)
        header["descrip"] = description[:79].encode()
    return Volume(array.astype(np.float32), pet.affine, header, pet.name, {"path": volume_path(pet)})


def patlak(pet, *, input, frames=None, tstar: float | None = None, weights: str = "none", mask=None,
           method: str = "ls", fwhm: float | None = None, sampling: Sampling | None = None,
           **settings) -> JobResult:
    """Ki and V maps of a 4D PET (path, or a list of paths: one per bed) with its plasma input (path): a JobResult
    with outputs Ki and V. The sampling settings (model, steps, samples, seed, device, ...) are the diffusion
    method's."""
    if method not in METHODS:
        raise InputError(None, f"--method must be one of {', '.join(METHODS)}, got '{method}'")
    if weights not in WEIGHTS:
        raise InputError(None, f"--weights must be one of {', '.join(WEIGHTS)}, got '{weights}'")
    timer = Timer()
    with timer("read"):
        volume, schedule, facts, valid, bed_of_frame = _read_dynamic(pet, frames)
        blood = read_input_function(input)
        region = None
        if mask is not None:
            mask_volume = read_volume(mask, allow_constant=True)
            if not same_grid(mask_volume.shape, mask_volume.affine, volume.shape[:3], volume.affine):
                raise InputError(mask, "mask grid differs from the PET's: " + grid_difference(
                    mask_volume.shape, mask_volume.affine, volume.shape[:3], volume.affine))
            region = mask_volume.array > 0
            if not region.any():
                raise InputError(mask, "mask is empty")
    if facts["ImageDecayCorrected"] is False:
        raise InputError(volume_path(volume), "ImageDecayCorrected is false: Patlak needs decay-corrected frames "
                                              "(and input)")
    last = schedule.end[-1] + float(np.max(facts.get("slice_offsets_min", 0.0)))
    if blood.time[-1] < last - 1e-6:
        raise InputError(input, f"the input function ends at {blood.time[-1]:.2f} min, before the last frame ends "
                                f"({last:.2f} min)")
    units, notes = _common_units(facts.get("Units"), blood.units, input)
    scale = units.pop("blood_to_pet")
    try:
        t_star = default_tstar(schedule) if tstar is None else float(tstar)
    except ValueError as exc:
        raise InputError(volume_path(volume), f"{exc}; give --tstar") from None
    used = schedule.start >= t_star - 1e-9
    if used.sum() < MIN_PATLAK_FRAMES:
        raise InputError(volume_path(volume), f"{int(used.sum())} frame(s) start at or after t* = {t_star:g} min; "
                                              f"Patlak needs at least {MIN_PATLAK_FRAMES} (frames start at "
                                              f"{', '.join(f'{s:g}' for s in schedule.start[-4:])} ... min)")
    for b, bed in enumerate(facts.get("beds", [])):
        late = int((used & (bed_of_frame == b)).sum())
        if late < MIN_PATLAK_FRAMES:
            raise InputError(bed["file"], f"{late} of this bed's frames start at or after t* = {t_star:g} min; "
                                          f"Patlak needs at least {MIN_PATLAK_FRAMES} per bed")
    with timer("fit"):
        regressors = _regressors(blood.time, blood.activity * scale, schedule, facts, volume)[used]
        data = np.moveaxis(volume.array[..., used], -1, 0)
        w = schedule.duration[used] if weights == "duration" else None
        fit = patlak_statistics(data, regressors, w, None if valid is None else valid[used])
        inside = region if region is not None else np.ones(fit.ki.shape, bool)
        inside = inside & np.isfinite(fit.ki)
        ki, v = np.where(inside, fit.ki, 0.0), np.where(inside, fit.v, 0.0)
    uncertainty, used_fwhm, calibration = {}, None, {}
    if method == "ls":
        ki_se, v_se = fit.standard_errors()
        uncertainty = {"Ki": _map_volume(np.where(inside, ki_se, 0.0), volume, "Patlak Ki standard error"),
                       "V": _map_volume(np.where(inside, v_se, 0.0), volume, "Patlak V standard error")}
    elif method == "smoothed":
        used_fwhm = SMOOTHED_FWHM_MM if fwhm is None else float(fwhm)
        with timer("smooth"):
            ki = smooth_inside(ki, inside, used_fwhm, volume.spacing)
            v = smooth_inside(v, inside, used_fwhm, volume.spacing)
    else:

        sampling = patlak_sampling(sampling or Sampling(**settings))
        with timer("sample"):
            maps = diffusion_patlak(fit, inside, volume, sampling)
        ki, v = maps["Ki"], maps["V"]
        if "Ki error" in maps:
            uncertainty = {k: _map_volume(maps[f"{k} error"], volume, f"Patlak {k} expected absolute error")
                           for k in ("Ki", "V") if f"{k} error" in maps}
            calibration = {"uncertainty_calibration": patlak_error_model(sampling.load("patlak")).fitted_on}
        else:
            uncertainty = {k: _map_volume(maps[f"{k} spread"], volume, f"Patlak {k} spread over the samples")
                           for k in ("Ki", "V") if f"{k} spread" in maps}
    outputs = {"Ki": _map_volume(ki, volume, "Patlak Ki (1/min)"), "V": _map_volume(v, volume, "Patlak V (mL/mL)")}
    late = np.nanmean(data, 0)                       # over each voxel's own frames
    info = {"job": "patlak", "ModelName": "Patlak", "input": volume_path(volume), "input_function": blood.source,
            "method": method, "tstar_min": t_star, "frames_used": [int(i) for i in np.flatnonzero(used)],
            "frame_times_start_min": [float(s) for s in schedule.start[used]], "weights": weights,
            **({"beds": facts["beds"]} if "beds" in facts else {}),
            **({"SliceTiming": [round(float(o) * 60, 6) for o in facts["slice_offsets_min"]],
                "SliceEncodingDirection": "ijk"[facts["slice_axis"]]} if "slice_offsets_min" in facts else {}),
            "smoothing_fwhm_mm": used_fwhm, "mask": str(mask) if mask is not None else None,
            "units": {"Ki": "1/min", "V": "mL/mL", **units}, "assumptions": blood.notes + notes,
            **(sampling.describe(sampling.load("patlak"), mean_of="final") if method == "diffusion" else {}),
            "uncertainty": {"ls": "least-squares standard error", "smoothed": "none",
                            "diffusion": ERROR_DESCRIPTION if calibration else
                            "per-voxel standard deviation over the samples"}[method], **calibration,
            "seconds": timer.seconds}
    return JobResult(outputs=outputs, uncertainty=uncertainty,
                     inputs={"frames after t* (mean)": volume.with_array(late.astype(np.float32))},
                     info=info)


def _regressors(time, activity, schedule, facts: dict, volume: Volume) -> np.ndarray:
    """(frames, 2) Patlak regressors, or (frames, 2, ...) broadcastable to the voxels when each slice has its own
    time offset (SliceTiming)."""
    if "slice_offsets_min" not in facts:
        return patlak_regressors(time, activity, schedule)
    offsets, axis = facts["slice_offsets_min"], facts["slice_axis"]
    per_slice = np.stack([patlak_regressors(time, activity, FrameSchedule(schedule.start + o, schedule.end + o))
                          for o in offsets], axis=-1)                      # (frames, 2, slices)
    shape = [1, 1, 1]
    shape[axis] = len(offsets)
    return per_slice.reshape(*per_slice.shape[:2], *shape)


def _read_dynamic(pet, frames):
    """(4D volume, frame schedule, sidecar facts, per-voxel frame validity or None, bed of each frame) of one 4D
    PET or of a study's beds (a list of paths, one per bed)."""
    if isinstance(pet, (list, tuple)) and len(pet) > 1:
        if frames is not None:
            raise InputError(frames, "--frames gives one timing; a study's beds take theirs from their own sidecars")
        study = read_beds(pet)
        return study.volume, study.schedule, study.facts, study.valid, study.bed_of_frame
    volume, schedule, facts = read_dynamic(pet[0] if isinstance(pet, (list, tuple)) else pet, frames)
    return volume, schedule, facts, None, np.zeros(len(schedule), int)


def _common_units(pet_units, blood_units, where) -> tuple[dict, list[str]]:
    """Units of the frames and the input, and the factor that brings the input to the frames' units."""
    notes = []
    pet_scale, blood_scale = activity_scale(pet_units), activity_scale(blood_units)
    if pet_units and blood_units and (pet_scale is None or blood_scale is None) and pet_units != blood_units:
        raise InputError(where, f"input-function units '{blood_units}' cannot be converted to the PET's "
                                f"'{pet_units}'")
    factor = blood_scale / pet_scale if pet_scale and blood_scale else 1.0
    if not (pet_units and blood_units):
        notes.append(f"PET units ({pet_units or 'not given'}) and input units ({blood_units or 'not given'}) "
                     f"assumed the same")
    elif factor != 1.0:
        notes.append(f"input converted from {blood_units} to {pet_units} (x{factor:g})")
    return {"pet": pet_units, "input_function": blood_units, "blood_to_pet": factor}, notes
