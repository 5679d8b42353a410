"""Forward operators and data-consistency projections (applied to the x0 estimate at every sampling step).

A projection takes (x0, t) and returns a corrected x0; it is the only place a task's physics enters sampling.
The same forward operators make the degraded inputs modules are trained on, so training and sampling agree.
"""
from __future__ import annotations

import torch


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


class ImageSpaceProjection:
    """Wraps an image-space projection for a sampler running in a codec's space: decode x0, project, encode.
    With the (orthonormal up to band scaling) Haar codec this is exact; with an autoencoder it is approximate.
    A projection with `takes_timestep = True` is called as project(image, t): its strength can follow the noise
    level (a proximal step weighs the prior's x0 by how sure it is at t)."""

    def __init__(self, codec, project):
        self.codec, self.project = codec, project
        self.takes_timestep = getattr(project, "takes_timestep", False)

    def __call__(self, x0: torch.Tensor, t) -> torch.Tensor:
        if isinstance(self.project, KnownVoxels) and hasattr(self.codec, "lowpass_scale"):
            # Haar: decode, keep the known voxels and encode block by block, in one pass (fused on CUDA)
            from volgen.kernels.haar import haar_keep_known
            return haar_keep_known(x0, self.project.known, self.project.mask, self.codec.lowpass_scale)
        if isinstance(self.project, ThickSlices) and hasattr(self.codec, "lowpass_scale") and \
                self.project.factor % 2 == 0 and self.project.dim in (2, 3, 4):
            # Haar: a thick slice is factor / 2 whole blocks, so decode, project and encode fuse the same way
            from volgen.kernels.haar import haar_keep_thick_slices
            p = self.project
            return haar_keep_thick_slices(x0, p.observed, p.factor, p.dim - 2, self.codec.lowpass_scale)
        image = self.codec.decode(x0)
        return self.codec.encode(self.project(image, t) if self.takes_timestep else self.project(image))


class ThickSlices:
    """The orthogonal projection onto {x : thick_slices(x) = observed}: each block's mean is replaced by the observed
    one, the detail within the block kept. A class rather than a closure so a codec can fuse it (Haar: one pass)."""

    def __init__(self, observed: torch.Tensor, factor: int, dim: int):
        self.observed, self.factor, self.dim = observed, factor, dim

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return x + repeat_slices(self.observed - thick_slices(x, self.factor, self.dim), self.factor, self.dim)


def thick_slice_projection(observed: torch.Tensor, factor: int, dim: int) -> ThickSlices:
    return ThickSlices(observed, factor, dim)


class KnownVoxels:
    """Keep the known voxels (mask = 0) and the estimate inside the mask (mask = 1): RePaint's replacement, applied to
    the x0 estimate at every step. A class rather than a closure so a codec can fuse it (Haar: one pass)."""

    def __init__(self, known: torch.Tensor, mask: torch.Tensor):
        self.known, self.mask = known, mask

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.known * (1 - self.mask) + x * self.mask


def known_voxel_projection(known: torch.Tensor, mask: torch.Tensor) -> KnownVoxels:
    return KnownVoxels(known, mask)
