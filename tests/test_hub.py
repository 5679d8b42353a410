"""Save/load: bit-exact round trips, fp16 shipping, and every way a model folder can be wrong."""
import json

import pytest
import torch

from volgen import hub
from volgen.backbones import Backbone, BackboneConfig, UNetConfig
from volgen.codecs import AutoencoderConfig, HaarCodec, KLAutoencoderCodec
from volgen.errors import InputError, OutputError
from volgen.sampling import FlowSchedule


def _tiny_backbone(**kwargs) -> Backbone:
    torch.manual_seed(0)
    net = UNetConfig(in_channels=8, out_channels=8, channels=(16, 32), attention_levels=(False, True),
                     num_head_channels=16, norm_num_groups=8, num_class_embeds=4)
    return Backbone(BackboneConfig(network=net.to_dict(), contrasts=("t1n", "t1c", "t2w", "t2f"), **kwargs))


def _tiny_autoencoder() -> KLAutoencoderCodec:
    torch.manual_seed(1)
    return KLAutoencoderCodec(AutoencoderConfig(channels=(8, 16), attention_levels=(False, False), norm_num_groups=8))


def _assert_same_state(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        assert sa[key].dtype == sb[key].dtype and torch.equal(sa[key], sb[key]), key


@pytest.mark.parametrize("make", [_tiny_backbone, _tiny_autoencoder, HaarCodec,
                                  lambda: _tiny_backbone(schedule=FlowSchedule(1000, 3.0).config(),
                                                         parameterization="flow")])
def test_save_then_load_is_bit_exact(tmp_path, make):
    model = make()
    if isinstance(model, KLAutoencoderCodec):
        model.measure_scale_factor([torch.rand(2, 1, 16, 16, 16)])
    digest = hub.save_pretrained(model, tmp_path / "m")
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["config.json", "model.safetensors"]
    assert json.loads((tmp_path / "m" / "config.json").read_text())["sha256"] == digest
    again = hub.from_pretrained(tmp_path / "m")
    assert type(again) is type(model) and not again.training
    _assert_same_state(model, again)
    if isinstance(model, Backbone):
        assert again.denoiser.schedule.timesteps(7) == model.denoiser.schedule.timesteps(7)
        x, t = torch.randn(1, 8, 8, 8, 8), torch.tensor([500])
        labels = model.class_labels("t2f")
        assert torch.equal(model.eval().denoiser(x, t, class_labels=labels), again.denoiser(x, t, class_labels=labels))


def test_fp16_weights_load_as_the_rounded_float32(tmp_path):
    model = _tiny_backbone()
    hub.save_pretrained(model, tmp_path / "m", dtype=torch.float16)
    again = hub.from_pretrained(tmp_path / "m")
    for key, value in model.state_dict().items():
        assert torch.equal(again.state_dict()[key], value.half().float() if value.is_floating_point() else value)


def test_registered_name_loads_and_its_hash_is_checked(tmp_path):
    digest = hub.save_pretrained(HaarCodec(), tmp_path / "haar")
    hub.register("test-haar", tmp_path / "haar", sha256=digest)
    assert isinstance(hub.from_pretrained("test-haar"), HaarCodec)
    assert any(m["name"] == "test-haar" for m in hub.list_models())
    hub.register("test-haar-wrong", tmp_path / "haar", sha256="0" * 64)
    with pytest.raises(InputError, match="does not match the registry"):
        hub.from_pretrained("test-haar-wrong")


def _saved(tmp_path):
    folder = tmp_path / "m"
    hub.save_pretrained(_tiny_backbone(), folder)
    return folder


def test_corrupt_weights_are_refused(tmp_path):
    folder = _saved(tmp_path)
    data = bytearray((folder / "model.safetensors").read_bytes())
    data[-100] ^= 0xFF
    (folder / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(InputError, match="model.safetensors.*sha256.*corrupt or was modified"):
        hub.from_pretrained(folder)


@pytest.mark.parametrize("edit, message", [
    (lambda text: text[:-20], "malformed JSON"),
    (lambda text: text.replace('"model_type": "backbone"', '"model_type": "spaceship"'), "unknown model type"),
    (lambda text: text.replace('"parameterization"', '"parametrisation"'), "unknown BackboneConfig keys"),
    (lambda text: text.replace('"volgen-model"', '"other"'), "not a volgen model config"),
])
def test_malformed_configs_are_refused(tmp_path, edit, message):
    folder = _saved(tmp_path)
    path = folder / "config.json"
    path.write_text(edit(path.read_text()))
    with pytest.raises(InputError, match=message) as info:
        hub.from_pretrained(folder)
    assert "config.json" in str(info.value)


def test_weights_that_do_not_fit_the_config_are_refused(tmp_path):
    folder = _saved(tmp_path)
    config = json.loads((folder / "config.json").read_text())
    config["config"]["network"]["channels"] = [16, 16]
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(InputError, match="weights do not fit the config"):
        hub.from_pretrained(folder)


def test_unknown_names_and_existing_folders(tmp_path):
    with pytest.raises(InputError, match="no such model folder or registered model name"):
        hub.from_pretrained(tmp_path / "nowhere")
    folder = _saved(tmp_path)
    with pytest.raises(OutputError, match="already exists"):
        hub.save_pretrained(_tiny_backbone(), folder)
    hub.save_pretrained(HaarCodec(), folder, overwrite=True)
    assert isinstance(hub.from_pretrained(folder), HaarCodec)


def test_expected_type_is_enforced(tmp_path):
    hub.save_pretrained(HaarCodec(), tmp_path / "haar")
    with pytest.raises(InputError, match="expected a 'backbone'"):
        hub.from_pretrained(tmp_path / "haar", expected_type="backbone")
