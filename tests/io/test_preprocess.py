import nibabel as nib
import numpy as np
import pytest

from tests.helpers import smooth_volume
from tests.io.test_nifti import _affine
from volgen.io import GridMap, GridSpec, IntensityScale, Volume, preprocess
from volgen.io.preprocess import MEDIAN_LEVEL, background_level


def _volume(orientation, dtype=np.float32, shape=(20, 24, 16)):
    header = nib.Nifti1Header()
    header["descrip"] = b"source"
    return Volume(smooth_volume(shape).astype(dtype), _affine(orientation), header, name="src")


def _world(affine, ijk):
    return affine[:3, :3] @ np.asarray(ijk, float) + affine[:3, 3]


@pytest.mark.parametrize("orientation", ["RAS", "LPS", "LAS", "oblique"])
def test_model_grid_is_ras_and_divisible(orientation):
    pre = preprocess(_volume(orientation), GridSpec(spacing=(2.0, 2.0, 2.0), multiple=8))
    assert "".join(nib.aff2axcodes(pre.grid.model_affine)) == "RAS"
    assert all(n % 8 == 0 for n in pre.array.shape)
    np.testing.assert_allclose(np.linalg.norm(pre.grid.model_affine[:3, :3], axis=0), 2.0)
    assert pre.array.min() >= 0.0 and pre.array.max() <= 1.0


@pytest.mark.parametrize("orientation", ["RAS", "LPS", "LAS", "oblique"])
def test_without_resampling_the_round_trip_is_exact(orientation):
    vol = _volume(orientation)
    pre = preprocess(vol, GridSpec(spacing=None, multiple=16), percentiles=(0, 100))
    back = pre.restore(pre.array)
    assert back.shape == vol.shape and back.array.dtype == vol.array.dtype
    np.testing.assert_array_equal(back.affine, vol.affine)
    np.testing.assert_allclose(back.array, vol.array, rtol=1e-6, atol=1e-3)
    assert back.header["descrip"].tobytes().startswith(b"source")


def test_a_prediction_below_the_models_range_comes_back_at_the_background_not_below():
    vol = _volume("RAS")
    vol.array[:4] = 0.0                                                        # a background the scale maps to 0
    pre = preprocess(vol, GridSpec(spacing=None, multiple=4))
    prediction = pre.array.copy()
    prediction[10, 10, 8] = -0.4                                              # a sample overshooting dark tissue
    back = pre.restore(prediction, fill=0.0).array
    assert back.min() == 0.0 and back[10, 10, 8] == 0.0


@pytest.mark.parametrize("orientation", ["RAS", "LPS", "oblique"])
def test_model_voxels_sit_where_the_source_voxels_are(orientation):
    """A single bright voxel lands on the model voxel with the same world position, and comes back home."""
    vol = _volume(orientation)
    marker = np.zeros(vol.shape, np.float32)
    marker[5, 7, 3] = 1.0
    pre = preprocess(vol.with_array(marker), GridSpec(spacing=None, multiple=16), out_range=None)
    hit = np.argwhere(pre.array == 1.0)[0]
    np.testing.assert_allclose(_world(pre.grid.model_affine, hit), _world(vol.affine, (5, 7, 3)), atol=1e-6)
    back = pre.restore(pre.array)
    assert tuple(np.argwhere(back.array == 1.0)[0]) == (5, 7, 3)


def test_int16_source_comes_back_as_int16_on_its_grid_after_resampling():
    vol = _volume("LPS", dtype=np.int16, shape=(30, 36, 12))
    vol.affine[:3, :3] = np.diag([-1.0, -1.0, 3.0])   # thick slices, resampled to 2 mm both ways
    pre = preprocess(vol, GridSpec(spacing=(2.0, 2.0, 2.0)), percentiles=(0, 100))
    assert pre.grid.resamples
    back = pre.restore(pre.array)
    assert back.array.dtype == np.int16 and back.shape == vol.shape
    np.testing.assert_array_equal(back.affine, vol.affine)
    inner = (slice(4, -4), slice(4, -4), slice(2, -2))
    err = np.abs(back.array[inner].astype(float) - vol.array[inner])
    assert np.median(err) < 0.05 * np.ptp(vol.array)   # smooth image: interpolation both ways loses little


def test_one_grid_shared_across_a_case_and_labels_stay_labels():
    vol = _volume("LAS")
    labels = vol.with_array((vol.array > 600).astype(np.uint8) * 3)
    pre = preprocess(vol, GridSpec(spacing=(1.5, 1.5, 1.5)))
    lab = preprocess(labels, grid=pre.grid, label=True)
    assert lab.array.shape == pre.array.shape and set(np.unique(lab.array)) <= {0, 3}
    back = lab.restore(lab.array, label=True)
    assert back.array.dtype == np.uint8 and set(np.unique(back.array)) <= {0, 3}
    other = Volume(vol.array, np.diag([1.0, 1.0, 1.0, 1.0]))
    with pytest.raises(Exception, match="grid differs"):
        preprocess(other, grid=pre.grid)


def test_fixed_shape_crops_around_the_foreground():
    array = np.zeros((60, 40, 40), np.float32)
    array[40:56, 10:30, 10:30] = 1.0 + np.random.default_rng(0).random((16, 20, 20))
    pre = preprocess(Volume(array, np.eye(4)), GridSpec(spacing=None, shape=(32, 48, 48), multiple=16))
    assert pre.array.shape == (32, 48, 48)
    assert pre.grid.offset[0] > 0 and pre.grid.offset[1] < 0     # cropped along x, padded along y
    kept = pre.restore(pre.array, fill=0.0).array
    np.testing.assert_allclose(kept[40:56, 10:30, 10:30] > 0, True)


def test_plan_is_pure_geometry():
    grid = GridMap.plan((10, 12, 14), np.diag([-2.0, 2.0, 2.0, 1.0]), GridSpec(spacing=None, multiple=16))
    assert grid.model_shape == (16, 16, 16) and grid.offset == (-3, -2, -1)


def _head_with_lesion(rim_brightness: float):
    """A head of tissue around 300-500 on a 0 background, with a small rim (1% of the head) at `rim_brightness`."""
    rng = np.random.default_rng(1)
    array = np.zeros((24, 24, 24), np.float32)
    array[2:-2, 2:-2, 2:-2] = rng.uniform(300, 500, (20, 20, 20))
    array[10:12, 10:12, 2:22] = rim_brightness
    return array


def test_the_median_reference_puts_the_heads_median_at_the_contrasts_level():
    array = _head_with_lesion(700.0)
    pre = preprocess(Volume(array, np.eye(4)), GridSpec(spacing=None, multiple=8), contrast="t1c")
    head = array > 0
    assert pre.array[~head].max() == 0.0                     # the background maps to the bottom exactly
    assert np.median(pre.array[head]) == pytest.approx(MEDIAN_LEVEL["t1c"], abs=1e-6)
    unclipped = pre.array < 1
    assert np.allclose(pre.scale.inverse(pre.array)[unclipped], array[unclipped], atol=1e-3)


def test_a_brighter_lesion_moves_the_percentile_scale_but_not_the_median_one():
    """The reason for the median: a t1c's enhancing rim (the contrast agent's dose) must not rescale healthy tissue."""
    def healthy_voxel(rim, contrast):
        pre = preprocess(Volume(_head_with_lesion(rim), np.eye(4)), GridSpec(spacing=None, multiple=8),
                         contrast=contrast)
        return pre.array[5, 5, 5]
    assert healthy_voxel(2000.0, "t1c") == pytest.approx(healthy_voxel(700.0, "t1c"), rel=1e-6)
    assert healthy_voxel(2000.0, None) < 0.5 * healthy_voxel(700.0, None)      # the percentile reference


def test_median_levels_must_lie_inside_the_range():
    with pytest.raises(ValueError, match="median_level"):
        IntensityScale.fit(_head_with_lesion(700.0), median_level=1.2)


def test_a_few_voxels_under_the_background_do_not_become_it():
    """One voxel below a skull-stripped scan's 0 (noise added to a dark region, interpolation ringing) once made every
    voxel count as head, put the head's median on the background and flattened the whole contrast."""
    clean = _head_with_lesion(700.0)
    stray = clean.copy()
    stray[0, 0, 0], stray[1, 5, 7] = -2.0, -0.5
    assert background_level(stray) == 0.0
    spec = GridSpec(spacing=None, multiple=8)
    for contrast in ("t2f", None):
        expected = preprocess(Volume(clean, np.eye(4)), spec, contrast=contrast).array
        assert np.array_equal(preprocess(Volume(stray, np.eye(4)), spec, contrast=contrast).array, expected)
    # a noisy background shares no value: its minimum stays the background, as before
    noisy = clean + np.random.default_rng(3).uniform(0, 5, clean.shape).astype(np.float32)
    assert background_level(noisy) == noisy.min()


def _ball_head(spacing: float, n: int) -> Volume:
    """A skull-stripped head drawn at `spacing` mm over the same field: a ball of radius 28 mm whose tissue brightens
    linearly toward its edge (as the cortex is brighter than the core on T2), background 0. Linear interpolation
    keeps a linear ramp exact, so only the head's edge differs between the two draws on the 2 mm grid."""
    centres = (np.arange(n) - (n - 1) / 2) * spacing
    x, y, z = np.meshgrid(centres, centres, centres, indexing="ij")
    r = np.sqrt(x ** 2 + y ** 2 + z ** 2)
    affine = np.diag([spacing, spacing, spacing, 1.0])
    affine[:3, 3] = centres[0]
    return Volume(np.where(r < 28.0, 40.0 + 2.0 * r, 0.0).astype(np.float32), affine)


def test_a_head_resampled_from_1mm_is_scaled_as_its_native_2mm_draw():
    """Resampling a skull-stripped 1 mm scan to 2 mm blends its edge with the background into a rim of dim voxels a
    native 2 mm scan does not have; the scale is fitted on the voxels at least half inside the source's head, so the
    rim does not lower the median that sets it."""
    spec = GridSpec(spacing=(2.0,) * 3, multiple=8)
    native = preprocess(_ball_head(2.0, 32), spec, contrast="t2f")
    fine = preprocess(_ball_head(1.0, 64), spec, contrast="t2f")
    assert not native.grid.resamples and fine.grid.resamples
    assert fine.scale.high == pytest.approx(native.scale.high, rel=0.04)
    # the rim is there: counted as head, it would move the scale by more than 10%
    resampled = fine.grid.forward(fine.source.array, order=1, fill=0.0)
    whole_head = IntensityScale.fit(resampled, median_level=MEDIAN_LEVEL["t2f"])
    assert whole_head.high < 0.9 * native.scale.high
