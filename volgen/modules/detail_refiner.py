"""A light refinement of a synthesised contrast on a grid twice as fine as the model's (a 1 mm case, a 2 mm module).

The detail transfer (volgen/tasks/detail.py) hands the 2 mm estimate its conditions' 1 mm detail by a local linear
fit; the refiner corrects what a linear fit cannot (partial volume at tissue edges is not linear in the contrasts).
It sees the fine estimate and the conditions, all on the output's [0, 1] scale, and adds a residual:

    refined = estimate + r(estimate, conditions, target)

It works on the model grid's cells: every 2^3 block of fine voxels becomes one cell with 8x the channels (a
space-to-depth), so the 3^3 convolutions run on the 2 mm grid (8x fewer voxels than 1 mm; a BraTS-size case in a few
seconds on 2 CPU cores), with one 4 mm level for context; the residual comes back to the fine voxels by the inverse
depth-to-space. The last layer starts at zero, so an untrained refiner returns the estimate unchanged.

Which targets it refines is chosen on validation phantoms and stored in its config (`targets`): the job leaves any
other target as the detail transfer made it.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from volgen.io.contrasts import MRI_CONTRASTS

CELL = 2            # fine voxels per model-grid cell along each axis
MULTIPLE = 2 * CELL  # the fine grid's sizes must be multiples of this (cells, then one 2x coarser level)


def to_cells(x: torch.Tensor) -> torch.Tensor:
    """(B, C, D, H, W) -> (B, C * 8, D / 2, H / 2, W / 2): each 2^3 block of voxels as channels of one cell."""
    b, c, d, h, w = x.shape
    x = x.reshape(b, c, d // CELL, CELL, h // CELL, CELL, w // CELL, CELL)
    return x.permute(0, 1, 3, 5, 7, 2, 4, 6).reshape(b, c * CELL ** 3, d // CELL, h // CELL, w // CELL)


def from_cells(x: torch.Tensor) -> torch.Tensor:
    """The inverse of `to_cells`."""
    b, c8, d, h, w = x.shape
    c = c8 // CELL ** 3
    x = x.reshape(b, c, CELL, CELL, CELL, d, h, w)
    return x.permute(0, 1, 5, 2, 6, 3, 7, 4).reshape(b, c, d * CELL, h * CELL, w * CELL)


class ResidualBlock(torch.nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.first = torch.nn.Conv3d(channels, channels, 3, padding=1)
        self.second = torch.nn.Conv3d(channels, channels, 3, padding=1)
        torch.nn.init.zeros_(self.second.weight)       # each block starts as the identity
        torch.nn.init.zeros_(self.second.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.second(F.silu(self.first(F.silu(x))))


class DetailRefiner(torch.nn.Module):
    model_type = "detail_refiner"
    INPUTS = 1 + len(MRI_CONTRASTS)     # the estimate, then every contrast's slot (the target's and absent ones 0)

    def __init__(self, channels: int = 32, blocks: int = 2, coarse_blocks: int = 2, targets: tuple = ()):
        super().__init__()
        self.channels, self.blocks, self.coarse_blocks = channels, blocks, coarse_blocks
        self.targets = tuple(targets)
        self.inp = torch.nn.Conv3d(self.INPUTS * CELL ** 3 + len(MRI_CONTRASTS), channels, 1)
        self.fine = torch.nn.Sequential(*[ResidualBlock(channels) for _ in range(blocks)])
        self.down = torch.nn.Conv3d(channels, channels, 2, stride=2)
        self.coarse = torch.nn.Sequential(*[ResidualBlock(channels) for _ in range(coarse_blocks)])
        self.fine_after = torch.nn.Sequential(*[ResidualBlock(channels) for _ in range(blocks)])
        self.out = torch.nn.Conv3d(channels, CELL ** 3, 1)
        torch.nn.init.zeros_(self.out.weight)
        torch.nn.init.zeros_(self.out.bias)

    def config_dict(self) -> dict:
        return {"channels": self.channels, "blocks": self.blocks, "coarse_blocks": self.coarse_blocks,
                "targets": list(self.targets)}

    @classmethod
    def from_config(cls, config: dict) -> "DetailRefiner":
        return cls(**config)

    def forward(self, inputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """`inputs` (B, 5, D, H, W) on the [0, 1] scale: the estimate, then t1n, t1c, t2w, t2f (0 for the target and
        for absent contrasts), sizes multiples of MULTIPLE; `target` (B, 4) one-hot. Returns (B, 1, D, H, W)."""
        cells = to_cells(inputs)
        which = target[:, :, None, None, None].to(cells.dtype).expand(-1, -1, *cells.shape[2:])
        x = self.fine(self.inp(torch.cat([cells, which], 1)))
        context = self.coarse(self.down(x))
        x = self.fine_after(x + F.interpolate(context, size=x.shape[2:], mode="trilinear", align_corners=False))
        return inputs[:, :1] + from_cells(self.out(F.silu(x)))
