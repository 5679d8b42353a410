"""Every registered (shipped) model loads by name with its recorded sha256, has a card, and the shipped weights
stay within the 40 MB budget."""
import json

import pytest

from volgen import hub

REPO = hub.PRETRAINED_DIR.parents[1]
SHIPPED = json.loads(hub.REGISTRY_FILE.read_text())


# what every command needs out of the box: both backbones and a module per job (issue 4)
REQUIRED = {"volgen-wavelet-brain-2mm": "backbone", "volgen-latent-brain-2mm": "backbone",
            "volgen-vcm-synthesis-2mm": "vcm", "volgen-vcm-super-resolution-2mm": "vcm",
            "volgen-vcm-inpainting-2mm": "vcm"}


def test_the_defaults_are_shipped():
    assert {name: SHIPPED[name]["model_type"] for name in REQUIRED if name in SHIPPED} == REQUIRED


def test_registry_is_well_formed():
    for name, entry in SHIPPED.items():
        assert {"sha256", "model_type", "card", "description"} <= set(entry), name
        assert (hub.PRETRAINED_DIR / name / hub.WEIGHTS_FILE).is_file(), name


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_model_loads_by_name(name):
    model = hub.from_pretrained(name)
    assert model.model_type == SHIPPED[name]["model_type"]
    assert model.hub_source == {"name": name, "sha256": SHIPPED[name]["sha256"]}
    assert (REPO / SHIPPED[name]["card"]).is_file(), f"{name}: no model card"
    assert hub.read_config(hub.PRETRAINED_DIR / name)["dtype"] == "float16"


def test_shipped_weights_fit_the_budget():
    total = sum((hub.PRETRAINED_DIR / name / hub.WEIGHTS_FILE).stat().st_size for name in SHIPPED)
    assert total <= 40 * 2 ** 20
