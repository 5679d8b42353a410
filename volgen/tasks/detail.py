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
Session 52 swept again on today's job (conditions bias-corrected, the prior guiding t1c; radius 1-3, eps 1e-3 to
4e-3; 9 validation phantoms at 1 mm, one sampling per case): t1c is best here (29.24 dB, the others 29.19-29.23),
t2f within 0.05 dB (eps 1e-3: 25.49 against 25.46, gradient ratio 0.81 against 0.78). Unchanged.

The prior guides every target (a module without a per-voxel prior is guided by the conditions alone). Until session
48 it did not guide t1c: on conditions with their bias fields left in, its t1c table was noisy at 1 mm (in healthy
tissue 7 dB under a linear fit of the same conditions, where the 2 mm prior is 3 dB under it) and as a guide cost t1c
2.8, 0.7 and 0.1 dB on 3 validation cases. The job now divides the conditions by their bias fields
(volgen/io/bias_field.py), and on 4 validation phantoms (seed 300) the prior as a guide gained t1c +0.85, +0.06,
+0.06 and +0.25 dB (29.14 -> 29.45 dB on average); for t1n, t2w and t2f it adds 0.65 to 1.4 dB. (Measured with the
correction on; the guides are the same whether it is on or off.)

The fine estimate is then put on the scale the job promises, its head's median at the contrast's level
(`at_median_level`): fitted on the 2 mm grid, its median came out off the level by -3% to +4% (t2f 0.683-0.694
against 0.669 on 12 phantoms), where a 1 mm truth put on that scale sits at the level by construction; on 4 validation
phantoms (seed 300) the rescaling gained t1n +0.31, t1c +0.10, t2w +0.09, t2f +0.43 dB (session 46; a learned 1 mm
refiner tried first came out as a constant offset of the same kind and gained less).
"""
from __future__ import annotations

import numpy as np
import torch

from volgen.io.preprocess import MEDIAN_LEVEL, IntensityScale, Preprocessed
from volgen.io.volume import Volume
from volgen.ops import local_linear_fit

GUIDE_RADIUS = 2          # model-grid voxels (a 5^3 window: 10 mm at 2 mm)
GUIDE_EPS = 2e-3


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
    if getattr(model, "prior", None) is not None:        # a module without one: the conditions alone guide
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


def at_median_level(estimate: np.ndarray, head: np.ndarray, target: str) -> np.ndarray:
    """`estimate` ([0, 1] scale) rescaled so that its median inside `head` sits at `target`'s level, as every
    contrast's intensities are put on the [0, 1] scale (IntensityScale with MEDIAN_LEVEL); clipped to [0, 1]."""
    inside = np.where(head, estimate, 0.0)
    return IntensityScale.fit(inside, median_level=MEDIAN_LEVEL[target]).forward(estimate).astype(np.float32)
