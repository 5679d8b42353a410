"""Concat baseline (cWDM-style): the conditions, encoded by the backbone's own codec (Haar subbands or autoencoder
latents, one condition channel at a time), are concatenated to the input of a trainable copy of the backbone's
network. The copy starts with the backbone's weights and zero weights on the new input channels, so at
initialisation it is the backbone; then all of it trains ("a backbone trained with them")."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from volgen.backbones.unet import DiffusionUNet, UNetConfig
from volgen.config import DictConfig
from volgen.modules.base import Conditioner


@dataclass
class ConcatConfig(DictConfig):
    conditions: tuple[str, ...] = ("t1n", "t1c", "t2w", "t2f")

    def __post_init__(self):
        self.conditions = tuple(self.conditions)


class ConcatConditioner(Conditioner):
    model_type = "concat"
    config_class = ConcatConfig

    def __init__(self, backbone, config: ConcatConfig | None = None):
        super().__init__(backbone, config)
        config = self.config
        base = backbone.network.config
        probe = 16 * backbone.codec.downsampling
        latent_per_channel = backbone.codec.latent_shape((1, probe, probe, probe))[0]
        extra = len(config.conditions) * (latent_per_channel + 1)        # encoded conditions + their flags
        self.network = DiffusionUNet(UNetConfig.from_dict({**base.to_dict(), "cond_channels": base.cond_channels + extra}))
        state = backbone.network.state_dict()
        key = "unet.conv_in.conv.weight"
        weight = torch.zeros_like(self.network.state_dict()[key])
        weight[:, : state[key].shape[1]] = state[key]
        self.network.load_state_dict({**state, key: weight})

    def encode_conditions(self, conditions: torch.Tensor, present: torch.Tensor | None) -> torch.Tensor:
        stacked = self.condition_input(conditions, present)
        c = len(self.conditions)
        with torch.no_grad():
            codes = [self.backbone.codec.encode(stacked[:, i:i + 1]) for i in range(c)]
        grid = codes[0].shape[2:]
        flags = stacked[:, c:, :1, :1, :1].expand(-1, -1, *grid)
        return torch.cat([*codes, flags], dim=1)

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, conditions: torch.Tensor | None = None,
                present: torch.Tensor | None = None, scale: float | None = None, **backbone_cond) -> torch.Tensor:
        scale = self.strength(scale)
        if conditions is None or scale == 0:
            return self.backbone.network(x_t, t, **backbone_cond)
        encoded = scale * self.encode_conditions(conditions, present).to(x_t.dtype)
        own = backbone_cond.pop("concat", None)
        concat = encoded if own is None else torch.cat([own, encoded], dim=1)
        return self.network(x_t, t, concat=concat, **backbone_cond)
