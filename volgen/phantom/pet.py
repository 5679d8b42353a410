"""Dynamic FDG PET of the phantom's anatomy: Patlak kinetics per tissue, a 60-minute schedule, Poisson noise.

Each voxel follows the Patlak model with Ki = sum_k f_k Ki_k and V = sum_k f_k (V_k + vb_k) over its tissue
fractions f_k: V is the intercept the Patlak plot measures, the tissue distribution volume plus the blood
fraction (whole blood taken equal to plasma). Noise: counts ~ Poisson(activity x duration x sensitivity x voxel
volume x dose x decay), divided back to activity, so short and late (decayed) frames are noisier, as in a
decay-corrected scanner reconstruction (spatial correlation from reconstruction is not modelled).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from volgen.kinetics import FDG_60MIN, FrameSchedule, input_samples, patlak_frames, patlak_regressors

F18_HALF_LIFE_MIN = 109.77


@dataclass(frozen=True)
class PetSpec:
    ki: dict = field(default_factory=lambda: {"csf": 0.0, "gm": 0.034, "wm": 0.022, "necrotic": 0.004,
                                              "oedema": 0.015, "enhancing": 0.060})          # 1/min
    v: dict = field(default_factory=lambda: {"csf": 0.0, "gm": 0.32, "wm": 0.22, "necrotic": 0.10,
                                             "oedema": 0.24, "enhancing": 0.40})             # mL/mL
    blood_fraction: dict = field(default_factory=lambda: {"csf": 0.0, "gm": 0.04, "wm": 0.04, "necrotic": 0.01,
                                                          "oedema": 0.03, "enhancing": 0.06})
    schedule: tuple = FDG_60MIN          # ((count, seconds), ...)
    dose: float | None = 1.0             # relative injected dose; None gives noiseless frames
    sensitivity: float = 0.5             # counts / (s x activity unit x mL) at dose 1
    input_step_s: float = 1.0            # sampling of the plasma input function written to TSV
    jitter: float = 0.1                  # relative per-case jitter of each tissue's Ki and V (0: off)


@dataclass
class PetStudy:
    frames: np.ndarray       # (n_frames, *shape), activity per mL, decay corrected
    ki: np.ndarray           # 1/min
    v: np.ndarray            # mL/mL
    schedule: FrameSchedule
    input_time: np.ndarray   # min
    input_activity: np.ndarray


def _decay_mean(schedule: FrameSchedule) -> np.ndarray:
    lam = np.log(2.0) / F18_HALF_LIFE_MIN
    return (np.exp(-lam * schedule.start) - np.exp(-lam * schedule.end)) / (lam * schedule.duration)


def simulate_pet(fractions: dict[str, np.ndarray], spacing: float, rng: np.random.Generator,
                 spec: PetSpec = PetSpec()) -> PetStudy:
    jit = (lambda: 1.0 + rng.uniform(-spec.jitter, spec.jitter)) if spec.jitter > 0 else (lambda: 1.0)
    shape = next(iter(fractions.values())).shape
    ki = np.zeros(shape, np.float32)
    v = np.zeros(shape, np.float32)
    for name, frac in fractions.items():
        ki += np.float32(spec.ki[name] * jit()) * frac
        v += np.float32((spec.v[name] + spec.blood_fraction[name]) * jit()) * frac
    schedule = FrameSchedule.from_durations(spec.schedule)
    t, cp = input_samples(schedule.end[-1], spec.input_step_s)
    frames = patlak_frames(ki, v, patlak_regressors(t, cp, schedule).astype(np.float32))
    if spec.dose is not None:
        scale = schedule.duration * 60.0 * spec.sensitivity * spacing ** 3 / 1000.0 * spec.dose
        scale = (scale * _decay_mean(schedule)).astype(np.float32)
        active = (ki > 0) | (v > 0)   # Poisson of zero activity is zero: draw only where there is tracer
        for f in range(len(schedule)):
            expected = np.maximum(frames[f][active], 0) * scale[f]
            frames[f][active] = rng.poisson(expected).astype(np.float32) / scale[f]
    return PetStudy(frames.astype(np.float32), ki, v, schedule, t, cp)
