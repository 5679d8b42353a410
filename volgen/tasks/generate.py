"""Sampling one volume on the model grid: the path every job takes from conditions to an image.

generate(model, image_shape, contrast=..., conditions=..., present=..., projection=...) draws x_T in the codec's
space, runs the sampler over the backbone's (or the conditioned) denoiser with an optional image-space
data-consistency projection, and decodes. `model` is a Backbone or a Conditioner on one.
"""
from __future__ import annotations

import contextlib

import torch
from tqdm.auto import tqdm

from volgen.backbones.backbone import Backbone
from volgen.sampling import get_sampler
from volgen.sampling.consistency import ImageSpaceProjection


def default_sampler(backbone: Backbone) -> str:
    return "euler" if backbone.denoiser.schedule.kind == "flow" else "ddim"


@torch.no_grad()
def generate(model, image_shape, *, contrast: str | None = None, conditions: torch.Tensor | None = None,
             present: torch.Tensor | None = None, projection=None, steps: int = 25, sampler: str | None = None,
             seed: int = 0, guidance: float = 1.0, progress: bool = False) -> torch.Tensor:
    """A (1, C, D, H, W) image in the model's intensity range ([-1, 1] for volgen's backbones). `guidance` is a
    module's conditioning scale for this call (1: as trained)."""
    with _module_scale(model, guidance):
        backbone = model if isinstance(model, Backbone) else model.backbone
        device = next(backbone.parameters()).device
        denoiser = backbone.denoiser if model is backbone else model.denoiser()
        cond = {}
        if contrast is not None:
            cond["class_labels"] = backbone.class_labels(contrast, device=device)
        if conditions is not None:
            cond["conditions"] = conditions.to(device)
            if present is not None:
                cond["present"] = present.to(device)
        latent = backbone.codec.latent_shape(tuple(image_shape))
        generator = torch.Generator(device=device).manual_seed(seed)
        x_T = torch.randn((1, *latent), generator=generator, device=device)
        timesteps = backbone.denoiser.schedule.timesteps(steps)
        bar = tqdm(total=len(timesteps), desc="sampling", disable=not progress, leave=False)
        sample = get_sampler(sampler or default_sampler(backbone))(
            denoiser, x_T, timesteps, cond=cond, generator=generator, callback=lambda *_: bar.update(),
            consistency=ImageSpaceProjection(backbone.codec, projection) if projection is not None else None)
        bar.close()
        image = backbone.codec.decode(sample)
        return projection(image) if projection is not None else image


@contextlib.contextmanager
def _module_scale(model, guidance: float):
    """A conditioner's scale set to `guidance` for one call (a bare backbone has none)."""
    if isinstance(model, Backbone):
        yield
        return
    saved, model.scale = model.scale, guidance
    try:
        yield
    finally:
        model.scale = saved
