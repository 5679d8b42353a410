"""The uncertainty map as the expected absolute error: the spread over the samples, calibrated.

The spread of K samples ranks a posterior mean's error poorly on its own (two samples' variance is noisy, and a
systematic error of the mean shows in no spread). Where a mean goes wrong also shows in its own local structure: a fill or a through-plane
interpolation misplaces edges (the mean's gradient), and some tissues are harder than others (its intensity: the
dark sulci of a FLAIR fill). An `ErrorModel` maps three per-voxel features of the mean and its spread to the expected
absolute error,

    E|mean - truth| = scale * exp(w . [log spread, log |grad mean|, mean, 1]),

with one (w, scale) per target contrast, fitted by least squares of log(|error| + EPS) on calibration cases the model
never trained on (`volgen calibrate`), then scaled so that its average over the cases is their mean
absolute error. It is stored in the model's config.json metadata ("error_model"), beside the weights, not in them.
The spread is pooled over a Gaussian (sigma 1 voxel) first: the variance of 2 samples is a very noisy estimate.

Everything here is in the model's range ([-1, 1]): the jobs swap the spread for `expected_error(...)` and restore
it to the source grid the same way.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

FEATURES = ("log_spread", "log_gradient", "intensity")
COLUMNS = [*FEATURES, "constant"]          # what the weights multiply, as stored
EPS = 1e-3                 # [0, 1] units: an error floor, well below the phantoms' noise
POOL_SIGMA = 1.0           # voxels: the spread's variance and the mean are smoothed this much
TINY = 1e-4                # keeps the logarithms finite in the background, where spread and gradient are 0


def log_pooled_spread(sd: np.ndarray) -> np.ndarray:
    """log of the per-voxel standard deviation pooled over a Gaussian of POOL_SIGMA voxels (its variance smoothed)."""
    return np.log(np.sqrt(ndimage.gaussian_filter(sd ** 2, POOL_SIGMA)) + TINY)


def log_gradient(image: np.ndarray) -> np.ndarray:
    """log of the gradient magnitude (per voxel) of `image` smoothed over a Gaussian of POOL_SIGMA voxels."""
    smooth = ndimage.gaussian_filter(image, POOL_SIGMA)
    return np.log(np.sqrt(sum(g ** 2 for g in np.gradient(smooth))) + TINY)


def error_features(mean: np.ndarray, spread: np.ndarray) -> np.ndarray:
    """(len(FEATURES) + 1, *shape) float64: the features of each voxel and a constant, from the posterior mean and
    the per-voxel spread (both in the model's range, (D, H, W))."""
    unit = (np.asarray(mean, dtype=np.float64) + 1) / 2
    sd = np.asarray(spread, dtype=np.float64) / 2
    return np.stack([log_pooled_spread(sd), log_gradient(unit), unit, np.ones_like(unit)])


@dataclass
class ErrorFit:
    """One contrast's (or map's) calibration: the feature weights (the constant last) and the scale."""

    weights: list[float]
    scale: float

    def expected(self, features: np.ndarray) -> np.ndarray:
        """scale * exp(w . features) for features (len(weights), ...), in the units the fit's errors had."""
        return self.scale * np.exp(np.tensordot(np.asarray(self.weights), features, axes=1))

    def expected_error(self, mean: np.ndarray, spread: np.ndarray) -> np.ndarray:
        """E|mean - truth| per voxel of an MRI estimate, in the model's range (twice the [0, 1] error), float32."""
        return (2 * self.expected(error_features(mean, spread))).astype(np.float32)


def fit_log_linear(examples) -> ErrorFit:
    """The least-squares fit of log(|error| + EPS) on features over `examples`, an iterable of (features
    (columns, n), |error| (n)) of the voxels scored, then scaled so that the fitted map's average is the mean |error|
    (exp of a mean log underestimates the mean)."""
    rows, errors = [], []
    for features, error in examples:
        rows.append(np.asarray(features, dtype=np.float64).T)
        errors.append(np.asarray(error, dtype=np.float64))
    if not rows or sum(len(r) for r in rows) <= rows[0].shape[1]:
        raise ValueError("fitting an error model needs examples with voxels in their regions")
    x, error = np.concatenate(rows), np.concatenate(errors)
    weights = np.linalg.lstsq(x, np.log(error + EPS), rcond=None)[0]
    scale = float(error.mean() / np.exp(x @ weights).mean())
    return ErrorFit([float(w) for w in weights], scale)


def fit_error(examples) -> ErrorFit:
    """The MRI fit over `examples`, an iterable of (mean, spread, truth, region): arrays in the model's range and a
    boolean region (the brain, or the inpainted mask) where the error is scored ([0, 1] units)."""
    def scored():
        for mean, spread, truth, region in examples:
            region = np.asarray(region, dtype=bool)
            error = np.abs(np.asarray(mean, dtype=np.float64) - np.asarray(truth, dtype=np.float64))[region] / 2
            yield error_features(mean, spread)[:, region], error
    return fit_log_linear(scored())


@dataclass
class ErrorModel:
    """A model's calibrations by target (an MRI contrast, or Patlak's "Ki" and "V"), the feature columns they weigh,
    and how they were made (cases, samples, timesteps)."""

    fits: dict[str, ErrorFit]
    fitted_on: dict
    columns: tuple = tuple(COLUMNS)

    def to_dict(self) -> dict:
        return {"features": list(self.columns), "fitted_on": self.fitted_on,
                "contrasts": {c: {"weights": f.weights, "scale": f.scale} for c, f in self.fits.items()}}

    @classmethod
    def from_dict(cls, data: dict, columns=COLUMNS) -> "ErrorModel":
        if list(data.get("features", [])) != list(columns):
            raise ValueError(f"error model features {data.get('features')} are not this volgen's {list(columns)}")
        fits = {c: ErrorFit([float(w) for w in f["weights"]], float(f["scale"]))
                for c, f in data["contrasts"].items()}
        return cls(fits, dict(data.get("fitted_on", {})), tuple(columns))


METADATA_KEY = "error_model"
SPREAD = "per-voxel standard deviation over the samples"
CALIBRATED = ("expected absolute error per voxel: the spread over the samples calibrated with the mean's gradient "
              "and intensity (volgen/error_model.py; the model's config.json metadata 'error_model')")


def error_model_of(model) -> ErrorModel | None:
    """The calibration stored with a loaded model (hub metadata), or None."""
    data = (getattr(model, "hub_metadata", None) or {}).get(METADATA_KEY)
    return ErrorModel.from_dict(data) if data else None


def calibration_for(model, contrast: str | None) -> ErrorFit | None:
    """`model`'s calibration for a target contrast, or None: the job then writes the plain spread."""
    error_model = error_model_of(model)
    return error_model.fits.get(contrast) if error_model is not None else None


def uncertainty_map(model, contrast: str | None, mean: np.ndarray, spread: np.ndarray) -> np.ndarray:
    """The map a job writes for a posterior mean: the expected absolute error where `model` has a calibration for
    `contrast`, else the spread itself (both in the model's range)."""
    fit = calibration_for(model, contrast)
    return fit.expected_error(mean, spread) if fit else spread


def describe_uncertainty(model, contrasts, samples: int) -> str:
    """What a job's uncertainty maps are, for its sidecar."""
    if samples < 2:
        return "none (one sample)"
    contrasts = list(contrasts)
    return CALIBRATED if contrasts and all(calibration_for(model, c) for c in contrasts) else SPREAD
