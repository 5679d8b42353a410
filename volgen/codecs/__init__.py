"""Codecs between images and the space diffusion runs in: identity, Haar wavelet, KL and patch autoencoders."""
from volgen.codecs.autoencoder import AutoencoderConfig, KLAutoencoderCodec
from volgen.codecs.base import Codec, IdentityCodec
from volgen.codecs.haar import HaarCodec
from volgen.kernels.haar_eager import SUBBANDS, haar_dwt3, haar_idwt3
from volgen.codecs.patch_autoencoder import PatchAutoencoderCodec, PatchAutoencoderConfig

CODECS = {c.model_type: c for c in (IdentityCodec, HaarCodec, KLAutoencoderCodec, PatchAutoencoderCodec)}


def build_codec(spec: dict) -> Codec:
    """A codec from {"type": identity | haar | kl_autoencoder | patch_autoencoder, "config": {...}}."""
    kind = spec.get("type")
    if kind not in CODECS:
        raise ValueError(f"unknown codec '{kind}' ({', '.join(CODECS)})")
    return CODECS[kind].from_config(spec.get("config", {}))


def codec_spec(codec: Codec) -> dict:
    return {"type": codec.model_type, "config": codec.config_dict()}


__all__ = ["CODECS", "SUBBANDS", "AutoencoderConfig", "Codec", "HaarCodec", "IdentityCodec", "KLAutoencoderCodec",
           "PatchAutoencoderCodec", "PatchAutoencoderConfig",
           "build_codec", "codec_spec", "haar_dwt3", "haar_idwt3"]
