"""DDIM (Song et al. 2021), eta = 0 deterministic, eta = 1 the DDPM-like stochastic limit."""
from __future__ import annotations

import torch

from volgen.sampling.predict import predict_x0_eps


@torch.no_grad()
def sample_ddim(denoiser, x_T: torch.Tensor, timesteps, *, eta: float = 0.0, cond: dict | None = None,
                consistency=None, guidance=None, callback=None, generator: torch.Generator | None = None):
    """x_0 from x_T over descending `timesteps`; the last step goes to alpha_bar = 1 (the clean sample)."""
    alpha_bar = denoiser.schedule.alphas_cumprod
    x = x_T
    timesteps = [int(t) for t in timesteps]
    for i, t in enumerate(timesteps):
        x0, eps = predict_x0_eps(denoiser, x, t, cond, guidance, consistency)
        a = alpha_bar[t].item()
        a_prev = alpha_bar[timesteps[i + 1]].item() if i + 1 < len(timesteps) else 1.0
        sigma = eta * ((1 - a_prev) / (1 - a) * (1 - a / a_prev)) ** 0.5
        x = a_prev ** 0.5 * x0 + (1 - a_prev - sigma ** 2) ** 0.5 * eps
        if sigma > 0:
            x = x + sigma * torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        if callback is not None:
            callback(i, t, x, x0)
    return x
