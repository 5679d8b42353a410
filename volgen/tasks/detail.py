"""Native-resolution detail for a synthesis on a grid finer than the model's (a 1 mm case, a 2 mm module).

The module samples on its own grid, so its output resampled to 1 mm is a 2 mm image: the cortex's folds come out
smooth where the 1 mm conditions show them. What the 1 mm conditions carry can be handed to the estimate by a local
linear model (a multi-channel guided filter, He et al. 2013, used as guided upsampling): on the model grid, in each
window of GUIDE_RADIUS voxels, the module's estimate is fitted as a linear combination of guides, the conditions and
the module's prior (the per-voxel conditional-mean table, which runs on any grid); the coefficients vary slowly, so
they are resampled to the fine grid and applied to the guides there. Where the module only rescales what the
conditions show, the fine estimate gets the conditions' fine detail; where it departs from them, the local fit keeps
its smooth departure. GUIDE_EPS (the ridge on each window's guide covariance, in the model's [-1, 1] units squared)
sets how far a window trusts a fine-scale guide: chosen with the radius on validation phantoms (seed 300) at 1 mm
(the additive variant before it, the prior on the fine grid plus the module's correction resampled, was 2.9 dB
lower on t1c there). Session 36 swept eps again (radius 1-3, eps 5e-4 to 5e-3, t1c and t2f on 3 validation cases):
2e-3 had the best PSNR for both targets (t2f 24.49, t1c 28.36 dB; 5e-3: 24.49, 28.34) and a sharper output (the
mean gradient's ratio to the truth's 0.83 and 0.91, from 0.78 and 0.88); smaller eps sharpens further but costs PSNR.

The prior guides every target but t1c. Its t1c table is noisy on 1 mm conditions (in healthy tissue 7 dB under a
linear fit of the same conditions, where the 2 mm prior is 3 dB under it): as a guide it cost t1c 2.8, 0.7 and 0.1 dB
on the 3 validation cases, and the conditions alone carry t1c's fine detail (t1c is t1n's anatomy, brightened where
gadolinium is; the fit's smooth coefficients hold the enhancement). For t1n, t2w and t2f it adds 0.65 to 1.4 dB.

After the fit, a light learned refiner (volgen/modules/detail_refiner.py, trained on the shipped module's 1 mm
estimates) corrects what a linear fit cannot, for the targets its config names (`refine_fine`).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from volgen.io.contrasts import MRI_CONTRASTS
from volgen.io.preprocess import MEDIAN_LEVEL, IntensityScale, Preprocessed
from volgen.io.volume import Volume
from volgen.modules.detail_refiner import MULTIPLE
from volgen.ops import local_linear_fit

GUIDE_RADIUS = 2          # model-grid voxels (a 5^3 window: 10 mm at 2 mm)
GUIDE_EPS = 2e-3
UNGUIDED_BY_PRIOR = frozenset({"t1c"})      # targets whose fine guides are the conditions alone (see above)


def _prior(model, volumes: dict[str, torch.Tensor], target: str, spec_inputs) -> torch.Tensor:
    """The module's prior for `target` from {contrast: (D, H, W) tensor in the model's range} on any grid."""
    shape = tuple(next(iter(volumes.values())).shape)
    inputs = spec_inputs(volumes=volumes, contrasts=tuple(model.conditions), shape=shape)
    labels = model.backbone.class_labels(target)
    with torch.no_grad():
        return model.prior(inputs["conditions"], inputs["present"], labels)[0, 0].float()


def transfer_detail(model, prepared: dict[str, Preprocessed], volumes: dict[str, Volume], target: str,
                    coarse: np.ndarray, spec_inputs, radius: int = GUIDE_RADIUS, eps: float = GUIDE_EPS) -> np.ndarray:
    """The synthesised `target` on the conditions' own (finer) grid, in the model's range. `coarse` is the module's
    estimate on the model grid, `prepared` the conditions there (their intensity scale is reused on the source
    grid), `volumes` the conditions on the source grid, `spec_inputs` the synthesis TaskSpec's `inputs`."""
    on_model = {c: torch.from_numpy(p.array) for c, p in prepared.items()}
    on_source = {c: torch.from_numpy(prepared[c].scale.forward(v.array)) for c, v in volumes.items()}
    guides = [v.numpy() for v in on_model.values()]
    fine_guides = [v.numpy() for v in on_source.values()]
    if target not in UNGUIDED_BY_PRIOR:
        if getattr(model, "prior", None) is None:
            raise ValueError("detail transfer needs a module with a per-voxel prior (a synthesis module's table)")
        guides.insert(0, _prior(model, on_model, target, spec_inputs).numpy())
        fine_guides.insert(0, _prior(model, on_source, target, spec_inputs).numpy())
    coefficients, offset = local_linear_fit(guides, np.asarray(coarse), radius, eps)
    grid = next(iter(prepared.values())).grid

    def up(x):
        return grid.inverse(x.astype(np.float32), order=1, fill=0.0)

    fine = up(offset)
    for a, guide in zip(coefficients, fine_guides):
        fine = fine + up(a) * guide
    return fine.astype(np.float32)


def unit_conditions(volumes: dict[str, Volume]) -> dict[str, np.ndarray]:
    """The conditions on the output's [0, 1] scale (each head's median at its contrast's level), on their own grid:
    what the refiner sees beside the estimate."""
    return {c: IntensityScale.fit(v.array, median_level=MEDIAN_LEVEL[c]).forward(v.array).astype(np.float32)
            for c, v in volumes.items()}


def refiner_inputs(estimate: np.ndarray, conditions: dict[str, np.ndarray], target: str) -> np.ndarray:
    """(5, D, H, W) float32: the estimate, then a slot per contrast (t1n, t1c, t2w, t2f), 0 for the target and for
    contrasts the case lacks."""
    slots = [conditions[c] if c in conditions and c != target else np.zeros_like(estimate) for c in MRI_CONTRASTS]
    return np.stack([estimate, *slots]).astype(np.float32)


def refine_fine(refiner, estimate: np.ndarray, conditions: dict[str, np.ndarray], target: str,
                head: np.ndarray, precision: str = "fp32") -> np.ndarray:
    """`estimate` (the detail transfer's, [0, 1] scale, the conditions' grid) refined inside `head`'s bounding box;
    unchanged outside it. `precision` "bf16" runs the network under bf16 autocast (the job's, on a CPU with native
    bf16: 1.3 s instead of 2.3 on a BraTS-size head, the residual within 2e-4), "fp32" in float32 whatever autocast
    is on; the result is float32."""
    found = np.argwhere(head)
    if found.size == 0:
        return estimate
    low, high = found.min(0), found.max(0) + 1
    box = tuple(slice(a, b) for a, b in zip(low, high))
    inputs = torch.from_numpy(refiner_inputs(estimate[box], {c: v[box] for c, v in conditions.items()}, target))
    pad = [(-n) % MULTIPLE for n in inputs.shape[1:]]
    inputs = F.pad(inputs[None], (0, pad[2], 0, pad[1], 0, pad[0]))
    which = torch.zeros(1, len(MRI_CONTRASTS))
    which[0, MRI_CONTRASTS.index(target)] = 1
    device = next(refiner.parameters()).device
    with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
        refined = refiner(inputs.to(device), which.to(device))[0, 0].float().cpu().numpy()
    out = estimate.copy()
    out[box] = refined[tuple(slice(0, n) for n in out[box].shape)]
    return out
