"""Classifier-free guidance: the fused conversion to (x0, eps) combines the two passes as uncond + w (cond - uncond)."""
import pytest
import torch

from volgen.backbones.denoiser import Denoiser, x0_eps_from
from volgen.sampling import ClassifierFreeGuidance, NoiseSchedule, predict_x0_eps


class ShiftNet(torch.nn.Module):
    """A prediction that depends on the condition `shift`, so the two passes differ."""

    def forward(self, x, t, shift=0.0):
        return torch.tanh(x) + shift


@pytest.mark.parametrize("parameterization", ["eps", "x0", "v"])
def test_guided_prediction_is_uncond_plus_scale_times_the_difference(parameterization):
    denoiser = Denoiser(ShiftNet(), NoiseSchedule.linear(), parameterization)
    x = torch.randn(2, 1, 4, 4, 4, generator=torch.Generator().manual_seed(0))
    guidance = ClassifierFreeGuidance(scale=3.0, uncond={"shift": 0.0})
    x0, eps = predict_x0_eps(denoiser, x, 400, {"shift": 0.5}, guidance)
    combined = torch.tanh(x) + 3.0 * 0.5                       # uncond + 3 (cond - uncond), by hand
    want = x0_eps_from(combined, x, *denoiser.alpha_sigma(400, x), parameterization)
    torch.testing.assert_close(x0, want[0]), torch.testing.assert_close(eps, want[1])
    unguided = predict_x0_eps(denoiser, x, 400, {"shift": 0.5}, ClassifierFreeGuidance(scale=1.0))
    torch.testing.assert_close(unguided[0], x0_eps_from(torch.tanh(x) + 0.5, x, *denoiser.alpha_sigma(400, x),
                                                        parameterization)[0])
