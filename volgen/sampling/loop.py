"""The loop every sampler shares: predict (x0, eps) at t, then a sampler-specific update to the next noise level."""
from __future__ import annotations

import torch

from volgen.sampling.predict import predict_x0_eps


@torch.no_grad()
def denoise_loop(denoiser, x_T: torch.Tensor, timesteps, update, *, cond=None, consistency=None, guidance=None,
                 callback=None) -> torch.Tensor:
    """Run `update(x, x0, eps, now, nxt, t) -> x_next` down the descending `timesteps`, where `now` and `nxt` are
    the (alpha, sigma) of this timestep and of the next one ((1, 0) after the last: the clean sample)."""
    schedule = denoiser.schedule
    levels = [tuple(float(c) for c in schedule.alpha_sigma(t)) for t in timesteps] + [(1.0, 0.0)]
    x = x_T
    for i, t in enumerate(timesteps):
        x0, eps = predict_x0_eps(denoiser, x, t, cond, guidance, consistency)
        x = update(x, x0, eps, levels[i], levels[i + 1], t)
        if callback is not None:
            callback(i, t, x, x0)
    return x


def gaussian_like(x: torch.Tensor, generator) -> torch.Tensor:
    """Standard normal noise shaped like `x`, drawn on the generator's own device (training draws from a CPU
    generator, seeded per step, also when `x` is on a GPU) and moved to `x`'s; torch's default stream without one."""
    device = generator.device if generator is not None else x.device
    return torch.randn(x.shape, generator=generator, device=device, dtype=x.dtype).to(x.device)
