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

PARAMETERIZATIONS = ("eps", "v", "x0", "flow")
_NEEDS_KIND = {"v": "vp", "flow": "flow"}


def x0_eps_from(prediction: torch.Tensor, x_t: torch.Tensor, alpha: torch.Tensor, sigma: torch.Tensor,
                parameterization: str):
    """(x0, eps) from a prediction of the given kind; `alpha`, `sigma` broadcast against x_t."""
    if parameterization == "eps":
        return (x_t - sigma * prediction) / alpha, prediction
    if parameterization == "x0":
        return prediction, (x_t - alpha * prediction) / sigma
    if parameterization == "v":
        return alpha * x_t - sigma * prediction, sigma * x_t + alpha * prediction
    if parameterization == "flow":
        return x_t - sigma * prediction, x_t + alpha * prediction
    raise ValueError(f"unknown parameterization '{parameterization}' ({', '.join(PARAMETERIZATIONS)})")


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

    def x0_eps(self, prediction: torch.Tensor, x_t: torch.Tensor, t) -> tuple[torch.Tensor, torch.Tensor]:
        return x0_eps_from(prediction, x_t, *self.alpha_sigma(t, x_t), self.parameterization)
