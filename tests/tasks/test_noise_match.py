"""Noise matching (volgen/tasks/noise_match.py) by hand: white noise of a known sd."""
import numpy as np
import pytest

from volgen.tasks.noise_match import noise_level, relative_noise, with_matched_noise, with_noise_up_to


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


def test_noise_never_takes_a_voxel_below_the_scans_minimum():
    """A dark inserted region (FLAIR's CSF sits at the background) gets noise, but nothing darker than the scan has:
    one such voxel would become the case's new background."""
    scan, region = _scan(0.1)
    scan = np.maximum(scan, 0.0)                                   # a magnitude image: background 0
    dark = scan.copy()
    dark[region] = 0.0
    noisy, sd = with_matched_noise(dark, region, scan, ~region, np.random.default_rng(2))
    assert sd > 0.05 and noisy.min() == 0.0
    assert 0.3 < np.mean(noisy[region] == 0.0) < 0.7               # half of the noise went below 0 and was held there
    assert np.array_equal(noisy[~region], dark[~region].astype(np.float32))


def test_the_relative_noise_is_the_median_of_each_scans_level_per_unit_of_its_median():
    shape = (32, 32, 32)
    where = np.ones(shape, bool)
    rng = np.random.default_rng(3)
    scans = [median + sd * rng.standard_normal(shape) for median, sd in ((100.0, 2.0), (50.0, 2.0), (10.0, 0.5))]
    # 0.02, 0.04 and 0.05 of each one's median: the middle one
    assert relative_noise(scans, where) == pytest.approx(0.04, rel=0.05)


def test_noise_up_to_a_level_tops_up_what_the_region_already_has():
    scan, region = _scan(0.06)
    noisy, sd = with_noise_up_to(scan, region, 0.1, floor=-10.0, rng=np.random.default_rng(4))
    assert sd == pytest.approx(0.08, rel=0.1)                      # sqrt(0.1^2 - 0.06^2)
    assert noise_level(noisy, region) == pytest.approx(0.1, rel=0.1)
    assert np.array_equal(noisy[~region], scan[~region].astype(np.float32))
