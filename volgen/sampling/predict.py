"""One denoiser evaluation as samplers need it: guidance, then (x0, eps), then the data-consistency projection."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class ClassifierFreeGuidance:
    """prediction = uncond + scale (cond - uncond); `uncond` are the keyword conditions of the unconditional pass
    (e.g. the conditions with every 'present' flag off)."""

    scale: float
    uncond: dict = field(default_factory=dict)

    def __call__(self, denoiser, x, t, cond: dict) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(conditional prediction, unconditional one or None at scale 1): the combination is left to the fused
        conversion to (x0, eps), `Denoiser.x0_eps(..., uncond=, guidance=)`."""
        with_cond = denoiser(x, t, **cond)
        if self.scale == 1.0:
            return with_cond, None
        return with_cond, denoiser(x, t, **self.uncond)


def predict_x0_eps(denoiser, x: torch.Tensor, t: int, cond: dict | None, guidance=None, consistency=None):
    """(x0, eps) at timestep t. A consistency projection corrects x0; eps is then re-derived from the corrected x0
    so the next step stays on the trajectory the corrected estimate implies."""
    t_batch = denoiser.timestep_batch(t, x)
    cond = cond or {}
    if guidance is not None:
        prediction, uncond = guidance(denoiser, x, t_batch, cond)
    else:
        prediction, uncond = denoiser(x, t_batch, **cond), None
    # under autocast the network answers in bf16; x0 and eps come out in x's float32. The exact t: a flow's float32
    # t_batch is rounded.
    x0, eps = denoiser.x0_eps(prediction, x, t, uncond=uncond, guidance=guidance.scale if guidance else 1.0)
    if consistency is not None:
        x0 = consistency(x0, t)
        alpha, sigma = denoiser.alpha_sigma(t, x)
        eps = (x - alpha * x0) / sigma
    return x0, eps
