"""The baselines bench_quality compares against, checked on cases with known answers."""
import numpy as np

from tests.helpers import bench_harness
from volgen.baselines import cubic_upsample, harmonic_fill

LinearRegression = bench_harness.LinearRegression


def test_harmonic_fill_reproduces_a_linear_field_and_keeps_known_voxels():
    d, h, w = np.meshgrid(np.arange(20.0), np.arange(18.0), np.arange(16.0), indexing="ij")
    field = 0.3 * d - 0.2 * h + 0.1 * w + 2.0            # harmonic: its discrete Laplacian is 0
    mask = np.zeros(field.shape, bool)
    mask[5:12, 4:10, 3:13] = True
    noisy = np.where(mask, 100.0, field)                  # what is under the mask must not matter
    out = harmonic_fill(noisy, mask)
    assert np.allclose(out, field, atol=1e-8)
    assert np.array_equal(out[~mask], noisy[~mask])


def test_harmonic_fill_of_a_hole_in_a_constant_is_the_constant_and_stays_within_the_boundary_range():
    rng = np.random.default_rng(0)
    image = rng.uniform(0.2, 0.8, (16, 16, 16))
    mask = np.zeros(image.shape, bool)
    mask[4:11, 4:11, 4:11] = True
    out = harmonic_fill(image, mask)
    ring = np.zeros_like(mask)
    ring[3:12, 3:12, 3:12] = True
    boundary = image[ring & ~mask]
    assert boundary.min() - 1e-9 <= out[mask].min() and out[mask].max() <= boundary.max() + 1e-9   # max principle
    assert np.allclose(harmonic_fill(np.full((8, 8, 8), 3.0), mask[:8, :8, :8]), 3.0)


def test_linear_regression_recovers_an_exact_linear_map():
    rng = np.random.default_rng(1)
    volumes = []
    for _ in range(2):
        a, b, c = rng.normal(size=(3, 8, 8, 8))
        volumes.append(np.stack([a, 0.5 * a - 2 * b + 0.25 * c + 0.1, b, c]))
    masks = [np.ones((8, 8, 8), bool)] * 2
    model = LinearRegression([0, 2, 3], 1).fit(volumes, masks)
    assert np.allclose(model.coef, [0.5, -2.0, 0.25, 0.1])
    assert np.allclose(model.predict(volumes[0]), volumes[0][1])


def test_cubic_upsample_keeps_constants_and_the_interior_of_a_ramp():
    assert np.allclose(cubic_upsample(np.full((4, 4, 3), 2.5), 4, 2), 2.5)
    thin = np.broadcast_to(np.arange(96.0), (2, 2, 96))
    thick = thin.reshape(2, 2, 24, 4).mean(-1)            # block means of a ramp, sampled at the block centres
    up = cubic_upsample(thick, 4, 2)
    assert up.shape == (2, 2, 96)
    # far from the ends (where the boundary condition bends the spline) the ramp comes back
    assert np.allclose(up[..., 32:64], thin[..., 32:64], atol=1e-3)
