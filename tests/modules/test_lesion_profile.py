"""Lesion mode's prior: the depth map by hand, the profile's fit against known differences, and the template
prior adding it only to the items flagged for a lesion."""
import numpy as np
import pytest
import torch

from volgen.modules.lesion_profile import DEPTH_BINS, LesionProfile, depth_bins, normalised_depth
from volgen.modules.template_prior import TemplateFillPrior
from volgen.training.data import CaseArrays


def _cube(size=9, lo=2, hi=7):
    mask = np.zeros((size,) * 3, bool)
    mask[lo:hi, lo:hi, lo:hi] = True
    return mask


def test_the_depth_is_the_distance_to_the_outside_over_the_largest():
    depth = normalised_depth(_cube())              # a 5^3 cube: 1 voxel from the outside at its faces, 3 at its centre
    assert depth[4, 4, 4] == pytest.approx(1.0)
    assert depth[2, 4, 4] == pytest.approx(1 / 3) and depth[3, 4, 4] == pytest.approx(2 / 3)
    assert depth[0, 0, 0] == 0.0
    assert depth_bins(_cube())[4, 4, 4] == DEPTH_BINS - 1 and depth_bins(_cube())[2, 4, 4] == 3


def test_the_profile_is_the_mean_difference_per_depth_bin_and_is_added_inside_the_mask():
    # seg: a 3^3 tumour; grown by one voxel it is the 5^3 cube above, whose voxels lie at depths 1/3, 2/3 and 1
    seg = torch.zeros(9, 9, 9, dtype=torch.int64)
    seg[3:6, 3:6, 3:6] = 1
    mask = torch.from_numpy(_cube())
    bins = torch.from_numpy(depth_bins(_cube()))
    healthy = torch.rand(2, 9, 9, 9, generator=torch.Generator().manual_seed(0)) - 0.5
    added = torch.stack([0.1 * bins, -0.05 * bins]).double() * mask     # contrast 1 darkens with depth
    cases = [CaseArrays("a", (healthy + added).float(), healthy=healthy, seg=seg)]
    profile = LesionProfile(2)
    profile.fit(cases)
    for b in (3, 6, 9):
        assert profile.profile[0, b].item() == pytest.approx(0.1 * b, abs=1e-6)
        assert profile.profile[1, b].item() == pytest.approx(-0.05 * b, abs=1e-6)
    out = profile(mask[None, None].float(), torch.tensor([1]))
    assert torch.allclose(out[0, 0].double(), added[1], atol=1e-6)     # the difference comes back, 0 outside


def test_the_template_prior_grows_the_profile_only_in_lesion_mode():
    prior = TemplateFillPrior(1)
    prior.fit([torch.zeros(1, 10, 10, 10)])
    prior.lesion.profile.fill_(0.25)
    image = torch.rand(2, 1, 10, 10, 10, generator=torch.Generator().manual_seed(3)) - 0.5
    mask = torch.zeros_like(image)
    mask[:, :, 3:8, 3:8, 3:8] = 1
    insert = torch.tensor([0.0, 1.0]).view(2, 1, 1, 1, 1).expand_as(mask)
    out = prior(torch.cat([image * (1 - mask) - mask, mask, insert], dim=1), None, None)
    healthy = prior(torch.cat([image * (1 - mask) - mask, mask, torch.zeros_like(mask)], dim=1), None, None)
    assert torch.equal(out[0], healthy[0])                                    # healthy mode: the fill alone
    inside = mask[1, 0] > 0
    assert torch.allclose(out[1, 0][inside], (healthy[1, 0][inside] + 0.25).clamp(-1, 1), atol=1e-6)
    assert torch.equal(out[1, 0][~inside], image[1, 0][~inside])              # known voxels exactly
