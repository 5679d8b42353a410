"""Denoiser networks (MONAI DiffusionModelUNet configs), the Denoiser wrapper and whole backbones."""
from volgen.backbones.backbone import Backbone, BackboneConfig
from volgen.backbones.denoiser import PARAMETERIZATIONS, Denoiser, prediction_target, x0_eps_from
from volgen.backbones.unet import DiffusionUNet, UNetConfig

__all__ = ["PARAMETERIZATIONS", "Backbone", "BackboneConfig", "Denoiser", "DiffusionUNet", "UNetConfig",
           "prediction_target", "x0_eps_from"]
