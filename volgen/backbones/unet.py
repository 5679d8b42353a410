"""The denoising network: MONAI's DiffusionModelUNet (3D) built from a dataclass config.

`DiffusionUNet(x_t, t, concat=None, class_labels=None, context=None, down_residuals=None, mid_residual=None)`:
- `concat`: condition channels concatenated to x_t (`cond_channels` of them; Concat-style conditioning and the
  public brain LDM's covariates);
- `class_labels`: which contrast a volume is (`num_class_embeds` classes), added to the time embedding;
- `context`: cross-attention tokens (B, N, cross_attention_dim);
- `down_residuals`, `mid_residual`: ControlNet's additions to the skips and the middle block.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from monai.networks.nets import DiffusionModelUNet

from volgen.config import DictConfig


@dataclass
class UNetConfig(DictConfig):
    in_channels: int = 1                      # channels of x_t (the codec's latent channels)
    out_channels: int = 1
    cond_channels: int = 0                    # extra input channels, concatenated to x_t
    channels: tuple[int, ...] = (32, 64, 64)
    attention_levels: tuple[bool, ...] = (False, False, True)
    num_res_blocks: int = 1
    num_head_channels: int | tuple[int, ...] = 32
    norm_num_groups: int = 16
    norm_eps: float = 1e-6
    resblock_updown: bool = False
    num_class_embeds: int | None = None       # e.g. 4: which MRI contrast
    cross_attention_dim: int | None = None
    upcast_attention: bool = False
    # torch's fused scaled-dot-product attention: MONAI's flag for the same weights and outputs (to rounding), without
    # the N^2 attention matrix. It matters because MONAI's middle block always attends over the whole lowest grid.
    use_flash_attention: bool = True

    def __post_init__(self):
        self.channels = tuple(self.channels)
        self.attention_levels = tuple(bool(a) for a in self.attention_levels)
        if isinstance(self.num_head_channels, list):
            self.num_head_channels = tuple(self.num_head_channels)
        if len(self.attention_levels) != len(self.channels):
            raise ValueError(f"attention_levels has {len(self.attention_levels)} entries for "
                             f"{len(self.channels)} levels of channels")
        if any(c % self.norm_num_groups for c in self.channels):
            raise ValueError(f"every channel count {self.channels} must be divisible by norm_num_groups "
                             f"{self.norm_num_groups}")

    @property
    def downsampling(self) -> int:
        """The factor every spatial size must be divisible by."""
        return 2 ** (len(self.channels) - 1)


class DiffusionUNet(torch.nn.Module):
    def __init__(self, config: UNetConfig):
        super().__init__()
        self.config = config
        self.unet = DiffusionModelUNet(
            spatial_dims=3, in_channels=config.in_channels + config.cond_channels, out_channels=config.out_channels,
            num_res_blocks=config.num_res_blocks, channels=config.channels, attention_levels=config.attention_levels,
            norm_num_groups=config.norm_num_groups, norm_eps=config.norm_eps, resblock_updown=config.resblock_updown,
            num_head_channels=config.num_head_channels, with_conditioning=config.cross_attention_dim is not None,
            cross_attention_dim=config.cross_attention_dim, num_class_embeds=config.num_class_embeds,
            upcast_attention=config.upcast_attention, use_flash_attention=config.use_flash_attention)

    def forward(self, x: torch.Tensor, t: torch.Tensor, concat: torch.Tensor | None = None,
                class_labels: torch.Tensor | None = None, context: torch.Tensor | None = None,
                down_residuals=None, mid_residual: torch.Tensor | None = None) -> torch.Tensor:
        if self.config.cond_channels:
            if concat is None or concat.shape[1] != self.config.cond_channels:
                got = "none" if concat is None else concat.shape[1]
                raise ValueError(f"this network takes {self.config.cond_channels} concatenated condition channels, "
                                 f"got {got}")
            x = torch.cat([x, concat.to(x.dtype)], dim=1)
        elif concat is not None:
            raise ValueError("this network was built without condition channels (cond_channels = 0)")
        return self.unet(x, t, context=context, class_labels=class_labels,
                         down_block_additional_residuals=down_residuals, mid_block_additional_residual=mid_residual)
