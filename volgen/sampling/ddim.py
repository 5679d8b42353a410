"""DDIM (Song et al. 2021), eta = 0 deterministic, eta = 1 the DDPM-like stochastic limit."""
from __future__ import annotations

import torch

from volgen.sampling.loop import denoise_loop, gaussian_like


def sample_ddim(denoiser, x_T: torch.Tensor, timesteps, *, eta: float = 0.0, cond: dict | None = None,
                consistency=None, guidance=None, callback=None, generator: torch.Generator | None = None):
    """x_0 from x_T over descending `timesteps`; the last step goes to alpha_bar = 1 (the clean sample)."""

    def update(x, x0, eps, a, a_prev, t):
        sigma = eta * ((1 - a_prev) / (1 - a) * (1 - a / a_prev)) ** 0.5
        x = a_prev ** 0.5 * x0 + (1 - a_prev - sigma ** 2) ** 0.5 * eps
        return x + sigma * gaussian_like(x, generator) if sigma > 0 else x

    return denoise_loop(denoiser, x_T, timesteps, update, cond=cond, consistency=consistency, guidance=guidance,
                        callback=callback)
