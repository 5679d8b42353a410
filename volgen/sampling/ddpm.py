"""Ancestral DDPM sampling (Ho et al. 2020) over any descending subset of the training timesteps."""
from __future__ import annotations

import torch

from volgen.sampling.loop import denoise_loop, gaussian_like


def sample_ddpm(denoiser, x_T: torch.Tensor, timesteps, *, cond: dict | None = None, consistency=None,
                guidance=None, callback=None, generator: torch.Generator | None = None):
    """Each step draws x_prev from the posterior q(x_prev | x_t, x0_hat), variance beta_tilde ('fixed small')."""

    def update(x, x0, eps, a, a_prev, t):
        beta = 1 - a / a_prev                     # the effective beta of this (possibly strided) step
        mean = (a_prev ** 0.5 * beta / (1 - a)) * x0 + ((1 - beta) ** 0.5 * (1 - a_prev) / (1 - a)) * x
        if t == 0:
            return mean
        var = max((1 - a_prev) / (1 - a) * beta, 1e-20)
        return mean + var ** 0.5 * gaussian_like(x, generator)

    return denoise_loop(denoiser, x_T, timesteps, update, cond=cond, consistency=consistency, guidance=guidance,
                        callback=callback)
