"""VCM, the Volumetric Conditioning Module: an asymmetric U-Net that modulates a frozen backbone's prediction.

1. A condition encoder (no time embedding) takes the conditions at image resolution and brings them down to the
   backbone's grid with stride-2 convolutions (one per factor of 2 of the codec: 1 for Haar, 3 for an 8x autoencoder).
2. A small time-conditioned U-Net on that grid takes (x_t, the frozen prediction, the encoded conditions) and the
   backbone's class label (which contrast), and ends in two 1x1x1 heads gamma and beta.
3. prediction' = prediction (1 + scale gamma) + scale beta, on the backbone's own parameterization (eps for an
   eps-network: eps_hat = eps (1 + gamma) + beta). The heads start at zero, so an untrained VCM is the identity;
   the published VCM does not do this, and its modules start by perturbing the backbone.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from monai.networks.nets import DiffusionModelUNet

from volgen.config import DictConfig
from volgen.modules.base import Conditioner


@dataclass
class VCMConfig(DictConfig):
    conditions: tuple[str, ...] = ("t1n", "t1c", "t2w", "t2f")
    encoder_channels: tuple[int, ...] = (16, 32)     # widths of the condition encoder, first to last
    features: int = 16                               # encoded-condition channels handed to the U-Net
    channels: tuple[int, ...] = (32, 64)             # the small U-Net
    attention_levels: tuple[bool, ...] = (False, False)
    num_res_blocks: int = 1
    num_head_channels: int = 32
    norm_num_groups: int = 8
    head_channels: int = 32                          # U-Net output features the gamma/beta heads read

    def __post_init__(self):
        self.conditions, self.encoder_channels = tuple(self.conditions), tuple(self.encoder_channels)
        self.channels = tuple(self.channels)
        self.attention_levels = tuple(bool(a) for a in self.attention_levels)


def _conv(cin: int, cout: int, stride: int = 1) -> torch.nn.Module:
    return torch.nn.Conv3d(cin, cout, 3, stride=stride, padding=1)


class ConditionEncoder(torch.nn.Module):
    """Image-resolution conditions -> features on the backbone's grid (downsampling by `factor`, a power of 2)."""

    def __init__(self, in_channels: int, widths: tuple[int, ...], out_channels: int, factor: int):
        super().__init__()
        steps = int(round(math.log2(factor)))
        if 2 ** steps != factor:
            raise ValueError(f"the codec's downsampling {factor} is not a power of 2")
        widths = list(widths) + [widths[-1]] * max(0, steps + 1 - len(widths))
        layers = [_conv(in_channels, widths[0]), torch.nn.SiLU()]
        for i in range(steps):
            layers += [_conv(widths[i], widths[i + 1], stride=2), torch.nn.SiLU()]
        layers += [torch.nn.Conv3d(widths[steps], out_channels, 1)]
        self.layers = torch.nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class VCM(Conditioner):
    model_type = "vcm"
    config_class = VCMConfig

    def __init__(self, backbone, config: VCMConfig | None = None):
        super().__init__(backbone, config)
        config = self.config
        latent = backbone.network.config.out_channels
        net = backbone.network.config
        self.encoder = ConditionEncoder(2 * len(config.conditions), config.encoder_channels, config.features,
                                        backbone.codec.downsampling)
        self.unet = DiffusionModelUNet(
            spatial_dims=3, in_channels=net.in_channels + latent + config.features, out_channels=config.head_channels,
            num_res_blocks=config.num_res_blocks, channels=config.channels, attention_levels=config.attention_levels,
            norm_num_groups=config.norm_num_groups, num_head_channels=config.num_head_channels,
            num_class_embeds=net.num_class_embeds, use_flash_attention=True)
        # MONAI zero-initialises the U-Net's output convolution. Behind zero heads that would be a dead end (the
        # heads' weight gradients are h * g = 0 and the output conv's are W_head^T g = 0), so give it PyTorch's
        # default initialisation: only the heads start at zero.
        self.unet.out[2].conv.reset_parameters()
        self.gamma = torch.nn.Conv3d(config.head_channels, latent, 1)
        self.beta = torch.nn.Conv3d(config.head_channels, latent, 1)
        for head in (self.gamma, self.beta):
            torch.nn.init.zeros_(head.weight)
            torch.nn.init.zeros_(head.bias)

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, conditions: torch.Tensor | None = None,
                present: torch.Tensor | None = None, **backbone_cond) -> torch.Tensor:
        with torch.no_grad():
            prediction = self.backbone.network(x_t, t, **backbone_cond)
        if conditions is None or self.scale == 0:
            return prediction
        features = self.encoder(self.condition_input(conditions, present).to(x_t.dtype))
        h = self.unet(torch.cat([x_t, prediction, features], dim=1), t,
                      class_labels=backbone_cond.get("class_labels"))
        return prediction * (1 + self.scale * self.gamma(h)) + self.scale * self.beta(h)
