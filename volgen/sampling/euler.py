"""Euler's method on the rectified-flow ODE dx/dsigma = eps - x0 (the velocity), from sigma = 1 to 0."""
from __future__ import annotations

import torch

from volgen.kernels.sampler import ode_step
from volgen.sampling.loop import denoise_loop


def sample_euler(denoiser, x_T: torch.Tensor, timesteps, *, cond: dict | None = None, consistency=None,
                 guidance=None, callback=None, generator: torch.Generator | None = None):
    """Deterministic; needs a flow schedule. `generator` is accepted for a uniform sampler signature."""
    del generator
    if denoiser.schedule.kind != "flow":
        raise ValueError(f"the Euler sampler integrates a rectified flow; this denoiser's schedule is "
                         f"'{denoiser.schedule.kind}' (use ddim, ddpm or dpm++)")

    def update(x, x0, eps, now, nxt, t):
        # x + d_sigma (eps - x0) with the loop's eps = (x - alpha x0) / sigma: one fused pass over x and x0
        (alpha, sigma), d_sigma = now, nxt[1] - now[1]
        return ode_step(x, x0, 1 + d_sigma / sigma, -d_sigma * (alpha / sigma + 1))

    return denoise_loop(denoiser, x_T, timesteps, update, cond=cond, consistency=consistency, guidance=guidance,
                        callback=callback)
