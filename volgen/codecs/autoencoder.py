"""KL autoencoder codec: MONAI's AutoencoderKL (3D), latents scaled to unit variance.

encode(x) = scale_factor * mu(x) (the posterior mean: deterministic), decode(z) = decoder(z / scale_factor).
The scale factor is measured from data (Rombach et al. 2022, sec. 4.3.2: 1 / std of the latents), so diffusion sees
latents of about unit variance whatever the autoencoder learned; it is a buffer and is saved with the weights.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from monai.networks.nets import AutoencoderKL

from volgen.codecs.base import Codec
from volgen.config import DictConfig


@dataclass
class AutoencoderConfig(DictConfig):
    in_channels: int = 1
    out_channels: int = 1
    latent_channels: int = 3
    channels: tuple[int, ...] = (32, 64, 64)
    num_res_blocks: int = 1
    attention_levels: tuple[bool, ...] = (False, False, False)
    norm_num_groups: int = 16
    norm_eps: float = 1e-6
    with_encoder_nonlocal_attn: bool = False
    with_decoder_nonlocal_attn: bool = False

    def __post_init__(self):
        self.channels = tuple(self.channels)
        self.attention_levels = tuple(bool(a) for a in self.attention_levels)
        if len(self.attention_levels) != len(self.channels):
            raise ValueError(f"attention_levels has {len(self.attention_levels)} entries for "
                             f"{len(self.channels)} levels of channels")

    @property
    def downsampling(self) -> int:
        return 2 ** (len(self.channels) - 1)


class KLAutoencoderCodec(Codec):
    model_type = "kl_autoencoder"

    def __init__(self, config: AutoencoderConfig | None = None):
        super().__init__()
        self.config = config or AutoencoderConfig()
        c = self.config
        self.autoencoder = AutoencoderKL(
            spatial_dims=3, in_channels=c.in_channels, out_channels=c.out_channels, latent_channels=c.latent_channels,
            channels=c.channels, num_res_blocks=c.num_res_blocks, attention_levels=c.attention_levels,
            norm_num_groups=c.norm_num_groups, norm_eps=c.norm_eps,
            with_encoder_nonlocal_attn=c.with_encoder_nonlocal_attn,
            with_decoder_nonlocal_attn=c.with_decoder_nonlocal_attn)
        self.register_buffer("scale_factor", torch.tensor(1.0))

    @property
    def downsampling(self) -> int:
        return self.config.downsampling

    def config_dict(self) -> dict:
        return self.config.to_dict()

    @classmethod
    def from_config(cls, config: dict) -> "KLAutoencoderCodec":
        return cls(AutoencoderConfig.from_dict(config))

    def _check(self, shape, what: str):
        f = self.config.downsampling
        if any(s % f for s in shape[-3:]):
            raise ValueError(f"{what} spatial size {tuple(shape[-3:])} must be divisible by {f} for this autoencoder")

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        self._check(x.shape, "image")
        h = self.autoencoder.encoder(x)
        return self.autoencoder.quant_conv_mu(h) * self.scale_factor

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.autoencoder.decode(z / self.scale_factor)

    def latent_shape(self, image_shape):
        self._check(image_shape, "image")
        f = self.config.downsampling
        return (self.config.latent_channels, *(s // f for s in image_shape[-3:]))

    def training_loss(self, target: torch.Tensor, generator: torch.Generator, kl_weight: float) -> torch.Tensor:
        """L1 reconstruction of a posterior sample + kl_weight * the KL to N(0, I)."""
        ae = self.autoencoder
        z_mu, z_sigma = ae.encode(target)
        noise = torch.randn(z_mu.shape, generator=generator).to(z_mu)
        recon = ae.decode(z_mu + z_sigma * noise)
        kl = 0.5 * (z_mu ** 2 + z_sigma ** 2 - torch.log(z_sigma ** 2 + 1e-12) - 1).sum(dim=(1, 2, 3, 4)).mean()
        return F.l1_loss(recon.float(), target.float()) + kl_weight * kl

    @torch.no_grad()
    def measure_scale_factor(self, volumes) -> float:
        """Set the scale factor to 1 / std of the unscaled latents of `volumes` (an iterable of (B, C, D, H, W))."""
        self.scale_factor.fill_(1.0)
        latents = torch.cat([self.encode(v).flatten() for v in volumes])
        self.scale_factor.fill_(1.0 / latents.std().clamp_min(1e-8).item())
        return float(self.scale_factor)
