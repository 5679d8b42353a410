"""Rectified flow: the Euler sampler against diffusers' FlowMatchEulerDiscreteScheduler, and its identities."""
import pytest
import torch
from diffusers import FlowMatchEulerDiscreteScheduler

from volgen.backbones import Denoiser
from volgen.sampling import FlowSchedule, NoiseSchedule, sample_ddim, sample_ddpm, sample_euler, schedule_from_config

from tiny import TinyNet, rel, x_T


@pytest.mark.parametrize("shift", [1.0, 3.0])
def test_euler_matches_diffusers_flow_match(shift):
    net, steps = TinyNet(), 12
    ref = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=shift)
    # Unshifted levels 1 .. 1/T, which diffusers then shifts (its default end point is shifted twice).
    ref.set_timesteps(sigmas=torch.linspace(1.0, 1e-3, steps).tolist())
    ours = FlowSchedule(1000, shift=shift)
    assert torch.allclose(ref.timesteps.double(), torch.tensor(ours.timesteps(steps), dtype=torch.float64), rtol=1e-5)
    x = x_T()
    with torch.no_grad():
        for t in ref.timesteps:
            x = ref.step(net(x, t.view(1)), t, x).prev_sample
    mine = sample_euler(Denoiser(net, ours, "flow"), x_T(), ours.timesteps(steps))
    assert rel(mine, x) < 1e-5


def test_euler_is_deterministic_ddim_on_a_flow():
    """On the straight path, Euler's step x + (sigma' - sigma) u equals DDIM's alpha' x0 + sigma' eps exactly."""
    net, schedule = TinyNet().double(), FlowSchedule(1000, shift=2.0)
    denoiser = Denoiser(net, schedule, "flow")
    steps = schedule.timesteps(9)
    euler = sample_euler(denoiser, x_T().double(), steps)
    assert rel(sample_ddim(denoiser, x_T().double(), steps), euler) < 1e-12


def test_flow_parameterizations_agree():
    """An x0-network that is the exact conversion of the velocity network samples the same volume."""
    net, schedule = TinyNet().double(), FlowSchedule(1000)

    class AsX0(torch.nn.Module):
        def forward(self, x, t):
            s = (t.double() / 1000).view(-1, 1, 1, 1, 1)
            return x - s * net(x, t)

    steps = schedule.timesteps(7)
    ref = sample_euler(Denoiser(net, schedule, "flow"), x_T().double(), steps)
    assert rel(sample_euler(Denoiser(AsX0(), schedule, "x0"), x_T().double(), steps), ref) < 1e-10


def test_samplers_and_parameterizations_refuse_the_wrong_schedule():
    with pytest.raises(ValueError, match="rectified flow"):
        sample_euler(Denoiser(TinyNet(), NoiseSchedule.linear()), x_T(), [999])
    with pytest.raises(ValueError, match="needs a 'flow' schedule"):
        Denoiser(TinyNet(), NoiseSchedule.linear(), "flow")
    with pytest.raises(ValueError, match="needs a 'vp' schedule"):
        Denoiser(TinyNet(), FlowSchedule(), "v")


def test_ddpm_on_a_flow_ends_clean_and_is_seeded():
    denoiser = Denoiser(TinyNet(), FlowSchedule(), "flow")
    steps = denoiser.schedule.timesteps(6)
    a = sample_ddpm(denoiser, x_T(), steps, generator=torch.Generator().manual_seed(2))
    b = sample_ddpm(denoiser, x_T(), steps, generator=torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and torch.isfinite(a).all()


@pytest.mark.parametrize("schedule", [NoiseSchedule.linear(), NoiseSchedule.scaled_linear(500, 0.001, 0.02),
                                      NoiseSchedule.cosine(), FlowSchedule(1000, 3.0)])
def test_schedule_config_round_trip(schedule):
    again = schedule_from_config(schedule.config())
    assert again.kind == schedule.kind
    assert again.timesteps(10) == schedule.timesteps(10)
    t = torch.tensor(schedule.timesteps(10))
    for mine, theirs in zip(again.alpha_sigma(t), schedule.alpha_sigma(t)):
        assert torch.equal(mine, theirs)
