"""Codecs between images and the space diffusion runs in: identity, Haar wavelet (KL autoencoder: issue 3)."""
from volgen.codecs.base import Codec, IdentityCodec
from volgen.codecs.haar import SUBBANDS, HaarCodec, haar_dwt3, haar_idwt3

__all__ = ["SUBBANDS", "Codec", "HaarCodec", "IdentityCodec", "haar_dwt3", "haar_idwt3"]
