"""DDIM (Song et al. 2021) for any (alpha, sigma) schedule: eta = 0 deterministic, eta = 1 the ancestral limit."""
from __future__ import annotations

import torch

from volgen.kernels.sampler import ddim_step
from volgen.sampling.loop import denoise_loop, gaussian_like


def sample_ddim(denoiser, x_T: torch.Tensor, timesteps, *, eta: float = 0.0, cond: dict | None = None,
                consistency=None, guidance=None, callback=None, generator: torch.Generator | None = None):
    """x_0 from x_T over descending `timesteps`; the last step goes to the clean sample.
    x_next = alpha' x0 + sqrt(sigma'^2 - s^2) eps + s z, s^2 = eta^2 sigma'^2 (1 - (alpha sigma' / (alpha' sigma))^2)
    (for variance-preserving schedules this is DDIM's eta^2 (1 - a') / (1 - a) (1 - a / a'), a = alpha_bar)."""

    def update(x, x0, eps, now, nxt, t):
        (alpha, sigma), (alpha_n, sigma_n) = now, nxt
        s = eta * sigma_n * max(1 - (alpha * sigma_n / (alpha_n * sigma)) ** 2, 0.0) ** 0.5
        if s == 0:            # deterministic: one fused pass (eps = (x - alpha x0) / sigma is what the loop holds)
            return ddim_step(x, x0, alpha, sigma, alpha_n, sigma_n)
        x = alpha_n * x0 + max(sigma_n ** 2 - s ** 2, 0.0) ** 0.5 * eps
        return x + s * gaussian_like(x, generator)

    return denoise_loop(denoiser, x_T, timesteps, update, cond=cond, consistency=consistency, guidance=guidance,
                        callback=callback)
