"""The registered atlas's detail finer than the model grid: what a fill on a 1 mm grid can get that a 2 mm atlas lacks.

The inpainting prior registers a 2 mm atlas of healthy anatomy to the case (volgen/modules/template_prior.py). On a
user's 1 mm grid the fill made on the 2 mm grid is interpolated back and lacks the cortex's and the ventricle walls'
finer edges: on the hole's small masks a harmonic fill is then close to it (issue 41). The fine atlas is the same
atlas on a grid FACTOR times finer: its 2 mm self upsampled plus `detail`, the part of the 1 mm training twins'
mean that a 2 mm grid cannot hold. The twins are registered at 2 mm to the 2 mm atlas and sampled at 1 mm through that
warp (`registered_fine`); the case's own warp, fitted at 2 mm, carries the fine atlas onto the case's 1 mm voxels
(`sample_fine`).

Coordinates: a warp (volgen/modules/registration.py) maps grid_sample's normalised (x, y, z) points, with
align_corners, of the fixed image onto the moving one. A fine voxel k stands at coarse index (k - 0.5) / FACTOR along
each axis for FACTOR 2 (`fine_points`), which is what trilinear upsampling without align_corners assumes.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from volgen.modules.registration import Warp

FACTOR = 2


def to_normalised(index: torch.Tensor, shape) -> torch.Tensor:
    """(..., 3) voxel indices in (D, H, W) order -> grid_sample's normalised (x, y, z) with align_corners."""
    scale = index.new_tensor([max(s - 1, 1) for s in shape])
    return (index / scale * 2 - 1).flip(-1)


def to_index(points: torch.Tensor, shape) -> torch.Tensor:
    """The inverse of to_normalised."""
    scale = points.new_tensor([max(s - 1, 1) for s in shape])
    return (points.flip(-1) + 1) / 2 * scale


def warped_points(warp: Warp, points: torch.Tensor) -> torch.Tensor:
    """Normalised points (..., 3) of the fixed grid -> where the warp takes them on the moving grid."""
    flat = points.reshape(-1, 3)
    displacement = F.grid_sample(warp.displacement.float(), flat.float().view(1, -1, 1, 1, 3), mode="bilinear",
                                 align_corners=True)[0, :, :, 0, 0].T                   # (P, 3)
    affine = warp.affine.to(flat)
    return (flat @ affine[:, :3].T + affine[:, 3] + displacement.to(flat)).view(points.shape)


def fine_points(coarse_shape, factor: int = FACTOR) -> torch.Tensor:
    """(*fine_shape, 3): the coarse index (float64) of every voxel centre of the grid `factor` times finer."""
    axes = [coarse_index_of_fine(torch.arange(factor * n, dtype=torch.float64), factor) for n in coarse_shape]
    return torch.stack(torch.meshgrid(*axes, indexing="ij"), -1)


def coarse_index_of_fine(fine_index: torch.Tensor, factor: int = FACTOR) -> torch.Tensor:
    return (fine_index + 0.5) / factor - 0.5


def fine_index_of_coarse(coarse_index: torch.Tensor, factor: int = FACTOR) -> torch.Tensor:
    return (coarse_index + 0.5) * factor - 0.5


def centring_offset(have: int, size: int) -> int:
    """Where an axis of `have` voxels starts on one of `size` when centred on it (negative: cropped)."""
    return (size - have) // 2 if size >= have else -((have - size) // 2)


def upsampled(coarse: torch.Tensor, factor: int = FACTOR) -> torch.Tensor:
    """(C, D, H, W) -> (C, factor D, ...) trilinear, on the fine grid of fine_points."""
    return F.interpolate(coarse[None].float(), scale_factor=factor, mode="trilinear", align_corners=False)[0]


def detail_of(fine: torch.Tensor, factor: int = FACTOR) -> torch.Tensor:
    """What a grid `factor` times coarser cannot hold of `fine` (C, D, H, W): fine minus its block means upsampled."""
    return fine - upsampled(F.avg_pool3d(fine[None].float(), factor)[0], factor)


def registered_fine(twin: torch.Tensor, warp: Warp, atlas_shape, model_to_source: torch.Tensor) -> torch.Tensor:
    """A fine training twin (C, *source_shape) sampled on the fine grid of an atlas of `atlas_shape` (coarse) through
    `warp`, fitted with the atlas fixed and the twin's model-grid image moving (of the atlas's shape);
    `model_to_source` (4, 4) maps the twin's model-grid indices to its source-grid (fine) indices."""
    points = warped_points(warp, to_normalised(fine_points(atlas_shape), atlas_shape))
    model_index = to_index(points, atlas_shape)
    source_index = model_index @ model_to_source[:3, :3].T.to(model_index) + model_to_source[:3, 3].to(model_index)
    grid = to_normalised(source_index, twin.shape[1:]).float()[None]
    return F.grid_sample(twin[None].float(), grid, mode="bilinear", padding_mode="border", align_corners=True)[0]


def sample_fine(fine: torch.Tensor, warp: Warp, model_index: torch.Tensor, model_shape, atlas_shape,
                background: float) -> torch.Tensor:
    """The fine atlas `fine` (*FACTOR atlas_shape) at model-grid points `model_index` (..., 3; a case's source voxels
    in model-grid indices) through the case's `warp`, fitted with the model grid fixed and the atlas centred on it
    moving (template_prior._centred); `background` beyond the atlas."""
    centred = to_index(warped_points(warp, to_normalised(model_index, model_shape)), model_shape)
    before = centred.new_tensor([centring_offset(have, size) for have, size in zip(atlas_shape, model_shape)])
    grid = to_normalised(fine_index_of_coarse(centred - before), fine.shape).float()[None]
    values = F.grid_sample((fine.float() - background)[None, None], grid, mode="bilinear", padding_mode="zeros",
                           align_corners=True)[0, 0]
    return values + background
