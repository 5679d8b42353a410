"""A pretrained backbone: codec + denoising network + schedule + parameterization, saved and loaded as one model.

Wavelet diffusion is a Haar codec under the U-Net, latent diffusion a KL autoencoder; the rest is the same. When
the network has a class embedding, `contrasts` names its classes (which MRI contrast a volume is).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from volgen.backbones.denoiser import Denoiser
from volgen.backbones.unet import DiffusionUNet, UNetConfig
from volgen.codecs import build_codec, codec_spec
from volgen.config import DictConfig
from volgen.sampling.schedules import NoiseSchedule, schedule_from_config


@dataclass
class BackboneConfig(DictConfig):
    codec: dict = field(default_factory=lambda: {"type": "haar", "config": {}})
    network: dict = field(default_factory=lambda: UNetConfig(in_channels=8, out_channels=8).to_dict())
    schedule: dict = field(default_factory=lambda: NoiseSchedule.linear().config())
    parameterization: str = "eps"
    contrasts: tuple[str, ...] = ()

    def __post_init__(self):
        self.contrasts = tuple(self.contrasts)


class Backbone(torch.nn.Module):
    model_type = "backbone"

    def __init__(self, config: BackboneConfig | None = None):
        super().__init__()
        self.config = config or BackboneConfig()
        unet_config = UNetConfig.from_dict(self.config.network)
        if self.config.contrasts and unet_config.num_class_embeds != len(self.config.contrasts):
            raise ValueError(f"{len(self.config.contrasts)} contrasts named for a network with "
                             f"{unet_config.num_class_embeds} class embeddings")
        self.codec = build_codec(self.config.codec)
        self.denoiser = Denoiser(DiffusionUNet(unet_config), schedule_from_config(self.config.schedule),
                                 self.config.parameterization)

    def config_dict(self) -> dict:
        return self.config.to_dict()

    @classmethod
    def from_config(cls, config: dict) -> "Backbone":
        return cls(BackboneConfig.from_dict(config))

    @property
    def network(self) -> DiffusionUNet:
        return self.denoiser.network

    @property
    def image_multiple(self) -> int:
        """Image sizes must be multiples of this (codec downsampling times the U-Net's)."""
        return self.codec.downsampling * self.network.config.downsampling

    def class_labels(self, contrast: str, batch: int = 1, device=None) -> torch.Tensor:
        if contrast not in self.config.contrasts:
            raise ValueError(f"this backbone knows the contrasts {', '.join(self.config.contrasts) or 'none'}, "
                             f"not '{contrast}'")
        return torch.full((batch,), self.config.contrasts.index(contrast), dtype=torch.long, device=device)
