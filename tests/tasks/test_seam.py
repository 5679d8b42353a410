"""The seam correction of a fill made on a coarser grid (volgen/tasks/seam.py), against the direct sparse solve of
the harmonic fill (volgen/baselines.py) and values derived by hand; and the rest of what the inpainting and lesion
jobs do on a grid finer than the model's."""
import numpy as np

from tests.helpers import smooth_volume
from volgen.baselines import harmonic_fill
from volgen.io.preprocess import GridSpec, preprocess
from volgen.io.volume import Volume
from volgen.tasks.inpainting import inpaint
from volgen.tasks.noise_match import noise_level
from volgen.tasks.seam import met_at_boundary, reach_of, restored_and_met


def hole_and_image(seed=0):
    rng = np.random.default_rng(seed)
    image = rng.normal(size=(18, 20, 16))
    hole = np.zeros(image.shape, dtype=bool)
    hole[5:13, 4:11, 6:12] = True
    hole[12:17, 9:12, 3:7] = True          # an arm reaching the volume's edge plane 17: the edge is no neighbour
    return image, hole


def test_a_blank_fill_becomes_the_exact_harmonic_fill():
    image, hole = hole_and_image()
    met = met_at_boundary(np.zeros_like(image), image, hole)
    np.testing.assert_allclose(met[hole], harmonic_fill(image, hole)[hole], atol=1e-5)
    assert not met[~hole].any()                 # outside the hole the fill is returned as it came


def test_a_fill_off_by_a_constant_is_brought_back_to_the_image():
    image, hole = hole_and_image(1)
    met = met_at_boundary(image + 0.3, image, hole)     # the harmonic function with boundary values -0.3 is -0.3
    np.testing.assert_allclose(met[hole], image[hole], atol=1e-5)


def test_a_fill_that_meets_the_known_voxels_is_left_alone():
    image, hole = hole_and_image(2)
    fill = np.where(hole, 4.0, image).astype(np.float32)
    met = met_at_boundary(fill, image, hole)
    assert met.dtype == np.float32
    np.testing.assert_array_equal(met, fill)


def test_a_screened_correction_fades_into_a_slab_as_derived_by_hand():
    # a slab across the whole volume in y and z, known at x = 0 and x = 23: the solution is constant in y and z, and
    # (2 + s) u_k - u_{k-1} - u_{k+1} = 0 with u_0 = u_23 = 1, s = 1 / reach^2, gives u_k = cosh(a (k - 11.5)) /
    # cosh(11.5 a) with cosh a = 1 + s / 2
    source = np.ones((24, 5, 6))
    hole = np.zeros(source.shape, dtype=bool)
    hole[1:23] = True
    met = met_at_boundary(np.zeros_like(source), source, hole, reach=2.0)
    a = np.arccosh(1 + 0.25 / 2)
    k = np.arange(1, 23)
    expected = np.cosh(a * (k - 11.5)) / np.cosh(11.5 * a)
    np.testing.assert_allclose(met[1:23], np.broadcast_to(expected[:, None, None], (22, 5, 6)), atol=1e-5)
    assert met[11, 0, 0] < 0.01                 # the mismatch does not reach the slab's middle


def test_the_reach_is_one_model_voxel_on_the_finest_axis():
    assert reach_of((1.0, 1.0, 1.0), 2.0) == 2.0
    assert reach_of((0.5, 1.0, 3.0), 2.0) == 4.0
    assert reach_of((2.0, 2.0, 2.0), 2.0) == 1.0


def _on_grid(spacing):
    """(a source Volume with detail at every voxel, its preprocessed 2 mm model-grid version, a region)."""
    shape = (32, 32, 32) if spacing == 1.0 else (16, 16, 16)
    rng = np.random.default_rng(2)
    image = 100.0 + 20.0 * rng.standard_normal(shape)
    image[:, :, shape[2] // 2:] += 50.0                              # an edge too
    source = Volume(image.astype(np.float32), np.diag([spacing] * 3 + [1.0]))
    pre = preprocess(source, GridSpec(spacing=(2.0,) * 3, multiple=1), contrast="t1n", out_range=(-1.0, 1.0))
    inside = np.zeros(shape, bool)
    inside[tuple(slice(n // 4, 3 * n // 4) for n in shape)] = True
    return source, pre, inside


def test_a_healthy_border_gets_back_the_detail_the_model_grid_cannot_hold():
    """At 1 mm: where the model changed nothing, the border comes back as the source, detail and all; without the
    border the 2 mm version stands there."""
    source, pre, inside = _on_grid(1.0)
    border = inside.copy()
    border[12:20, 12:20, 12:20] = False                             # the labels: the model's own there
    kept = restored_and_met(pre, pre.array, source, inside, 2.0, healthy_border=border)
    plain = restored_and_met(pre, pre.array, source, inside, 2.0)
    np.testing.assert_allclose(kept[border], source.array[border], atol=1e-3)
    assert np.abs(plain[border] - source.array[border]).mean() > 5.0
    model_own = inside & ~border                                    # nothing to meet: the model's fill as it is
    np.testing.assert_allclose(kept[model_own], pre.restore(pre.array, dtype=np.float32).array[model_own], atol=1e-3)



def test_an_inpainted_sample_gets_the_scans_grain_on_a_finer_grid_only(tmp_path, tiny_models):
    """A sample is for texture: drawn on the 2 mm model grid it lacks a 1 mm scan's noise, which is added in the hole
    up to the scan's level (tasks/noise_match.py); the mean, and a sample on the model grid, are left as drawn."""
    settings = dict(contrast="t2f", model=tiny_models["inpainting"], steps=2, progress=False)
    for spacing, shape in ((1.0, (40, 40, 36)), (2.0, (20, 20, 18))):
        rng = np.random.default_rng(5)
        image = Volume((smooth_volume(shape, seed=3) + 200.0 + 10.0 * rng.standard_normal(shape)).astype(np.float32),
                       np.diag([spacing] * 3 + [1.0]))
        mask = np.zeros(shape, np.int16)
        mask[tuple(slice(n // 3, 2 * n // 3) for n in shape)] = 1
        mask_volume = image.with_array(mask)
        mean, sample = (inpaint(image, mask_volume, estimate=e, **settings) for e in ("mean", "sample"))
        assert "matched_noise_sd" not in mean.info
        assert ("matched_noise_sd" in sample.info) == (spacing == 1.0)
        filled = sample.outputs["inpainted"].array
        np.testing.assert_array_equal(filled[mask == 0], image.array[mask == 0])       # outside: the scan's own
        if spacing == 1.0:
            assert noise_level(filled, mask > 0) >= 0.9 * noise_level(image.array, mask == 0)
