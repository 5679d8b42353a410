import nibabel as nib
import numpy as np
import pytest

from tests.helpers import save_nifti
from volgen.errors import OutputError
from volgen.io import Volume, read_volume, write_volume


def _affine(kind):
    if kind == "RAS":
        a = np.diag([1.0, 1.2, 2.5, 1.0])
    elif kind == "LPS":
        a = np.diag([-1.0, -1.0, 1.0, 1.0])
    elif kind == "LAS":
        a = np.diag([-0.9, 0.9, 3.0, 1.0])
    else:  # oblique: rotated about two axes, anisotropic voxels
        ca, sa, cb, sb = np.cos(0.3), np.sin(0.3), np.cos(-0.2), np.sin(-0.2)
        rot = np.array([[ca, -sa, 0], [sa, ca, 0], [0, 0, 1]]) @ np.array([[1, 0, 0], [0, cb, -sb], [0, sb, cb]])
        a = np.eye(4)
        a[:3, :3] = rot @ np.diag([0.8, 1.0, 2.0])
    a[:3, 3] = [-90.5, 112.25, -60.0]
    return a


@pytest.mark.parametrize("orientation", ["RAS", "LPS", "LAS", "oblique"])
@pytest.mark.parametrize("dtype", ["<i2", ">i2", "<f4", ">f4"])
@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_round_trip_is_exact(tmp_path, orientation, dtype, suffix):
    rng = np.random.default_rng(1)
    data = (rng.random((12, 10, 7)) * 3000 - 500).astype(np.dtype(dtype).newbyteorder("="))
    src = save_nifti(tmp_path / f"src{suffix}", data.astype(dtype), _affine(orientation), dtype=dtype)
    vol = read_volume(src)
    assert vol.array.dtype == np.dtype(dtype).newbyteorder("=")
    np.testing.assert_array_equal(vol.array, data)
    expected_affine = nib.load(str(src)).affine
    np.testing.assert_array_equal(vol.affine, expected_affine)
    out = write_volume(vol, tmp_path / f"out{suffix}")
    back = read_volume(out)
    np.testing.assert_array_equal(back.array, vol.array)
    assert back.array.dtype == vol.array.dtype
    np.testing.assert_array_equal(back.affine, vol.affine)
    assert "".join(nib.aff2axcodes(back.affine)) == "".join(nib.aff2axcodes(expected_affine))


def test_header_fields_survive(tmp_path):
    img = nib.Nifti1Image(np.arange(60, dtype=np.int16).reshape(3, 4, 5), _affine("LPS"))
    img.header["descrip"] = b"scanner X"
    img.header.set_xyzt_units("mm", "sec")
    img.set_qform(_affine("LPS"), code=1)
    img.set_sform(_affine("LPS"), code=4)
    nib.save(img, str(tmp_path / "a.nii.gz"))
    back = nib.load(str(write_volume(read_volume(tmp_path / "a.nii.gz"), tmp_path / "b.nii.gz")))
    assert back.header["descrip"].tobytes().startswith(b"scanner X")
    assert back.header.get_xyzt_units() == ("mm", "sec")
    assert int(back.header["sform_code"]) == 4 and int(back.header["qform_code"]) == 1


def test_trailing_singleton_dimension_is_accepted(tmp_path):
    data = np.random.default_rng(0).random((5, 6, 7, 1)).astype(np.float32)
    vol = read_volume(save_nifti(tmp_path / "x.nii.gz", data))
    assert vol.shape == (5, 6, 7)


def test_existing_output_is_kept_without_overwrite(tmp_path):
    vol = Volume(np.ones((4, 4, 4), np.float32) * np.arange(4), np.eye(4))
    path = write_volume(vol, tmp_path / "o.nii.gz")
    before = path.read_bytes()
    with pytest.raises(OutputError, match="already exists"):
        write_volume(vol.with_array(vol.array * 2), path)
    assert path.read_bytes() == before
    write_volume(vol.with_array(vol.array * 2), path, overwrite=True)
    np.testing.assert_array_equal(read_volume(path).array, vol.array * 2)


def test_failed_write_leaves_nothing(tmp_path):
    vol = Volume(np.zeros((2, 2, 2), dtype=np.complex256), np.eye(4))  # nibabel cannot store complex256
    with pytest.raises(Exception):
        write_volume(vol, tmp_path / "c.nii.gz")
    assert list(tmp_path.iterdir()) == []
