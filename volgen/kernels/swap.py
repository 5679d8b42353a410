"""Put the fused GroupNorm(+SiLU) into MONAI's diffusion networks without changing a single parameter name, so state
dicts load either way: every nn.GroupNorm becomes FusedGroupNorm (same class of parameters, a subclass), a
GroupNorm directly followed by SiLU in a Sequential takes the SiLU in, and DiffusionUNetResnetBlock becomes a
subclass whose forward fuses norm1 + SiLU and norm2 + SiLU (its `nonlinearity` is shared with the time embedding,
so it cannot simply be removed). On the CPU the fused modules call the eager reference: the same arithmetic."""
from __future__ import annotations

import torch
from monai.networks.nets.diffusion_model_unet import DiffusionUNetResnetBlock

from volgen.kernels.groupnorm import group_norm


class FusedGroupNorm(torch.nn.GroupNorm):
    silu = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return group_norm(x, self.num_groups, self.weight, self.bias, self.eps, silu=self.silu)


class FusedResnetBlock(DiffusionUNetResnetBlock):
    """MONAI's block, its two norm + SiLU pairs fused (the rest as MONAI writes it; tests compare the two)."""

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        n1, n2 = self.norm1, self.norm2
        h = group_norm(x, n1.num_groups, n1.weight, n1.bias, n1.eps, silu=True)
        if self.upsample is not None:
            x, h = self.upsample(x), self.upsample(h)
        elif self.downsample is not None:
            x, h = self.downsample(x), self.downsample(h)
        h = self.conv1(h)
        temb = self.time_emb_proj(self.nonlinearity(emb))
        h = h + temb.view(*temb.shape, *([1] * self.spatial_dims))
        h = group_norm(h, n2.num_groups, n2.weight, n2.bias, n2.eps, silu=True)
        return self.skip_connection(x) + self.conv2(h)


def use_fused_kernels(model: torch.nn.Module) -> torch.nn.Module:
    """The same model with the fused modules in place (in place; returned for chaining)."""
    for module in model.modules():
        if type(module) is DiffusionUNetResnetBlock:
            module.__class__ = FusedResnetBlock
        if isinstance(module, torch.nn.Sequential):
            children = list(module)
            for a, b in zip(children, children[1:]):
                if type(a) is torch.nn.GroupNorm and type(b) is torch.nn.SiLU:
                    a.__class__ = FusedGroupNorm
                    a.silu = True
                    module[children.index(b)] = torch.nn.Identity()
    for module in model.modules():
        if type(module) is torch.nn.GroupNorm:
            module.__class__ = FusedGroupNorm
    return model
