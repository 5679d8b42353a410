"""A per-voxel polynomial regression from the present contrasts to a target contrast: the estimate a module corrects.

One least-squares fit per (target contrast, subset of present conditions), 4 x 16 for BraTS, fitted in closed
form on training cases before a module trains and stored as a buffer with the module's weights. Degree 1 is the
linear-regression baseline of bench_quality; degree 2 adds the products of pairs of contrasts, which on held-out
phantoms is 2-3 dB better than linear for t1n, t2w and t2f (tissue contrast is not linear across sequences). A
module that starts from it learns a correction of an estimate that is already good, instead of rediscovering a
per-voxel map through a randomly initialised network.
"""
from __future__ import annotations

import torch

BACKGROUND = -1.0          # model range [-1, 1]: background is the minimum


class RegressionPrior(torch.nn.Module):
    def __init__(self, n_conditions: int, n_targets: int, degree: int = 1):
        super().__init__()
        if degree not in (1, 2):
            raise ValueError(f"prior degree must be 1 or 2, got {degree}")
        self.n_conditions = n_conditions
        # the features: each condition, then (degree 2) each product c_i c_j, i <= j
        self.terms = [(i,) for i in range(n_conditions)]
        if degree == 2:
            self.terms += [(i, j) for i in range(n_conditions) for j in range(i, n_conditions)]
        # coef[target, subset, :] = weights of each feature (0 where a condition is absent), then the intercept
        self.register_buffer("coef", torch.zeros(n_targets, 2 ** n_conditions, len(self.terms) + 1))

    def features(self, conditions: torch.Tensor) -> torch.Tensor:
        """(B, F, ...) from (B, C, ...)."""
        return torch.stack([conditions[:, t[0]] if len(t) == 1 else conditions[:, t[0]] * conditions[:, t[1]]
                            for t in self.terms], dim=1)

    @property
    def fitted(self) -> bool:
        return bool(self.coef.abs().sum() > 0)

    @torch.no_grad()
    def fit(self, volumes, ridge: float = 1e-3, max_voxels: int = 200_000) -> None:
        """Fit every table entry from volumes (C, D, H, W) in [-1, 1], each holding all C contrasts, on the voxels
        inside the head (any contrast above the background)."""
        c, f = self.n_conditions, len(self.terms)
        gram = torch.zeros(f + 1, f + 1, dtype=torch.float64)
        gen = torch.Generator().manual_seed(0)
        for images in volumes:
            flat = images.reshape(c, -1).double()
            head = (flat > BACKGROUND + 1e-3).any(0).nonzero().squeeze(1)
            if len(head) > max_voxels:
                head = head[torch.randperm(len(head), generator=gen)[:max_voxels]]
            z = torch.cat([self.features(flat[None, :, head])[0], torch.ones(1, len(head), dtype=torch.float64)])
            gram += z @ z.T
        coef = torch.zeros_like(self.coef, dtype=torch.float64)
        for subset in range(1, 2 ** c):
            cols = [k for k, term in enumerate(self.terms) if all(subset >> i & 1 for i in term)] + [f]
            a = gram[cols][:, cols] + ridge * torch.eye(len(cols), dtype=torch.float64)
            for target in range(self.coef.shape[0]):      # the target is feature `target` (a linear term)
                coef[target, subset, cols] = torch.linalg.solve(a, gram[cols, target])
        self.coef.copy_(coef.to(self.coef.dtype))

    def forward(self, conditions: torch.Tensor, present: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """(B, 1, D, H, W): the regression estimate of contrast `target` (B,) from the present conditions
        (B, C, D, H, W), background outside the head."""
        b, c = conditions.shape[:2]
        bits = 2 ** torch.arange(c, device=present.device)
        subset = (present.round().long() * bits).sum(1)
        coef = self.coef[target.long(), subset].to(conditions.dtype)                  # (B, F + 1)
        f = len(self.terms)
        estimate = (coef[:, :f, None, None, None] * self.features(conditions)).sum(1, keepdim=True) \
            + coef[:, f].view(b, 1, 1, 1, 1)
        flags = present.to(conditions.dtype).view(b, c, 1, 1, 1)
        head = ((conditions > BACKGROUND + 1e-3).to(conditions.dtype) * flags).amax(1, keepdim=True)
        return torch.where(head > 0, estimate, torch.full_like(estimate, BACKGROUND))


class InterpolationPrior(torch.nn.Module):
    """Super-resolution: the thick slices (a repeated-slice volume, the module's condition) linearly interpolated
    between the slice centres along `axis`, the estimate cubic interpolation baselines are close to."""

    fitted = True

    def __init__(self, factor: int, axis: int):
        super().__init__()
        self.factor, self.dim = factor, 2 + axis

    def fit(self, volumes) -> None:
        """Nothing to fit."""

    def forward(self, conditions: torch.Tensor, present=None, target=None) -> torch.Tensor:
        repeated = conditions[:, :1]
        n = repeated.shape[self.dim]
        index = torch.arange(0, n, self.factor, device=repeated.device)
        thick = repeated.index_select(self.dim, index)          # every block holds its slice value
        # align_corners=False puts thin slice j at thick coordinate (j - (factor - 1) / 2) / factor: the centres meet
        return torch.nn.functional.interpolate(thick, size=tuple(repeated.shape[2:]), mode="trilinear",
                                               align_corners=False)


class FillPrior(torch.nn.Module):
    """Inpainting: the masked voxels filled from the known ones around the mask by normalised convolution at three
    scales (each known voxel weighted by Gaussians of 2, 4 and 8 voxels), a cheap stand-in for the harmonic fill.
    Conditions are (masked image, mask, ...); known voxels keep their value."""

    fitted = True

    def __init__(self, sigmas=(2.0, 4.0, 8.0)):
        super().__init__()
        self.sigmas = tuple(sigmas)

    def fit(self, volumes) -> None:
        """Nothing to fit."""

    def forward(self, conditions: torch.Tensor, present=None, target=None) -> torch.Tensor:
        image, mask = conditions[:, :1], conditions[:, 1:2]
        known = 1.0 - mask
        num = torch.zeros_like(image)
        den = torch.zeros_like(image)
        for sigma in self.sigmas:
            num = num + _gaussian_blur(image * known, sigma)
            den = den + _gaussian_blur(known, sigma)
        fill = num / den.clamp_min(1e-6)
        return image * known + fill * mask


def _gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of (B, 1, D, H, W), zero outside the volume."""
    radius = int(3 * sigma)
    taps = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
    kernel = torch.exp(-0.5 * (taps / sigma) ** 2)
    kernel = kernel / kernel.sum()
    for dim in range(3):
        shape = [1, 1, 1, 1, 1]
        shape[2 + dim] = len(taps)
        padding = [0, 0, 0]
        padding[dim] = radius
        x = torch.nn.functional.conv3d(x, kernel.view(shape), padding=tuple(padding))
    return x
