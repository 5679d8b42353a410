"""The patch autoencoder: block rearrangement, its PCA start against numpy's SVD, per-channel scale, crop invariance."""
from types import SimpleNamespace

import numpy as np
import torch

from volgen.codecs import build_codec
from volgen.codecs.patch_autoencoder import PatchAutoencoderCodec, PatchAutoencoderConfig, from_blocks, to_blocks


def _cases(n=3, shape=(16, 24, 16), seed=0):
    """Smooth random 4-contrast volumes (a few low frequencies plus noise), as load_cases gives them."""
    g = torch.Generator().manual_seed(seed)
    cases = []
    for _ in range(n):
        low = torch.randn(4, 1, 4, 6, 4, generator=g)
        images = torch.nn.functional.interpolate(low, size=shape, mode="trilinear", align_corners=False)[:, 0]
        cases.append(SimpleNamespace(images=images + 0.05 * torch.randn(4, *shape, generator=g)))
    return cases


def test_blocks_round_trip_and_hold_each_block_as_channels():
    x = torch.randn(2, 1, 8, 12, 16)
    u = to_blocks(x, 4)
    assert u.shape == (2, 64, 2, 3, 4)
    assert torch.equal(u[1, :, 1, 2, 3], x[1, 0, 4:8, 8:12, 12:16].reshape(-1))
    assert torch.equal(from_blocks(u, 4), x)


def test_untrained_codec_is_the_pca_of_the_training_blocks():
    cases = _cases()
    codec = PatchAutoencoderCodec(PatchAutoencoderConfig(factor=2, latent_channels=3, width=8, depth=1))
    codec.prepare(cases)
    # numpy's reference: project each 2x2x2 block on the top 3 right singular vectors of the centred blocks
    blocks = np.concatenate([to_blocks(c.images[i:i + 1][None].double(), 2).flatten(2)[0].T.numpy()
                             for c in cases for i in range(4)])
    mean = blocks.mean(0)
    _, _, vt = np.linalg.svd(blocks - mean, full_matrices=False)
    x = cases[0].images[2:3][None]
    u = to_blocks(x.double(), 2).flatten(2)[0].T.numpy()
    expected = (u - mean) @ vt[:3].T @ vt[:3] + mean
    with torch.no_grad():
        got = to_blocks(codec.decode(codec.encode(x)), 2).flatten(2)[0].T.double().numpy()
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_full_rank_codec_reconstructs_exactly_and_scale_whitens_each_channel():
    cases = _cases()
    codec = PatchAutoencoderCodec(PatchAutoencoderConfig(factor=2, latent_channels=8, width=8, depth=1))
    codec.prepare(cases)
    volumes = [c.images[i:i + 1][None] for c in cases for i in range(4)]
    codec.measure_scale_factor(volumes)
    with torch.no_grad():
        z = torch.cat([codec.encode(v) for v in volumes])
        assert torch.allclose(z.transpose(0, 1).flatten(1).std(dim=1), torch.ones(8), atol=1e-4)
        assert torch.allclose(codec.decode(codec.encode(volumes[0])), volumes[0], atol=1e-5)


def test_a_crop_encodes_like_the_same_region_of_the_whole_volume():
    """No normalisation layer: away from the crop's border the code does not depend on what else is in view (the
    KL autoencoder's GroupNorm broke this and with it whole-volume reconstruction)."""
    codec = build_codec({"type": "patch_autoencoder", "config": {"factor": 4, "latent_channels": 4, "width": 8,
                                                                 "depth": 2}})
    for branch in (codec.encode_branch, codec.decode_branch):
        torch.nn.init.normal_(branch[-1].weight, std=0.1)        # make the branches matter
    x = torch.randn(1, 1, 32, 32, 32)
    with torch.no_grad():
        whole, crop = codec.encode(x), codec.encode(x[..., 8:32, 4:32, :])
    # two 3x3x3 convolutions see two latent voxels each side; the crop starts 2 (and 1) latent voxels in
    assert torch.allclose(whole[..., 4:6, 3:6, :], crop[..., 2:4, 2:5, :], atol=1e-5)
    assert not torch.allclose(whole[..., 2:4, 1:4, :], crop[..., 0:2, 0:3, :], atol=1e-5)     # the border differs
    assert codec.latent_shape((1, 32, 32, 32)) == (4, 8, 8, 8)
