"""Ancestral DDPM sampling (Ho et al. 2020) over any descending subset of the training timesteps."""
from __future__ import annotations

import torch

from volgen.sampling.loop import denoise_loop, gaussian_like


def sample_ddpm(denoiser, x_T: torch.Tensor, timesteps, *, cond: dict | None = None, consistency=None,
                guidance=None, callback=None, generator: torch.Generator | None = None):
    """Each step draws x_next from the posterior q(x_next | x_t, x0_hat) ('fixed small' variance). In (alpha, sigma)
    form (Kingma et al. 2021), with r = alpha / alpha' and c^2 = sigma^2 - r^2 sigma'^2:
    mean = (r sigma'^2 / sigma^2) x_t + (alpha' c^2 / sigma^2) x0_hat, variance = c^2 sigma'^2 / sigma^2."""

    def update(x, x0, eps, now, nxt, t):
        (alpha, sigma), (alpha_n, sigma_n) = now, nxt
        r = alpha / alpha_n
        c2 = sigma ** 2 - r ** 2 * sigma_n ** 2
        mean = (r * sigma_n ** 2 / sigma ** 2) * x + (alpha_n * c2 / sigma ** 2) * x0
        if sigma_n == 0:
            return mean
        var = max(c2 * sigma_n ** 2 / sigma ** 2, 1e-20)
        return mean + var ** 0.5 * gaussian_like(x, generator)

    return denoise_loop(denoiser, x_T, timesteps, update, cond=cond, consistency=consistency, guidance=guidance,
                        callback=callback)
