"""Data consistency in a codec's space (applied to the x0 estimate at every sampling step).

A projection takes (x0, t) and returns a corrected x0; it is the only place a task's physics enters sampling. The
image-space projections themselves (`ThickSlices`, `KnownVoxels`) are pure operators in `volgen.ops`, which also
makes the degraded inputs modules are trained on, so training and sampling agree.
"""
from __future__ import annotations

import torch


class ImageSpaceProjection:
    """Wraps an image-space projection for a sampler running in a codec's space: decode x0, project, encode.
    With the (orthonormal up to band scaling) Haar codec this is exact; with an autoencoder it is approximate.
    A projection with `takes_timestep = True` is called as project(image, t): its strength can follow the noise
    level (a proximal step weighs the prior's x0 by how sure it is at t)."""

    def __init__(self, codec, project):
        self.codec, self.project = codec, project
        self.takes_timestep = getattr(project, "takes_timestep", False)

    def __call__(self, x0: torch.Tensor, t) -> torch.Tensor:
        return self.codec.project(x0, self.project, t)    # a codec may fuse the three (Haar: one pass)
