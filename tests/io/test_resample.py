"""Resampling between grids (volgen/io/resample.py). Linear resampling along the grid's own axes (every 1 mm <-> 2 mm
restore) runs as one interpolation matrix per axis; scipy's map_coordinates at the same voxel coordinates is the
reference it must equal."""
import numpy as np
import pytest
from scipy import ndimage

from volgen.io.resample import resample


def _reference(array, src_affine, dst_shape, dst_affine):
    """Trilinear values at each dst voxel centre's src coordinate, edges replicated (no antialiasing)."""
    dst_to_src = np.linalg.solve(src_affine, dst_affine)
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in dst_shape], indexing="ij"), 0).reshape(3, -1)
    coords = dst_to_src[:3, :3] @ ijk + dst_to_src[:3, 3:4]
    return ndimage.map_coordinates(array, coords, order=1, mode="nearest").reshape(dst_shape)


def _affine(spacing, origin, flips=(1, 1, 1)):
    affine = np.diag([*(np.asarray(spacing) * flips), 1.0])
    affine[:3, 3] = origin
    return affine


@pytest.mark.parametrize("src_spacing, dst_spacing, dst_shape, origin, flips", [
    ((2, 2, 2), (1, 1, 1), (30, 26, 18), (-3.5, 1.25, 0.5), (1, 1, 1)),       # 2 mm -> 1 mm, part outside the field
    ((2, 2, 2), (1, 1, 1), (24, 20, 14), (0.5, 0.5, 0.5), (-1, 1, -1)),       # flipped axes
    ((1, 1, 3), (0.5, 1, 1), (9, 4, 25), (2.0, -1.0, 4.0), (1, 1, 1)),        # a different factor per axis
    ((2, 2, 2), (2, 2, 2), (1, 7, 5), (1.0, 0.0, 0.0), (1, 1, 1)),            # a one-voxel axis
])
def test_linear_resampling_along_the_axes_equals_trilinear_interpolation(src_spacing, dst_spacing, dst_shape,
                                                                          origin, flips):
    array = np.random.default_rng(0).normal(size=(12, 10, 8)).astype(np.float32)
    src_affine = _affine(src_spacing, (0.0, 0.0, 0.0))
    dst_affine = _affine(dst_spacing, origin, flips)
    got = resample(array, src_affine, dst_shape, dst_affine, order=1, antialias=False)
    assert got.shape == dst_shape and got.dtype == np.float32
    np.testing.assert_allclose(got, _reference(array, src_affine, dst_shape, dst_affine), atol=2e-6)


def test_downsampling_along_the_axes_still_blurs_first_and_an_oblique_map_still_interpolates():
    rng = np.random.default_rng(1)
    array = rng.normal(size=(16, 16, 12)).astype(np.float32)
    src_affine = _affine((1, 1, 1), (0.0, 0.0, 0.0))
    dst_affine = _affine((2, 2, 2), (0.5, 0.5, 0.5))
    blurred = ndimage.gaussian_filter(array, 0.5, mode="nearest")
    np.testing.assert_allclose(resample(array, src_affine, (8, 8, 6), dst_affine),
                               _reference(blurred, src_affine, (8, 8, 6), dst_affine), atol=2e-6)
    angle = np.deg2rad(10)
    rotation = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    oblique = np.eye(4)
    oblique[:3, :3] = rotation
    oblique[:3, 3] = (1.0, -0.5, 0.25)
    np.testing.assert_allclose(resample(array, src_affine, (16, 16, 12), oblique, antialias=False),
                               _reference(array, src_affine, (16, 16, 12), oblique), atol=2e-6)
