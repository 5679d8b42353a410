"""Conditioning modules: identity at initialisation, gradients only into the module, shapes for every codec,
the parameter budget, and save/load against a named backbone."""
import pytest
import torch

from volgen import hub
from volgen.backbones import Backbone, BackboneConfig, UNetConfig
from volgen.codecs import AutoencoderConfig
from volgen.errors import InputError
from volgen.modules import MODULES, VCM, build_conditioner
from volgen.sampling import sample_ddim
from volgen.training.objectives import diffusion_loss

CODECS = {
    "identity": ({"type": "identity", "config": {}}, 1),
    "haar": ({"type": "haar", "config": {}}, 8),
    "kl_autoencoder": ({"type": "kl_autoencoder", "config": AutoencoderConfig(
        latent_channels=3, channels=(8, 8, 16), attention_levels=(False,) * 3, norm_num_groups=8).to_dict()}, 3),
}
CONTRASTS = ("t1n", "t1c", "t2w", "t2f")


def _backbone(codec: str) -> Backbone:
    torch.manual_seed(0)
    spec, latent = CODECS[codec]
    net = UNetConfig(in_channels=latent, out_channels=latent, channels=(16, 32), attention_levels=(False, True),
                     num_head_channels=16, norm_num_groups=8, num_class_embeds=4)
    backbone = Backbone(BackboneConfig(codec=spec, network=net.to_dict(), contrasts=CONTRASTS))
    # MONAI zero-initialises the U-Net's output convolution; a backbone that outputs zeros whatever its input would
    # make the identity checks vacuous and stop every gradient, so give it a random one (a "trained" backbone).
    torch.nn.init.normal_(backbone.network.unet.out[2].conv.weight, std=0.05)
    return backbone


def _inputs(backbone, size=16, batch=2):
    gen = torch.Generator().manual_seed(1)
    latent = backbone.codec.latent_shape((1, size, size, size))
    x_t = torch.randn(batch, *latent, generator=gen)
    conditions = torch.rand(batch, 4, size, size, size, generator=gen)
    present = torch.tensor([[1.0, 0.0, 1.0, 1.0], [1.0, 1.0, 0.0, 1.0]])[:batch]
    labels = torch.tensor([1, 2])[:batch]
    return x_t, torch.tensor([700, 20])[:batch], conditions, present, labels


@pytest.mark.parametrize("codec", sorted(CODECS))
@pytest.mark.parametrize("kind", sorted(MODULES))
def test_identity_at_initialisation_and_shapes(kind, codec):
    backbone = _backbone(codec)
    module = build_conditioner(kind, backbone, {"conditions": CONTRASTS})
    x_t, t, conditions, present, labels = _inputs(backbone)
    with torch.no_grad():
        expected = backbone.network(x_t, t, class_labels=labels)
        got = module(x_t, t, conditions=conditions, present=present, class_labels=labels)
    assert got.shape == expected.shape == x_t.shape
    assert torch.allclose(got, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kind", sorted(MODULES))
def test_gradients_reach_only_the_module(kind):
    backbone = _backbone("haar")
    module = build_conditioner(kind, backbone, {"conditions": CONTRASTS}).train()
    x_t, _, conditions, present, labels = _inputs(backbone)
    z0 = backbone.codec.encode(conditions[:, :1])
    loss = diffusion_loss(backbone.denoiser, z0, network=module,
                          cond=dict(conditions=conditions, present=present, class_labels=labels),
                          generator=torch.Generator().manual_seed(0))
    loss.backward()
    assert all(p.grad is None for p in backbone.parameters())
    assert not backbone.training
    grads = {n: p.grad for n, p in module.named_parameters() if not n.startswith("backbone.")}
    assert any(g is not None and g.abs().sum() > 0 for g in grads.values())
    if kind == "vcm":     # zero heads must still learn their weights, not only their biases
        assert grads["gamma.weight"].abs().sum() > 0 and grads["beta.weight"].abs().sum() > 0


def test_vcm_moves_the_prediction_once_its_heads_are_nonzero_and_scale_turns_it_off():
    backbone = _backbone("haar")
    module = VCM(backbone)
    torch.nn.init.normal_(module.beta.weight, std=0.1)
    x_t, t, conditions, present, labels = _inputs(backbone)
    with torch.no_grad():
        base = backbone.network(x_t, t, class_labels=labels)
        moved = module(x_t, t, conditions=conditions, present=present, class_labels=labels)
        module.scale = 0.0
        off = module(x_t, t, conditions=conditions, present=present, class_labels=labels)
    assert (moved - base).abs().max() > 1e-3
    assert torch.equal(off, base)


def test_vcm_parameter_budget_is_a_tenth_of_the_backbone_and_a_quarter_of_controlnet():
    """On the shipped-size wavelet backbone (built on the meta device)."""
    net = UNetConfig(in_channels=8, out_channels=8, channels=(64, 128, 256), attention_levels=(False, False, True),
                     num_res_blocks=2, num_head_channels=32, norm_num_groups=16, num_class_embeds=4)
    with torch.device("meta"):
        backbone = Backbone(BackboneConfig(network=net.to_dict(), contrasts=CONTRASTS))
        vcm = build_conditioner("vcm", backbone)
        controlnet = build_conditioner("controlnet", backbone)
    backbone_count = sum(p.numel() for p in backbone.parameters())
    assert vcm.count_trainable() <= 0.10 * backbone_count
    assert vcm.count_trainable() <= 0.25 * controlnet.count_trainable()


def test_a_conditioned_denoiser_samples(tmp_path):
    backbone = _backbone("haar")
    module = VCM(backbone)
    x_t, _, conditions, present, labels = _inputs(backbone, batch=1)
    out = sample_ddim(module.denoiser(), x_t, backbone.denoiser.schedule.timesteps(3),
                      cond=dict(conditions=conditions, present=present, class_labels=labels))
    assert out.shape == x_t.shape and torch.isfinite(out).all()


@pytest.mark.parametrize("kind", sorted(MODULES))
def test_save_and_load_against_the_named_backbone(tmp_path, kind):
    backbone = _backbone("haar")
    module = build_conditioner(kind, backbone, {"conditions": CONTRASTS})
    with pytest.raises(ValueError, match="save the backbone"):
        hub.save_pretrained(module, tmp_path / "module")
    hub.save_pretrained(backbone, tmp_path / "backbone")
    for p in module.trainable_parameters():
        torch.nn.init.normal_(p, std=0.01)
    hub.save_pretrained(module, tmp_path / "module")
    again = hub.from_pretrained(tmp_path / "module")
    assert type(again) is type(module)
    x_t, t, conditions, present, labels = _inputs(backbone)
    with torch.no_grad():
        a = module.eval()(x_t, t, conditions=conditions, present=present, class_labels=labels)
        b = again(x_t, t, conditions=conditions, present=present, class_labels=labels)
    assert torch.equal(a, b)
    # The module refuses a different backbone saved under the same name.
    other = _backbone("haar")
    torch.nn.init.normal_(other.network.unet.conv_in.conv.weight)
    hub.save_pretrained(other, tmp_path / "backbone", overwrite=True)
    with pytest.raises(InputError, match="not the backbone this module was trained on"):
        hub.from_pretrained(tmp_path / "module")
