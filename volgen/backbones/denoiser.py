"""The Denoiser contract: a network with its noise schedule and declared parameterization.

`Denoiser(x_t, t, **cond)` returns the network's raw prediction; `x0_eps` converts it to the clean-sample and noise
estimates, so samplers and conditioning modules never care whether the network predicts eps, v or x0.
x_t = sqrt(a) x0 + sqrt(1 - a) eps and v = sqrt(a) eps - sqrt(1 - a) x0, with a = alpha_bar[t].
"""
from __future__ import annotations

import torch

from volgen.sampling.schedules import NoiseSchedule

PARAMETERIZATIONS = ("eps", "v", "x0")


def x0_eps_from(prediction: torch.Tensor, x_t: torch.Tensor, alpha_bar: torch.Tensor, parameterization: str):
    """(x0, eps) from a prediction of the given kind; `alpha_bar` broadcasts against x_t."""
    a, s = alpha_bar.sqrt(), (1 - alpha_bar).sqrt()
    if parameterization == "eps":
        return (x_t - s * prediction) / a, prediction
    if parameterization == "v":
        return a * x_t - s * prediction, a * prediction + s * x_t
    if parameterization == "x0":
        return prediction, (x_t - a * prediction) / s
    raise ValueError(f"unknown parameterization '{parameterization}' ({', '.join(PARAMETERIZATIONS)})")


class Denoiser(torch.nn.Module):
    def __init__(self, network: torch.nn.Module, schedule: NoiseSchedule, parameterization: str = "eps"):
        super().__init__()
        if parameterization not in PARAMETERIZATIONS:
            raise ValueError(f"unknown parameterization '{parameterization}' ({', '.join(PARAMETERIZATIONS)})")
        self.network = network
        self.schedule = schedule
        self.parameterization = parameterization

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, **cond) -> torch.Tensor:
        return self.network(x_t, t, **cond)

    def alpha_bar(self, t, like: torch.Tensor) -> torch.Tensor:
        """alpha_bar[t] shaped to broadcast over a (B, C, D, H, W) tensor, in its dtype and device."""
        t = torch.as_tensor(t, device=self.schedule.betas.device).long().reshape(-1)
        a = self.schedule.alphas_cumprod[t].to(device=like.device, dtype=like.dtype)
        return a.reshape(-1, *([1] * (like.ndim - 1)))

    def x0_eps(self, prediction: torch.Tensor, x_t: torch.Tensor, t) -> tuple[torch.Tensor, torch.Tensor]:
        return x0_eps_from(prediction, x_t, self.alpha_bar(t, x_t), self.parameterization)
