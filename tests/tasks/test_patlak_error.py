"""The diffusion Patlak job's calibrated error map (volgen/tasks/patlak_error.py): its features by hand, and the job
writing the expected error (meas-KiErr, the calibration in the sidecar) for a prior that has a Patlak calibration,
the spread (meas-KiSD) for one that has none or only an MRI one."""
import json
import shutil

import numpy as np

from tests.tasks.test_patlak import AFFINE, _maps, write_study
from volgen import hub
from volgen.cli import main
from volgen.error_model import METADATA_KEY, TINY, ErrorFit, ErrorModel
from volgen.io.nifti import read_volume
from volgen.kinetics import PatlakStatistics
from volgen.tasks.patlak_diffusion import map_scales
from volgen.tasks.patlak_error import COLUMNS, DESCRIPTION, patlak_features


def test_features_of_flat_maps_by_hand():
    shape = (10, 10, 10)
    inside = np.zeros(shape, bool)
    inside[3:7, 3:7, 3:7] = True
    f = patlak_features(np.full(shape, 0.02), np.full(shape, 0.004), np.full(shape, 0.01), 0.04, inside)
    assert f.shape == (len(COLUMNS), inside.sum())
    assert np.allclose(f[0], np.log(0.1 + TINY))         # the spread relative to the scale (a flat one pools to itself)
    assert np.allclose(f[1], np.log(0.25 + TINY))        # the standard error relative to the scale
    assert np.allclose(f[2], np.log(TINY))               # no gradient
    assert np.allclose(f[3], 0.5) and np.all(f[4] == 1)  # the level, the constant


def _prior_with(tmp_path, source, error_model: dict | None):
    folder = tmp_path / "prior"
    shutil.copytree(source, folder)
    config = json.loads((folder / hub.CONFIG_FILE).read_text())
    if error_model is not None:
        config.setdefault("metadata", {})[METADATA_KEY] = error_model
    (folder / hub.CONFIG_FILE).write_text(json.dumps(config))
    return folder


def _run(tmp_path, prior, name):
    pet, blood, ki, v = write_study(tmp_path / "in", ki=_maps((16, 16, 16))[0], v=_maps((16, 16, 16))[1])
    out = tmp_path / name
    assert main(["patlak", str(pet), "--input", str(blood), "--method", "diffusion", "--model", str(prior),
                 "--steps", "2", "--samples", "2", "--precision", "fp32", "--no-progress", "-o", str(out)]) == 0
    return out, ki, v


def test_a_calibrated_prior_writes_the_expected_error_and_says_so(tmp_path, tiny_models):
    # only the constant weighs: the map is then fit.scale * e^c times the map's scale (the job's `map_scales` of the
    # least-squares maps, which on noiseless frames are the true maps) everywhere in the mask
    fits = {"Ki": ErrorFit([0.0, 0.0, 0.0, 0.0, -2.0], 1.5), "V": ErrorFit([0.0, 0.0, 0.0, 0.0, -3.0], 0.5)}
    prior = _prior_with(tmp_path, tiny_models["backbone"],
                        ErrorModel(fits, {"cases": "test"}, COLUMNS).to_dict())
    out, ki, v = _run(tmp_path, prior, "out")
    scales = map_scales(PatlakStatistics(ki=ki, v=v, c=None, gram=None, residual_variance=None),
                        np.ones(ki.shape, bool), np.abs(np.diag(AFFINE)[:3]))
    for name, scale in zip(("Ki", "V"), scales):
        error = read_volume(out / f"sub-01_model-patlak_meas-{name}Err_mimap.nii.gz", allow_constant=True).array
        expected = fits[name].scale * np.exp(fits[name].weights[-1]) * scale
        np.testing.assert_allclose(error, expected, rtol=1e-4)
    assert not (out / "sub-01_model-patlak_meas-KiSD_mimap.nii.gz").exists()
    info = json.loads((out / "sub-01_model-patlak_mimap.json").read_text())
    assert info["uncertainty"] == DESCRIPTION and info["uncertainty_calibration"] == {"cases": "test"}


def test_a_prior_without_a_patlak_calibration_writes_the_spread(tmp_path, tiny_models):
    mri_calibration = ErrorModel({"t1c": ErrorFit([0.9, 0.2, 0.5, -1.0], 1.5)}, {}).to_dict()
    prior = _prior_with(tmp_path, tiny_models["backbone"], mri_calibration)
    out, _, _ = _run(tmp_path, prior, "out")
    assert (out / "sub-01_model-patlak_meas-KiSD_mimap.nii.gz").is_file()
    assert not (out / "sub-01_model-patlak_meas-KiErr_mimap.nii.gz").exists()
    info = json.loads((out / "sub-01_model-patlak_mimap.json").read_text())
    assert info["uncertainty"] == "per-voxel standard deviation over the samples"
    assert "uncertainty_calibration" not in info
