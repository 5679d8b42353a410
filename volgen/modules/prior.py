"""A per-voxel polynomial regression from the present contrasts to a target contrast: the estimate a module corrects.

One least-squares fit per (target contrast, subset of present conditions), 4 x 16 for BraTS, fitted in closed
form on training cases before a module trains and stored as a buffer with the module's weights. Degree 1 is the
linear-regression baseline of the quality bench; degree 2 adds the products of pairs of contrasts, because tissue
contrast is not linear across sequences. A
module that starts from it learns a correction of an estimate that is already good, instead of rediscovering a
per-voxel map through a randomly initialised network.
"""
from __future__ import annotations

import numpy as np
import torch

from volgen.baselines import cubic_upsample

BACKGROUND = -1.0          # model range [-1, 1]: background is the minimum


class HalfPrecisionBuffers:
    """Mixin for a prior whose large fitted buffers (`half_buffers`) are estimates, not precise quantities: they are
    saved in float16 (half the megabytes of the shipped weights; hub.save_pretrained keeps other buffers as they
    are) and load back into the float32 buffer."""

    half_buffers: tuple[str, ...] = ()

    def _save_to_state_dict(self, destination, prefix, keep_vars):
        super()._save_to_state_dict(destination, prefix, keep_vars)
        for name in self.half_buffers:
            if prefix + name in destination:
                destination[prefix + name] = destination[prefix + name].half()


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
    """Super-resolution: the thick slices (a repeated-slice volume, the module's condition) interpolated by cubic
    splines along `axis`, sampled at the thin slices' centres: exactly `baselines.cubic_upsample`, so the module
    learns what interpolation cannot recover. The spline is linear in the slices, so it is one (thin x thick)
    matrix per length, built once from scipy's own spline and applied as a matrix product."""

    fitted = True

    def __init__(self, factor: int, axis: int):
        super().__init__()
        self.factor, self.dim = factor, 2 + axis          # as trained; a call may give its volume's own
        self._matrices: dict[tuple[int, int], torch.Tensor] = {}

    def fit(self, volumes) -> None:
        """Nothing to fit."""

    def matrix(self, n_thick: int, factor: int | None = None) -> torch.Tensor:
        """The (thin x thick) spline matrix for `n_thick` slices split `factor` ways (the spline depends on both)."""
        factor = factor or self.factor
        if (n_thick, factor) not in self._matrices:
            columns = cubic_upsample(np.eye(n_thick), factor, axis=0)   # column j: slice j's spline
            self._matrices[n_thick, factor] = torch.as_tensor(columns, dtype=torch.float32)
        return self._matrices[n_thick, factor]

    def forward(self, conditions: torch.Tensor, present=None, target=None, factor: int | None = None,
                dim: int | None = None) -> torch.Tensor:
        """The thick slices of `conditions` interpolated: `factor` model voxels per thick slice along tensor `dim`
        (a job's own volume), by default the ones the module was trained with."""
        factor, dim = factor or self.factor, dim or self.dim
        repeated = conditions[:, :1]
        n = repeated.shape[dim]
        index = torch.arange(0, n, factor, device=repeated.device)
        thick = repeated.index_select(dim, index).movedim(dim, -1)     # every block holds its slice value
        spline = self.matrix(thick.shape[-1], factor).to(device=thick.device, dtype=thick.dtype)
        return (thick @ spline.T)[..., :n].movedim(-1, dim)


class FillPrior(torch.nn.Module):
    """Inpainting: the masked voxels filled with the harmonic function (6-neighbour Laplacian = 0) that equals the
    known voxels on the mask's boundary: `baselines.harmonic_fill`, solved here by conjugate gradients on the mask's
    bounding box (a few hundred 3x3x3 convolutions, no sparse matrix). Conditions are (masked image, mask, ...);
    known voxels keep their value. Not a normalised-convolution fill: that averages in the background around the
    head."""

    fitted = True

    def __init__(self, tolerance: float = 1e-5, max_iterations: int = 2000):
        super().__init__()
        self.tolerance, self.max_iterations = tolerance, max_iterations

    def fit(self, volumes) -> None:
        """Nothing to fit."""

    def forward(self, conditions: torch.Tensor, present=None, target=None) -> torch.Tensor:
        image, mask = conditions[:, :1], conditions[:, 1:2]
        out = image * (1 - mask)
        for items in item_groups(image):
            box = bounding_box(mask[items] > 0.5, margin=1)
            if box is not None:
                box = (items, slice(0, 1), *box)
                out[box] = harmonic_fill(image[box].float(), mask[box].float() > 0.5, self.tolerance,
                                         self.max_iterations).to(out.dtype)
        return out


def item_groups(batch: torch.Tensor) -> list[slice]:
    """How to split a batch for the fills and fits that work on a box around each mask: item by item on the CPU,
    where each item's own box is the least work; all at once elsewhere, where the work is cheap and each wait for the
    device (a box's size, a convergence test) is not."""
    if batch.device.type == "cpu":
        return [slice(i, i + 1) for i in range(len(batch))]
    return [slice(None)]


def bounding_box(where: torch.Tensor, margin: int) -> tuple[slice, ...] | None:
    """The slices of the last three dims holding every True voxel of `where` (..., D, H, W) in any item, widened by
    `margin` voxels inside the volume; None when there is none."""
    inside = where.reshape(-1, *where.shape[-3:]).any(0).nonzero()
    if len(inside) == 0:
        return None
    lo = (inside.min(0).values - margin).clamp_min(0)
    hi = inside.max(0).values + margin + 1
    return tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))


_NEIGHBOURS = torch.zeros(1, 1, 3, 3, 3)
for _d in range(3):
    for _s in (0, 2):
        _index = [1, 1, 1]
        _index[_d] = _s
        _NEIGHBOURS[(0, 0, *_index)] = 1.0


def _neighbour_sum(x: torch.Tensor) -> torch.Tensor:
    """Sum of the 6 face neighbours of each voxel of (1, 1, D, H, W); outside the volume counts as nothing."""
    return torch.nn.functional.conv3d(x, _NEIGHBOURS.to(x.device, x.dtype), padding=1)


def harmonic_fill(image: torch.Tensor, mask: torch.Tensor, tolerance: float, max_iterations: int,
                  check_every: int | None = None, screening: float = 0.0) -> torch.Tensor:
    """(B, 1, D, H, W): `image` with the voxels of the bool `mask` solved from (deg + screening) u_i -
    sum_unknown u_j = sum_known image_j by conjugate gradients (the system is symmetric positive definite on the
    mask), every item at once. An item stops moving once its residual is below `tolerance`. Off the CPU the loop asks
    whether all have stopped only every 16 iterations (`check_every`), since each question waits for the device.
    `screening` 1/l^2 makes the boundary values fade over about l voxels into the mask instead of reaching across it
    (0: the harmonic fill)."""
    check_every = check_every or (1 if image.device.type == "cpu" else 16)
    m = mask.to(image.dtype)
    known = image * (1 - m)
    degree = _neighbour_sum(torch.ones_like(image[:1])) + screening

    def apply(u):
        return m * (degree * u - _neighbour_sum(u * m))

    def total(x):                                               # per item, shaped to broadcast
        return x.sum(dim=(1, 2, 3, 4), keepdim=True)

    tiny = torch.finfo(image.dtype).tiny
    rhs = m * _neighbour_sum(known)
    x = m * (total(known) / total(1 - m).clamp_min(1))          # start from the mean known value
    r = rhs - apply(x)
    p = r.clone()
    rr = total(r * r)
    stop = tolerance ** 2 * total(rhs * rhs).clamp_min(1e-20)
    for iteration in range(max_iterations):
        active = rr > stop
        if iteration % check_every == 0 and not active.any():
            break
        ap = apply(p)
        alpha = torch.where(active, rr / total(p * ap).clamp_min(tiny), 0.0)
        x = x + alpha * p
        r = r - alpha * ap
        rr_new = total(r * r)
        p = torch.where(active, r + (rr_new / rr.clamp_min(tiny)) * p, p)
        rr = torch.where(active, rr_new, rr)
    return known + m * x
