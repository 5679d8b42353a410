"""Exponential moving average of the trainable parameters (what gets exported), with warm-up."""
from __future__ import annotations

import torch


class EMA:
    def __init__(self, named_parameters, decay: float):
        self.decay = decay
        self.shadow = {name: p.detach().clone().float() for name, p in named_parameters}
        self.updates = 0

    @torch.no_grad()
    def update(self, named_parameters) -> None:
        self.updates += 1
        # Warm-up (as in Keras/timm): early averages do not drag in the random initialisation for long.
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for name, p in named_parameters:
            self.shadow[name].lerp_(p.detach().float(), 1 - decay)

    @torch.no_grad()
    def copy_to(self, named_parameters) -> None:
        for name, p in named_parameters:
            p.copy_(self.shadow[name].to(p.dtype))

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {**{name: t.cpu() for name, t in self.shadow.items()}, "__updates__": torch.tensor(self.updates)}

    def load_state_dict(self, state: dict) -> None:
        self.updates = int(state["__updates__"])
        for name in self.shadow:
            self.shadow[name].copy_(state[name])
