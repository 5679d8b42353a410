import numpy as np
import pytest
import pywt
import torch

from volgen.codecs import SUBBANDS, HaarCodec, IdentityCodec, haar_dwt3, haar_idwt3


def test_matches_pywavelets_subband_for_subband():
    x = torch.from_numpy(np.random.default_rng(0).standard_normal((2, 3, 8, 12, 6)))
    z = haar_dwt3(x)
    assert z.shape == (2, 24, 4, 6, 3)
    for b in range(2):
        for c in range(3):
            ref = pywt.dwtn(x[b, c].numpy(), "haar")
            assert tuple(sorted(ref)) == tuple(sorted(SUBBANDS))
            for s, key in enumerate(SUBBANDS):
                np.testing.assert_allclose(z[b, 8 * c + s].numpy(), ref[key], rtol=1e-12, atol=1e-12)


def test_inverse_is_exact_to_rounding_and_matches_pywavelets():
    x = torch.randn(1, 2, 16, 16, 8, dtype=torch.float64)
    z = haar_dwt3(x)
    np.testing.assert_allclose(haar_idwt3(z).numpy(), x.numpy(), rtol=0, atol=1e-13)
    coeffs = {key: z[0, s].numpy() for s, key in enumerate(SUBBANDS)}
    np.testing.assert_allclose(pywt.idwtn(coeffs, "haar"), x[0, 0].numpy(), atol=1e-12)
    x32 = x.float()
    assert torch.max(torch.abs(haar_idwt3(haar_dwt3(x32)) - x32)) < 1e-5


def test_orthonormal_energy_and_lowpass_scaling():
    x = torch.rand(1, 1, 8, 8, 8, dtype=torch.float64)
    assert torch.allclose((haar_dwt3(x) ** 2).sum(), (x ** 2).sum())
    codec = HaarCodec()
    z = codec.encode(x)
    block_mean = x.reshape(1, 1, 4, 2, 4, 2, 4, 2).mean(dim=(3, 5, 7))
    torch.testing.assert_close(z[:, :1], block_mean)          # default scaling: aaa is the 2x2x2 block mean
    torch.testing.assert_close(codec.decode(z), x)
    assert codec.latent_shape((1, 96, 112, 96)) == (8, 48, 56, 48)


def test_differentiable_and_odd_sizes_refused():
    x = torch.randn(1, 1, 4, 4, 4, requires_grad=True)
    HaarCodec().decode(HaarCodec().encode(x) * 2).sum().backward()
    torch.testing.assert_close(x.grad, torch.full_like(x, 2.0))
    with pytest.raises(ValueError, match="even D, H, W"):
        haar_dwt3(torch.zeros(1, 1, 5, 4, 4))
    assert IdentityCodec().encode(x) is x
