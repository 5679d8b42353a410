"""The public MONAI brain latent diffusion model (UK Biobank T1, 160x224x160 at 1 mm) as a volgen Backbone.

Its configuration (MONAI model-zoo bundle `brain_image_synthesis_latent_diffusion_model`): a KL autoencoder with
3 latent channels and 8x downsampling (latents 3x20x28x20), and a 553 M-parameter U-Net whose input is the latent
plus 4 covariate channels (gender, age, ventricular volume, brain volume), the same 4 numbers also given as a
cross-attention token; DDIM on a scaled-linear schedule (0.0015-0.0205, 1000 steps), 50 sampling steps.
No weights ship with volgen: users who have the published checkpoint files load them from a local path with
`load_brain_ldm`, which goes through MONAI's converter for MONAI-Generative checkpoints (`load_old_state_dict`).
"""
from __future__ import annotations

import contextlib
import io
from pathlib import Path

import torch
from safetensors.torch import load_file

from volgen.backbones.backbone import Backbone, BackboneConfig
from volgen.backbones.unet import UNetConfig
from volgen.codecs.autoencoder import AutoencoderConfig
from volgen.errors import InputError
from volgen.sampling.schedules import NoiseSchedule

BRAIN_LDM_IMAGE_SHAPE = (1, 160, 224, 160)
BRAIN_LDM_LATENT_SHAPE = (3, 20, 28, 20)
BRAIN_LDM_SAMPLING_STEPS = 50
BRAIN_LDM_COVARIATES = ("gender", "age", "ventricular_volume", "brain_volume")

BRAIN_LDM_AUTOENCODER = AutoencoderConfig(
    in_channels=1, out_channels=1, latent_channels=3, channels=(64, 128, 128, 128), num_res_blocks=2,
    attention_levels=(False, False, False, False), norm_num_groups=32, norm_eps=1e-6,
    with_encoder_nonlocal_attn=False, with_decoder_nonlocal_attn=False)

BRAIN_LDM_UNET = UNetConfig(
    in_channels=3, out_channels=3, cond_channels=4, channels=(256, 512, 768), attention_levels=(False, True, True),
    num_res_blocks=2, num_head_channels=(0, 512, 768), norm_num_groups=32, norm_eps=1e-6, resblock_updown=True,
    cross_attention_dim=4, upcast_attention=True)


def brain_ldm_config() -> BackboneConfig:
    return BackboneConfig(codec={"type": "kl_autoencoder", "config": BRAIN_LDM_AUTOENCODER.to_dict()},
                          network=BRAIN_LDM_UNET.to_dict(),
                          schedule=NoiseSchedule.scaled_linear(1000, 0.0015, 0.0205).config(), parameterization="eps")


def brain_ldm_conditions(covariates, latent_shape=BRAIN_LDM_LATENT_SHAPE) -> dict:
    """The network's keyword conditions for a batch of covariate rows (B, 4), each in the bundle's [0, 1] units:
    constant concatenated channels and one cross-attention token."""
    c = torch.as_tensor(covariates, dtype=torch.float32).reshape(-1, len(BRAIN_LDM_COVARIATES))
    concat = c.view(*c.shape, 1, 1, 1).expand(-1, -1, *latent_shape[1:])
    return {"concat": concat, "context": c.unsqueeze(1)}


def _read_state_dict(path) -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "checkpoint file not found")
    try:
        if path.suffix == ".safetensors":
            state = load_file(str(path))
        else:   # weights_only: tensors and containers only, never arbitrary pickled code
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:   # noqa: BLE001 - any unreadable file is one clear line
        raise InputError(path, f"not a readable checkpoint ({type(exc).__name__}: {exc})") from None
    for wrapper in ("state_dict", "model", "model_state_dict"):
        if isinstance(state, dict) and wrapper in state and isinstance(state[wrapper], dict):
            state = state[wrapper]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise InputError(path, "does not hold a state dict of tensors")
    return state


def load_generative_checkpoint(module: torch.nn.Module, path) -> None:
    """Load a MONAI (or MONAI-Generative) checkpoint into a MONAI network, refusing partial matches: every weight
    of the network must come from the file and every tensor in the file must be used."""
    state = _read_state_dict(path)
    expected = module.state_dict()
    remaining = dict(state)
    try:
        with contextlib.redirect_stdout(io.StringIO()):      # MONAI prints on the all-keys-match path
            module.load_old_state_dict(remaining)
    except (KeyError, RuntimeError) as exc:
        raise InputError(path, f"does not fit this network ({type(exc).__name__}: {str(exc).splitlines()[0]})") \
            from None
    all_matched = all(k in expected for k in state)
    unused = [] if all_matched else sorted(remaining)
    consumed = len(state) if all_matched else len(state) - len(remaining)
    if unused:
        raise InputError(path, f"{len(unused)} tensors do not belong to this network (e.g. {unused[0]})")
    if consumed < len(expected):
        raise InputError(path, f"lacks {len(expected) - consumed} of the network's {len(expected)} weights")


def load_brain_ldm(autoencoder_path, unet_path, *, scale_factor: float = 1.0, device=None) -> Backbone:
    """The public brain LDM from its two checkpoint files (`autoencoder.pth`, `diffusion_model.pth` or their
    safetensors). `scale_factor` multiplies the latents before diffusion: give the value the bundle's inference
    config uses with these weights."""
    backbone = Backbone(brain_ldm_config())
    load_generative_checkpoint(backbone.codec.autoencoder, autoencoder_path)
    load_generative_checkpoint(backbone.network.unet, unet_path)
    backbone.codec.scale_factor.fill_(scale_factor)
    return backbone.to(device).eval()
