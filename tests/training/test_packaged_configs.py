"""Every packaged run config loads, builds its model, and builds the architecture of the shipped model it names:
`volgen train <config>` must be able to reproduce (or fine-tune from) what the card says it produced."""
import pytest

from volgen import hub
from volgen.training.config import load_config, packaged_configs
from volgen.training.loop import build_model


def _shapes(model) -> dict:
    state = model.hub_state_dict() if hasattr(model, "hub_state_dict") else model.state_dict()
    return {k: tuple(v.shape) for k, v in state.items()}


def _overrides(name: str, tmp_path) -> list[str]:
    overrides = [f"data.root={tmp_path}"]                       # the phantom corpus need not exist here
    if name == "backbone_latent":                                # its codec is the autoencoder run's output
        codec, _, _, _ = build_model(load_config("autoencoder", overrides))
        hub.save_pretrained(codec, tmp_path / "autoencoder")
        overrides.append(f"model.codec.pretrained={tmp_path / 'autoencoder'}")
    return overrides


@pytest.mark.parametrize("name", sorted(packaged_configs()))
def test_packaged_config_builds_the_shipped_architecture(tmp_path, name):
    config = load_config(name, _overrides(name, tmp_path))
    model, trainable, _, _ = build_model(config)
    assert trainable and all(p.requires_grad for _, p in trainable)
    if config.output.name not in hub.registry():
        pytest.skip(f"{name} ships no model")    # the baselines; the autoencoder ships inside the latent backbone
    built = _shapes(model)
    shipped = {k: tuple(v.shape) for k, v in hub.saved_state(config.output.name).state.items()}
    assert built.keys() == shipped.keys(), f"{name}: the packaged config no longer builds {config.output.name}"
    # a buffer fitted on the training data (the inpainting template) is empty until the run fits it
    assert {k: s for k, s in built.items() if 0 not in s} == {k: shipped[k] for k, s in built.items() if 0 not in s}
