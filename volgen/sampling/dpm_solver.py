"""DPM-Solver++(2M) (Lu et al. 2022): multistep second-order solver of the diffusion ODE in the data (x0) form.

With x_t = alpha x0 + sigma eps and lambda = log(alpha / sigma), a step from s to t (h = lambda_t -
lambda_s) is x_t = (sigma_t / sigma_s) x_s - alpha_t (e^{-h} - 1) D, where D is x0_hat(s) for the first-order
step and x0_hat(s) + (x0_hat(s) - x0_hat(s_prev)) h / (2 h_prev) for the second-order (midpoint) step. The first
step and the last (to sigma = 0, the clean sample) are first order.
"""
from __future__ import annotations

import math

import torch

from volgen.kernels.sampler import ode_step
from volgen.sampling.loop import denoise_loop


def sample_dpmpp_2m(denoiser, x_T: torch.Tensor, timesteps, *, cond: dict | None = None, consistency=None,
                    guidance=None, callback=None, generator: torch.Generator | None = None):
    """Deterministic; `generator` is accepted for a uniform sampler signature and not used."""
    del generator
    history = {}   # x0_hat and lambda of the previous step

    def update(x, x0, eps, now, nxt, t):
        (alpha, sigma), (alpha_n, sigma_n) = now, nxt
        lam_s = math.log(alpha / sigma)
        if sigma_n == 0:            # last step: straight to the clean sample
            return x0
        lam_t = math.log(alpha_n / sigma_n)
        h = lam_t - lam_s
        c_d = -alpha_n * math.expm1(-h)          # the weight of D
        previous = history.get("x0")
        w = 1 / (2 * (lam_s - history["lam"]) / h) if previous is not None else 0.0     # D = (1 + w) x0 - w x0_prev
        history.update(x0=x0, lam=lam_s)
        return ode_step(x, x0, sigma_n / sigma, c_d * (1 + w), previous, -c_d * w)

    return denoise_loop(denoiser, x_T, timesteps, update, cond=cond, consistency=consistency, guidance=guidance,
                        callback=callback)
