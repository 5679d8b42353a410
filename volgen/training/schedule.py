"""The learning rate at each step: a pure function of the step, so a resumed run continues the same curve."""
from __future__ import annotations

import math

SCHEDULES = ("constant", "cosine")


def learning_rate(base: float, schedule: str, step: int, steps: int) -> float:
    """`base` for a constant schedule; for "cosine", half a cosine from `base` at step 0 down to 0 after `steps`.

    Fine-tuning a module that has levelled off at a constant rate is where the decay pays: the last steps average
    out the noise of the minibatches instead of hopping around the minimum."""
    if schedule == "constant":
        return base
    if schedule == "cosine":
        progress = min(max(step, 0), steps) / max(steps, 1)
        return base * 0.5 * (1.0 + math.cos(math.pi * progress))
    raise ValueError(f"train.lr_schedule must be one of {', '.join(SCHEDULES)}, not {schedule!r}")
