"""The lesion task's label prior: per contrast and zone the least-squares line from healthy to tumour intensity, and
the spread of a case's levels around the lines (hand-built cases whose lines and offsets are known)."""
from types import SimpleNamespace

import numpy as np
import torch

from volgen.modules.label_prior import ZONES, LabelTablePrior
from volgen.ops import compartments, label_zones

SHAPE = (12, 12, 12)


def _seg() -> torch.Tensor:
    seg = torch.zeros(SHAPE, dtype=torch.long)
    seg[2:8, 2:8, 2:8] = 2
    seg[3:7, 3:7, 3:7] = 3
    seg[4:6, 4:6, 4:6] = 1
    return seg


def _cases(intercept, slope, offsets):
    """Cases sharing one healthy image; case i's tumour is intercept + slope * healthy + offsets[i] in each zone."""
    seg = _seg()
    labels, region = label_zones(compartments(seg[None, None]))
    healthy = torch.rand(2, *SHAPE, generator=torch.Generator().manual_seed(0)) * 2 - 1
    cases = []
    for offset in offsets:
        tumour = healthy.clone()
        for zone in range(ZONES):
            where = (region & (labels == zone))[0, 0]
            for c in range(2):
                tumour[c][where] = intercept[c, zone] + slope[c, zone] * healthy[c][where] + offset[c, zone]
        cases.append(SimpleNamespace(images=tumour, healthy=healthy, seg=seg))
    return cases


def test_the_lines_and_the_spread_of_the_levels_are_the_cases():
    intercept = np.array([[0.0, -0.5, 0.2, 0.8], [0.1, 0.3, 0.6, -0.2]])
    slope = np.array([[1.0, 0.2, 0.7, 0.0], [0.9, 0.5, 1.1, 0.1]])
    offsets = np.random.default_rng(1).normal(0, 0.05, (6, 2, ZONES))
    prior = LabelTablePrior(2)
    prior.fit_cases(_cases(intercept, slope, offsets), ridge=0.0)
    # one healthy image for all: the pooled line has the true slope and the mean offset in its intercept
    np.testing.assert_allclose(prior.line[..., 1].numpy(), slope, atol=1e-3)
    np.testing.assert_allclose(prior.line[..., 0].numpy(), intercept + offsets.mean(0), atol=1e-3)
    covariance = (prior.level_factor @ prior.level_factor.T).numpy()
    np.testing.assert_allclose(covariance, np.cov(offsets.reshape(6, -1), rowvar=False), atol=1e-5)


def test_a_drawn_level_moves_each_zone_of_a_case_and_its_contrasts_share_the_draw():
    offsets = np.random.default_rng(2).normal(0, 0.05, (5, 2, ZONES))
    prior = LabelTablePrior(2)
    prior.fit_cases(_cases(np.zeros((2, ZONES)), np.ones((2, ZONES)) * 0.5, offsets))
    seg = _seg()[None, None]
    healthy = torch.zeros(4, 1, *SHAPE)                     # 2 samples x 2 contrasts (item k * 2 + g)
    conditions = torch.cat([healthy, compartments(seg).expand(4, -1, *SHAPE)], dim=1)
    target = torch.tensor([0, 1, 0, 1])
    noise = prior.level_noise(samples=2, group=2, seed=3)
    assert torch.equal(noise[0], noise[1]) and torch.equal(noise[2], noise[3]) and not torch.equal(noise[0], noise[2])
    flat, drawn = prior(conditions, None, target), prior(conditions, None, target, level_noise=noise)
    levels = (noise @ prior.level_factor.double().T).view(4, 2, ZONES)
    labels, region = label_zones(compartments(seg))
    for item in range(4):
        for zone in range(ZONES):
            where = (region & (labels == zone))[0, 0]
            shift = (drawn[item, 0] - flat[item, 0])[where]
            torch.testing.assert_close(shift, torch.full_like(shift, float(levels[item, target[item], zone])))
    assert torch.equal(drawn[:, :, ~region[0, 0]], flat[:, :, ~region[0, 0]])       # the healthy tissue stays


def test_a_module_saved_before_the_level_spread_loads_without_one():
    prior = LabelTablePrior(3)
    state = {k: v for k, v in prior.state_dict().items() if k != "level_factor"}
    prior.level_factor.fill_(1.0)
    prior.load_state_dict(state, strict=True)
    assert not prior.level_factor.any()
