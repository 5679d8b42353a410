"""What each kind of run learns from a batch: the target image and the network's keyword conditions.

- backbone: one random contrast per item, with its class label;
- module / synthesis: the target contrast hidden, each other contrast hidden with `contrast_dropout` (one stays);
- module / super_resolution: the target's thick-slice version (block means along an axis, repeated back);
- module / inpainting: a dilated lesion mask; half the items fill it with healthy tissue (target: the healthy
  twin), half grow the lesion into it (target: the lesion image, input: the healthy twin), flagged by a channel.
"""
from __future__ import annotations

import torch

from volgen.ops import dilate, repeat_slices, thick_slices

TASK_CONDITIONS = {"super_resolution": ("lowres",), "inpainting": ("masked", "mask", "insert_lesion")}


def task_conditions(task: str, contrasts) -> tuple[str, ...]:
    return tuple(contrasts) if task == "synthesis" else TASK_CONDITIONS[task]


def _pick(images: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    return images[torch.arange(len(k)), k][:, None]


def make_example(kind: str, task: str, batch: dict, data, gen: torch.Generator, labelled: bool) -> tuple:
    """(target (B, 1, D, H, W) in [-1, 1], keyword conditions for the network)."""
    images = batch["images"]
    b, c = images.shape[:2]
    k = torch.randint(0, c, (b,), generator=gen)
    cond = {"class_labels": k} if labelled else {}
    if kind != "module":
        return _pick(images, k), cond
    if task == "synthesis":
        present = (torch.rand(b, c, generator=gen) >= data.contrast_dropout).float()
        present[torch.arange(b), k] = 0.0
        for i in range(b):                          # at least one source contrast stays
            if present[i].sum() == 0:
                others = [j for j in range(c) if j != int(k[i])]
                present[i, others[int(torch.randint(0, len(others), (1,), generator=gen))]] = 1.0
        return _pick(images, k), {**cond, "conditions": images, "present": present}
    if task == "super_resolution":
        target = _pick(images, k)
        dim = 2 + data.sr_axis
        lowres = repeat_slices(thick_slices(target, data.sr_factor, dim), data.sr_factor, dim)
        return target, {**cond, "conditions": lowres}
    if task == "inpainting":
        lesion_img, healthy = _pick(images, k), _pick(batch["healthy"], k)
        radius = int(torch.randint(0, 3, (1,), generator=gen))
        mask = dilate((batch["seg"] > 0).float(), radius)
        insert = (torch.rand(b, generator=gen) < 0.5).float().view(b, 1, 1, 1, 1)
        source = insert * healthy + (1 - insert) * lesion_img
        target = insert * lesion_img + (1 - insert) * healthy
        background = -1.0                            # masked voxels read as background, not as a value
        masked = source * (1 - mask) + background * mask
        conditions = torch.cat([masked, mask, insert.expand_as(mask)], dim=1)
        return target, {**cond, "conditions": conditions}
    raise ValueError(f"unknown task '{task}'")
