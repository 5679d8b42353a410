"""The int8 shipping form of large weights: hand-checked rounding, the s / 2 bound, what is left alone, and a saved
model that loads back as the unpacked weights."""
import json

import pytest
import torch

from volgen import hub
from volgen.backbones import Backbone, BackboneConfig, UNetConfig
from volgen.int8_weights import MIN_ELEMENTS, SCALE_SUFFIX, is_packed, pack, unpack


def test_a_row_on_the_scale_grid_packs_exactly():
    # row 0: largest |w| 63.5, so s = 63.5 / 127 = 0.5 and every multiple of 0.5 is w = q s exactly; row 1: zeros
    values = torch.tensor([-63.5, 1.5, 0.0, 0.5, 63.0, -2.0, 10.0, 0.5])
    w = torch.stack([values.repeat(MIN_ELEMENTS // 8), torch.zeros(MIN_ELEMENTS)])
    packed = pack({"w": w})
    assert packed["w"].dtype == torch.int8 and packed[f"w{SCALE_SUFFIX}"].dtype == torch.float32
    assert packed[f"w{SCALE_SUFFIX}"].flatten().tolist()[0] == 0.5
    assert packed["w"][0, :8].tolist() == [-127, 3, 0, 1, 126, -4, 20, 1]
    assert torch.equal(packed["w"][1], torch.zeros(MIN_ELEMENTS, dtype=torch.int8))
    assert torch.equal(unpack(packed)["w"], w)


def test_every_element_is_within_half_a_step():
    torch.manual_seed(0)
    w = torch.randn(16, 8, 3, 3, 3) * torch.logspace(-3, 1, 16).view(-1, 1, 1, 1, 1)     # rows of unlike scale
    w = w.repeat(1, 16, 1, 1, 1)
    packed = pack({"conv.weight": w})
    scale = packed[f"conv.weight{SCALE_SUFFIX}"].float()
    assert scale.shape == (16, 1, 1, 1, 1)
    assert torch.allclose(scale.flatten(), w.abs().flatten(1).amax(1) / 127)     # each row its own, the smallest too
    back = unpack(packed)["conv.weight"]
    assert back.dtype == torch.float32 and back.shape == w.shape
    assert ((back - w).abs() <= scale / 2 * (1 + 1e-3)).all()
    assert ((back - w).abs() > 0).any()                  # not a copy: the rounding happened


def test_small_one_dimensional_and_integer_tensors_are_left_alone():
    tensors = {"bias": torch.randn(MIN_ELEMENTS * 2), "small": torch.randn(8, MIN_ELEMENTS // 8 - 1),
               "index": torch.arange(MIN_ELEMENTS * 2).view(2, -1)}
    packed = pack(tensors)
    assert packed.keys() == tensors.keys() and not is_packed(packed)
    assert all(packed[k] is tensors[k] for k in tensors)
    assert unpack(packed) is packed


@pytest.fixture
def backbone():
    torch.manual_seed(0)
    net = UNetConfig(in_channels=8, out_channels=8, channels=(16, 32), attention_levels=(False, True),
                     num_head_channels=16, norm_num_groups=8, num_class_embeds=4)
    model = Backbone(BackboneConfig(network=net.to_dict(), contrasts=("t1n", "t1c", "t2w", "t2f"))).eval()
    with torch.no_grad():
        for p in model.parameters():        # the zero-initialised output layers would make every output zero
            if p.dim() > 1 and not p.any():
                p.normal_(0, 0.02)
    return model


def test_a_packed_model_loads_as_its_unpacked_weights(tmp_path, backbone):
    hub.save_pretrained(backbone, tmp_path / "half", dtype=torch.float16)
    hub.save_pretrained(backbone, tmp_path / "int8", dtype=torch.float16, int8=True)
    config = json.loads((tmp_path / "int8" / hub.CONFIG_FILE).read_text())
    assert config["packing"] == "int8" and config["dtype"] == "float16"
    assert "packing" not in json.loads((tmp_path / "half" / hub.CONFIG_FILE).read_text())
    sizes = [(tmp_path / m / hub.WEIGHTS_FILE).stat().st_size for m in ("half", "int8")]
    assert sizes[1] < 0.7 * sizes[0]
    half = {k: v.half() if v.is_floating_point() else v for k, v in backbone.state_dict().items()}
    expected = unpack(pack(half))
    loaded = hub.from_pretrained(tmp_path / "int8")
    for key, value in loaded.state_dict().items():
        assert torch.equal(value, expected[key].to(value.dtype)), key
    x, t, labels = torch.randn(1, 8, 8, 8, 8), torch.tensor([500]), backbone.class_labels("t2f")
    reference = backbone.denoiser(x, t, class_labels=labels)
    error = (loaded.denoiser(x, t, class_labels=labels) - reference).norm() / reference.norm()
    assert 0 < error < 0.02
