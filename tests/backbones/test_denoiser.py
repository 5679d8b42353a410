"""The Denoiser's conversions: a network that outputs the exact target of its parameterization gives back (x0, eps)."""
import pytest
import torch

from volgen.backbones import Denoiser, prediction_target
from volgen.sampling import FlowSchedule, NoiseSchedule


@pytest.mark.parametrize("parameterization, schedule", [
    ("eps", NoiseSchedule.cosine()), ("x0", NoiseSchedule.linear()), ("v", NoiseSchedule.scaled_linear()),
    ("flow", FlowSchedule(1000, 2.0)), ("eps", FlowSchedule()), ("x0", FlowSchedule())])
def test_target_and_conversion_are_inverse(parameterization, schedule):
    gen = torch.Generator().manual_seed(0)
    x0, eps = (torch.randn(3, 2, 4, 4, 4, generator=gen, dtype=torch.float64) for _ in range(2))
    t = torch.tensor(schedule.timesteps(10)[1:4], dtype=schedule.timestep_dtype)
    denoiser = Denoiser(torch.nn.Identity(), schedule, parameterization)
    alpha, sigma = denoiser.alpha_sigma(t, x0)
    x_t = alpha * x0 + sigma * eps
    x0_hat, eps_hat = denoiser.x0_eps(prediction_target(x0, eps, alpha, sigma, parameterization), x_t, t)
    assert torch.allclose(x0_hat, x0, atol=1e-10) and torch.allclose(eps_hat, eps, atol=1e-10)


def test_flow_levels_are_the_straight_path():
    alpha, sigma = FlowSchedule(1000).alpha_sigma(torch.tensor([1000.0, 250.0]))
    assert alpha.tolist() == [0.0, 0.75] and sigma.tolist() == [1.0, 0.25]
    alpha, sigma = NoiseSchedule.linear().alpha_sigma(torch.tensor([0]))
    assert abs(alpha.item() ** 2 - (1 - 1e-4)) < 1e-12 and abs(alpha.item() ** 2 + sigma.item() ** 2 - 1) < 1e-12


def test_fused_attention_gives_the_same_network_output():
    """MONAI's middle block always attends over the lowest grid; the fused path must not change what it computes."""
    from volgen.backbones import DiffusionUNet, UNetConfig
    config = dict(in_channels=2, out_channels=2, channels=(8, 16), attention_levels=(False, True),
                  num_head_channels=8, norm_num_groups=8, num_class_embeds=2)
    torch.manual_seed(0)
    explicit = DiffusionUNet(UNetConfig(**config, use_flash_attention=False)).eval()
    torch.nn.init.normal_(explicit.unet.out[2].conv.weight, std=0.1)
    fused = DiffusionUNet(UNetConfig(**config, use_flash_attention=True)).eval()
    fused.load_state_dict(explicit.state_dict())
    x, t, labels = torch.randn(1, 2, 16, 16, 16), torch.tensor([300]), torch.tensor([1])
    with torch.no_grad():
        a, b = explicit(x, t, class_labels=labels), fused(x, t, class_labels=labels)
    assert a.abs().max() > 1e-3 and torch.allclose(a, b, atol=1e-5)
