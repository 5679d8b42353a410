"""Schedules, samplers (plain functions over a Denoiser), guidance and the data-consistency hook."""
from volgen.sampling.ddim import sample_ddim
from volgen.sampling.ddpm import sample_ddpm
from volgen.sampling.dpm_solver import sample_dpmpp_2m
from volgen.sampling.euler import sample_euler
from volgen.sampling.predict import ClassifierFreeGuidance, predict_x0_eps
from volgen.sampling.schedules import FlowSchedule, NoiseSchedule, make_schedule, schedule_from_config

SAMPLERS = {"ddim": sample_ddim, "ddpm": sample_ddpm, "dpm++": sample_dpmpp_2m, "euler": sample_euler}


def get_sampler(name: str):
    if name not in SAMPLERS:
        raise ValueError(f"unknown sampler '{name}' ({', '.join(SAMPLERS)})")
    return SAMPLERS[name]


__all__ = ["SAMPLERS", "ClassifierFreeGuidance", "FlowSchedule", "NoiseSchedule", "get_sampler", "make_schedule",
           "predict_x0_eps", "sample_ddim", "sample_ddpm", "sample_dpmpp_2m", "sample_euler", "schedule_from_config"]
