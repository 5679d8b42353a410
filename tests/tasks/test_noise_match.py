"""Noise matching (volgen/tasks/noise_match.py) by hand: white noise of a known sd."""
import numpy as np
import pytest

from volgen.tasks.noise_match import noise_level, with_matched_noise


def _scan(sd=0.1, shape=(32, 32, 32)):
    rng = np.random.default_rng(0)
    image = np.linspace(0, 1, shape[0])[:, None, None] + sd * rng.standard_normal(shape)   # a ramp plus noise
    image[:, :, 16:] += 1.0                                        # and an edge: anatomy, not noise
    region = np.zeros(shape, bool)
    region[10:20, 10:20, 10:20] = True
    return image, region


def test_a_flat_region_gets_the_scans_noise_sd_and_a_rough_one_none():
    scan, region = _scan(0.1)
    assert noise_level(scan, ~region) == pytest.approx(0.1, rel=0.05)      # the ramp and the edge do not count
    smooth = scan.copy()
    smooth[region] = 0.5                                           # a smooth inserted blob
    noisy, sd = with_matched_noise(smooth, region, scan, ~region, np.random.default_rng(1))
    assert sd == pytest.approx(0.1, rel=0.05)
    assert np.array_equal(noisy[~region], smooth[~region].astype(np.float32))     # outside: untouched
    core = np.zeros_like(region)
    core[11:19, 11:19, 11:19] = True                               # away from the blob's edge
    assert noise_level(noisy, core) == pytest.approx(0.1, rel=0.1)
    _, none = with_matched_noise(scan, region, scan * 0.5, ~region, np.random.default_rng(1))
    assert none == 0.0                                             # rougher than the scan already: nothing added
