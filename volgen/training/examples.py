"""What each kind of run learns from a batch: the target image and the network's keyword conditions.

- autoencoder and backbone: one random contrast per item (with its class label where the backbone has labels);
- module: the task's own degradation of that contrast (`volgen.taskspec`: synthesis, super-resolution, inpainting).
"""
from __future__ import annotations

import torch

from volgen.taskspec import pick, task


def make_example(kind: str, task_name: str, batch: dict, data, gen: torch.Generator, labelled: bool) -> tuple:
    """(target (B, 1, D, H, W) in [-1, 1], keyword conditions for the network)."""
    images = batch["images"]
    b, c = images.shape[:2]
    k = torch.randint(0, c, (b,), generator=gen)
    cond = {"class_labels": k} if labelled else {}
    if kind != "module":
        return pick(images, k), cond
    target, conditions = task(task_name).example(images, k, batch, data, gen)
    return target, {**cond, **conditions}
