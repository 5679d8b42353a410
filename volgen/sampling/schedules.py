"""Noise schedules: where x_t = alpha(t) x0 + sigma(t) eps sits for each timestep, and which timesteps to sample.

Two kinds share one interface (`kind`, `alpha_sigma`, `timesteps`, `training_timesteps`, `timestep_dtype`), so the
Denoiser, the samplers and the training loop never branch on the schedule:
- `NoiseSchedule`: discrete variance-preserving diffusion (betas over T training steps; alpha^2 + sigma^2 = 1);
- `FlowSchedule`: rectified flow, x_t = (1 - s) x0 + s eps with s = t / T in (0, 1] (continuous t).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property

import torch


@dataclass(frozen=True)
class NoiseSchedule:
    """betas[t] for t = 0 .. T-1 (float64); alpha_bar[t] = prod_{s<=t} (1 - betas[s])."""

    betas: torch.Tensor
    recipe: dict | None = field(default=None, compare=False)   # how a named schedule was made (for configs)
    kind = "vp"
    timestep_dtype = torch.long

    @property
    def num_train_timesteps(self) -> int:
        return len(self.betas)

    @cached_property   # computed once: samplers ask for it every step
    def alphas_cumprod(self) -> torch.Tensor:
        return torch.cumprod(1.0 - self.betas, dim=0)

    def alpha_sigma(self, t) -> tuple[torch.Tensor, torch.Tensor]:
        """(sqrt(alpha_bar[t]), sqrt(1 - alpha_bar[t])) in float64 for integer timesteps t."""
        a = self.alphas_cumprod[torch.as_tensor(t).long().cpu()]
        return a.sqrt(), (1 - a).sqrt()

    @classmethod
    def linear(cls, steps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02) -> "NoiseSchedule":
        return cls(torch.linspace(beta_start, beta_end, steps, dtype=torch.float64),
                   dict(name="linear", steps=steps, beta_start=beta_start, beta_end=beta_end))

    @classmethod
    def scaled_linear(cls, steps: int = 1000, beta_start: float = 0.0015, beta_end: float = 0.0205) -> "NoiseSchedule":
        """Linear in sqrt(beta) (latent diffusion's schedule; MONAI's brain LDM uses 0.0015-0.0205)."""
        return cls(torch.linspace(beta_start ** 0.5, beta_end ** 0.5, steps, dtype=torch.float64) ** 2,
                   dict(name="scaled_linear", steps=steps, beta_start=beta_start, beta_end=beta_end))

    @classmethod
    def cosine(cls, steps: int = 1000, s: float = 0.008, max_beta: float = 0.999) -> "NoiseSchedule":
        """Nichol & Dhariwal (2021): alpha_bar(t) = cos^2(((t/T + s)/(1 + s)) pi/2), betas capped at max_beta."""
        def alpha_bar(u):
            return math.cos((u + s) / (1 + s) * math.pi / 2) ** 2

        betas = [min(1 - alpha_bar((i + 1) / steps) / alpha_bar(i / steps), max_beta) for i in range(steps)]
        return cls(torch.tensor(betas, dtype=torch.float64), dict(name="cosine", steps=steps, s=s, max_beta=max_beta))

    def timesteps(self, steps: int) -> list[int]:
        """`steps` training timesteps, evenly spaced from 0 and descending ('leading' spacing, as DDIM uses)."""
        if not 1 <= steps <= self.num_train_timesteps:
            raise ValueError(f"sampling steps must be in 1..{self.num_train_timesteps}, got {steps}")
        ratio = self.num_train_timesteps // steps
        return [i * ratio for i in range(steps)][::-1]

    def training_timesteps(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        return torch.randint(0, self.num_train_timesteps, (n,), generator=generator)

    def config(self) -> dict:
        if self.recipe is not None:
            return {"kind": self.kind, **self.recipe}
        return {"kind": self.kind, "betas": [float(b) for b in self.betas]}


@dataclass(frozen=True)
class FlowSchedule:
    """Rectified flow (Liu et al. 2023): the straight path from data (s = 0) to noise (s = 1). Networks see t = s T,
    as diffusers' flow-matching models do. `shift` > 1 spends more steps at high noise (SD3's timestep shift,
    s' = shift s / (1 + (shift - 1) s)), both in training and in sampling."""

    num_train_timesteps: int = 1000
    shift: float = 1.0
    kind = "flow"
    timestep_dtype = torch.float32

    def alpha_sigma(self, t) -> tuple[torch.Tensor, torch.Tensor]:
        s = torch.as_tensor(t, dtype=torch.float64).cpu() / self.num_train_timesteps
        return 1 - s, s

    def _shifted(self, s: torch.Tensor) -> torch.Tensor:
        return self.shift * s / (1 + (self.shift - 1) * s)

    def timesteps(self, steps: int) -> list[float]:
        """`steps` noise levels from s = 1 down to s = 1/T (then the sampler's last step goes to 0), shifted."""
        if steps < 1:
            raise ValueError(f"sampling steps must be at least 1, got {steps}")
        s = torch.linspace(1.0, 1.0 / self.num_train_timesteps, steps, dtype=torch.float64)
        return [float(v) for v in self._shifted(s) * self.num_train_timesteps]

    def training_timesteps(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        s = torch.rand(n, generator=generator, dtype=torch.float64).clamp_min(1e-4)
        return (self._shifted(s) * self.num_train_timesteps).float()

    def config(self) -> dict:
        return {"kind": self.kind, "name": "flow", "steps": self.num_train_timesteps, "shift": self.shift}


def make_schedule(name: str, steps: int = 1000, **kwargs):
    """A schedule by name: linear, scaled_linear, cosine (diffusion) or flow (rectified flow)."""
    makers = {"linear": NoiseSchedule.linear, "scaled_linear": NoiseSchedule.scaled_linear,
              "cosine": NoiseSchedule.cosine, "flow": FlowSchedule}
    if name not in makers:
        raise ValueError(f"unknown noise schedule '{name}' ({', '.join(makers)})")
    return makers[name](steps, **kwargs)


def schedule_from_config(config: dict):
    """The inverse of `.config()`."""
    config = dict(config)
    kind = config.pop("kind", None)
    if kind == "vp" and "betas" in config:
        return NoiseSchedule(torch.tensor(config["betas"], dtype=torch.float64))
    if kind in ("vp", "flow") and "name" in config:
        return make_schedule(config.pop("name"), **config)
    raise ValueError(f"not a schedule config: {config}")
