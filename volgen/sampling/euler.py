"""Euler's method on the rectified-flow ODE dx/dsigma = eps - x0 (the velocity), from sigma = 1 to 0."""
from __future__ import annotations

import torch

from volgen.sampling.loop import denoise_loop


def sample_euler(denoiser, x_T: torch.Tensor, timesteps, *, cond: dict | None = None, consistency=None,
                 guidance=None, callback=None, generator: torch.Generator | None = None):
    """Deterministic; needs a flow schedule. `generator` is accepted for a uniform sampler signature."""
    del generator
    if denoiser.schedule.kind != "flow":
        raise ValueError(f"the Euler sampler integrates a rectified flow; this denoiser's schedule is "
                         f"'{denoiser.schedule.kind}' (use ddim, ddpm or dpm++)")

    def update(x, x0, eps, now, nxt, t):
        return x + (nxt[1] - now[1]) * (eps - x0)

    return denoise_loop(denoiser, x_T, timesteps, update, cond=cond, consistency=consistency, guidance=guidance,
                        callback=callback)
