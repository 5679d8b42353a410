"""Sampling one volume on the model grid: the path every job takes from conditions to an estimate.

generate(model, image_shape, contrast=..., conditions=..., present=..., projection=..., samples=K) draws K x_T in
the codec's space as one batch, runs the sampler over the backbone's (or the conditioned) denoiser with an optional
image-space data-consistency projection, decodes, and returns an `Estimate`: the posterior mean (default) or one
sample, with the per-voxel spread over the K samples. `model` is a Backbone or a Conditioner on one.

The posterior mean is the average over the K samples of the x0 prediction at the first step. An x0-network trained
with MSE outputs E[x0 | x_t, conditions]; at the first step x_t is almost pure noise, so each of those predictions
is already the conditional mean E[x0 | conditions], and averaging K of them only removes what little x_T adds. The
average of the K finished samples estimates the same mean with K times less variance than one sample, which is
still worse (`mean_of="final"` gives the latter). `mean_of="draws"` is
the same average of the samples as the sampler leaves them: on the CPU, whose default stops at the middle noise
level, that is each sample's x0 prediction there, after a data-consistency projection has acted once (inpainting's
estimate: it lets the known voxels inform the fill).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from volgen.backbones.backbone import Backbone
from volgen.kernels.sampler import mean_spread
from volgen.ops import tiled
from volgen.sampling import get_sampler
from volgen.sampling.consistency import ImageSpaceProjection


def default_sampler(backbone: Backbone) -> str:
    return "euler" if backbone.denoiser.schedule.kind == "flow" else "ddim"


ESTIMATES = ("mean", "sample")
MEAN_OF = ("first", "draws", "final")     # the posterior mean from: the first step's x0, the draws as they end
PRECISIONS = ("auto", "fp32", "bf16")


def resolve_precision(precision: str, device: torch.device) -> str:
    """"auto": bf16 autocast on a CPU with native bf16 (AVX512-BF16/AMX: faster per network call, and the posterior
    mean does not move by what matters), fp32 elsewhere (a CPU without it emulates bf16 slowly)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got '{precision}'")
    if precision != "auto":
        return precision
    if device.type == "cpu" and torch.ops.mkldnn._is_mkldnn_bf16_supported():
        return "bf16"
    return "fp32"


@dataclass
class Estimate:
    """What generate() returns, on the image grid in the model's range: `image` (1, C, D, H, W) is the posterior
    mean or one sample (`kind`); `spread` is the per-voxel standard deviation over the samples drawn (None for
    one sample); `draws` (K, C, D, H, W) are the samples themselves."""

    image: torch.Tensor
    spread: torch.Tensor | None
    kind: str
    draws: torch.Tensor

    @property
    def samples(self) -> int:
        return len(self.draws) // len(self.image)


@torch.no_grad()
def generate(model, image_shape, *, contrast: str | None = None, conditions: torch.Tensor | None = None,
             present: torch.Tensor | None = None, projection=None, steps=25, sampler: str | None = None,
             seed: int = 0, guidance: float = 1.0, samples: int = 1, estimate: str = "mean",
             mean_of: str = "first", precision: str = "fp32", progress: bool = False, group: int = 1,
             prior_options: dict | None = None, refine=None) -> Estimate:
    """K = `samples` draws as one batch, in the model's intensity range ([-1, 1] for volgen's backbones), and the
    estimate made from them (see the module docstring; `mean_of="final"` averages the finished samples instead).
    `guidance` is a module's conditioning scale for this call (1: as trained). `precision` "bf16" runs the networks
    under bfloat16 autocast (the sampler's arithmetic stays float32). `group` G > 1 draws G images per sample that
    a projection couples (Patlak's Ki and V: batch item k * G + g is image g of sample k), or that share their
    conditions' labels (lesion insertion: one contrast each, `contrast` then names the G, and `conditions` has one
    item per image); the estimate then holds G images (G, C, D, H, W) and `draws` K * G. `steps` is a number (that
    many steps' timesteps, leading spacing) or the descending timesteps themselves. `prior_options` are a module
    prior's settings for this call (the super-resolution job's factor and axis; lesion insertion's level draws).
    `refine` (a task's, from its `inputs`) maps the posterior mean to the one returned (synthesis: fitted to what its
    conditions show, `TaskSpec` Synthesis; a pseudo-healthy fill: shrunk toward the module's prior, which a refine
    with `uses_prior` gets as its second argument); a sample and the draws are left as drawn.
    Everything per call travels with the call: nothing is set on `model`, which the jobs' model cache shares between
    calls."""
    if estimate not in ESTIMATES:
        raise ValueError(f"estimate must be one of {', '.join(ESTIMATES)}, got '{estimate}'")
    if mean_of not in MEAN_OF:
        raise ValueError(f"mean_of must be one of {', '.join(MEAN_OF)}, got '{mean_of}'")
    if samples < 1 or group < 1:
        raise ValueError(f"samples and group must be at least 1, got {samples} and {group}")
    batch = samples * group
    backbone = model if isinstance(model, Backbone) else model.backbone
    device = next(backbone.parameters()).device
    denoiser = backbone.denoiser if model is backbone else model.denoiser()
    cond = {} if model is backbone else {"scale": guidance}
    if contrast is not None:
        names = [contrast] if isinstance(contrast, str) else list(contrast)
        cond["class_labels"] = tiled(torch.cat([backbone.class_labels(name, device=device) for name in names]), batch)
    if conditions is not None:
        cond["conditions"] = tiled(conditions.to(device), batch)
        if present is not None:
            cond["present"] = tiled(present.to(device), batch)
    latent = backbone.codec.latent_shape(tuple(image_shape))
    generator = torch.Generator(device=device).manual_seed(seed)
    x_T = torch.randn((batch, *latent), generator=generator, device=device)
    timesteps = backbone.denoiser.schedule.timesteps(steps) if isinstance(steps, int) else list(steps)
    bar = tqdm(total=len(timesteps), desc="sampling", disable=not progress, leave=False)
    first = []

    def callback(i, t, x, x0):
        bar.update()
        if i == 0:
            first.append(x0)

    consistency = ImageSpaceProjection(backbone.codec, projection) if projection is not None else None
    bf16 = resolve_precision(precision, device) == "bf16"
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
        if conditions is not None and hasattr(model, "constant_features") and guidance != 0:
            # the conditions' codes depend on neither x_t nor t: once per call, not once per step
            cond["features"] = model.constant_features(cond["conditions"].to(x_T.dtype), cond.get("present"),
                                                       cond.get("class_labels"), prior_options)
        sample = get_sampler(sampler or default_sampler(backbone))(
            denoiser, x_T, timesteps, cond=cond, generator=generator, callback=callback,
            consistency=consistency)
    bar.close()
    sample, first = sample.float(), [x0.float() for x0 in first]
    draws = _decode(backbone.codec, sample, projection)
    per_sample = draws.view(samples, group, *draws.shape[1:])
    final_mean, spread = mean_spread(per_sample) if samples > 1 else (per_sample[0], None)
    if estimate == "sample":
        image = per_sample[0]
    elif mean_of != "first":          # the draws: finished ("final") or where the timesteps end ("draws")
        image = final_mean
    else:
        first_mean = first[0].view(samples, group, *first[0].shape[1:]).mean(0)
        image = _decode(backbone.codec, first_mean, projection)
    if refine is not None and estimate == "mean":
        image = refine(image, _module_prior(model, backbone, cond, group)) if getattr(refine, "uses_prior", False) \
            else refine(image)
    return Estimate(image, spread, estimate, draws)


def _module_prior(model, backbone, cond: dict, group: int) -> torch.Tensor | None:
    """(G, C, D, H, W): the module's prior of this call on the model grid, decoded from the constant features that
    carry it (the last; the same for every sample); None for a bare backbone or a module without a prior."""
    if model is backbone or getattr(model, "prior", None) is None or "features" not in cond:
        return None
    return backbone.codec.decode(cond["features"][-1][:group].float())


def _decode(codec, z: torch.Tensor, projection) -> torch.Tensor:
    """Decoded images, through the data-consistency projection (a timestep-aware one gets t = None: the end)."""
    image = codec.decode(z)
    if projection is None:
        return image
    return projection(image, None) if getattr(projection, "takes_timestep", False) else projection(image)
