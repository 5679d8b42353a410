"""The Denoiser contract: a network with its noise schedule and declared parameterization.

`Denoiser(x_t, t, **cond)` returns the network's raw prediction; `x0_eps` converts it to the clean-sample and noise
estimates, so samplers and conditioning modules never care what the network predicts. With
x_t = alpha x0 + sigma eps (the schedule gives alpha, sigma for t):
- eps: the noise;  x0: the clean sample;
- v (variance-preserving schedules): v = alpha eps - sigma x0;
- flow (rectified flow, alpha = 1 - sigma): the velocity u = dx_t/dsigma = eps - x0.
"""
from __future__ import annotations

import torch

from volgen.kernels.sampler import x0_eps, x0_eps_eager

PARAMETERIZATIONS = ("eps", "v", "x0", "flow")
_NEEDS_KIND = {"v": "vp", "flow": "flow"}


def x0_eps_coefficients(alpha, sigma, parameterization: str) -> tuple:
    """(a_x, a_p, e_x, e_p) with x0 = a_x x_t + a_p prediction and eps = e_x x_t + e_p prediction: every
    parameterization is linear in (x_t, prediction), which is what lets one fused pass convert it."""
    if parameterization == "eps":
        return 1 / alpha, -sigma / alpha, 0.0, 1.0
    if parameterization == "x0":
        return 0.0, 1.0, 1 / sigma, -alpha / sigma
    if parameterization == "v":
        return alpha, -sigma, sigma, alpha
    if parameterization == "flow":
        return 1.0, -sigma, 1.0, alpha
    raise ValueError(f"unknown parameterization '{parameterization}' ({', '.join(PARAMETERIZATIONS)})")


def x0_eps_from(prediction: torch.Tensor, x_t: torch.Tensor, alpha: torch.Tensor, sigma: torch.Tensor,
                parameterization: str):
    """(x0, eps) from a prediction of the given kind; `alpha`, `sigma` broadcast against x_t."""
    a_x, a_p, e_x, e_p = x0_eps_coefficients(alpha, sigma, parameterization)
    return a_x * x_t + a_p * prediction, e_x * x_t + e_p * prediction


def prediction_target(x0: torch.Tensor, eps: torch.Tensor, alpha: torch.Tensor, sigma: torch.Tensor,
                      parameterization: str) -> torch.Tensor:
    """What a network of this parameterization should output for (x0, eps): the training target."""
    targets = {"eps": lambda: eps, "x0": lambda: x0, "v": lambda: alpha * eps - sigma * x0,
               "flow": lambda: eps - x0}
    if parameterization not in targets:
        raise ValueError(f"unknown parameterization '{parameterization}' ({', '.join(PARAMETERIZATIONS)})")
    return targets[parameterization]()


class Denoiser(torch.nn.Module):
    def __init__(self, network: torch.nn.Module, schedule, parameterization: str = "eps"):
        super().__init__()
        if parameterization not in PARAMETERIZATIONS:
            raise ValueError(f"unknown parameterization '{parameterization}' ({', '.join(PARAMETERIZATIONS)})")
        needed = _NEEDS_KIND.get(parameterization)
        if needed is not None and schedule.kind != needed:
            raise ValueError(f"parameterization '{parameterization}' needs a '{needed}' schedule, "
                             f"not '{schedule.kind}'")
        self.network = network
        self.schedule = schedule
        self.parameterization = parameterization

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, **cond) -> torch.Tensor:
        return self.network(x_t, t, **cond)

    def timestep_batch(self, t, like: torch.Tensor) -> torch.Tensor:
        """One timestep for every item of a batch, in the dtype the schedule's networks expect."""
        return torch.full((like.shape[0],), t, device=like.device, dtype=self.schedule.timestep_dtype)

    def alpha_sigma(self, t, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """alpha(t), sigma(t) shaped to broadcast over a (B, C, D, H, W) tensor, in its dtype and device."""
        shape = (-1, *([1] * (like.ndim - 1)))
        return tuple(c.reshape(-1).to(device=like.device, dtype=like.dtype).reshape(shape)
                     for c in self.schedule.alpha_sigma(t))

    def x0_eps(self, prediction: torch.Tensor, x_t: torch.Tensor, t, uncond: torch.Tensor | None = None,
               guidance: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
        """(x0, eps) at timestep t (one for the whole batch, or one per item), in x_t's dtype. With `uncond` (the
        unconditional pass's prediction) the prediction is classifier-free guided first, uncond + guidance
        (prediction - uncond); at one t, one fused pass (`volgen.kernels.sampler.x0_eps`) on CUDA."""
        if torch.as_tensor(t).numel() > 1:                  # per-item levels: broadcast tensors, eager
            coefficients = x0_eps_coefficients(*self.alpha_sigma(t, x_t), self.parameterization)
            return x0_eps_eager(x_t, prediction, coefficients, uncond, guidance)
        alpha, sigma = (float(c) for c in self.schedule.alpha_sigma(t))
        coefficients = x0_eps_coefficients(alpha, sigma, self.parameterization)
        return x0_eps(x_t, prediction, coefficients, uncond, guidance)
