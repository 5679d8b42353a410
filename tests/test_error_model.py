"""The calibrated uncertainty map (volgen/error_model.py): its features by hand, the fit recovering a known law, and
the jobs writing it where a model has one (and the spread where it has none)."""
import json
import shutil

import nibabel as nib
import numpy as np
import pytest
import torch
from scipy import ndimage

from tests.helpers import write_brats_case
from volgen import hub
from volgen.cli import main
from volgen.error_model import (CALIBRATED, EPS, METADATA_KEY, SPREAD, TINY, ErrorFit, ErrorModel, error_features,
                                fit_error)
from volgen.tasks import generate
from volgen.tasks.job import Sampling


def test_features_of_a_flat_mean_and_spread_by_hand():
    mean = np.full((12, 12, 12), 0.2)                # model range: 0.6 on [0, 1]
    spread = np.full((12, 12, 12), 0.1)              # model range: 0.05 on [0, 1]
    f = error_features(mean, spread)
    assert f.shape == (4, 12, 12, 12)
    assert np.allclose(f[0], np.log(0.05 + TINY))   # a flat variance pools to itself
    assert np.allclose(f[1], np.log(TINY))          # no gradient
    assert np.allclose(f[2], 0.6) and np.all(f[3] == 1)


def test_the_gradient_feature_of_a_ramp():
    ramp = np.broadcast_to(np.linspace(-1, 1, 21)[:, None, None], (21, 8, 8)).copy()   # 0.05 per voxel on [0, 1]
    f = error_features(ramp, np.zeros_like(ramp))
    # a Gaussian keeps a linear ramp's slope away from the edges
    assert np.allclose(f[1][5:-5], np.log(0.05 + TINY), atol=1e-6)


def _smooth(rng, shape, sigma=2.0):
    return ndimage.gaussian_filter(rng.standard_normal(shape), sigma)


def test_the_fit_recovers_a_known_law_and_its_scale():
    rng = np.random.default_rng(0)
    weights = np.array([0.5, 0.2, -1.0, 0.5])
    examples = []
    for _ in range(3):
        mean = np.tanh(_smooth(rng, (16, 16, 16)) * 3)
        spread = np.abs(_smooth(rng, (16, 16, 16))) * 0.5 + 0.01
        # |error| in [0, 1] units is exactly exp(w . f) - EPS: the fit's target, log(|error| + EPS), is then linear
        error = np.exp(np.tensordot(weights, error_features(mean, spread), axes=1)) - EPS
        assert error.min() > 0
        sign = np.where(rng.random(mean.shape) < 0.5, -1.0, 1.0)
        region = np.zeros(mean.shape, bool)
        region[2:14, 2:14, 2:14] = True
        examples.append((mean, spread, mean + 2 * sign * error, region))
    fit = fit_error(examples)
    assert np.allclose(fit.weights, weights, atol=1e-6)
    # the scale makes the map's average over the regions the mean |error| there, by hand:
    predicted = np.concatenate([np.exp(np.tensordot(weights, error_features(m, s), axes=1))[r]
                                for m, s, _, r in examples])
    actual = np.concatenate([np.abs(m - t)[r] / 2 for m, _, t, r in examples])
    assert fit.scale == pytest.approx(actual.mean() / predicted.mean(), rel=1e-6)
    mean, spread, truth, region = examples[0]
    expected = fit.expected_error(mean, spread)          # model-range units: twice the [0, 1] error
    assert expected.dtype == np.float32
    assert np.allclose(expected, 2 * fit.scale * np.exp(np.tensordot(weights, error_features(mean, spread), axes=1)),
                       rtol=1e-5)


def test_the_fit_refuses_empty_regions():
    zeros = np.zeros((4, 4, 4))
    with pytest.raises(ValueError, match="voxels"):
        fit_error([(zeros, zeros, zeros, np.zeros((4, 4, 4), bool))])


def test_an_error_model_round_trips_and_refuses_other_features():
    model = ErrorModel({"t1c": ErrorFit([0.5, 0.1, -1.0, -3.0], 1.2)}, {"cases": "phantoms/calib (12 phantoms)"})
    data = json.loads(json.dumps(model.to_dict()))
    assert ErrorModel.from_dict(data) == model
    data["features"] = ["log_spread", "constant"]
    with pytest.raises(ValueError, match="features"):
        ErrorModel.from_dict(data)


FIT = ErrorFit([0.9, 0.2, 0.5, -1.0], 1.5)


def _calibrated(module, contrasts=("t1c",)):
    module.hub_metadata = {METADATA_KEY: ErrorModel({c: FIT for c in contrasts}, {"samples": 2}).to_dict()}
    return module


def test_sampling_swaps_the_spread_for_the_expected_error_of_a_calibrated_contrast(tiny_models):
    module = hub.from_pretrained(tiny_models["synthesis"])
    torch.manual_seed(1)
    conditions = torch.rand(1, 4, 16, 16, 16) * 2 - 1
    present = torch.tensor([[1.0, 0.0, 1.0, 1.0]])
    sampling, shape = Sampling(steps=2, samples=2, precision="fp32"), (16, 16, 16)

    def spread_of(contrast):                    # generate's own spread, the same draws
        kwargs = dict(contrast=contrast, conditions=conditions, present=present)
        return generate(module, (1, *shape), steps=sampling.timesteps(module), samples=2, **kwargs).spread[0, 0]

    kwargs = dict(contrast="t1c", conditions=conditions, present=present)
    plain_image, plain_map = sampling.run(module, shape, **kwargs)
    assert np.allclose(plain_map, spread_of("t1c").numpy())          # no error model: the spread
    _calibrated(module)
    image, calibrated = sampling.run(module, shape, **kwargs)
    assert np.array_equal(image, plain_image)                        # the estimate itself is untouched
    assert np.allclose(calibrated, FIT.expected_error(image, plain_map))
    # a contrast without a calibration, or one sample as the estimate, keeps the spread
    _, other = sampling.run(module, shape, **{**kwargs, "contrast": "t2w"})
    assert np.allclose(other, spread_of("t2w").numpy())
    _, sample_map = Sampling(steps=2, samples=2, precision="fp32", estimate="sample").run(module, shape, **kwargs)
    assert np.allclose(sample_map, plain_map)
    info = sampling.describe(module, contrasts=["t1c"])
    assert info["uncertainty"] == CALIBRATED and info["uncertainty_calibration"] == {"samples": 2}
    assert sampling.describe(module, contrasts=["t1c", "t2w"])["uncertainty"] == SPREAD
    assert sampling.describe(module)["uncertainty"] == SPREAD


def test_the_cli_writes_the_calibrated_map_of_a_model_folder_that_has_one(tmp_path, tiny_models):
    folder = tmp_path / "calibrated"
    shutil.copytree(tiny_models["synthesis"], folder)
    config = json.loads((folder / hub.CONFIG_FILE).read_text())
    config["metadata"][METADATA_KEY] = ErrorModel({"t1c": FIT}, {}).to_dict()
    (folder / hub.CONFIG_FILE).write_text(json.dumps(config))
    case = write_brats_case(tmp_path / "in", "case-c", contrasts=("t1n", "t2w", "t2f"))
    maps = {}
    for name, model in (("plain", tiny_models["synthesis"]), ("calibrated", folder)):
        assert main(["synthesize", str(case), "-o", str(tmp_path / name), "--model", str(model), "--steps", "2",
                     "--no-progress"]) == 0
        info = json.loads((tmp_path / name / "case-c/case-c-synthesis.json").read_text())
        assert info["uncertainty"] == (CALIBRATED if name == "calibrated" else SPREAD)
        maps[name] = np.asarray(nib.load(tmp_path / name / "case-c/case-c-t1c-uncertainty.nii.gz").dataobj)
    assert maps["calibrated"].shape == maps["plain"].shape and maps["calibrated"].min() >= 0
    assert not np.allclose(maps["calibrated"], maps["plain"])


def test_volgen_calibrate_fits_and_stores_a_fine_tuned_modules_error_model(tmp_path, tiny_models, phantom_dir):
    """The packaged way a user calibrates a module of their own: `volgen calibrate MODEL --cases DIR --write`."""
    import json
    import shutil

    from volgen.cli import main
    from volgen.error_model import METADATA_KEY

    model = tmp_path / "sr"
    shutil.copytree(tiny_models["super_resolution"], model)
    assert main(["calibrate", str(model), "--cases", str(phantom_dir.parent), "--task", "super_resolution",
                 "--contrasts", "t2f", "--max-cases", "1", "--write"]) == 0
    stored = json.loads((model / "config.json").read_text())["metadata"][METADATA_KEY]
    assert list(stored["contrasts"]) == ["t2f"] and stored["fitted_on"]["job"] == "super_resolution"
    from volgen import hub

    assert hub.from_pretrained(model).hub_metadata[METADATA_KEY]["contrasts"]["t2f"]["scale"] > 0   # sha256 intact
