"""Overfit: a wavelet-diffusion and a latent-diffusion backbone each learn one 16^3 volume and sample it back.

What the PSNR bars mean. The volume spans [0, 1]; guessing its mean everywhere scores ~16.5 dB, so a sampler that
ignored the network, or a codec/parameterization conversion off by a factor, stays near or below that. The bars:
- wavelet (Haar codec, x0-prediction as WDM uses, DDIM 25 steps): 28 dB, an RMS error under 4% of the range;
- latent (KL autoencoder trained on the volume, rectified flow, Euler 25 steps): 24 dB, an RMS error under 6.3%
  of the range, since the decoder's own reconstruction error (about 30 dB here) caps what sampling can reach.
Both train with Adam for a few hundred steps on 2 CPU threads (about 25 s each).
"""
import torch

from volgen.backbones import Backbone, BackboneConfig, UNetConfig
from volgen.codecs import AutoencoderConfig
from volgen.metrics import psnr
from volgen.sampling import FlowSchedule, NoiseSchedule, sample_ddim, sample_euler
from volgen.training.objectives import diffusion_loss


def _volume() -> torch.Tensor:
    """A smooth 16^3 volume in [0, 1] with a bright ball: structure at several scales."""
    axis = torch.linspace(-1, 1, 16)
    d, h, w = torch.meshgrid(axis, axis, axis, indexing="ij")
    vol = 0.5 + 0.3 * torch.sin(3 * d) * torch.cos(2 * h) + 0.2 * (d ** 2 + h ** 2 + w ** 2 < 0.5).float()
    return vol.clamp(0, 1)[None, None]


def _fit(backbone: Backbone, z0: torch.Tensor, steps: int, lr: float = 2e-3) -> None:
    generator = torch.Generator().manual_seed(0)
    params = [p for p in backbone.denoiser.parameters()]
    opt = torch.optim.Adam(params, lr=lr)
    for _ in range(steps):
        loss = diffusion_loss(backbone.denoiser, z0.expand(4, -1, -1, -1, -1), generator=generator)
        opt.zero_grad()
        loss.backward()
        opt.step()
    backbone.eval()


def _psnr(image: torch.Tensor, truth: torch.Tensor) -> float:
    return psnr(image.detach().numpy(), truth.numpy(), data_range=1.0)


def _tiny_network(channels: int) -> dict:
    return UNetConfig(in_channels=channels, out_channels=channels, channels=(32, 32), attention_levels=(False, False),
                      num_head_channels=32, norm_num_groups=8).to_dict()


def test_wavelet_diffusion_overfits_one_volume():
    torch.manual_seed(0)
    vol = _volume()
    backbone = Backbone(BackboneConfig(codec={"type": "haar", "config": {}}, network=_tiny_network(8),
                                       schedule=NoiseSchedule.linear().config(), parameterization="x0"))
    z0 = backbone.codec.encode(vol * 2 - 1)
    _fit(backbone, z0, steps=400)
    x_T = torch.randn(z0.shape, generator=torch.Generator().manual_seed(1))
    sample = sample_ddim(backbone.denoiser, x_T, backbone.denoiser.schedule.timesteps(25))
    image = (backbone.codec.decode(sample) + 1) / 2
    print(f"wavelet overfit: {_psnr(image, vol):.1f} dB")
    assert _psnr(image, vol) > 28.0


def test_latent_diffusion_overfits_one_volume():
    torch.manual_seed(0)
    vol = _volume()
    autoencoder = AutoencoderConfig(latent_channels=3, channels=(16, 16), attention_levels=(False, False),
                                    norm_num_groups=8)
    backbone = Backbone(BackboneConfig(codec={"type": "kl_autoencoder", "config": autoencoder.to_dict()},
                                       network=_tiny_network(3), schedule=FlowSchedule().config(),
                                       parameterization="flow"))
    codec = backbone.codec
    opt = torch.optim.Adam(codec.parameters(), lr=3e-3)
    for _ in range(300):
        x = vol * 2 - 1
        loss = (codec.decode(codec.encode(x)) - x).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    codec.eval().requires_grad_(False)
    with torch.no_grad():
        codec.measure_scale_factor([vol * 2 - 1])
        z0 = codec.encode(vol * 2 - 1)
        reconstruction = _psnr((codec.decode(z0) + 1) / 2, vol)
    assert abs(z0.std().item() - 1.0) < 1e-4          # the measured scale factor gives unit-variance latents
    _fit(backbone, z0, steps=400)
    x_T = torch.randn(z0.shape, generator=torch.Generator().manual_seed(1))
    sample = sample_euler(backbone.denoiser, x_T, backbone.denoiser.schedule.timesteps(25))
    with torch.no_grad():
        image = (codec.decode(sample) + 1) / 2
    print(f"latent overfit: autoencoder {reconstruction:.1f} dB, sample {_psnr(image, vol):.1f} dB")
    assert reconstruction > 28.0, f"autoencoder reconstruction {reconstruction:.1f} dB"
    assert _psnr(image, vol) > 24.0
