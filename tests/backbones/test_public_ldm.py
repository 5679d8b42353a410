"""The public MONAI brain LDM: configuration by parameter count, and the checkpoint loader on MONAI-Generative-style
(old-layout) state dicts of a scaled-down network with the same block types."""
import pytest
import torch

from volgen.backbones import Backbone, DiffusionUNet
from volgen.backbones.public_ldm import (BRAIN_LDM_AUTOENCODER, BRAIN_LDM_LATENT_SHAPE, BRAIN_LDM_UNET,
                                         brain_ldm_conditions, brain_ldm_config, load_generative_checkpoint)
from volgen.codecs import KLAutoencoderCodec
from volgen.errors import InputError


def _millions(module) -> float:
    return sum(p.numel() for p in module.parameters()) / 1e6


def test_public_config_parameter_counts():
    """Built on the meta device (no memory): 553.2 M for the U-Net, 13.8 M for the autoencoder."""
    with torch.device("meta"):
        backbone = Backbone(brain_ldm_config())
    assert round(_millions(backbone.network), 1) == 553.2
    assert round(_millions(backbone.codec), 1) == 13.8
    assert backbone.codec.latent_shape((1, 160, 224, 160)) == BRAIN_LDM_LATENT_SHAPE


@pytest.mark.slow
def test_public_config_runs_one_step_at_full_size():
    backbone = Backbone(brain_ldm_config()).eval()
    assert round(_millions(backbone.network), 1) == 553.2 and round(_millions(backbone.codec), 1) == 13.8
    z = torch.randn(1, *BRAIN_LDM_LATENT_SHAPE)
    with torch.no_grad():
        eps = backbone.denoiser(z, torch.tensor([999]), **brain_ldm_conditions([[0.0, 0.5, 0.3, 0.6]]))
    assert eps.shape == z.shape and torch.isfinite(eps).all()


def _small_unet() -> DiffusionUNet:
    torch.manual_seed(0)
    config = BRAIN_LDM_UNET.from_dict({**BRAIN_LDM_UNET.to_dict(), "channels": [32, 32, 64],
                                       "num_head_channels": [0, 32, 64], "norm_num_groups": 8, "num_res_blocks": 1})
    return DiffusionUNet(config)


def _old_layout(state: dict) -> dict:
    """Rename MONAI-core keys back to MONAI-Generative's (the inverse of MONAI's converter)."""
    old = {}
    for key, value in state.items():
        if "transformer_blocks" in key and ".out_proj." in key:
            key = key.replace(".out_proj.", ".to_out.0.")
        elif ".attn.out_proj." in key:
            key = key.replace(".attn.out_proj.", ".proj_attn.")
        elif ".attn.to_" in key and "transformer_blocks" not in key:
            key = key.replace(".attn.to_", ".to_")
        key = key.replace("postconv", "conv")
        old[key] = value
    return old


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_loader_reads_old_layout_checkpoints(tmp_path, suffix):
    source = _small_unet().unet
    old = _old_layout(source.state_dict())
    assert old.keys() != source.state_dict().keys()          # the test really exercises the key conversion
    path = tmp_path / f"diffusion_model{suffix}"
    if suffix == ".pth":
        torch.save({"state_dict": old}, path)
    else:
        from safetensors.torch import save_file
        save_file({k: v.contiguous() for k, v in old.items()}, str(path))
    target = _small_unet().unet
    torch.nn.init.zeros_(target.conv_in.conv.weight)
    load_generative_checkpoint(target, path)
    for key, value in source.state_dict().items():
        assert torch.equal(target.state_dict()[key], value), key


def test_loader_refuses_partial_and_foreign_checkpoints(tmp_path):
    state = _old_layout(_small_unet().unet.state_dict())
    partial = dict(list(state.items())[:-5])
    torch.save(partial, tmp_path / "partial.pth")
    with pytest.raises(InputError, match="partial.pth.*does not fit|partial.pth.*lacks"):
        load_generative_checkpoint(_small_unet().unet, tmp_path / "partial.pth")
    torch.save({**state, "extra.weight": torch.zeros(2)}, tmp_path / "extra.pth")
    with pytest.raises(InputError, match="extra.pth.*do not belong"):
        load_generative_checkpoint(_small_unet().unet, tmp_path / "extra.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match="junk.pth.*not a readable checkpoint"):
        load_generative_checkpoint(_small_unet().unet, tmp_path / "junk.pth")


def test_autoencoder_loader_on_old_layout(tmp_path):
    config = BRAIN_LDM_AUTOENCODER.from_dict({**BRAIN_LDM_AUTOENCODER.to_dict(), "channels": [8, 8, 16, 16],
                                              "norm_num_groups": 8, "num_res_blocks": 1})
    torch.manual_seed(3)
    source = KLAutoencoderCodec(config).autoencoder
    torch.save(_old_layout(source.state_dict()), tmp_path / "autoencoder.pth")
    target = KLAutoencoderCodec(config).autoencoder
    load_generative_checkpoint(target, tmp_path / "autoencoder.pth")
    for key, value in source.state_dict().items():
        assert torch.equal(target.state_dict()[key], value), key
