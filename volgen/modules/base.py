"""The Conditioner contract: a trainable module that steers a frozen backbone.

A Conditioner is built from a backbone, is the identity at initialisation (its output equals the backbone's
prediction), has a `scale` (0 turns it off; 1 as trained), and trains while the backbone is frozen. It has the
network signature the Denoiser expects, `(x_t, t, conditions=, present=, **backbone_cond) -> prediction`, so
`conditioner.denoiser()` plugs it into any sampler.

Conditions are image-resolution channels (B, C, D, H, W) named by the config (MRI contrasts; a low-resolution
volume; a masked volume and its mask). `present` (B, C) flags which are there: absent channels are zeroed and the
flags go in as extra constant channels, so one module serves any subset.

Saving: the module's own weights only; the config names the backbone (registered name or folder) and its sha256,
and loading refuses a module on a backbone other than the one it was trained on.
"""
from __future__ import annotations

import torch

from volgen.backbones.denoiser import Denoiser


class Conditioner(torch.nn.Module):
    model_type = "conditioner"
    config_class = None          # each module's dataclass config; it has a `conditions` tuple

    def __init__(self, backbone, config=None):
        super().__init__()
        self.config = config if config is not None else self.config_class()
        if not self.config.conditions:
            raise ValueError("a conditioner needs at least one condition channel")
        self.backbone = backbone
        self.conditions = tuple(self.config.conditions)
        self.scale = 1.0            # the strength it was trained at; a sampling call passes its own (guidance)
        self.freeze_backbone()

    def config_dict(self) -> dict:
        return {"backbone": self.backbone_reference(), "module": self.config.to_dict()}

    @classmethod
    def from_config(cls, config: dict, backbone) -> "Conditioner":
        """The module of a saved config on `backbone` (the hub loads the one the config names)."""
        return cls(backbone, cls.config_class.from_dict(config.get("module", {})))

    def strength(self, scale: float | None) -> float:
        """A call's conditioning scale: its own, else the module's."""
        return self.scale if scale is None else scale

    def freeze_backbone(self) -> None:
        self.backbone.requires_grad_(False)
        self.backbone.eval()

    def train(self, mode: bool = True):
        super().train(mode)
        self.backbone.eval()           # frozen: its dropout/normalisation stay in inference mode
        return self

    def trainable_parameters(self) -> list[torch.nn.Parameter]:
        return [p for name, p in self.named_parameters() if not name.startswith("backbone.") and p.requires_grad]

    def count_trainable(self) -> int:
        return sum(p.numel() for p in self.trainable_parameters())

    def condition_input(self, conditions: torch.Tensor, present: torch.Tensor | None) -> torch.Tensor:
        """(B, 2C, D, H, W): the present conditions (absent ones zeroed) and their flags as constant maps."""
        b, c = conditions.shape[:2]
        if c != len(self.conditions):
            raise ValueError(f"expected {len(self.conditions)} condition channels ({', '.join(self.conditions)}), "
                             f"got {c}")
        if present is None:
            present = torch.ones(b, c, device=conditions.device, dtype=conditions.dtype)
        flags = present.to(conditions.dtype).view(b, c, 1, 1, 1)
        return torch.cat([conditions * flags, flags.expand_as(conditions)], dim=1)

    def denoiser(self) -> Denoiser:
        """This module in front of the backbone, as a Denoiser for the samplers."""
        inner = self.backbone.denoiser
        return Denoiser(self, inner.schedule, inner.parameterization)

    # -- saving: the module's weights without the backbone's ---------------------------------------------------
    def hub_state_dict(self) -> dict:
        return {k: v for k, v in self.state_dict().items() if not k.startswith("backbone.")}

    def hub_load_state_dict(self, state: dict) -> None:
        # the submodules' own loaders decide what is missing: a prior may stand in for a buffer older saves lack
        result = self.load_state_dict(state, strict=False)
        missing = sorted(k for k in result.missing_keys if not k.startswith("backbone."))
        unexpected = sorted(result.unexpected_keys)
        if missing or unexpected:
            raise RuntimeError(f"{len(missing)} missing and {len(unexpected)} unexpected tensors "
                               f"(e.g. {(missing or unexpected)[0]})")

    def backbone_reference(self) -> dict:
        source = getattr(self.backbone, "hub_source", None)
        if source is None:
            raise ValueError("save the backbone with volgen.hub (or load it from there) before saving a module "
                             "trained on it: the module's config must name it")
        return source
