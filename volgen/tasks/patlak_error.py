"""The diffusion Patlak job's uncertainty map as the expected absolute error of its Ki (and V) per voxel.

The spread of the samples alone says little here: the data consistency pulls every sample toward the same
least-squares fit, so the samples differ where the prior is unsure, not where the estimate is wrong. What the error
depends on is known per voxel: how noisy the voxel's own fit is (the least-squares standard error, from the
smoothed residual variance and the voxel's Gram matrix, so it follows the dose and, with beds, the voxel's frames),
how much the prior has to fill in (the spread), edges the prior may move (the estimate's gradient) and the uptake
itself (hot voxels err more). An `ErrorFit` (volgen/error_model.py) maps these to the expected absolute error,

    E|estimate - truth| / scale = fit.scale * exp(w . [log spread, log SE, log |grad|, level, 1]),

everything relative to the map's scale (the job's normaliser, `patlak_diffusion.map_scales`: the 99.5th percentile of
the least-squares map, smoothed, in the mask), so one fit serves every dose and uptake level. It is fitted on calibration phantoms no model was trained or
tuned on (`scripts/benchmarks/bench_patlak.py --calibrate`) and stored in the PET prior's config.json metadata
("error_model", targets "Ki" and "V").
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from volgen import hub
from volgen.error_model import METADATA_KEY, TINY, ErrorFit, ErrorModel, log_gradient, log_pooled_spread
from volgen.tasks.models import model_name_for

FEATURES = ("log_spread", "log_standard_error", "log_gradient", "level")
COLUMNS = (*FEATURES, "constant")
DESCRIPTION = ("expected absolute error per voxel: the spread over the samples and the least-squares standard error, "
               "calibrated on PET phantoms never trained on (volgen/tasks/patlak_error.py; the prior's config.json "
               "metadata 'error_model')")


def patlak_features(estimate: np.ndarray, spread: np.ndarray, standard_error: np.ndarray, scale: float,
                    inside: np.ndarray) -> np.ndarray:
    """(len(COLUMNS), voxels inside) float64: each voxel's features, from the estimate, the samples' spread and the
    least-squares standard error of one map (PET grid, its units) and that map's scale."""
    relative = np.asarray(estimate, dtype=np.float64) / scale
    se = np.asarray(standard_error, dtype=np.float64) / scale
    columns = [log_pooled_spread(np.asarray(spread, dtype=np.float64) / scale), np.log(se + TINY),
               log_gradient(relative), relative, np.ones_like(relative)]
    return np.stack([c[inside] for c in columns])


def expected_error(fit: ErrorFit, estimate, spread, standard_error, scale: float, inside) -> np.ndarray:
    """The map of E|estimate - truth| in the map's units, zero outside `inside`, float32."""
    out = np.zeros(np.shape(estimate), np.float32)
    out[inside] = scale * fit.expected(patlak_features(estimate, spread, standard_error, scale, inside))
    return out


def _fitted_in(metadata: dict | None) -> ErrorModel | None:
    """The Patlak calibration in a model's metadata, or None (none stored, or one calibrated for another task)."""
    data = (metadata or {}).get(METADATA_KEY)
    try:
        return ErrorModel.from_dict(data, COLUMNS) if data else None
    except ValueError:
        return None


def patlak_error_model(model) -> ErrorModel | None:
    """The loaded PET prior's Patlak calibration, or None."""
    return _fitted_in(getattr(model, "hub_metadata", None))


def prior_is_calibrated(model) -> bool:
    """Whether the diffusion job's prior (a loaded model, a name, a folder, or None for the shipped one) has a
    Patlak calibration, from its config.json alone (the output names depend on it, before any weights load)."""
    if model is not None and not isinstance(model, (str, Path)):
        return patlak_error_model(model) is not None
    folder, _ = hub.resolve(model_name_for("patlak", model))
    return _fitted_in(hub.read_config(folder).get("metadata")) is not None
