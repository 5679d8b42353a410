"""ControlNet (Zhang et al. 2023) baseline: MONAI's ControlNet, a trainable copy of the backbone's encoder whose
zero-initialised convolutions add residuals to the frozen U-Net's skips and middle block. Its conditioning
embedding brings the image-resolution conditions down to the backbone's grid (one stride-2 stage per factor of 2
of the codec)."""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from monai.networks.nets import ControlNet

from volgen.config import DictConfig
from volgen.modules.base import Conditioner


@dataclass
class ControlNetConfig(DictConfig):
    conditions: tuple[str, ...] = ("t1n", "t1c", "t2w", "t2f")
    embedding_channels: tuple[int, ...] = (16, 32, 64, 128)   # first len = log2(codec downsampling) + 1 are used

    def __post_init__(self):
        self.conditions, self.embedding_channels = tuple(self.conditions), tuple(self.embedding_channels)


class ControlNetConditioner(Conditioner):
    model_type = "controlnet"
    config_class = ControlNetConfig

    def __init__(self, backbone, config: ControlNetConfig | None = None):
        super().__init__(backbone, config)
        config = self.config
        net = backbone.network.config
        stages = int(round(math.log2(backbone.codec.downsampling))) + 1
        if stages > len(config.embedding_channels):
            raise ValueError(f"embedding_channels needs {stages} entries for a codec downsampling by "
                             f"{backbone.codec.downsampling}")
        self.controlnet = ControlNet(
            spatial_dims=3, in_channels=net.in_channels + net.cond_channels, num_res_blocks=net.num_res_blocks,
            channels=net.channels, attention_levels=net.attention_levels, norm_num_groups=net.norm_num_groups,
            norm_eps=net.norm_eps, resblock_updown=net.resblock_updown, num_head_channels=net.num_head_channels,
            with_conditioning=net.cross_attention_dim is not None, cross_attention_dim=net.cross_attention_dim,
            num_class_embeds=net.num_class_embeds, upcast_attention=net.upcast_attention,
            conditioning_embedding_in_channels=2 * len(config.conditions),
            conditioning_embedding_num_channels=config.embedding_channels[:stages],
            use_flash_attention=net.use_flash_attention)
        # Start from the backbone's encoder weights (the shared keys: input conv, embeddings, down and mid blocks).
        missing, _ = self.controlnet.load_state_dict(backbone.network.unet.state_dict(), strict=False)
        assert all(k.startswith(("controlnet_", "controlnet_cond_embedding")) for k in missing), missing

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, conditions: torch.Tensor | None = None,
                present: torch.Tensor | None = None, scale: float | None = None, **backbone_cond) -> torch.Tensor:
        scale = self.strength(scale)
        if conditions is None or scale == 0:
            return self.backbone.network(x_t, t, **backbone_cond)
        x_in = x_t if backbone_cond.get("concat") is None else torch.cat([x_t, backbone_cond["concat"]], dim=1)
        down, mid = self.controlnet(x_in, t, controlnet_cond=self.condition_input(conditions, present).to(x_t.dtype),
                                    conditioning_scale=scale, context=backbone_cond.get("context"),
                                    class_labels=backbone_cond.get("class_labels"))
        return self.backbone.network(x_t, t, down_residuals=down, mid_residual=mid, **backbone_cond)
