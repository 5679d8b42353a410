"""The Python API mirrors the CLI: Volumes or paths in, Volumes out, the CLI's files with `out=`."""
import numpy as np
import pytest

import volgen
from tests.helpers import smooth_volume, write_brats_case
from volgen.errors import InputError, OutputError
from volgen.io import Volume, read_volume


def test_synthesize_takes_volumes_and_paths_alike(tmp_path, tiny_models):
    case = write_brats_case(tmp_path, "case-e", contrasts=("t1n", "t2w", "t2f"))
    model = dict(model=str(tiny_models["synthesis"]), steps=2)
    from_folder = volgen.synthesize(case, cond="t1,t2,flair", **model)
    volumes = {c: read_volume(case / f"case-e-{c}.nii.gz") for c in ("t1n", "t2w", "t2f")}
    from_volumes = volgen.synthesize(volumes, **model)
    assert list(from_folder) == list(from_volumes) == ["t1c"]
    assert isinstance(from_folder["t1c"], Volume)
    assert np.array_equal(from_folder["t1c"].array, from_volumes["t1c"].array)
    assert np.array_equal(from_folder["t1c"].affine, volumes["t1n"].affine)


def test_a_few_voxels_under_a_conditions_background_change_nothing(tmp_path, tiny_models):
    """Interpolation ringing leaves a few negative voxels in a user's skull-stripped scan: the synthesis must read the
    scan as it reads the clean one (once, the minimum was the background, and the whole contrast came out flat)."""
    case = write_brats_case(tmp_path, "case-n", contrasts=("t1n", "t2w", "t2f"))
    volumes = {c: read_volume(case / f"case-n-{c}.nii.gz") for c in ("t1n", "t2w", "t2f")}
    clean = volgen.synthesize(volumes, model=str(tiny_models["synthesis"]), steps=2)["t1c"].array
    flair = volumes["t2f"].array.astype(np.float32)
    assert np.mean(flair == flair.min()) > 0.01                 # a background the stray voxels go under
    background = np.argwhere(flair == flair.min())
    flair[tuple(background[0])], flair[tuple(background[-1])] = -3.0, -0.5
    volumes["t2f"] = volumes["t2f"].with_array(flair)
    stray = volgen.synthesize(volumes, model=str(tiny_models["synthesis"]), steps=2)["t1c"].array
    assert np.array_equal(stray, clean)


def test_super_resolve_and_inpaint_return_volumes_and_write_with_out(tmp_path, tiny_models):
    thick = Volume(smooth_volume((32, 32, 6)), np.diag([2.0, 2.0, 8.0, 1.0]), name="thick")
    thin = volgen.super_resolve(thick, factor=4, model=str(tiny_models["super_resolution"]), steps=2)
    assert thin.shape == (32, 32, 24) and np.allclose(thin.spacing, (2, 2, 2))
    image = Volume(smooth_volume((32, 32, 24)).astype(np.int16), np.diag([2.0, 2.0, 2.0, 1.0]), name="img")
    mask = image.with_array(np.zeros((32, 32, 24), np.uint8))
    mask.array[10:16, 10:16, 8:12] = 1
    out = tmp_path / "healthy.nii.gz"
    filled = volgen.inpaint(image, mask, contrast="t2f", out=out, model=str(tiny_models["inpainting"]), steps=2)
    assert out.is_file() and (tmp_path / "healthy.png").is_file() and (tmp_path / "healthy.json").is_file()
    assert np.array_equal(read_volume(out).array, filled.array)
    assert np.array_equal(filled.array[mask.array == 0], image.array[mask.array == 0])
    with pytest.raises(OutputError, match="already exists"):
        volgen.inpaint(image, mask, contrast="t2f", out=out, model=str(tiny_models["inpainting"]), steps=2)
    with pytest.raises(InputError, match="cannot tell the contrast of 'img' from its name.*contrast="):
        volgen.inpaint(image, mask, model=str(tiny_models["inpainting"]), steps=2)


def test_nibabel_images_in_public_names_out_and_zero_steps_refused(tmp_path, tiny_models):
    import nibabel as nib

    names = dir(volgen)
    assert {"Volume", "synthesize", "super_resolve", "inpaint", "patlak", "read_volume"} <= set(names)
    assert volgen.Volume is Volume
    img = nib.Nifti1Image(smooth_volume((32, 32, 6)), np.diag([2.0, 2.0, 8.0, 1.0]))
    thin = volgen.super_resolve(img, factor=4, model=str(tiny_models["super_resolution"]), steps=2, contrast="t2f")
    assert thin.shape == (32, 32, 24) and np.allclose(thin.spacing, (2, 2, 2))
    for setting in ("steps", "samples"):
        with pytest.raises(InputError, match=f"--{setting} must be at least 1, got 0"):
            volgen.super_resolve(img, model=str(tiny_models["super_resolution"]), **{setting: 0})
