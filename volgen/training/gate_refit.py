"""Refit a VCM's gate-bias table in closed form after its prior changed, leaving every network weight as trained.

The gate mixes the module's output with its prior: out = base + s (g(h) + GATE_GAIN b_k) (prior - prediction), with
b_k one row (per latent channel) for each bin of timesteps. A module trained with one prior learnt how far to trust
that prior at each noise level; a better prior (the registered template of the inpainting module) earns more trust
than the network learnt. With the network fixed, the training loss restricted to the voxels the task makes is
quadratic in each row, so the best rows over a set of examples are one division each:
b = sum d r / (s GATE_GAIN sum d^2), d = prior - prediction, r = target - base - s g(h) d.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from volgen.modules.vcm import GATE_GAIN
from volgen.taskspec import task
from volgen.training.examples import make_example
from volgen.training.objectives import prediction_target


@torch.no_grad()
def refit_gate(module, cases, data, task_name: str, *, sampler_steps: int, seed: int = 0,
               progress: bool = True) -> torch.Tensor:
    """Set `module.gate_bias` to the least-squares rows over one example per case (whole volumes, the task's own
    degradation, a contrast drawn per case) at each timestep an N-step sampler visits; returns the new table."""
    backbone = module.backbone
    denoiser, codec = backbone.denoiser, backbone.codec
    scale = module.strength(None)
    gen = torch.Generator().manual_seed(seed)
    numerator = torch.zeros_like(module.gate_bias, dtype=torch.float64)
    denominator = torch.zeros_like(numerator)
    timesteps = torch.as_tensor(denoiser.schedule.timesteps(sampler_steps))
    spec = task(task_name)
    for case in tqdm(cases, desc="gate refit", disable=not progress):
        batch = {"images": case.images[None]}         # and what else the case has (inpainting's twins and labels)
        if case.healthy is not None:
            batch["healthy"] = case.healthy[None]
        if case.seg is not None:
            batch["seg"] = case.seg[None, None]
        target, cond = make_example("module", task_name, batch, data, gen, labelled=True)
        labels, conditions = cond["class_labels"], cond["conditions"]
        z0 = codec.encode(target)
        # the latent cells made: the task's region (inpainting's hole), or the whole volume (synthesis)
        region = F.adaptive_max_pool3d(spec.region(cond).float(), z0.shape[2:]) if spec.has_region \
            else torch.ones_like(z0[:, :1])
        features = module.constant_features(conditions, None, labels)
        for t in timesteps:
            t = t.reshape(1).to(denoiser.schedule.timestep_dtype)
            eps = torch.randn(z0.shape, generator=gen)
            alpha, sigma = denoiser.alpha_sigma(t, z0)
            x_t = alpha * z0 + sigma * eps
            prediction = backbone.network(x_t, t, class_labels=labels)
            base, gate, difference = module.gated_parts(x_t, t, prediction, features, scale, labels)
            residual = prediction_target(z0, eps, alpha, sigma, denoiser.parameterization) - base \
                - scale * gate * difference
            row = module._bucket(t)[0]
            numerator[row] += (region * difference * residual).double().sum(dim=(0, 2, 3, 4))
            denominator[row] += (region * difference ** 2).double().sum(dim=(0, 2, 3, 4))
    seen = denominator > 0                              # a row no timestep visits keeps its trained value
    table = module.gate_bias.detach().double().clone()
    table[seen] = numerator[seen] / (scale * GATE_GAIN * denominator[seen])
    module.gate_bias.copy_(table.to(module.gate_bias.dtype))
    return module.gate_bias.detach().clone()
