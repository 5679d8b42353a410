"""The shared sampling path: conditions reach the module, projections hold exactly on the decoded image."""
import pytest
import torch

from volgen.backbones import Backbone, BackboneConfig, UNetConfig
from volgen.modules import VCM, VCMConfig
from volgen.sampling import FlowSchedule
from volgen.ops import known_voxel_projection, thick_slice_projection, thick_slices
from volgen.sampling.predict import predict_x0_eps
from volgen.tasks import default_sampler, generate


def _backbone(**kwargs) -> Backbone:
    torch.manual_seed(0)
    net = UNetConfig(in_channels=8, out_channels=8, channels=(8, 16), attention_levels=(False, False),
                     num_head_channels=8, norm_num_groups=8, num_class_embeds=2)
    backbone = Backbone(BackboneConfig(network=net.to_dict(), contrasts=("t1n", "t2f"), **kwargs))
    torch.nn.init.normal_(backbone.network.unet.out[2].conv.weight, std=0.05)
    return backbone.eval()


def test_projections_hold_on_the_output():
    backbone = _backbone()
    gen = torch.Generator().manual_seed(0)
    known = torch.rand(1, 1, 16, 16, 16, generator=gen) * 2 - 1
    mask = torch.zeros_like(known)
    mask[..., 4:9, 5:10, 6:12] = 1
    out = generate(backbone, (1, 16, 16, 16), contrast="t2f", steps=3, samples=3,
                   projection=known_voxel_projection(known, mask))
    for image in (out.image, *out.draws[:, None]):           # the mean and every sample
        assert torch.equal(image * (1 - mask), known * (1 - mask))
    assert out.spread.shape == (1, 1, 16, 16, 16) and torch.all(out.spread * (1 - mask) == 0)
    observed = thick_slices(known, 4, 4)
    out = generate(backbone, (1, 16, 16, 16), contrast="t1n", steps=3, samples=2,
                   projection=thick_slice_projection(observed, 4, 4))
    for image in (out.image, *out.draws[:, None]):
        assert torch.allclose(thick_slices(image, 4, 4), observed, atol=1e-5)


def test_a_module_and_its_conditions_change_the_sample_and_seeds_repeat():
    backbone = _backbone()
    module = VCM(backbone, VCMConfig(conditions=("t1n", "t2f"), channels=(8, 16), encoder_channels=(8,), features=8,
                                     head_channels=8, num_head_channels=8, norm_num_groups=8)).eval()
    torch.nn.init.normal_(module.beta.weight, std=0.5)
    conditions = torch.rand(1, 2, 16, 16, 16, generator=torch.Generator().manual_seed(2))
    present = torch.tensor([[1.0, 0.0]])
    a = generate(module, (1, 16, 16, 16), contrast="t2f", conditions=conditions, present=present, steps=3, seed=4)
    b = generate(module, (1, 16, 16, 16), contrast="t2f", conditions=conditions, present=present, steps=3, seed=4)
    plain = generate(backbone, (1, 16, 16, 16), contrast="t2f", steps=3, seed=4)
    assert torch.equal(a.image, b.image)
    assert (a.image - plain.image).abs().max() > 1e-3


def test_flow_backbones_sample_with_euler_by_default():
    backbone = _backbone(schedule=FlowSchedule().config(), parameterization="flow")
    assert default_sampler(backbone) == "euler"
    assert torch.isfinite(generate(backbone, (1, 16, 16, 16), contrast="t1n", steps=2).image).all()


def test_the_mean_is_the_average_first_step_prediction_and_the_spread_is_over_the_samples():
    backbone = _backbone()
    out = generate(backbone, (1, 16, 16, 16), contrast="t2f", steps=4, samples=3, seed=7)
    # the reference: the same three x_T, one network call each at the first of the 4 timesteps
    x_T = torch.randn((3, 8, 8, 8, 8), generator=torch.Generator().manual_seed(7))
    t = backbone.denoiser.schedule.timesteps(4)[0]
    x0, _ = predict_x0_eps(backbone.denoiser, x_T, t, {"class_labels": torch.tensor([1, 1, 1])})
    expected = backbone.codec.decode(x0).mean(0, keepdim=True)
    assert torch.allclose(out.image, expected, atol=1e-5)
    assert out.draws.shape == (3, 1, 16, 16, 16) and out.samples == 3 and out.kind == "mean"
    draws = out.draws.double()
    assert torch.allclose(out.spread[0].double(), ((draws - draws.mean(0)) ** 2).mean(0).sqrt(), atol=1e-5)
    final = generate(backbone, (1, 16, 16, 16), contrast="t2f", steps=4, samples=3, seed=7, mean_of="final")
    assert torch.allclose(final.image, out.draws.mean(0, keepdim=True), atol=1e-5)   # values in tens: float32
    draws_mean = generate(backbone, (1, 16, 16, 16), contrast="t2f", steps=4, samples=3, seed=7, mean_of="draws")
    assert torch.equal(draws_mean.image, final.image)
    with pytest.raises(ValueError, match="mean_of"):
        generate(backbone, (1, 16, 16, 16), contrast="t2f", steps=4, mean_of="last")


def test_one_sample_is_the_first_draw_and_has_no_spread():
    backbone = _backbone()
    many = generate(backbone, (1, 16, 16, 16), contrast="t1n", steps=3, samples=2, seed=3, estimate="sample")
    one = generate(backbone, (1, 16, 16, 16), contrast="t1n", steps=3, samples=1, seed=3, estimate="sample")
    assert torch.equal(many.image, many.draws[:1]) and many.spread is not None
    assert one.spread is None and one.kind == "sample"
    # the batch's first x_T is the single run's x_T (same generator), so the first draws agree
    assert torch.allclose(one.image, many.image, atol=1e-5)


def test_a_task_refine_maps_the_posterior_mean_and_leaves_a_sample_and_the_draws_as_drawn():
    backbone = _backbone()
    seen = []

    def refine(image):
        seen.append(image.clone())
        return image * 2 + 1

    plain = generate(backbone, (1, 16, 16, 16), contrast="t2f", steps=3, samples=2, seed=5)
    refined = generate(backbone, (1, 16, 16, 16), contrast="t2f", steps=3, samples=2, seed=5, refine=refine)
    assert len(seen) == 1 and torch.equal(seen[0], plain.image)
    assert torch.equal(refined.image, plain.image * 2 + 1)
    assert torch.equal(refined.draws, plain.draws) and torch.equal(refined.spread, plain.spread)
    sample = generate(backbone, (1, 16, 16, 16), contrast="t2f", steps=3, samples=2, seed=5, estimate="sample",
                      refine=refine)
    assert len(seen) == 1 and torch.equal(sample.image, plain.draws[:1])


def test_bf16_autocast_stays_close_to_fp32_and_precision_is_checked():
    from volgen.tasks.generate import resolve_precision

    backbone = _backbone()
    a = generate(backbone, (1, 16, 16, 16), contrast="t1n", steps=3, samples=2, seed=1, precision="fp32")
    b = generate(backbone, (1, 16, 16, 16), contrast="t1n", steps=3, samples=2, seed=1, precision="bf16")
    assert b.image.dtype == torch.float32 and b.draws.dtype == torch.float32
    scale = a.image.abs().max()                 # the untrained tiny network answers in tens
    assert (a.image - b.image).abs().max() < 0.01 * scale and not torch.equal(a.image, b.image)
    assert resolve_precision("fp32", torch.device("cpu")) == "fp32"
    assert resolve_precision("auto", torch.device("cuda")) == "fp32"
    with pytest.raises(ValueError, match="precision"):
        resolve_precision("fp8", torch.device("cpu"))


def test_the_cpu_default_stops_after_two_of_the_five_step_timesteps_and_keeps_the_five_step_mean():
    from volgen.tasks.job import Sampling
    from volgen.tasks.models import default_timesteps

    backbone = _backbone()
    cpu = torch.device("cpu")
    assert default_timesteps(backbone.denoiser.schedule, cpu, finished=False) == [800, 400]
    assert default_timesteps(backbone.denoiser.schedule, cpu, finished=True) == [800, 600, 400, 200, 0]
    assert Sampling(model=backbone).timesteps(backbone, "final") == [800, 600, 400, 200, 0]   # Patlak: finished
    assert Sampling(model=backbone).timesteps(backbone, "draws") == [800, 400]             # inpainting
    assert Sampling(model=backbone, estimate="sample").timesteps(backbone) == [800, 600, 400, 200, 0]
    assert Sampling(model=backbone, steps=3).timesteps(backbone) == backbone.denoiser.schedule.timesteps(3)
    short = generate(backbone, (1, 16, 16, 16), contrast="t2f", steps=[800, 400], samples=2, seed=5)
    full = generate(backbone, (1, 16, 16, 16), contrast="t2f", steps=5, samples=2, seed=5)
    assert torch.equal(short.image, full.image)              # the same first step: the same posterior mean
    assert not torch.equal(short.draws, full.draws) and short.spread.abs().max() > 0


def test_a_call_computes_the_conditions_codes_once_and_leaves_nothing_on_the_module(monkeypatch):
    """The codes depend on neither x_t nor t: generate computes them once and hands them to every step; the
    guidance of a call travels with it (the jobs' model cache shares the module between calls)."""
    backbone = _backbone()
    module = VCM(backbone, VCMConfig(conditions=("t1n", "t2f"), channels=(8, 16), features=8, head_channels=8,
                                     num_head_channels=8, norm_num_groups=8, condition_path="codec")).eval()
    torch.nn.init.normal_(module.beta.weight, std=0.5)
    gen = torch.Generator().manual_seed(2)
    first, second = torch.rand(1, 2, 16, 16, 16, generator=gen), torch.rand(1, 2, 16, 16, 16, generator=gen)
    x, t, labels = torch.randn(1, 8, 8, 8, 8, generator=gen), torch.tensor([500]), torch.tensor([1])
    with torch.no_grad():
        given = module(x, t, conditions=first, class_labels=labels,
                       features=module.constant_features(first, None, labels))
        assert given.equal(module(x, t, conditions=first, class_labels=labels))      # the same as computed in place
        assert not given.equal(module(x, t, conditions=second, class_labels=labels))
    calls = []
    compute = VCM.constant_features
    monkeypatch.setattr(VCM, "constant_features", lambda self, *a: calls.append(1) or compute(self, *a))
    state = dict(module.__dict__)
    weak = generate(module, (1, 16, 16, 16), contrast="t2f", conditions=first, steps=3, guidance=0.5)
    assert len(calls) == 1 and module.scale == 1.0 and module.__dict__.keys() == state.keys()
    full = generate(module, (1, 16, 16, 16), contrast="t2f", conditions=first, steps=3)
    assert not torch.equal(weak.image, full.image)


def test_a_pseudo_healthy_mean_is_shrunk_toward_the_modules_prior_and_a_grown_lesion_is_not():
    from volgen.baselines import harmonic_fill
    from volgen.modules import build_conditioner
    from volgen.taskspec import TASKS

    settings = {"conditions": ("masked", "mask", "insert_lesion"), "condition_path": "codec", "prior": "fill",
                "mid_attention": False, "channels": (8, 16), "head_channels": 8, "num_head_channels": 8,
                "norm_num_groups": 8}
    module = build_conditioner("vcm", _backbone(), settings).eval()
    gen = torch.Generator().manual_seed(3)
    image = torch.rand(1, 1, 16, 16, 16, generator=gen) * 2 - 1
    mask = torch.zeros_like(image)
    mask[..., 5:11, 4:10, 6:12] = 1
    spec = TASKS["inpainting"]
    healthy = spec.inputs(image=image, mask=mask, insert=False)
    plain = {k: v for k, v in healthy.items() if k != "refine"}
    refined = generate(module, (1, 16, 16, 16), contrast="t2f", steps=3, samples=2, seed=1, **healthy)
    mean = generate(module, (1, 16, 16, 16), contrast="t2f", steps=3, samples=2, seed=1, **plain)
    # the module's prior is the harmonic fill of the known voxels (scipy's direct solve as the reference)
    prior = torch.as_tensor(harmonic_fill(image[0, 0].double().numpy(), mask[0, 0].numpy() > 0)).float()
    expected = torch.where(mask > 0, spec.mean_weight * mean.image + (1 - spec.mean_weight) * prior, mean.image)
    assert 0 < spec.mean_weight < 1 and not torch.allclose(mean.image, prior, atol=1e-2)
    torch.testing.assert_close(refined.image, expected, atol=2e-4, rtol=0)
    assert torch.equal(refined.image * (1 - mask), image * (1 - mask))       # known voxels exactly as given
    assert torch.equal(refined.draws, mean.draws)
    assert "refine" not in spec.inputs(image=image, mask=mask, insert=True)
    toward = healthy["refine"]
    assert torch.equal(toward(mean.image, None), mean.image)                 # a bare backbone has no prior
    with pytest.raises(ValueError, match="in \\[0, 1\\]"):
        type(toward)(1.5, mask)
