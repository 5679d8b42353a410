"""Evaluate prediction files against reference files: the work behind `volgen evaluate`."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from volgen.errors import InputError
from volgen.io.contrasts import contrast_of_input
from volgen.io.preprocess import MEDIAN_LEVEL, IntensityScale
from volgen.io.nifti import read_volume
from volgen.io.resample import align_grids
from volgen.metrics import dice_per_label, image_metrics


def evaluate_files(pred_path, ref_path, masks: dict[str, Path] | None = None, *, labels=None, data_range=None,
                   resample: bool = False, normalize: bool = False, contrast: str | None = None) -> dict:
    """{'pred', 'ref', 'data_range', 'regions': {name: metrics}, 'dice': {label: value}} for two NIfTI files.
    `normalize` puts the reference on [0, 1] the way volgen's preprocessing does (the scale its models learnt each
    contrast in and write synthesised contrasts in), to score a synthesised volume against the acquired one; the
    prediction is taken as it is. The reference's MRI contrast (`contrast`, else its file name's) picks its
    head-median level."""
    volumes = {"ref": read_volume(ref_path, allow_constant=labels is not None),
               "pred": read_volume(pred_path, allow_constant=True)}
    for name, path in (masks or {}).items():
        volumes[f"mask:{name}"] = read_volume(path, allow_constant=True)
    mask_keys = tuple(k for k in volumes if k.startswith("mask:"))
    volumes = align_grids(volumes, "ref", resample_to_reference=resample, label_keys=mask_keys)
    regions = {}
    for key in mask_keys:
        mask = volumes[key].array != 0
        if not mask.any():
            raise InputError(volumes[key].meta["path"], "mask is empty (no non-zero voxels)")
        regions[key[5:]] = mask
    pred, ref = volumes["pred"].array, volumes["ref"].array
    if normalize:
        level = MEDIAN_LEVEL[contrast_of_input(ref_path, contrast)]
        ref = IntensityScale.fit(ref, median_level=level).forward(ref)
        data_range = 1.0 if data_range is None else data_range
    report = {"pred": str(pred_path), "ref": str(ref_path),
              "data_range": float(data_range if data_range is not None else np.ptp(ref.astype(np.float64))),
              "regions": image_metrics(pred, ref, regions, data_range)}
    if labels:
        report["dice"] = {str(k): v for k, v in dice_per_label(np.rint(pred), np.rint(ref), labels).items()}
    return report


def to_json_safe(value):
    """Non-finite floats (PSNR of identical volumes is inf) as strings, since JSON has no Infinity."""
    if isinstance(value, dict):
        return {k: to_json_safe(v) for k, v in value.items()}
    if isinstance(value, float) and not np.isfinite(value):
        return str(value)
    return value


def format_table(report: dict) -> str:
    rows = [f"{'region':<16}{'PSNR dB':>9}{'SSIM':>8}{'MAE':>11}{'MSE':>11}{'NRMSE':>8}"]
    for name, m in report["regions"].items():
        rows.append(f"{name:<16}{m['psnr']:>9.2f}{m['ssim']:>8.4f}{m['mae']:>11.4g}{m['mse']:>11.4g}"
                    f"{m['nrmse']:>8.4f}")
    for label, value in report.get("dice", {}).items():
        rows.append(f"dice label {label:<5}{value:>9.4f}")
    return "\n".join(rows)
