"""The codec contract: `encode(x) -> z`, `decode(z) -> x`, and the latent shape of an image shape.

Tensors are (B, C, D, H, W). A codec is an nn.Module so learned codecs (the KL autoencoder) and fixed ones (identity,
Haar) move between devices and dtypes the same way.
"""
from __future__ import annotations

import torch


class Codec(torch.nn.Module):
    model_type = "codec"
    downsampling = 1        # latent voxels per image voxel along each axis

    def config_dict(self) -> dict:
        """What `from_config` needs to rebuild this codec (weights travel separately)."""
        return {}

    @classmethod
    def from_config(cls, config: dict) -> "Codec":
        if config:
            raise ValueError(f"{cls.__name__} takes no settings, got {', '.join(config)}")
        return cls()

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def latent_shape(self, image_shape: tuple[int, ...]) -> tuple[int, ...]:
        """(C, D, H, W) of the latent for an image of shape (C, D, H, W)."""
        raise NotImplementedError

    def project(self, z: torch.Tensor, projection, t=None) -> torch.Tensor:
        """An image-space data-consistency `projection` applied to a latent: decode, project, encode (exact for an
        invertible codec, approximate for an autoencoder). A projection with `takes_timestep = True` is called as
        projection(image, t). Codecs that can fuse the three override this."""
        image = self.decode(z)
        return self.encode(projection(image, t) if getattr(projection, "takes_timestep", False)
                           else projection(image))


class IdentityCodec(Codec):
    """Diffusion directly on voxels."""

    model_type = "identity"

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return z

    def latent_shape(self, image_shape):
        return tuple(image_shape)
