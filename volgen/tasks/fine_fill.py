"""A pseudo-healthy fill on a grid finer than the model's gets the registered atlas's finer detail.

The fill is made on the model grid (2 mm) and interpolated back. On a 1 mm grid it then lacks what a 2 mm atlas
cannot hold: the cortex's and the ventricle walls' finer edges, which the harmonic fill it is judged against does not
have either, so on small holes the two were close (issue 41: 5 of 30 small holes of fresh 1 mm phantoms under +1 dB).
Where the inpainting module's prior has a fine atlas (volgen/modules/fine_atlas.py), the case's warps (one per lattice
of FINE_WARP_CONTROLS), fitted once on the model grid, carry it onto the case's own voxels, averaged; the prior's
intensity map takes it to the case's intensities, and the part of it that the job's round trip to the model grid and
back loses is added to the fill before the fill is met to the known voxels (tasks/seam.py).
"""
from __future__ import annotations

import numpy as np
import torch

from volgen.modules.prior import bounding_box
from volgen.modules.template_prior import intensity_map, map_shell
from volgen.tasks.job import model_spacing
from volgen.tasks.models import backbone_of
from volgen.tasks.synthesis import finer_than_model

# How much of the fine atlas's detail the fill gets. The atlas's detail is the mean of 24 twins registered at 2 mm,
# so a fraction of a 1 mm voxel apart: its edges are softer than any one brain's, and more than all of it pays.
# Chosen on validation phantoms (seed 300, 1 mm, t2f, 4 cases x 5 mask kinds, session 56) among 0.5, 0.8, 1, 1.2,
# 1.5 and 2: margin over the exact harmonic fill, mean over the kinds, +4.81 dB without the detail, +5.44 at 1,
# +5.62 at 1.5, +5.71 at 2 (small blobs +3.60 -> +4.35, +4.59, +4.70); large blobs best at 1.5 (+6.30; +6.23 at 2).
# 1.5, not the edge of the range: a larger weight also amplifies what the case's warp misplaces, and a real brain's
# folds differ from the training twins' more than a phantom's do.
DETAIL_WEIGHT = 1.5
# The case is registered on two control lattices, of 8 and 6 model voxels, and the fill takes the mean of the two
# warped atlases and of the fine atlas through each warp: where one lattice cannot follow a fold the other often can,
# and their mean misplaces an edge by less than either. Chosen on 1 mm validation phantoms (seed 300, 4 cases x 5
# masks, t2f, the job's fill, sessions 58-59) by a rule written first (holes under 4,000 2 mm voxels +0.2 dB, no mask
# kind lower by more than 0.1): all fills +5.82 dB over the exact harmonic fill against +5.62 with 8 alone, small
# holes +4.91 against +4.59, every kind higher. 6 alone (+5.75; large blobs -0.12) and 4 alone (+5.59) did not pass,
# nor did the two lattices on the model grid itself (template_prior.CASE_WARP_CONTROL), nor a third lattice of 10
# (session 59: small holes +5.10, large blobs +6.79, but tumour masks +5.58 against +5.80; 6 s more per case).
FINE_WARP_CONTROLS = (8, 6)
# Two more tried against the 1 mm tail (fills within 1 dB of the harmonic fill) on validation phantoms in session 60,
# neither built. (1) The warped fine atlas registered again to the case's 1 mm voxels round the mask (a local warp): the
# warp strayed (3 voxels on average over its lattice, up to 30); on a lattice of 6-8 voxels the prior's fill on one
# seed-300 tumour mask lost 0.6-7 dB by the settings, on 12 voxels it gained 0.3 dB and the case's small blob lost 0.2.
# (2) The fill mixed with the harmonic fill by a weight fitted on a ring of known voxels round the mask: on seeds with
# small tumours (3100-3600, kept for validation since) the best weight in hindsight added at most 0.08 dB where the
# prior's fill was under +1 dB (phantom-s3400-0003: +0.38 -> +0.46, grown by 2 voxels +0.59 -> +0.64): there the two
# fills err alike (mostly white matter with a sulcus's tip and the scan's own texture), and no mix lifts them.
REACH = 4                 # source voxels round the mask's box whose detail the round trip to the model grid needs


def case_registration(model, source, image: torch.Tensor, keep: torch.Tensor, contrast: str):
    """(the case's warps, the atlas through them (1, 1, *model grid)) where `source` is on a grid finer than the
    model's and the module's prior has a fine atlas, else None: registered once, on the model grid; the warped atlas
    is what the sampler's prior takes as `warped` (prior_options) instead of registering again."""
    if not (finer_than_model(source, model_spacing(model))
            and getattr(getattr(model, "prior", None), "has_fine_detail", False)):
        return None
    index = int(backbone_of(model).class_labels(contrast))
    warps = model.prior.case_warps(image[0].float(), (keep[0, 0] < 0.5).float(), index, FINE_WARP_CONTROLS)
    return warps, model.prior.warped_atlas(warps, index, image.shape[2:])[None, None]


def prior_options(registration, device=None) -> dict:
    """The prior's per-call settings for a registration: its registered atlas (none without one)."""
    return {} if registration is None else {"warped": registration[1].to(device)}


def atlas_detail(model, pre, source, image: torch.Tensor, keep: torch.Tensor, inside: np.ndarray, contrast: str,
                 registration) -> np.ndarray | None:
    """(source grid, float32) DETAIL_WEIGHT x the fine atlas's part that the model grid loses, in the source's
    intensities, round the mask's box (zero elsewhere); None without a registration. `pre`, `image`, `keep`: the
    job's model-grid view of `source` and its mask (inpainting.on_model_grid); `registration`: case_registration's."""
    if registration is None:
        return None
    warps, warped = registration
    index = int(backbone_of(model).class_labels(contrast))
    shape = tuple(image.shape[2:])
    to_case = intensity_map(warped[0, 0].float(), image[0, 0].float(), map_shell(keep)[0, 0])
    box = _grown_box(inside, 2 * REACH, source.shape)
    axes = [torch.arange(s.start, s.stop, dtype=torch.float64) for s in box]
    source_index = torch.stack(torch.meshgrid(*axes, indexing="ij"), -1)
    to_model = torch.from_numpy(np.linalg.solve(pre.grid.model_affine, source.affine))
    model_index = source_index @ to_model[:3, :3].T + to_model[:3, 3]
    values = to_case(model.prior.fine_at(index, warps, model_index, shape).double()).numpy()
    fine = np.zeros(source.shape, dtype=np.float32)
    fine[box] = pre.scale.inverse(values) if pre.scale is not None else values
    round_trip = pre.grid.inverse(pre.grid.forward(fine, order=1), order=1)
    detail = np.zeros_like(fine)
    inner = _grown_box(inside, REACH, source.shape)
    detail[inner] = DETAIL_WEIGHT * (fine[inner] - round_trip[inner])
    return detail


def _grown_box(inside: np.ndarray, margin: int, shape) -> tuple[slice, ...]:
    return tuple(slice(s.start, min(s.stop, n)) for s, n in zip(bounding_box(torch.from_numpy(inside), margin), shape))
