"""Every registered (shipped) model loads by name with its recorded sha256, has a card beside its weights (with the
command that reproduces it, and every picture it names), and the shipped weights stay within the 40 MB budget."""
import json
import re
from pathlib import Path

import pytest

from volgen import hub

SHIPPED = json.loads(hub.REGISTRY_FILE.read_text())


# what every command needs out of the box: both backbones and a module per job (issue 4)
REQUIRED = {"volgen-wavelet-brain-2mm": "backbone", "volgen-latent-brain-2mm": "backbone",
            "volgen-vcm-synthesis-2mm": "vcm", "volgen-vcm-super-resolution-2mm": "vcm",
            "volgen-vcm-inpainting-2mm": "vcm", "volgen-pet-prior-2mm": "backbone"}

# Issue 10's budget: 40 MB for the shipped weights. In float16 the MRI models weighed 49.6 MB (the inpainting prior's
# basis alone 6.7 MB, kept because it buys +0.6 dB inside the mask) and the PET prior 14.0 MB more, which the budget
# then left out. Since every shipped model stores its large tensors as int8 rows (volgen.int8_weights; the posterior
# means within 0.01 dB on the validation phantoms, see the cards), all seven weigh 32.7 MB, the PET prior included.
BUDGET_MB = 40


def test_the_defaults_are_shipped():
    assert {name: SHIPPED[name]["model_type"] for name in REQUIRED if name in SHIPPED} == REQUIRED


def test_registry_is_well_formed():
    for name, entry in SHIPPED.items():
        assert {"sha256", "model_type", "description"} <= set(entry), name
        assert (hub.PRETRAINED_DIR / name / hub.WEIGHTS_FILE).is_file(), name


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_model_loads_by_name(name):
    model = hub.from_pretrained(name)
    assert model.model_type == SHIPPED[name]["model_type"]
    assert model.hub_source == {"name": name, "sha256": SHIPPED[name]["sha256"]}
    config = hub.read_config(hub.PRETRAINED_DIR / name)
    assert config["dtype"] == "float16" and config["packing"] == "int8"


def test_shipped_weights_fit_the_budget():
    sizes = [(hub.PRETRAINED_DIR / name / hub.WEIGHTS_FILE).stat().st_size for name in SHIPPED]
    assert sum(sizes) <= BUDGET_MB * 10 ** 6


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_every_shipped_model_has_its_card_beside_it(name):
    card = hub.registry()[name]["card"]
    assert card and Path(card) == hub.PRETRAINED_DIR / name / hub.CARD_FILE
    text = Path(card).read_text()
    assert "Reproduce: `volgen train " in text, f"{name}: the card does not say how to reproduce it"
    for picture in re.findall(r"[\w.-]+\.png", text):
        assert (hub.PRETRAINED_DIR / name / picture).is_file(), f"{name}: the card names a missing {picture}"


# the MRI modules whose jobs write the expected absolute error (volgen/error_model.py; `make calibrate`)
CALIBRATED_MODULES = ["volgen-vcm-synthesis-2mm", "volgen-vcm-synthesis-latent-2mm", "volgen-vcm-super-resolution-2mm",
                      "volgen-vcm-inpainting-2mm"]


@pytest.mark.parametrize("name", CALIBRATED_MODULES)
def test_every_shipped_mri_module_carries_an_error_model_for_each_contrast(name):
    from volgen.error_model import error_model_of

    model = hub.from_pretrained(name)
    error_model = error_model_of(model)
    assert error_model is not None, f"{name}: no error model (make calibrate)"
    assert sorted(error_model.fits) == sorted(["t1n", "t1c", "t2w", "t2f"])
    for fit in error_model.fits.values():
        assert all(abs(w) < 20 for w in fit.weights) and 0.5 < fit.scale < 3
    assert error_model.fitted_on["cases"].startswith("phantoms/calib")     # never the training or held-out cases


def test_the_shipped_pet_prior_carries_a_patlak_error_model_fitted_on_calibration_phantoms():
    from volgen.tasks.patlak_error import patlak_error_model

    error_model = patlak_error_model(hub.from_pretrained("volgen-pet-prior-2mm"))
    assert error_model is not None, "the PET prior has no Patlak error model (bench_patlak.py --calibrate --write)"
    assert sorted(error_model.fits) == ["Ki", "V"]
    for fit in error_model.fits.values():
        assert all(abs(w) < 20 for w in fit.weights) and 0.5 < fit.scale < 3
    assert "seed 600" in error_model.fitted_on["cases"]        # never the training (100) or held-out (200) seeds
