"""Pure operators on volumes, shared by training, sampling, the jobs and the phantoms: the bottom layer, importing
nothing of volgen's.

- Thick slices: a thick slice is the mean of the `factor` thin slices it covers; `ThickSlices` projects onto the
  volumes with given thick slices, `KnownVoxels` onto those with given voxels outside a mask. They are classes, not
  closures, so a codec can fuse them with its transform (Haar: one pass).
- `dilate` grows a binary mask; `smooth_inside` smooths within a mask without pulling the background in.
- `compartments` and `label_zones`: a BraTS label map's three compartments, and the region inserting it may change.
- `local_linear_fit` and `guided_filter`: an image fitted window by window as a linear combination of guides (the
  synthesis estimate's edges put where its conditions have them; the 1 mm detail transfer); `GuidedFit` applies it.
- `TowardPrior`: a posterior mean shrunk toward the module's prior (the pseudo-healthy fill's estimate).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

FWHM_PER_SIGMA = 2.0 * np.sqrt(2.0 * np.log(2.0))


def thick_slices(x: torch.Tensor, factor: int, dim: int) -> torch.Tensor:
    """Thick-slice acquisition along `dim`: the mean of each block of `factor` slices (the size must divide)."""
    n = x.shape[dim]
    if n % factor:
        raise ValueError(f"size {n} along axis {dim} is not divisible by the factor {factor}")
    shape = list(x.shape)
    shape[dim:dim + 1] = [n // factor, factor]
    return x.reshape(shape).mean(dim=dim + 1)


def repeat_slices(x: torch.Tensor, factor: int, dim: int) -> torch.Tensor:
    """Each thick slice repeated `factor` times: the thin grid's view of a thick-slice volume."""
    return x.repeat_interleave(factor, dim=dim)


class ThickSlices:
    """The orthogonal projection onto {x : thick_slices(x) = observed}: each block's mean is replaced by the observed
    one, the detail within the block kept."""

    def __init__(self, observed: torch.Tensor, factor: int, dim: int):
        self.observed, self.factor, self.dim = observed, factor, dim

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return x + repeat_slices(self.observed - thick_slices(x, self.factor, self.dim), self.factor, self.dim)


def thick_slice_projection(observed: torch.Tensor, factor: int, dim: int) -> ThickSlices:
    return ThickSlices(observed, factor, dim)


class KnownVoxels:
    """Keep the known voxels (mask = 0) and the estimate inside the mask (mask = 1): RePaint's replacement, applied to
    the x0 estimate at every step."""

    def __init__(self, known: torch.Tensor, mask: torch.Tensor):
        self.known, self.mask = known, mask

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return keep_known(x, self.known, self.mask)


def tiled(t: torch.Tensor, n: int) -> torch.Tensor:
    """`t` (G, ...) repeated to n items when G divides n: a group of G images, the samples one after another
    (item k * G + g is image g of sample k, as `tasks.generate` draws them); one item is expanded (a view)."""
    if len(t) == n:
        return t
    if len(t) == 1:
        return t.expand(n, *t.shape[1:])
    if n % len(t):
        raise ValueError(f"{len(t)} images do not tile a batch of {n}")
    return t.repeat(n // len(t), *([1] * (t.ndim - 1)))


def keep_known(x: torch.Tensor, known: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """x inside the mask (1), the known image outside (0); known and mask (1, G or B items) tile x's batch."""
    known, mask = tiled(known, len(x)), tiled(mask, len(x))
    return known * (1 - mask) + x * mask


def known_voxel_projection(known: torch.Tensor, mask: torch.Tensor) -> KnownVoxels:
    return KnownVoxels(known, mask)


def dilate(mask: torch.Tensor, radius: int) -> torch.Tensor:
    """A (B, 1, D, H, W) float mask grown by `radius` voxels (a cube)."""
    if radius <= 0:
        return mask
    return F.max_pool3d(mask, 2 * radius + 1, stride=1, padding=radius)


def random_blobs(head: torch.Tensor, gen: torch.Generator, radius=(3.0, 10.0)) -> torch.Tensor:
    """(B, 1, D, H, W) float: one blob per item inside its `head` (bool, same shape), a ball of random radius (voxels)
    around a random head voxel with an edge made bumpy (+-20%) by smooth noise: a hole where no tumour is."""
    out = torch.zeros(head.shape, dtype=torch.float32)
    grid = torch.stack(torch.meshgrid(*[torch.arange(n, dtype=torch.float32) for n in head.shape[2:]],
                                      indexing="ij"))
    for b in range(head.shape[0]):
        voxels = head[b, 0].nonzero()
        if not len(voxels):
            continue
        centre = voxels[int(torch.randint(len(voxels), (1,), generator=gen))].float()
        r = radius[0] + (radius[1] - radius[0]) * float(torch.rand(1, generator=gen))
        coarse = torch.rand((1, 1, *[max(n // 8, 2) for n in head.shape[2:]]), generator=gen) * 2 - 1
        bumps = F.interpolate(coarse, size=head.shape[2:], mode="trilinear", align_corners=True)[0, 0]
        distance = (grid - centre.view(3, 1, 1, 1)).square().sum(0).sqrt()
        out[b, 0] = ((distance * (1 + 0.2 * bumps) < r) & head[b, 0]).float()
    return out


LESION_BORDER = 1         # voxels around a tumour's labels that inserting it may change (its blurred edge)


def compartments(seg: torch.Tensor) -> torch.Tensor:
    """(B, 3, ...) float: the necrotic core, oedema and enhancing tumour of BraTS labels (B, 1, ...)."""
    return torch.cat([(seg == label).to(torch.float32) for label in (1, 2, 3)], dim=1)


def label_zones(one_hot: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(labels (B, 1, ...) long: 1-3 inside the tumour, 0 elsewhere; region (B, 1, ...) bool: the labels and their
    `LESION_BORDER`) from the three compartment channels (B, 3, ...)."""
    inside = one_hot > 0.5
    labels = (inside * torch.arange(1, 4, device=one_hot.device).view(1, 3, 1, 1, 1)).amax(1, keepdim=True)
    region = dilate((labels > 0).float(), LESION_BORDER) > 0.5
    return labels.long(), region


def smooth_inside(image: np.ndarray, mask: np.ndarray, fwhm_mm: float, spacing) -> np.ndarray:
    """Gaussian smoothing that neither pulls the background in nor pushes the maps out: normalised by the mask."""
    if fwhm_mm <= 0:
        return image
    sigma = [fwhm_mm / FWHM_PER_SIGMA / s for s in spacing]
    m = mask.astype(np.float64)
    num = ndimage.gaussian_filter(image * m, sigma, mode="constant")
    den = ndimage.gaussian_filter(m, sigma, mode="constant")
    return np.where(mask, num / np.maximum(den, 1e-12), 0.0)


ALIKE_MAX_LEVELS = 64          # smooth_alike's guide levels, each a smoothing


def smooth_alike(image: np.ndarray, guide: np.ndarray, mask: np.ndarray, fwhm_mm: float, spacing, width: float,
                 fallback: float = 0.01) -> np.ndarray:
    """`smooth_inside` that averages each voxel with the voxels whose `guide` value is alike: a bilateral filter with
    a Gaussian range kernel of sd `width` (a region's mean is not mixed with its neighbours' of another level). It is
    computed as Durand and Dorsey's piecewise-linear approximation: the normalised smoothing with the range weights of
    guide levels `width` apart, interpolated linearly between the two levels around each voxel's guide value.
    `fallback` adds that share of the plain smoothing's weights, so that a voxel with few alike neighbours gets its
    neighbourhood's mean rather than the noise of a handful. `width` <= 0 is the plain smoothing."""
    if fwhm_mm <= 0:
        return image
    if width <= 0:
        return smooth_inside(image, mask, fwhm_mm, spacing)
    sigma = [fwhm_mm / FWHM_PER_SIGMA / s for s in spacing]
    m = mask.astype(np.float32)          # float32: a smoothing per level, and the result is a mean of many voxels
    guide = np.where(mask, guide, 0.0).astype(np.float32)
    image = image.astype(np.float32)
    low, high = float(guide[mask].min()), float(guide[mask].max())
    # capped: a few outliers in the guide would otherwise cost a smoothing per level (past it, levels are coarser)
    levels = np.linspace(low, high, min(max(int(np.ceil((high - low) / width)) + 1, 2), ALIKE_MAX_LEVELS))
    plain_num = ndimage.gaussian_filter(image * m, sigma, mode="constant")
    plain_den = ndimage.gaussian_filter(m, sigma, mode="constant")
    step = (high - low) / (len(levels) - 1)
    position = np.clip((guide - low) / step, 0, len(levels) - 1) if step > 0 else np.zeros_like(guide)
    below = np.minimum(np.floor(position).astype(int), len(levels) - 2)
    share = position - below                        # of the level above
    out = np.zeros_like(guide)
    for k, level in enumerate(levels):
        near = mask & ((below == k) | (below == k - 1))   # the voxels that interpolate from this level
        if not near.any():
            continue
        weight = np.exp(-0.5 * ((guide - level) / width) ** 2) * m
        num = ndimage.gaussian_filter(image * weight, sigma, mode="constant") + fallback * plain_num
        den = ndimage.gaussian_filter(weight, sigma, mode="constant") + fallback * plain_den
        part = np.where(below == k, 1 - share, share)
        out[near] += (part * num / np.maximum(den, 1e-12))[near]
    return np.where(mask, out, 0.0)


def _window_mean(x: np.ndarray, radius: int) -> np.ndarray:
    return ndimage.uniform_filter(x, 2 * radius + 1, mode="nearest")


def window_fit(guides: list[np.ndarray], image: np.ndarray, radius: int, eps: float):
    """(coefficients per guide, offset) of each (2 radius + 1)^3 window centred on a voxel: image ~ sum_i a_i
    guide_i + b by least squares, with a ridge eps on the guides' covariance. The moments are kept guide-major (each
    a contiguous volume), which is what makes this fast; solve reads them voxel-major through a view."""
    guides = np.stack(guides).astype(np.float64)
    image = image.astype(np.float64)
    n = len(guides)
    means = np.stack([_window_mean(g, radius) for g in guides])
    image_mean = _window_mean(image, radius)
    cov = np.empty((n, n) + image.shape)
    cross = np.empty((n,) + image.shape)
    for i in range(n):
        cross[i] = _window_mean(guides[i] * image, radius) - means[i] * image_mean
        for j in range(i, n):
            cov[i, j] = _window_mean(guides[i] * guides[j], radius) - means[i] * means[j]
            cov[j, i] = cov[i, j]
        cov[i, i] += eps
    a = np.linalg.solve(np.moveaxis(cov, (0, 1), (-2, -1)), np.moveaxis(cross, 0, -1)[..., None])[..., 0]
    a = np.ascontiguousarray(np.moveaxis(a, -1, 0))
    return list(a), image_mean - np.einsum("i...,i...->...", a, means)


def local_linear_fit(guides: list[np.ndarray], image: np.ndarray, radius: int, eps: float):
    """The window fits averaged over the windows that hold each voxel (the guided filter's coefficients)."""
    coefficients, offset = window_fit(guides, image, radius, eps)
    return [_window_mean(a, radius) for a in coefficients], _window_mean(offset, radius)


def guided_filter(guides: list[np.ndarray], image: np.ndarray, radius: int, eps: float) -> np.ndarray:
    """`image` as its local linear fit to the guides, on their grid (He et al. 2013's guided filter, several guides):
    smooth where the guides are, with edges where they have them."""
    coefficients, offset = local_linear_fit(guides, image, radius, eps)
    return offset + sum(a * g for a, g in zip(coefficients, guides))


class GuidedFit:
    """image (B, C, ...) -> each channel's `guided_filter` by the guides (G tensors, or one (G, ...) tensor) on the
    same grid, as a tensor of the image's dtype and device. A class like the projections, so that it travels with a
    job's inputs."""

    def __init__(self, guides: list[torch.Tensor] | torch.Tensor, radius: int, eps: float):
        self.guides = [g.detach().float().cpu().numpy() for g in guides]
        self.radius, self.eps = radius, eps

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        flat = image.detach().float().cpu().numpy().reshape(-1, *image.shape[2:])
        fitted = np.stack([guided_filter(self.guides, x, self.radius, self.eps) for x in flat])
        return torch.from_numpy(fitted.astype(np.float32)).view(image.shape).to(image)


class TowardPrior:
    """(image, prior) -> `weight` x image + (1 - weight) x prior inside `region` (a mask broadcastable to the image),
    the image elsewhere: a module's posterior mean shrunk toward the prior it corrects, where the two err in part
    independently (a task's `refine`; `uses_prior` has the sampler hand the module's prior over on the model grid).
    Outside the region the image is kept exactly (the prior comes through the codec, exact only to rounding).
    Without a prior (a bare backbone) the image is returned."""

    uses_prior = True

    def __init__(self, weight: float, region: torch.Tensor):
        if not 0.0 <= weight <= 1.0:
            raise ValueError(f"the weight of the mean must be in [0, 1], got {weight}")
        self.weight, self.region = weight, region > 0.5

    def __call__(self, image: torch.Tensor, prior: torch.Tensor | None) -> torch.Tensor:
        if prior is None:
            return image
        shrunk = torch.lerp(prior.to(image), image, self.weight)
        return torch.where(self.region.to(image.device), shrunk, image)
