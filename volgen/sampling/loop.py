"""The loop every discrete-time sampler shares: predict (x0, eps) at t, then a sampler-specific update to t_prev."""
from __future__ import annotations

import torch

from volgen.sampling.predict import predict_x0_eps


@torch.no_grad()
def denoise_loop(denoiser, x_T: torch.Tensor, timesteps, update, *, cond=None, consistency=None, guidance=None,
                 callback=None) -> torch.Tensor:
    """Run `update(x, x0, eps, a, a_prev, t) -> x_prev` down the descending `timesteps`, with a = alpha_bar[t] and
    a_prev = alpha_bar of the next timestep (1 after the last one: the clean sample)."""
    alpha_bar = denoiser.schedule.alphas_cumprod
    timesteps = [int(t) for t in timesteps]
    x = x_T
    for i, t in enumerate(timesteps):
        x0, eps = predict_x0_eps(denoiser, x, t, cond, guidance, consistency)
        a_prev = alpha_bar[timesteps[i + 1]].item() if i + 1 < len(timesteps) else 1.0
        x = update(x, x0, eps, alpha_bar[t].item(), a_prev, t)
        if callback is not None:
            callback(i, t, x, x0)
    return x


def gaussian_like(x: torch.Tensor, generator) -> torch.Tensor:
    return torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
