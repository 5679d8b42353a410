"""The Haar wavelet codec: single-level orthonormal 3D Haar subbands (`kernels/haar_eager.py` has the transform
and its subband order; `kernels/haar.py` the fused passes, on CUDA, of the transform and of the data-consistency
projections in Haar space).

Low-pass scaling: the `aaa` band of an orthonormal 3D Haar transform is 2*sqrt2 times the 2x2x2 block mean, so it
spans ~2.8x the image's range while the detail bands stay small. cWDM divides it by 3 before diffusion; volgen
divides it by `lowpass_scale` = 2*sqrt2 by default, which makes `aaa` exactly the block mean (the image's own
range). `lowpass_scale=1` gives the plain transform (what PyWavelets computes).
"""
from __future__ import annotations

import math

import torch

from volgen.codecs.base import Codec
from volgen.kernels.haar import haar_dwt3 as fused_dwt, haar_idwt3 as fused_idwt
from volgen.kernels.haar import haar_keep_known, haar_keep_thick_slices
from volgen.kernels.haar_eager import check_even
from volgen.ops import KnownVoxels, ThickSlices


class HaarCodec(Codec):
    """Wavelet 'latents': 8 subbands per channel at half resolution, low-pass band divided by `lowpass_scale`."""

    model_type = "haar"
    downsampling = 2

    def __init__(self, lowpass_scale: float = 2.0 * math.sqrt(2.0)):
        super().__init__()
        self.lowpass_scale = float(lowpass_scale)

    def config_dict(self) -> dict:
        return {"lowpass_scale": self.lowpass_scale}

    @classmethod
    def from_config(cls, config: dict) -> "HaarCodec":
        unknown = set(config) - {"lowpass_scale"}
        if unknown:
            raise ValueError(f"unknown HaarCodec settings: {', '.join(sorted(unknown))}")
        return cls(**config)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return fused_dwt(x, self.lowpass_scale)            # one pass on CUDA, the eager butterflies elsewhere

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return fused_idwt(z, self.lowpass_scale)

    def project(self, z: torch.Tensor, projection, t=None) -> torch.Tensor:
        """Decode, project and encode block by block in one pass where the projection allows it: known voxels, and
        thick slices of an even factor (factor / 2 whole blocks each)."""
        if isinstance(projection, KnownVoxels):
            return haar_keep_known(z, projection.known, projection.mask, self.lowpass_scale)
        if isinstance(projection, ThickSlices) and projection.factor % 2 == 0 and projection.dim in (2, 3, 4):
            return haar_keep_thick_slices(z, projection.observed, projection.factor, projection.dim - 2,
                                          self.lowpass_scale)
        return super().project(z, projection, t)

    def latent_shape(self, image_shape):
        c, d, h, w = image_shape
        check_even((1, c, d, h, w))
        return (8 * c, d // 2, h // 2, w // 2)
