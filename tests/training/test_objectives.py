"""The denoising loss in the image space: hand-derived against the latent loss for the Haar codec."""
import math

import pytest
import torch

from volgen.backbones.denoiser import Denoiser
from volgen.codecs.haar import HaarCodec
from volgen.sampling.schedules import make_schedule
from volgen.training.objectives import diffusion_loss, noised, region_weights, weighted_mse


def _losses(codec):
    """(latent-space loss, image-space loss) of one toy network on one volume, with the same noise and timesteps."""
    denoiser = Denoiser(torch.nn.Identity(), make_schedule("linear"), "x0")
    network = lambda x_t, t: torch.tanh(x_t) * 0.5 + 0.1        # any fixed prediction will do
    image = torch.rand(3, 1, 8, 8, 8, generator=torch.Generator().manual_seed(1)) * 2 - 1
    z0 = codec.encode(image)
    latent = diffusion_loss(denoiser, z0, network=network, generator=torch.Generator().manual_seed(0))
    decoded = diffusion_loss(denoiser, z0, network=network, generator=torch.Generator().manual_seed(0),
                             decode=codec.decode, image=image)
    return latent, decoded, (denoiser, network, image, z0)


def test_image_loss_equals_the_latent_loss_for_an_orthonormal_codec():
    # the plain Haar transform is orthonormal and keeps the voxel count: the two losses are one number
    latent, decoded, _ = _losses(HaarCodec(lowpass_scale=1.0))
    assert decoded.item() == pytest.approx(latent.item(), rel=1e-5)


def test_image_loss_weighs_each_latent_channel_by_the_image_it_carries():
    # volgen's Haar codec divides the low-pass band by s = 2 sqrt2: an error e there is an error s e in the plain
    # band, so in the image, so the image loss is the latent loss with that band's squared error weighted by s^2
    s = 2 * math.sqrt(2)
    codec = HaarCodec(lowpass_scale=s)
    latent, decoded, (denoiser, network, image, z0) = _losses(codec)
    x_t, t, _ = noised(denoiser, z0, torch.Generator().manual_seed(0))
    error = (network(x_t, t) - z0) ** 2                        # x0 parameterization: the prediction is x0
    weights = torch.ones(8).view(1, 8, 1, 1, 1)
    weights[0, 0] = s ** 2
    assert latent.item() == pytest.approx(error.mean().item(), rel=1e-5)
    assert decoded.item() == pytest.approx((error * weights).mean().item(), rel=1e-5)
    assert decoded.item() > latent.item()                  # every weight is at least 1


def test_image_loss_recovers_x0_from_an_eps_network():
    # an eps network's x0 is (x_t - sigma eps) / alpha; a perfect eps prediction then gives zero image loss
    denoiser = Denoiser(torch.nn.Identity(), make_schedule("linear"), "eps")
    codec = HaarCodec()
    image = torch.rand(2, 1, 8, 8, 8, generator=torch.Generator().manual_seed(2)) * 2 - 1
    z0 = codec.encode(image)
    _, _, eps = noised(denoiser, z0, torch.Generator().manual_seed(0))
    perfect = lambda x_t, t: eps
    loss = diffusion_loss(denoiser, z0, network=perfect, generator=torch.Generator().manual_seed(0),
                          decode=codec.decode, image=image)
    assert loss.item() < 1e-8
    wrong = lambda x_t, t: eps + 0.1
    assert diffusion_loss(denoiser, z0, network=wrong, generator=torch.Generator().manual_seed(0),
                          decode=codec.decode, image=image).item() > 1e-4


def test_a_lesion_weight_counts_lesion_voxels_that_many_times():
    # two voxels, errors 1 and 3, the second in the lesion, weight 4: (1 * 1 + 4 * 9) / (1 + 4) = 37 / 5
    prediction = torch.tensor([1.0, 3.0]).view(1, 1, 2, 1, 1)
    seg = torch.tensor([0, 2]).view(1, 1, 2, 1, 1)
    weight = region_weights(seg > 0, (2, 1, 1), 4.0)
    assert weight.flatten().tolist() == [1.0, 4.0]
    assert weighted_mse(prediction, torch.zeros_like(prediction), weight).item() == pytest.approx(37 / 5)
    # a uniform weight is the plain MSE, whatever its value
    assert weighted_mse(prediction, torch.zeros_like(prediction), torch.full_like(prediction, 7.0)).item() == \
        pytest.approx(5.0)


def test_lesion_weights_mark_every_coarse_voxel_that_holds_a_lesion_voxel():
    # the Haar codec halves each axis: a coarse voxel is a 2x2x2 block, weighted if any of its voxels is lesion
    seg = torch.zeros(1, 1, 4, 4, 4, dtype=torch.int16)
    seg[0, 0, 3, 0, 1] = 3
    weight = region_weights(seg > 0, (2, 2, 2), 5.0)
    expected = torch.ones(1, 1, 2, 2, 2)
    expected[0, 0, 1, 0, 0] = 5.0
    assert torch.equal(weight, expected)


def test_the_weighted_loss_follows_the_lesion_error():
    # the same network scored with and without a lesion weight: the weighted loss moves towards the lesion's error
    denoiser = Denoiser(torch.nn.Identity(), make_schedule("linear"), "x0")
    codec = HaarCodec()
    image = torch.rand(1, 1, 8, 8, 8, generator=torch.Generator().manual_seed(3)) * 2 - 1
    z0 = codec.encode(image)
    network = lambda x_t, t: torch.tanh(x_t) * 0.5
    seg = torch.zeros(1, 1, 8, 8, 8)
    seg[..., :4, :, :] = 1                                      # half the volume is lesion
    weight = region_weights(seg > 0, z0.shape[2:], 3.0)
    plain = diffusion_loss(denoiser, z0, network=network, generator=torch.Generator().manual_seed(0))
    weighted = diffusion_loss(denoiser, z0, network=network, generator=torch.Generator().manual_seed(0),
                              weight=weight)
    x_t, t, _ = noised(denoiser, z0, torch.Generator().manual_seed(0))
    error = (network(x_t, t) - z0) ** 2
    lesion, healthy = error[..., :2, :, :].mean(), error[..., 2:, :, :].mean()
    assert plain.item() == pytest.approx(((lesion + healthy) / 2).item(), rel=1e-5)
    assert weighted.item() == pytest.approx(((3 * lesion + healthy) / 4).item(), rel=1e-5)
