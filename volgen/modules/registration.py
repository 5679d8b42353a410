"""Intensity-robust image registration in PyTorch: an affine map plus a smooth displacement, fitted by Adam.

Used by the inpainting prior to bring a sharp template of healthy anatomy onto a case (volgen/modules/
template_prior.py). The template's anatomy is then the case's own, up to what a smooth warp can move, and a fill
can continue the case's gyri and ventricle walls into a mask instead of a population blur.

Model: x_template = A x + u(x), in grid_sample's normalised coordinates; A starts at the identity, u is a
displacement on a coarse lattice (one control point per `control` voxels) upsampled trilinearly. Loss: the
weighted mean squared difference between the fixed image and the best line a + b * warped template (a and b fitted
in closed form at every step, so that a case's gain and contrast do not matter), plus `smooth` times the squared
differences of neighbouring control points. Coarse to fine: the images are average-pooled by each level's factor.
Several fixed images (contrasts of one case) may share the warp: each gets its own line.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

LEVELS = ((4, 80), (2, 80), (1, 40))      # (pooling factor, Adam steps): coarse to fine


@dataclass
class Warp:
    affine: torch.Tensor         # (3, 4) on normalised coordinates
    displacement: torch.Tensor   # (1, 3, d, h, w) normalised, on the control lattice


def apply_warp(moving: torch.Tensor, warp: Warp, shape=None) -> torch.Tensor:
    """moving (N, C, D, H, W) sampled at the warped coordinates of a `shape` grid (default: moving's)."""
    shape = tuple(shape or moving.shape[2:])
    with torch.autocast(moving.device.type, enabled=False):
        return _sample(moving.float(), warp, shape).to(moving.dtype)


def _sample(moving: torch.Tensor, warp: Warp, shape) -> torch.Tensor:
    base = F.affine_grid(warp.affine[None].to(moving), (1, 1, *shape), align_corners=True)
    field = F.interpolate(warp.displacement.to(moving), size=shape, mode="trilinear", align_corners=True)
    grid = (base + field.permute(0, 2, 3, 4, 1)).expand(len(moving), *shape, 3)
    return F.grid_sample(moving, grid, mode="bilinear", padding_mode="border", align_corners=True)


def register(moving: torch.Tensor, fixed: torch.Tensor, weight: torch.Tensor, *, control: int = 8,
             smooth: float = 0.05, lr: float = 0.01, levels=LEVELS) -> Warp:
    """The warp that takes `moving` (C, D, H, W) onto `fixed` (C, D, H, W), counting the voxels by `weight`
    (D, H, W; 0 where the fixed image is unknown, as in a hole to be filled)."""
    with torch.autocast(fixed.device.type, enabled=False):     # bf16 coordinates misplace voxels by a fifth
        return _fit(moving.float(), fixed.float(), weight.float(), control, smooth, lr, levels)


def _fit(moving, fixed, weight, control, smooth, lr, levels) -> Warp:
    lattice = [max(2, size // control) for size in fixed.shape[1:]]
    affine = torch.eye(3, 4, device=fixed.device, requires_grad=True)
    displacement = torch.zeros(1, 3, *lattice, device=fixed.device, requires_grad=True)
    optimiser = torch.optim.Adam([{"params": [affine], "lr": lr * 0.2}, {"params": [displacement], "lr": lr}])
    with torch.enable_grad():              # the priors run under no_grad; the fit needs its own gradients
        for factor, steps in levels:
            m, f, w = (F.avg_pool3d(x[None], factor) if factor > 1 else x[None] for x in (moving, fixed, weight[None]))
            w = (w > 0.999).float()        # only pooled cells wholly known
            for _ in range(steps):
                optimiser.zero_grad()
                warped = apply_warp(m, Warp(affine, displacement), f.shape[2:])
                loss = _line_misfit(warped, f, w) + smooth * _roughness(displacement)
                loss.backward()
                optimiser.step()
    return Warp(affine.detach(), displacement.detach())


def _line_misfit(x: torch.Tensor, y: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Weighted mean over channels of the squared residual of y on the least-squares line in x."""
    total = w.sum().clamp_min(1.0)
    mx = (w * x).sum((0, 2, 3, 4), keepdim=True) / total
    my = (w * y).sum((0, 2, 3, 4), keepdim=True) / total
    slope = (w * (x - mx) * (y - my)).sum((0, 2, 3, 4), keepdim=True) / (
        (w * (x - mx) ** 2).sum((0, 2, 3, 4), keepdim=True) + 1e-8)
    return (w * (my + slope * (x - mx) - y) ** 2).sum() / (total * x.shape[1])


def _roughness(displacement: torch.Tensor) -> torch.Tensor:
    """Mean squared difference of neighbouring control points, in units of the lattice spacing."""
    scale = displacement.shape[2] ** 2         # normalised units -> lattice cells (about; the axes are alike)
    return sum((displacement.diff(dim=d) ** 2).mean() for d in (2, 3, 4)) * scale


@torch.no_grad()
def groupwise_template(volumes, rounds: int = 2, **settings) -> torch.Tensor:
    """A sharp mean of volumes (each C, D, H, W, one grid): the plain mean, then `rounds` times each volume
    registered (all its channels through one warp) to the current mean and the registered volumes averaged."""
    template = torch.stack([v.float() for v in volumes]).mean(0)
    everywhere = torch.ones(template.shape[1:], device=template.device)
    for _ in range(rounds):
        template = torch.stack([apply_warp(v.float()[None], register(v, template, everywhere, **settings))[0]
                                for v in volumes]).mean(0)
    return template
