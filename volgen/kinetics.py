"""Tracer kinetics for FDG PET: the Feng plasma input function, frame schedules, and the Patlak model.

Times are in minutes. The Patlak model for an irreversibly trapped tracer,

    C_T(t) = Ki * integral_0^t Cp(s) ds + V * Cp(t),

is linear in (Ki, V). A frame reports the mean of C_T over its interval, so the regressors are frame means of
int Cp and of Cp. Everything is computed from a sampled input function treated as piecewise linear, integrated
exactly; the phantom generator and the fitter use the same routine, so noiseless frames fit back exactly.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Feng et al. (1993) model-based FDG input function, canonical form (no delay): parameters of its Table / eq. (2).
FENG_A = (851.1225, 21.8798, 20.8113)       # activity units per minute, units, units
FENG_LAMBDA = (-4.1339, -0.1191, -0.0104)   # 1/min


def feng_input(t, a=FENG_A, lam=FENG_LAMBDA, delay: float = 0.0) -> np.ndarray:
    """Cp(t) = (A1 s - A2 - A3) e^{l1 s} + A2 e^{l2 s} + A3 e^{l3 s}, s = t - delay; 0 before the delay.

    Cp(delay) = 0 by construction (the canonical form).
    """
    s = np.asarray(t, dtype=np.float64) - delay
    a1, a2, a3 = a
    l1, l2, l3 = lam
    cp = (a1 * s - a2 - a3) * np.exp(l1 * s) + a2 * np.exp(l2 * s) + a3 * np.exp(l3 * s)
    return np.where(s > 0, cp, 0.0)


@dataclass(frozen=True)
class FrameSchedule:
    """Frame start and end times in minutes."""

    start: np.ndarray
    end: np.ndarray

    @property
    def mid(self) -> np.ndarray:
        return (self.start + self.end) / 2.0

    @property
    def duration(self) -> np.ndarray:
        return self.end - self.start

    def __len__(self) -> int:
        return len(self.start)

    @classmethod
    def from_durations(cls, blocks) -> "FrameSchedule":
        """[(count, seconds), ...] -> contiguous frames from t = 0."""
        durations = np.concatenate([np.full(n, sec / 60.0) for n, sec in blocks])
        end = np.cumsum(durations)
        return cls(start=end - durations, end=end)


# A common 60-minute dynamic FDG protocol: fast frames to catch the bolus, 5-minute frames for the Patlak phase.
FDG_60MIN = ((6, 10), (8, 30), (5, 60), (10, 300))


# t*: the Patlak plot is linear once the reversible compartment has equilibrated with plasma; for FDG in the brain
# that is 15-20 minutes after injection. The rule: the first frame that starts at or after 20 min.
TSTAR_AFTER_MIN = 20.0
MIN_PATLAK_FRAMES = 3


# a Gaussian's full width at half maximum in units of its sigma: PET resolution and smoothing are quoted as FWHM


def default_tstar(frames: FrameSchedule, after_min: float = TSTAR_AFTER_MIN) -> float:
    """The start (min) of the first frame starting at or after `after_min`."""
    late = frames.start[frames.start >= after_min - 1e-9]
    if len(late) == 0:
        raise ValueError(f"no frame starts at or after {after_min:g} min (the last starts at {frames.start[-1]:.2f})")
    return float(late[0])


def input_samples(duration_min: float = 60.0, step_s: float = 1.0, delay: float = 0.0):
    """The Feng curve sampled every `step_s` seconds from 0 to `duration_min` (what a blood TSV holds)."""
    t = np.arange(0.0, duration_min * 60.0 + step_s / 2, step_s) / 60.0
    return t, feng_input(t, delay=delay)


def patlak_regressors(t, cp, frames: FrameSchedule) -> np.ndarray:
    """(n_frames, 2): frame means of int_0^t Cp and of Cp, for Cp linear between the samples (t, cp).

    Frame boundaries are inserted into the sample grid, so both integrals are exact for that interpolant.
    """
    t = np.asarray(t, dtype=np.float64)
    cp = np.asarray(cp, dtype=np.float64)
    if t[0] > 0:  # the input is zero before injection
        t, cp = np.concatenate([[0.0], t]), np.concatenate([[0.0], cp])
    if frames.end.max() > t[-1] + 1e-9:
        raise ValueError(f"input function ends at {t[-1]:.2f} min, before the last frame ({frames.end.max():.2f})")
    grid = np.union1d(t, np.concatenate([frames.start, frames.end]))
    c = np.interp(grid, t, cp)
    h = np.diff(grid)
    cum = np.concatenate([[0.0], np.cumsum(h * (c[:-1] + c[1:]) / 2.0)])             # int_0^t Cp at grid points
    seg_c = h * (c[:-1] + c[1:]) / 2.0                                                # int over segment of Cp
    seg_cum = h * cum[:-1] + h * h * (2.0 * c[:-1] + c[1:]) / 6.0                    # int over segment of int Cp
    int_c = np.concatenate([[0.0], np.cumsum(seg_c)])
    int_cum = np.concatenate([[0.0], np.cumsum(seg_cum)])
    i0 = np.searchsorted(grid, frames.start)
    i1 = np.searchsorted(grid, frames.end)
    dur = frames.duration
    return np.stack([(int_cum[i1] - int_cum[i0]) / dur, (int_c[i1] - int_c[i0]) / dur], axis=1)


def patlak_frames(ki: np.ndarray, v: np.ndarray, regressors: np.ndarray) -> np.ndarray:
    """Noiseless frames (n_frames, *maps.shape) from Ki and V maps."""
    return (regressors[:, 0].reshape((-1,) + (1,) * ki.ndim) * ki[None]
            + regressors[:, 1].reshape((-1,) + (1,) * v.ndim) * v[None])


@dataclass(frozen=True)
class PatlakStatistics:
    """A weighted least-squares Patlak fit and what it was made from, per voxel: the Gram matrix A^T W A of the
    regressors ((2, 2) shared by every voxel, or (2, 2, ...) when voxels have their own frame times), c = A^T W y
    (2, ...), the fitted Ki and V, and the residual variance (weighted sum of squared residuals over n - 2):
    everything the standard errors and a proximal step need."""

    gram: np.ndarray
    c: np.ndarray
    ki: np.ndarray
    v: np.ndarray
    residual_variance: np.ndarray

    def standard_errors(self) -> tuple[np.ndarray, np.ndarray]:
        """(SE of Ki, SE of V): sqrt(diag((A^T W A)^-1) x residual variance)."""
        g00, g01, g11 = self.gram[0, 0], self.gram[0, 1], self.gram[1, 1]
        det = g00 * g11 - g01 * g01
        return np.sqrt(g11 / det * self.residual_variance), np.sqrt(g00 / det * self.residual_variance)


def patlak_statistics(frames: np.ndarray, regressors: np.ndarray, weights=None, valid=None) -> PatlakStatistics:
    """Weighted least squares over the frames given: frames (n_frames, ...), regressors (n_frames, 2), or
    (n_frames, 2, ...) broadcastable to the frames' voxels when voxels have their own frame times (a per-slice time
    offset, beds scanned at different times); `valid` (n_frames, ...) bool, where given, says which frames each voxel
    has (a bed's voxels only have that bed's frames), and the Gram matrix is then per voxel too."""
    n = len(regressors)
    w = np.ones(n) if weights is None else np.asarray(weights, dtype=np.float64)
    regressors = np.asarray(regressors, dtype=np.float64)
    if regressors.ndim == 2 and valid is None:
        y = np.asarray(frames, dtype=np.float64).reshape(n, -1)
        aw = regressors * w[:, None]
        gram, c = aw.T @ regressors, aw.T @ y
        coef = np.linalg.solve(gram, c)               # 2x2 normal equations, all voxels at once
        residual_variance = (w[:, None] * (y - regressors @ coef) ** 2).sum(0) / max(n - 2, 1)
        shape = frames.shape[1:]
        return PatlakStatistics(gram, c.reshape(2, *shape), coef[0].reshape(shape), coef[1].reshape(shape),
                                residual_variance.reshape(shape))
    return _per_voxel_statistics(np.asarray(frames, dtype=np.float64), regressors, w, valid)


def _per_voxel_statistics(y: np.ndarray, regressors: np.ndarray, w: np.ndarray, valid) -> PatlakStatistics:
    """The normal equations voxel by voxel (closed-form 2x2), each over its own frames and frame times."""
    shape = y.shape[1:]
    a = regressors.reshape(regressors.shape[:2] + (1,) * (len(shape) + 2 - regressors.ndim) + regressors.shape[2:])
    a = np.broadcast_to(a, (len(y), 2, *shape))
    used = np.ones(y.shape, bool) if valid is None else np.asarray(valid, bool)
    weight = np.where(used, w.reshape(-1, *([1] * len(shape))), 0.0)
    y = np.where(used, y, 0.0)                        # a frame a voxel lacks may hold anything (NaN): unused
    gram = np.einsum("f...,fi...,fj...->ij...", weight, a, a)
    c = np.einsum("f...,fi...,f...->i...", weight, a, y)
    det = gram[0, 0] * gram[1, 1] - gram[0, 1] ** 2
    with np.errstate(divide="ignore", invalid="ignore"):     # a voxel with fewer than 2 distinct frames: NaN
        ki = np.where(det > 0, (gram[1, 1] * c[0] - gram[0, 1] * c[1]) / det, np.nan)
        v = np.where(det > 0, (gram[0, 0] * c[1] - gram[0, 1] * c[0]) / det, np.nan)
    residual = y - a[:, 0] * ki - a[:, 1] * v
    residual_variance = (weight * residual ** 2).sum(0) / np.maximum(used.sum(0) - 2, 1)
    return PatlakStatistics(gram, c, ki, v, residual_variance)


def patlak_fit(frames: np.ndarray, regressors: np.ndarray, frame_start=None, t_star: float = 0.0,
               weights=None) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares Patlak: Ki and V per voxel from frames (n_frames, ...) using frames starting at >= t_star.

    Optional per-frame `weights` (e.g. frame durations) give weighted least squares.
    """
    use = np.ones(len(regressors), bool) if frame_start is None else np.asarray(frame_start) >= t_star - 1e-9
    if use.sum() < 2:
        raise ValueError(f"Patlak needs at least 2 frames after t* = {t_star} min, found {int(use.sum())}")
    w = None if weights is None else np.asarray(weights, dtype=np.float64)[use]
    fit = patlak_statistics(np.asarray(frames)[use], regressors[use], w)
    return fit.ki, fit.v
