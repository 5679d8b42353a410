"""The bias-field estimate on a hand-built case: three tissues in two contrasts under known smooth fields."""
import numpy as np
import pytest
from scipy import ndimage

from volgen.io.bias_field import (estimate_bias_fields, polynomial_field, remove_bias, without_bias,
                                   without_bias_on_model_grid)
from volgen.io.volume import Volume

SHAPE = (32, 32, 32)
SPACING = (4.0, 4.0, 4.0)      # 4 mm voxels: the fit uses every voxel


def _coordinates():
    return np.meshgrid(*[np.linspace(-1, 1, n) for n in SHAPE], indexing="ij")


def _case(seed=0):
    """(head, tissue labels 0-2, two field-free contrasts): blobs of three tissues in a ball, 2% noise."""
    rng = np.random.default_rng(seed)
    x, y, z = _coordinates()
    head = x ** 2 + y ** 2 + z ** 2 < 0.9
    smooth = ndimage.gaussian_filter(rng.standard_normal(SHAPE), 2.0)
    tissue = np.digitize(smooth, np.quantile(smooth[head], [0.3, 0.7]))
    levels = {0: (1.0, 0.4), 1: (0.7, 0.8), 2: (0.45, 1.2)}        # (contrast A, contrast B) per tissue
    images = [np.where(head, np.choose(tissue, [levels[t][c] for t in range(3)]), 0.0) for c in range(2)]
    images = [np.where(head, im * (1 + 0.02 * rng.standard_normal(SHAPE)), 0.0).astype(np.float32) for im in images]
    return head, images


def _true_log_fields():
    x, y, z = _coordinates()
    return [0.25 * x - 0.15 * y * z + 0.2 * z ** 2 - 0.1, -0.2 * y + 0.15 * x * x * z + 0.1 * x * y]


def test_the_polynomial_field_is_the_exponential_of_the_sum_of_its_monomials():
    rng = np.random.default_rng(1)
    coefficients = rng.normal(0, 0.1, 20)
    x, y, z = _coordinates()
    exponents = [(i, j, k) for i in range(4) for j in range(4 - i) for k in range(4 - i - j)]
    direct = np.exp(sum(a * x ** i * y ** j * z ** k for a, (i, j, k) in zip(coefficients, exponents)))
    np.testing.assert_allclose(polynomial_field(coefficients, SHAPE), direct, rtol=1e-5)


def test_known_fields_are_recovered_to_a_fraction_of_their_size():
    head, clean = _case()
    truths = _true_log_fields()
    biased = [im * np.exp(t) for im, t in zip(clean, truths)]
    for coefficients, truth in zip(estimate_bias_fields(biased, head, SPACING), truths):
        estimate = np.log(polynomial_field(coefficients, SHAPE))[head]
        target = truth[head] - np.median(truth[head])
        assert np.std(estimate - target) < 0.1 * np.std(target)
        assert abs(np.median(estimate)) < 1e-6            # the level is left to the intensity scaling


def test_a_case_without_a_field_is_left_almost_as_it_was():
    head, clean = _case(seed=2)
    for coefficients in estimate_bias_fields(clean, head, SPACING):
        assert np.abs(np.log(polynomial_field(coefficients, SHAPE))[head]).max() < 0.02


def test_removal_divides_inside_the_head_and_keeps_every_other_voxel():
    head, clean = _case(seed=3)
    truths = _true_log_fields()
    background = [5.0, 5.0]                          # a scan whose background is not 0
    arrays = [(im * np.exp(t) + b).astype(np.float32) for im, t, b in zip(clean, truths, background)]
    arrays[0][~head] = 5.0 + np.arange((~head).sum()) % 3    # noise outside the head must survive untouched
    out = remove_bias(arrays, head, SPACING, background)
    for before, after, im in zip(arrays, out, clean):
        assert after.dtype == np.float32
        np.testing.assert_array_equal(after[~head], before[~head])
        ratio = (after[head] - 5.0) / im[head]
        assert np.std(np.log(ratio)) < 0.02 < np.std(np.log((before[head] - 5.0) / im[head]))


def test_a_head_too_small_to_fit_gets_unit_fields():
    head, clean = _case()
    small = np.zeros(SHAPE, bool)
    small[:10, :10, :10] = True
    for coefficients in estimate_bias_fields(clean, small, SPACING):
        assert not np.any(coefficients)


@pytest.mark.parametrize("order", [("a", "b"), ("b", "a")])
def test_volumes_keep_their_names_geometry_and_order(order):
    head, clean = _case(seed=4)
    affine = np.diag([4.0, 4.0, 4.0, 1.0])
    volumes = {name: Volume(im * np.exp(t).astype(np.float32), affine, name=name)
               for name, im, t in zip(order, clean, _true_log_fields())}
    out = without_bias(volumes)
    assert list(out) == list(order)
    for name in order:
        assert out[name].name == name and out[name].shape == SHAPE
        np.testing.assert_array_equal(out[name].affine, affine)


def test_model_grid_contrasts_come_back_unbiased_at_their_median_level():
    """The benches' and `volgen calibrate`'s path: [-1, 1] arrays, -1 outside the head, contrasts named as MRI's."""
    head, clean = _case(seed=5)
    levels = {"t1n": 0.757, "t2w": 0.460}                     # preprocess's MEDIAN_LEVEL of the two contrasts
    images = {}
    for (name, level), im, t in zip(levels.items(), clean, _true_log_fields()):
        biased = im * np.exp(t)
        unit = biased / np.median(biased[head]) * level        # the head's median at the contrast's level of [0, 1]
        images[name] = np.where(head, 2 * unit - 1, -1.0).astype(np.float32)
    out = without_bias_on_model_grid(images, SPACING)
    assert list(out) == list(levels)
    for (name, level), im in zip(levels.items(), clean):
        after = out[name]
        assert after.dtype == np.float32 and np.all(after[~head] == -1.0)
        assert np.median((after[head] + 1) / 2) == pytest.approx(level, abs=0.01)
        kept = head & (after < 1.0)                             # the scaling clips the brightest voxels
        before = (images[name][kept] + 1) / im[kept]
        assert np.std(np.log((after[kept] + 1) / im[kept])) < 0.2 * np.std(np.log(before))
