"""The denoising objective every diffusion backbone and conditioning module trains on."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from volgen.backbones.denoiser import prediction_target, x0_eps_from
from volgen.sampling.loop import gaussian_like


def noised(denoiser, z0: torch.Tensor, generator: torch.Generator | None = None, sampler_steps: int = 0,
           timestep_weights=None):
    """(x_t, t, eps): z0 noised at timesteps drawn from the denoiser's schedule, one per batch item; with
    `sampler_steps`, drawn from the timesteps an N-step sampler visits (a module trained for the steps it runs),
    uniformly or in proportion to `timestep_weights` (one per visited timestep, noisiest first)."""
    if sampler_steps:
        visited = torch.as_tensor(denoiser.schedule.timesteps(sampler_steps))
        if timestep_weights:
            weights = torch.as_tensor(timestep_weights, dtype=torch.float64)
            t = visited[torch.multinomial(weights, z0.shape[0], replacement=True, generator=generator)]
        else:
            t = visited[torch.randint(0, len(visited), (z0.shape[0],), generator=generator)]
    else:
        t = denoiser.schedule.training_timesteps(z0.shape[0], generator)
    t = t.to(z0.device)
    t = t.to(denoiser.schedule.timestep_dtype)
    eps = gaussian_like(z0, generator)
    alpha, sigma = denoiser.alpha_sigma(t, z0)
    return alpha * z0 + sigma * eps, t, eps


def diffusion_loss(denoiser, z0: torch.Tensor, *, cond: dict | None = None,
                   generator: torch.Generator | None = None, network=None, sampler_steps: int = 0,
                   timestep_weights=None, decode=None, image: torch.Tensor | None = None,
                   weight: torch.Tensor | None = None) -> torch.Tensor:
    """MSE between the network's prediction and its parameterization's target. `network` replaces the
    denoiser's own network in the forward pass (a conditioned wrapper around the frozen backbone). With `decode`
    (the codec's, differentiable) the loss is instead the MSE between the decoded x0 prediction and `image`, the
    volume z0 encodes: training.config's loss_space "image". `weight` (B, 1, *spatial of what is compared): each
    voxel's share of the mean (lesion_weight)."""
    x_t, t, eps = noised(denoiser, z0, generator, sampler_steps, timestep_weights)
    prediction = (network or denoiser)(x_t, t, **(cond or {}))
    alpha, sigma = denoiser.alpha_sigma(t, z0)
    if decode is not None:
        x0, _ = x0_eps_from(prediction.float(), x_t.float(), alpha, sigma, denoiser.parameterization)
        return weighted_mse(decode(x0).float(), image.float(), weight)
    target = prediction_target(z0, eps, alpha, sigma, denoiser.parameterization)
    return weighted_mse(prediction.float(), target.float(), weight)


def weighted_mse(prediction: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor:
    """The mean squared error, each voxel counted `weight` times (broadcast over channels; None: plain MSE). Divided
    by the weights' mean, so a uniform weight leaves the loss, and the learning rate's meaning, unchanged."""
    if weight is None:
        return F.mse_loss(prediction, target)
    weight = weight.to(prediction.dtype).expand_as(prediction)
    return (weight * (prediction - target) ** 2).mean() / weight.mean()


def region_weights(region: torch.Tensor, shape, weight: float) -> torch.Tensor:
    """(B, 1, *shape): `weight` where a voxel of the (coarser) grid `shape` holds any voxel of the boolean `region`
    (B, 1, D, H, W), 1 elsewhere (a lesion: seg > 0; an inpainting hole: its mask)."""
    inside = F.adaptive_max_pool3d(region.float(), tuple(shape))
    return 1.0 + (weight - 1.0) * inside
