"""Patch autoencoder codec: each f x f x f block of voxels to C latent channels, and back.

Why not only the KL autoencoder: trained on crops within a small budget it reconstructs whole volumes poorly (its
GroupNorm statistics learnt on crops do not hold over a whole volume), while a plain PCA of 4x4x4 blocks is already
close to what the diffusion needs. So this codec *is* that PCA (fitted on the training volumes before training, `prepare`),
plus zero-initialised convolutional branches that learn what a linear map of one block cannot: the encoder and
decoder branches see the neighbouring blocks (3x3x3 convolutions on the latent grid), so they remove block seams
and recover detail. It starts as good as the PCA and training can only add to it. Everything runs on the latent
grid, so training is cheap, and there is no normalisation layer whose statistics depend on crop size: a whole
volume behaves like a crop.

encode(x) = scale * (pca(u) + branch(u)) with u the blocks of x as channels; decode(z) = unblock(pca^T(z / scale)
+ branch(z / scale)). `scale` is per channel, 1 / std over training volumes (PCA components differ in variance by
orders of magnitude; diffusion wants each about unit variance).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from volgen.codecs.base import Codec
from volgen.config import DictConfig


@dataclass
class PatchAutoencoderConfig(DictConfig):
    factor: int = 4              # block edge: the latent grid is this many times coarser per axis
    latent_channels: int = 8
    width: int = 96              # channels of the convolutional branches
    depth: int = 2               # 3x3x3 convolutions in each branch


def to_blocks(x: torch.Tensor, f: int) -> torch.Tensor:
    """(B, 1, D, H, W) -> (B, f^3, D/f, H/f, W/f): each block's voxels as channels (3-D pixel unshuffle)."""
    b, c, d, h, w = x.shape
    x = x.reshape(b, c, d // f, f, h // f, f, w // f, f)
    return x.permute(0, 1, 3, 5, 7, 2, 4, 6).reshape(b, c * f ** 3, d // f, h // f, w // f)


def from_blocks(u: torch.Tensor, f: int) -> torch.Tensor:
    """The inverse of to_blocks."""
    b, n, d, h, w = u.shape
    c = n // f ** 3
    u = u.reshape(b, c, f, f, f, d, h, w).permute(0, 1, 5, 2, 6, 3, 7, 4)
    return u.reshape(b, c, d * f, h * f, w * f)


def _branch(c_in: int, width: int, c_out: int, depth: int) -> torch.nn.Sequential:
    layers, c = [], c_in
    for _ in range(depth):
        layers += [torch.nn.Conv3d(c, width, 3, padding=1), torch.nn.SiLU()]
        c = width
    head = torch.nn.Conv3d(c, c_out, 1)
    torch.nn.init.zeros_(head.weight)
    torch.nn.init.zeros_(head.bias)
    return torch.nn.Sequential(*layers, head)


class PatchAutoencoderCodec(Codec):
    model_type = "patch_autoencoder"

    def __init__(self, config: PatchAutoencoderConfig | None = None):
        super().__init__()
        self.config = c = config or PatchAutoencoderConfig()
        n = c.factor ** 3
        if c.latent_channels > n:
            raise ValueError(f"latent_channels {c.latent_channels} exceeds the {n} voxels of a block")
        self.encode_linear = torch.nn.Conv3d(n, c.latent_channels, 1)
        self.decode_linear = torch.nn.Conv3d(c.latent_channels, n, 1)
        self.encode_branch = _branch(n, c.width, c.latent_channels, c.depth)
        self.decode_branch = _branch(c.latent_channels, c.width, n, c.depth)
        self.register_buffer("scale", torch.ones(c.latent_channels))
        self.register_buffer("fitted", torch.tensor(False))

    @property
    def downsampling(self) -> int:
        return self.config.factor

    def config_dict(self) -> dict:
        return self.config.to_dict()

    @classmethod
    def from_config(cls, config: dict) -> "PatchAutoencoderCodec":
        return cls(PatchAutoencoderConfig.from_dict(config))

    def _check(self, shape, what: str):
        f = self.config.factor
        if any(s % f for s in shape[-3:]):
            raise ValueError(f"{what} spatial size {tuple(shape[-3:])} must be divisible by {f} for this autoencoder")

    def latent_shape(self, image_shape):
        self._check(image_shape, "image")
        f = self.config.factor
        return (self.config.latent_channels, *(s // f for s in image_shape[-3:]))

    def _encode_raw(self, x: torch.Tensor) -> torch.Tensor:
        self._check(x.shape, "image")
        u = to_blocks(x, self.config.factor)
        return self.encode_linear(u) + self.encode_branch(u)

    def _decode_raw(self, z: torch.Tensor) -> torch.Tensor:
        return from_blocks(self.decode_linear(z) + self.decode_branch(z), self.config.factor)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self._encode_raw(x) * self.scale.view(1, -1, 1, 1, 1)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self._decode_raw(z / self.scale.view(1, -1, 1, 1, 1))

    def training_loss(self, target: torch.Tensor, generator: torch.Generator, kl_weight: float) -> torch.Tensor:
        """Mean squared reconstruction error (what PSNR measures); a deterministic code has no KL term."""
        return F.mse_loss(self._decode_raw(self._encode_raw(target)).float(), target.float())

    @torch.no_grad()
    def prepare(self, cases, max_blocks: int = 400_000) -> None:
        """Fit the linear maps as the PCA of the training volumes' blocks (every contrast), unless already fitted
        (a resumed or fine-tuned codec keeps what it learnt)."""
        if bool(self.fitted):
            return
        f, c = self.config.factor, self.config.latent_channels
        blocks = torch.cat([to_blocks(case.images[i:i + 1][None].double(), f).flatten(2)[0].T
                            for case in cases for i in range(case.images.shape[0])])
        if len(blocks) > max_blocks:
            blocks = blocks[torch.randperm(len(blocks), generator=torch.Generator().manual_seed(0))[:max_blocks]]
        mean = blocks.mean(0)
        covariance = (blocks - mean).T @ (blocks - mean) / len(blocks)
        _, vectors = torch.linalg.eigh(covariance)                 # ascending eigenvalues
        components = vectors[:, -c:].flip(1).T                     # (c, f^3), largest first
        self.encode_linear.weight.copy_(components.view(c, -1, 1, 1, 1))
        self.encode_linear.bias.copy_(-(components @ mean))
        self.decode_linear.weight.copy_(components.T.reshape(-1, c, 1, 1, 1))
        self.decode_linear.bias.copy_(mean)
        self.fitted.fill_(True)

    @torch.no_grad()
    def measure_scale_factor(self, volumes) -> list[float]:
        """Set each channel's scale to 1 / its std over the latents of `volumes` (iterable of (B, 1, D, H, W))."""
        latents = torch.cat([self._encode_raw(v).transpose(0, 1).flatten(1) for v in volumes], dim=1)
        self.scale.copy_(1.0 / latents.std(dim=1).clamp_min(1e-8))
        return self.scale.tolist()
