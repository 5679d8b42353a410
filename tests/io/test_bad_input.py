"""Each bad input: one clear line naming the file and the problem, a non-zero exit, nothing written."""
import gzip

import numpy as np
import pytest

from tests.helpers import save_nifti, smooth_volume
from volgen.cli import main
from volgen.errors import InputError
from volgen.io import Volume, align_grids, read_volume


def _good(tmp_path, name="ref.nii.gz", affine=None):
    return save_nifti(tmp_path / name, smooth_volume(), affine)


def _truncated(tmp_path):
    good = _good(tmp_path, "full.nii.gz")
    raw = good.read_bytes()
    bad = tmp_path / "truncated.nii.gz"
    bad.write_bytes(raw[: len(raw) // 2])
    return bad


def _not_gzip(tmp_path):
    bad = tmp_path / "plain.nii.gz"
    bad.write_text("this is not an image\n")
    return bad


def _corrupt_gzip_stream(tmp_path):
    raw = gzip.decompress(_good(tmp_path, "g.nii.gz").read_bytes())
    bad = tmp_path / "shortdata.nii.gz"
    bad.write_bytes(gzip.compress(raw[: 352 + 100]))  # header intact, voxel data cut short
    return bad


def _patched_sform(path, offset, value):
    """nibabel will not write a broken affine, so patch one float of the stored sform (srow_x at byte 280)."""
    save_nifti(path, smooth_volume())
    raw = bytearray(path.read_bytes())
    raw[offset:offset + 4] = np.array([value], dtype="<f4").tobytes()
    path.write_bytes(bytes(raw))
    return path


def _singular_affine(tmp_path):
    return _patched_sform(tmp_path / "singular.nii", 312 + 8, 0.0)  # srow_z[2]: the third axis collapses


def _nan_affine(tmp_path):
    return _patched_sform(tmp_path / "nanaff.nii", 280, np.nan)    # srow_x[0]


def _huge_header(tmp_path, suffix):
    """A header that claims a 3000^3 float32 image (100 GB) in front of 100 bytes of data."""
    import nibabel as nib

    header = nib.Nifti1Header()
    header.set_data_shape((3000, 3000, 3000))
    header.set_data_dtype(np.float32)
    header.set_qform(np.eye(4), code=1)
    raw = header.binaryblock + b"\0" * 4 + b"\1" * 100
    path = tmp_path / f"huge{suffix}"
    path.write_bytes(gzip.compress(raw) if suffix.endswith(".gz") else raw)
    return path


BAD = {
    "header claims 100 GB (.nii)": (lambda p: _huge_header(p, ".nii"),
                                    r"header says 3000x3000x3000 float32, 100\.6 GB; the file holds 452 bytes"),
    "header claims 100 GB (.nii.gz)": (lambda p: _huge_header(p, ".nii.gz"),
                                       r"header says 3000x3000x3000 float32, 100\.6 GB; the compressed file holds"),
    "missing": (lambda p: p / "nope.nii.gz", "file not found"),
    "text": (_not_gzip, "not a readable NIfTI"),
    "truncated gzip": (_truncated, "truncated or corrupt|not a readable NIfTI"),
    "short voxel data": (_corrupt_gzip_stream, "truncated or corrupt"),
    "4D": (lambda p: save_nifti(p / "dyn.nii.gz", np.random.rand(6, 6, 6, 3).astype(np.float32)), "is 4D"),
    "NaN": (lambda p: save_nifti(p / "nan.nii.gz", np.where(smooth_volume() > 500, np.nan, 1.0).astype(np.float32)),
            "NaN or Inf"),
    "Inf": (lambda p: save_nifti(p / "inf.nii.gz", np.where(smooth_volume() > 500, np.inf, 1.0).astype(np.float32)),
            "NaN or Inf"),
    "constant": (lambda p: save_nifti(p / "flat.nii.gz", np.full((6, 6, 6), 3.0, np.float32)), "same value"),
    "singular affine": (_singular_affine, "singular"),
    "non-finite affine": (_nan_affine, "NaN or Inf"),
    "2D": (lambda p: save_nifti(p / "flat2d.nii.gz", np.random.rand(6, 6).astype(np.float32)), "is 2D"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_read_refuses_with_a_clear_line(tmp_path, case):
    make, message = BAD[case]
    path = make(tmp_path)
    with pytest.raises(InputError, match=message) as info:
        read_volume(path)
    assert str(path) in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("case", sorted(BAD))
def test_cli_exits_non_zero_and_writes_nothing(tmp_path, case, capsys):
    make, message = BAD[case]
    bad = make(tmp_path)
    ref = _good(tmp_path)
    before = sorted(p.name for p in tmp_path.iterdir())
    rc = main(["evaluate", "--pred", str(bad), "--ref", str(ref), "--json", str(tmp_path / "m.json")])
    err = capsys.readouterr().err.strip()
    assert rc != 0
    assert len(err.splitlines()) == 1 and str(bad) in err
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_an_image_larger_than_free_memory_is_refused_before_reading(tmp_path, monkeypatch):
    import volgen.io.nifti

    path = _good(tmp_path)
    monkeypatch.setattr(volgen.io.nifti, "available_memory", lambda device="cpu": 1000)
    with pytest.raises(InputError, match=r"header says .* reading it needs about \d+ MB of memory and 0 MB is free"):
        read_volume(path)


def test_grids_that_disagree_are_refused_or_resampled(tmp_path):
    ref = read_volume(_good(tmp_path))
    shifted_affine = np.eye(4)
    shifted_affine[:3, 3] = [1.5, 0, 0]
    other = read_volume(save_nifti(tmp_path / "other.nii.gz", smooth_volume(), shifted_affine))
    with pytest.raises(InputError, match="differs from ref") as info:
        align_grids({"ref": ref, "other": other}, "ref")
    assert "other.nii.gz" in str(info.value)
    # the refusal names what differs, not two summaries that read the same
    assert "origin (1.5, 0.0, 0.0) mm vs (0.0, 0.0, 0.0) mm" in str(info.value)
    aligned = align_grids({"ref": ref, "other": other}, "ref", resample_to_reference=True)
    assert aligned["other"].shape == ref.shape
    np.testing.assert_array_equal(aligned["other"].affine, ref.affine)
    # world point x maps to voxel x in ref and voxel x - 1.5 in other: values agree where both are defined
    np.testing.assert_allclose(aligned["other"].array[4:12], 0.5 * (other.array[2:10] + other.array[3:11]),
                               rtol=1e-5)


def test_cli_refuses_disagreeing_grids_and_writes_nothing(tmp_path, capsys):
    ref = _good(tmp_path)
    pred = save_nifti(tmp_path / "pred.nii.gz", smooth_volume(shape=(20, 24, 18)))
    rc = main(["evaluate", "--pred", str(pred), "--ref", str(ref)])
    err = capsys.readouterr().err
    assert rc == 1 and "pred.nii.gz" in err and "differs" in err
    assert not (tmp_path / "pred-metrics.json").exists()


def test_constant_mask_allowed_but_empty_mask_refused(tmp_path, capsys):
    ref = _good(tmp_path)
    empty = save_nifti(tmp_path / "empty.nii.gz", np.zeros((20, 24, 16), np.uint8))
    rc = main(["evaluate", "--pred", str(ref), "--ref", str(ref), "--mask", str(empty)])
    err = capsys.readouterr().err
    assert rc == 1 and "empty.nii.gz" in err and "empty" in err
    assert not (tmp_path / "ref-metrics.json").exists()
    assert isinstance(read_volume(empty, allow_constant=True), Volume)
