"""Native-resolution detail for a synthesis on a grid finer than the model's (a 1 mm case, a 2 mm module).

The module samples on its own grid, so its output resampled to 1 mm is a 2 mm image: the cortex's folds come out
smooth where the 1 mm conditions show them. Its prior, the per-voxel conditional-mean table, is a function of the
conditions' intensities voxel by voxel (and of a 26-voxel neighbourhood), so it runs on any grid: on the 1 mm
conditions it carries their detail. What the module adds to its prior is the correction at 2 mm, smooth at that
scale. The 1 mm estimate is the prior on the 1 mm conditions plus that correction resampled to 1 mm.
"""
from __future__ import annotations

import numpy as np
import torch

from volgen.io.preprocess import Preprocessed
from volgen.io.volume import Volume

def _prior(model, volumes: dict[str, torch.Tensor], target: str, spec_inputs) -> torch.Tensor:
    """The module's prior for `target` from {contrast: (D, H, W) tensor in the model's range} on any grid."""
    shape = tuple(next(iter(volumes.values())).shape)
    inputs = spec_inputs(volumes=volumes, contrasts=tuple(model.conditions), shape=shape)
    labels = model.backbone.class_labels(target)
    with torch.no_grad():
        return model.prior(inputs["conditions"], inputs["present"], labels)[0, 0].float()


def transfer_detail(model, prepared: dict[str, Preprocessed], volumes: dict[str, Volume], target: str,
                    coarse: np.ndarray, spec_inputs) -> np.ndarray:
    """The synthesised `target` on the conditions' own (finer) grid, in the model's range: the prior on the source
    grid's conditions plus the module's correction of its prior on the model grid (`coarse`: its estimate there),
    resampled. `prepared` are the conditions on the model grid (their intensity scale is reused on the source grid),
    `spec_inputs` the synthesis TaskSpec's `inputs`."""
    if getattr(model, "prior", None) is None:
        raise ValueError("detail transfer needs a module with a per-voxel prior (a synthesis module's table)")
    coarse_prior = _prior(model, {c: torch.from_numpy(p.array) for c, p in prepared.items()}, target, spec_inputs)
    correction = np.asarray(coarse, dtype=np.float32) - coarse_prior.numpy()
    fine = {c: torch.from_numpy(prepared[c].scale.forward(v.array)) for c, v in volumes.items()}
    fine_prior = _prior(model, fine, target, spec_inputs).numpy()
    first = next(iter(prepared.values()))
    return fine_prior + first.grid.inverse(correction, order=1, fill=0.0).astype(np.float32)
