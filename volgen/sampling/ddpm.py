"""Ancestral DDPM sampling (Ho et al. 2020) over any descending subset of the training timesteps."""
from __future__ import annotations

import torch

from volgen.sampling.predict import predict_x0_eps


@torch.no_grad()
def sample_ddpm(denoiser, x_T: torch.Tensor, timesteps, *, cond: dict | None = None, consistency=None,
                guidance=None, callback=None, generator: torch.Generator | None = None):
    """Each step draws x_prev from the posterior q(x_prev | x_t, x0_hat), variance beta_tilde ('fixed small')."""
    alpha_bar = denoiser.schedule.alphas_cumprod
    x = x_T
    timesteps = [int(t) for t in timesteps]
    for i, t in enumerate(timesteps):
        x0, _ = predict_x0_eps(denoiser, x, t, cond, guidance, consistency)
        a = alpha_bar[t].item()
        a_prev = alpha_bar[timesteps[i + 1]].item() if i + 1 < len(timesteps) else 1.0
        beta = 1 - a / a_prev                     # the effective beta of this (possibly strided) step
        mean = (a_prev ** 0.5 * beta / (1 - a)) * x0 + ((1 - beta) ** 0.5 * (1 - a_prev) / (1 - a)) * x
        x = mean
        if t > 0:
            var = max((1 - a_prev) / (1 - a) * beta, 1e-20)
            x = x + var ** 0.5 * torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        if callback is not None:
            callback(i, t, x, x0)
    return x
