"""Noise schedules of discrete-time diffusion (betas over the training steps) and inference timesteps."""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class NoiseSchedule:
    """betas[t] for t = 0 .. T-1 (float64); alpha_bar[t] = prod_{s<=t} (1 - betas[s])."""

    betas: torch.Tensor

    @property
    def num_train_timesteps(self) -> int:
        return len(self.betas)

    @property
    def alphas_cumprod(self) -> torch.Tensor:
        return torch.cumprod(1.0 - self.betas, dim=0)

    @classmethod
    def linear(cls, steps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02) -> "NoiseSchedule":
        return cls(torch.linspace(beta_start, beta_end, steps, dtype=torch.float64))

    @classmethod
    def scaled_linear(cls, steps: int = 1000, beta_start: float = 0.0015, beta_end: float = 0.0205) -> "NoiseSchedule":
        """Linear in sqrt(beta) (latent diffusion's schedule; MONAI's brain LDM uses 0.0015-0.0205)."""
        return cls(torch.linspace(beta_start ** 0.5, beta_end ** 0.5, steps, dtype=torch.float64) ** 2)

    @classmethod
    def cosine(cls, steps: int = 1000, s: float = 0.008, max_beta: float = 0.999) -> "NoiseSchedule":
        """Nichol & Dhariwal (2021): alpha_bar(t) = cos^2(((t/T + s)/(1 + s)) pi/2), betas capped at max_beta."""
        def alpha_bar(u):
            return math.cos((u + s) / (1 + s) * math.pi / 2) ** 2

        betas = [min(1 - alpha_bar((i + 1) / steps) / alpha_bar(i / steps), max_beta) for i in range(steps)]
        return cls(torch.tensor(betas, dtype=torch.float64))

    @classmethod
    def named(cls, name: str, steps: int = 1000, **kwargs) -> "NoiseSchedule":
        makers = {"linear": cls.linear, "scaled_linear": cls.scaled_linear, "cosine": cls.cosine}
        if name not in makers:
            raise ValueError(f"unknown noise schedule '{name}' ({', '.join(makers)})")
        return makers[name](steps, **kwargs)

    def timesteps(self, steps: int) -> list[int]:
        """`steps` training timesteps, evenly spaced from 0 and descending ('leading' spacing, as DDIM uses)."""
        if not 1 <= steps <= self.num_train_timesteps:
            raise ValueError(f"sampling steps must be in 1..{self.num_train_timesteps}, got {steps}")
        ratio = self.num_train_timesteps // steps
        return [i * ratio for i in range(steps)][::-1]
