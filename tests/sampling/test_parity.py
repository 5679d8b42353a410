"""Trajectories of volgen's samplers against diffusers' and MONAI's schedulers: same eps-model, timesteps, noise."""
import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler

from volgen.backbones import Denoiser
from volgen.sampling import NoiseSchedule, sample_ddim, sample_ddpm, sample_dpmpp_2m

from tiny import TinyNet, rel, x_T

SCHEDULES = {
    "linear": (dict(beta_schedule="linear", beta_start=1e-4, beta_end=0.02), NoiseSchedule.linear(1000, 1e-4, 0.02)),
    "scaled_linear": (dict(beta_schedule="scaled_linear", beta_start=0.0015, beta_end=0.0205),
                      NoiseSchedule.scaled_linear(1000, 0.0015, 0.0205)),
    "cosine": (dict(beta_schedule="squaredcos_cap_v2"), NoiseSchedule.cosine(1000)),
}


@pytest.mark.parametrize("schedule", sorted(SCHEDULES))
@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_ddim_matches_diffusers(schedule, eta):
    kwargs, ours = SCHEDULES[schedule]
    net = TinyNet()
    ref = DDIMScheduler(num_train_timesteps=1000, clip_sample=False, set_alpha_to_one=True, steps_offset=0,
                        timestep_spacing="leading", **kwargs)
    ref.set_timesteps(20)
    x = x_T()
    gen = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for t in ref.timesteps:
            x = ref.step(net(x, t.view(1)), t, x, eta=eta, generator=gen).prev_sample
    denoiser = Denoiser(net, ours, "eps")
    assert [int(t) for t in ref.timesteps] == ours.timesteps(20)
    mine = sample_ddim(denoiser, x_T(), ours.timesteps(20), eta=eta, generator=torch.Generator().manual_seed(5))
    assert rel(mine, x) < 1e-5


@pytest.mark.parametrize("schedule", sorted(SCHEDULES))
def test_ddpm_matches_diffusers(schedule):
    kwargs, ours = SCHEDULES[schedule]
    net = TinyNet()
    ref = DDPMScheduler(num_train_timesteps=1000, clip_sample=False, variance_type="fixed_small",
                        timestep_spacing="leading", steps_offset=0, **kwargs)
    ref.set_timesteps(25)
    x = x_T()
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for t in ref.timesteps:
            x = ref.step(net(x, t.view(1)), t, x, generator=gen).prev_sample
    mine = sample_ddpm(Denoiser(net, ours, "eps"), x_T(), ours.timesteps(25),
                       generator=torch.Generator().manual_seed(3))
    assert rel(mine, x) < 1e-5


@pytest.mark.parametrize("schedule", sorted(SCHEDULES))
@pytest.mark.parametrize("steps", [10, 20])
def test_dpm_solver_pp_2m_matches_diffusers(schedule, steps):
    kwargs, ours = SCHEDULES[schedule]
    net = TinyNet()
    ref = DPMSolverMultistepScheduler(num_train_timesteps=1000, algorithm_type="dpmsolver++", solver_order=2,
                                      solver_type="midpoint", final_sigmas_type="zero", **kwargs)
    ref.set_timesteps(steps)
    x = x_T()
    with torch.no_grad():
        for t in ref.timesteps:
            x = ref.step(net(x, t.view(1)), t, x).prev_sample
    mine = sample_dpmpp_2m(Denoiser(net, ours, "eps"), x_T(), [int(t) for t in ref.timesteps])
    assert rel(mine, x) < 1e-5


def test_ddim_matches_monai():
    """MONAI 1.6's set_timesteps lays steps on linspace(999, 0) but its step() takes the previous alpha at
    t - T // N, which is not the next step on that list (958 follows 979, alpha_prev is read at 959). We compare
    the update rule on leading-spaced steps, where the two agree, and do not copy the mismatch."""
    from monai.networks.schedulers import DDIMScheduler as MonaiDDIM

    net = TinyNet()
    ref = MonaiDDIM(num_train_timesteps=1000, schedule="scaled_linear_beta", beta_start=0.0015, beta_end=0.0205,
                    clip_sample=False, set_alpha_to_one=True, steps_offset=0)
    ref.set_timesteps(50)
    ours = NoiseSchedule.scaled_linear(1000, 0.0015, 0.0205)
    x = x_T()
    with torch.no_grad():
        for t in ours.timesteps(50):
            x, _ = ref.step(net(x, torch.tensor([t])), t, x)
    mine = sample_ddim(Denoiser(net, ours, "eps"), x_T(), ours.timesteps(50))
    assert rel(mine, x) < 1e-5


@pytest.mark.parametrize("kind", ["v", "x0"])
def test_parameterizations_give_the_same_trajectory(kind):
    """A v- or x0-network that is the exact conversion of the eps-network samples the same volume."""
    net, schedule = TinyNet(), NoiseSchedule.linear()
    abar = schedule.alphas_cumprod

    class Converted(torch.nn.Module):
        def forward(self, x, t):
            a = abar[t].to(x.dtype).view(-1, 1, 1, 1, 1)
            eps = net(x, t)
            return a.sqrt() * eps - (1 - a).sqrt() * ((x - (1 - a).sqrt() * eps) / a.sqrt()) if kind == "v" \
                else (x - (1 - a).sqrt() * eps) / a.sqrt()

    steps = schedule.timesteps(10)
    net.double()
    ref = sample_ddim(Denoiser(net, schedule, "eps"), x_T().double(), steps)
    other = sample_ddim(Denoiser(Converted(), schedule, kind), x_T().double(), steps)
    assert rel(other, ref) < 1e-9


def test_consistency_hook_and_callback_see_every_step():
    net, schedule = TinyNet(), NoiseSchedule.linear()
    seen = []
    keep_zero = lambda x0, t: torch.zeros_like(x0)   # noqa: E731 - a projection onto {x0 = 0}
    out = sample_ddim(Denoiser(net, schedule), x_T(), schedule.timesteps(8), consistency=keep_zero,
                      callback=lambda i, t, x, x0: seen.append(t))
    assert seen == schedule.timesteps(8)
    assert torch.allclose(out, torch.zeros_like(out), atol=1e-6)   # the last step lands on the projected x0
