"""Denoiser networks and the Denoiser wrapper (MONAI DiffusionModelUNet configs: issue 3)."""
from volgen.backbones.denoiser import PARAMETERIZATIONS, Denoiser, x0_eps_from

__all__ = ["PARAMETERIZATIONS", "Denoiser", "x0_eps_from"]
