"""Schedules, samplers (plain functions over a Denoiser), guidance and the data-consistency hook."""
from volgen.sampling.ddim import sample_ddim
from volgen.sampling.ddpm import sample_ddpm
from volgen.sampling.dpm_solver import sample_dpmpp_2m
from volgen.sampling.predict import ClassifierFreeGuidance, predict_x0_eps
from volgen.sampling.schedules import NoiseSchedule

__all__ = ["ClassifierFreeGuidance", "NoiseSchedule", "predict_x0_eps", "sample_ddim", "sample_ddpm", "sample_dpmpp_2m"]
