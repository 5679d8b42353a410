"""The fine atlas's coordinates (volgen/modules/fine_atlas.py), checked against grid_sample's own warping
(registration.apply_warp) and against functions whose values at every voxel are known by hand."""
import numpy as np
import torch
import torch.nn.functional as F

from volgen.modules import fine_atlas
from volgen.modules.registration import Warp, apply_warp
from volgen.modules.template_prior import TemplateFillPrior, _fine_support


def _ramp(shape, slope=(0.3, -0.2, 0.1), at=lambda i: i) -> torch.Tensor:
    """A linear function of the voxel index (through `at`, the index's position in some other unit)."""
    axes = torch.meshgrid(*[at(torch.arange(n, dtype=torch.float64)) for n in shape], indexing="ij")
    return sum(s * a for s, a in zip(slope, axes))


def _warp(seed=0, lattice=(3, 4, 3)) -> Warp:
    g = torch.Generator().manual_seed(seed)
    affine = torch.eye(3, 4) + 0.03 * torch.randn(3, 4, generator=g)
    return Warp(affine, 0.05 * torch.randn(1, 3, *lattice, generator=g))


def test_points_through_a_warp_land_where_apply_warp_samples():
    shape = (9, 12, 10)
    moving = torch.randn(1, 1, *shape, generator=torch.Generator().manual_seed(1))
    warp = _warp()
    index = torch.stack(torch.meshgrid(*[torch.arange(n, dtype=torch.float64) for n in shape], indexing="ij"), -1)
    points = fine_atlas.warped_points(warp, fine_atlas.to_normalised(index, shape))
    ours = F.grid_sample(moving, points.float()[None], mode="bilinear", padding_mode="border", align_corners=True)
    torch.testing.assert_close(ours, apply_warp(moving, warp), atol=1e-5, rtol=0)
    assert torch.allclose(fine_atlas.to_index(fine_atlas.to_normalised(index, shape), shape), index)


def test_the_fine_grid_is_where_trilinear_upsampling_puts_it_and_a_ramp_has_no_detail():
    coarse = _ramp((6, 7, 5)).float()[None]
    fine = fine_atlas.upsampled(coarse)
    # fine voxel k stands at coarse index (k - 0.5) / 2: a ramp upsampled is the ramp there (away from the edges)
    at_fine = _ramp((12, 14, 10), at=lambda k: (k - 0.5) / 2).float()
    inner = (slice(1, -1),) * 3
    torch.testing.assert_close(fine[0][inner], at_fine[inner], atol=1e-5, rtol=0)
    torch.testing.assert_close(fine_atlas.fine_points((6, 7, 5))[..., 0][:, 0, 0],
                               (torch.arange(12, dtype=torch.float64) - 0.5) / 2)
    detail = fine_atlas.detail_of(_ramp((12, 14, 10)).float()[None])
    assert detail[0][inner].abs().max() < 1e-5                     # a ramp is all there on the coarse grid
    block = torch.zeros(1, 12, 14, 10)
    block[:, ::2] = 1.0                                               # 1 mm stripes: nothing of them at 2 mm
    torch.testing.assert_close(fine_atlas.detail_of(block), block - 0.5)


def test_a_fine_twin_registered_by_the_identity_is_itself_and_the_case_samples_it_back():
    """The twin's source grid is the atlas's fine grid (a 1 mm twin of a 2 mm atlas); the identity warp, with the
    model grid twice as coarse, returns it voxel for voxel, and a case on the same 1 mm grid samples it back."""
    coarse_shape = (6, 8, 7)
    twin = torch.randn(2, 12, 16, 14, generator=torch.Generator().manual_seed(3))
    identity = Warp(torch.eye(3, 4), torch.zeros(1, 3, 2, 2, 2))
    model_to_source = torch.eye(4, dtype=torch.float64)
    model_to_source[:3, :3] *= 2
    model_to_source[:3, 3] = 0.5                                     # model voxel i covers source voxels 2i, 2i+1
    registered = fine_atlas.registered_fine(twin, identity, coarse_shape, model_to_source)
    torch.testing.assert_close(registered, twin, atol=1e-5, rtol=0)
    source_index = torch.stack(torch.meshgrid(*[torch.arange(n, dtype=torch.float64) for n in twin.shape[1:]],
                                              indexing="ij"), -1)
    model_index = (source_index - 0.5) / 2
    # the model grid two voxels wider on each side than the atlas: the atlas is centred on it
    wider = tuple(n + 4 for n in coarse_shape)
    back = fine_atlas.sample_fine(twin[1], identity, model_index + 2, wider, coarse_shape, background=-1.0)
    torch.testing.assert_close(back, twin[1], atol=1e-5, rtol=0)


def test_the_fine_detail_saves_in_four_bits_on_the_heads_voxels_and_loads_back():
    prior = TemplateFillPrior(4, registered=True)
    atlas = torch.full((4, 7, 6, 5), -1.0)
    atlas[:, 2:6, 1:5, 1:4] = torch.rand(4, 4, 4, 3)
    prior.atlas = atlas
    assert "fine_values" not in prior.state_dict() and not prior.has_fine_detail     # a module without one
    detail = 0.1 * torch.randn(4, 14, 12, 10, generator=torch.Generator().manual_seed(4))
    prior.use_fine_detail(detail)
    state = prior.state_dict()
    head = _fine_support((atlas != -1).any(0))
    assert int(head.sum()) == 8 * 4 * 4 * 3 and state["fine_values"].dtype == torch.uint8
    assert state["fine_values"].numel() == 4 * int(head.sum()) // 2                   # two voxels a byte
    loaded = TemplateFillPrior(4, registered=True)
    loaded.load_state_dict(state)
    assert loaded.has_fine_detail and torch.equal(loaded.fine[:, ~head], torch.zeros(4, int((~head).sum())))
    step = state["fine_scale"]                                         # (4, 1): one level of each contrast
    error = (loaded.fine[:, head] - detail[:, head]).abs()
    unclipped = detail[:, head].abs() <= 7 * step
    assert (error[unclipped] <= step.expand_as(error)[unclipped] / 2 + 1e-6).all()
    assert unclipped.float().mean() > 0.99


def test_a_prior_built_for_fine_detail_names_its_tensors_before_it_is_fitted_and_loads_back_without_one():
    built = TemplateFillPrior(4, registered=True, fine_detail=True)
    built.atlas = torch.full((4, 4, 4, 4), 0.5)
    state = built.state_dict()
    assert state["fine_scale"].shape == (4, 1) and state["fine_values"].numel() == 0
    loaded = TemplateFillPrior(4, registered=True, fine_detail=True)
    loaded.load_state_dict(state)
    assert not loaded.has_fine_detail
    old = TemplateFillPrior(4, registered=True)                        # a module saved before the fine detail
    old.atlas = built.atlas
    assert "fine_values" not in old.state_dict()
    result = TemplateFillPrior(4, registered=True, fine_detail=True).load_state_dict(old.state_dict(), strict=False)
    assert result.missing_keys == ["fine"] and not result.unexpected_keys
