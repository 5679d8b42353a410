"""VCM's lossless condition path (the backbone's own codec) and its regression prior: shapes, identity at
initialisation, the prior's closed-form fit, the gate, and saving the fitted prior with the module."""
import numpy as np
import pytest
import torch

from volgen import hub
from volgen.backbones import Backbone, BackboneConfig, UNetConfig
from volgen.kernels.haar_eager import haar_dwt3
from volgen.modules import build_conditioner
from volgen.modules.prior import RegressionPrior
from volgen.modules.vcm import GATE_GAIN

CONTRASTS = ("t1n", "t1c", "t2w", "t2f")
SETTINGS = {"conditions": CONTRASTS, "condition_path": "codec", "prior": "regression", "prior_degree": 2,
            "mid_attention": False, "channels": (8, 16), "head_channels": 8, "num_head_channels": 8,
            "norm_num_groups": 8}


def _backbone() -> Backbone:
    torch.manual_seed(0)
    net = UNetConfig(in_channels=8, out_channels=8, channels=(16, 32), attention_levels=(False, False),
                     num_head_channels=16, norm_num_groups=8, num_class_embeds=4)
    backbone = Backbone(BackboneConfig(network=net.to_dict(), contrasts=CONTRASTS))
    torch.nn.init.normal_(backbone.network.unet.out[2].conv.weight, std=0.05)
    return backbone


def _volumes(n=2, size=16, seed=0):
    """Cases whose contrasts are exact functions of two tissue maps: t1c = quadratic in t1n and t2w."""
    gen = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        a, b = torch.rand(2, size, size, size, generator=gen) * 1.6 - 0.8
        t1n, t2w, t2f = a, b, 0.5 * a - 0.3 * b
        t1c = 0.4 * t1n - 0.2 * t2w + 0.6 * t1n * t2w + 0.1
        out.append(torch.stack([t1n, t1c, t2w, t2f]))
    return out


def test_the_conditions_arrive_as_their_haar_subbands_with_the_present_flags():
    module = build_conditioner("vcm", _backbone(), SETTINGS)
    assert module.encoder is None
    conditions = torch.rand(2, 4, 16, 16, 16)
    present = torch.tensor([[1.0, 0.0, 1.0, 1.0], [0.0, 1.0, 1.0, 0.0]])
    features = module.condition_features(conditions, present)
    assert features.shape == (2, 4 * 8 + 4, 8, 8, 8)
    codes = module.backbone.codec.encode(conditions[:, 2:3])          # t2w: present in both items
    assert torch.allclose(features[:, 16:24], codes, atol=1e-6)
    assert torch.all(features[0, 8:16] == 0) and torch.all(features[1, 0:8] == 0)   # absent: zeroed
    assert torch.equal(features[:, 32:], present[..., None, None, None].expand(2, 4, 8, 8, 8))
    # lossless: the codec is the plain Haar transform up to the low band's scale
    plain = haar_dwt3(conditions[:, 2:3])
    assert torch.allclose(codes[:, 1:], plain[:, 1:], atol=1e-6)


@pytest.mark.parametrize("prior", ["regression", "table"])
def test_identity_at_initialisation_with_the_prior_and_gate_fitted(prior):
    backbone = _backbone()
    module = build_conditioner("vcm", backbone, {**SETTINGS, "prior": prior})
    module.prepare([type("Case", (), {"images": v})() for v in _volumes()])
    assert module.prior.fitted
    gen = torch.Generator().manual_seed(1)
    x_t, conditions = torch.randn(2, 8, 8, 8, 8, generator=gen), torch.rand(2, 4, 16, 16, 16, generator=gen)
    present, t, labels = torch.tensor([[1.0, 0.0, 1.0, 1.0]] * 2), torch.tensor([700, 20]), torch.tensor([1, 3])
    with torch.no_grad():
        expected = backbone.network(x_t, t, class_labels=labels)
        got = module(x_t, t, conditions=conditions, present=present, class_labels=labels)
        assert torch.allclose(got, expected, atol=1e-6)
        # an open gate hands over the prior's estimate, in the codec's space
        module.gate_bias.fill_(1.0 / GATE_GAIN)
        opened = module(x_t, t, conditions=conditions, present=present, class_labels=labels)
        prior = backbone.codec.encode(module.prior(conditions, present, labels))
    assert torch.allclose(opened, prior, atol=1e-5)


@pytest.mark.parametrize("degree", [1, 2])
def test_the_prior_fits_each_subset_in_closed_form(degree):
    prior = RegressionPrior(4, 4, degree)
    volumes = _volumes(3)
    prior.fit(volumes, ridge=1e-9)
    case = _volumes(1, seed=5)[0]
    truth = case[1]
    all_but_t1c = torch.tensor([[1.0, 0.0, 1.0, 1.0]])
    estimate = prior(case[None], all_but_t1c, torch.tensor([1]))[0, 0]
    if degree == 2:        # t1c is exactly quadratic in t1n and t2w
        assert torch.allclose(estimate, truth, atol=1e-4)
    else:                  # a linear fit cannot represent the product term
        assert (estimate - truth).abs().max() > 0.05
    # a present target is its own best estimate; an absent condition gets no weight
    assert torch.allclose(prior(case[None], torch.ones(1, 4), torch.tensor([1]))[0, 0], truth, atol=1e-4)
    only_t2f = torch.tensor([[0.0, 0.0, 0.0, 1.0]])
    scrambled = case.clone()
    scrambled[0] = torch.rand_like(scrambled[0])
    assert torch.allclose(prior(case[None], only_t2f, torch.tensor([1])),
                          prior(scrambled[None], only_t2f, torch.tensor([1])))


def test_background_stays_background():
    prior = RegressionPrior(4, 4, 2)
    prior.fit(_volumes(2))
    case = _volumes(1, seed=3)[0]
    case[:, :4] = -1.0                                  # a slab of background in every contrast
    out = prior(case[None], torch.tensor([[1.0, 0.0, 1.0, 1.0]]), torch.tensor([1]))
    assert torch.all(out[0, 0, :4] == -1.0)


def test_the_fitted_prior_is_saved_with_the_module(tmp_path):
    backbone = _backbone()
    hub.save_pretrained(backbone, tmp_path / "backbone")
    module = build_conditioner("vcm", backbone, SETTINGS)
    module.prepare([type("Case", (), {"images": v})() for v in _volumes()])
    hub.save_pretrained(module, tmp_path / "module")
    again = hub.from_pretrained(tmp_path / "module")
    assert torch.equal(again.prior.coef, module.prior.coef) and again.prior.fitted



def test_prepare_refits_a_prior_copied_from_another_run():
    """init_from copies a fitted prior; the run's own data (another intensity scale) must replace it."""
    module = build_conditioner("vcm", _backbone(), {**SETTINGS, "prior": "table"})
    module.prepare([type("Case", (), {"images": v})() for v in _volumes(seed=0)])
    first = module.prior.table.clone()
    rescaled = [v * 0.5 for v in _volumes(seed=0)]
    module.prepare([type("Case", (), {"images": v})() for v in rescaled])
    assert module.prior.fitted and not torch.allclose(module.prior.table, first)

def test_the_interpolation_prior_is_the_cubic_baseline():
    from volgen.baselines import cubic_upsample
    from volgen.modules.prior import InterpolationPrior
    from volgen.ops import repeat_slices, thick_slices

    volume = torch.rand(1, 1, 8, 10, 32, generator=torch.Generator().manual_seed(0))
    thick = thick_slices(volume, 4, 4)
    out = InterpolationPrior(4, 2)(repeat_slices(thick, 4, 4))     # what the SR module is given
    expected = cubic_upsample(thick[0, 0].double().numpy(), 4, 2)   # scipy's spline, computed independently
    assert out.shape == volume.shape
    assert torch.allclose(out[0, 0].double(), torch.as_tensor(expected), atol=1e-5)
    ramp = torch.arange(64.0).view(1, 1, 1, 1, 64).expand(1, 1, 4, 4, 64)
    line = InterpolationPrior(4, 2)(repeat_slices(thick_slices(ramp, 4, 4), 4, 4))
    # a cubic spline reproduces a line away from the ends (the "nearest" end condition bends it there)
    assert torch.allclose(line[..., 24:40], ramp[..., 24:40], atol=1e-3)


def test_the_fill_prior_is_the_harmonic_fill():
    from volgen.baselines import harmonic_fill
    from volgen.modules.prior import FillPrior

    gen = torch.Generator().manual_seed(0)
    image = torch.rand(2, 1, 20, 18, 16, generator=gen)
    mask = torch.zeros_like(image)
    mask[0, 0, 5:12, 4:9, 3:14] = 1
    mask[1, 0, 0:6, 10:18, 8:12] = 1                      # touches the volume's edge
    out = FillPrior()(torch.cat([image * (1 - mask) - mask, mask, torch.zeros_like(mask)], dim=1))
    assert torch.equal(out * (1 - mask), image * (1 - mask))
    for i in range(2):                                    # scipy's sparse direct solve, an independent reference
        expected = harmonic_fill(image[i, 0].double().numpy(), mask[i, 0].numpy() > 0)
        assert torch.allclose(out[i, 0].double(), torch.as_tensor(expected), atol=1e-4)
    constant = FillPrior()(torch.cat([torch.full_like(image, 0.3) * (1 - mask) - mask, mask], dim=1))
    assert torch.allclose(constant, torch.full_like(image, 0.3), atol=1e-5)


@pytest.mark.parametrize("prior, conditions", [("interpolation", ("lowres",)),
                                               ("fill", ("masked", "mask", "insert_lesion"))])
def test_task_priors_keep_identity_at_initialisation(prior, conditions):
    backbone = _backbone()
    module = build_conditioner("vcm", backbone, {**SETTINGS, "conditions": conditions, "prior": prior})
    gen = torch.Generator().manual_seed(2)
    x_t, cond = torch.randn(1, 8, 8, 8, 8, generator=gen), torch.rand(1, len(conditions), 16, 16, 16, generator=gen)
    t, labels = torch.tensor([500]), torch.tensor([3])
    with torch.no_grad():
        assert torch.allclose(module(x_t, t, conditions=cond, class_labels=labels),
                              backbone.network(x_t, t, class_labels=labels), atol=1e-6)


def test_the_super_resolution_job_gives_the_prior_its_own_factor_and_axis_per_call(monkeypatch):
    """2x along x: the interpolation prior is called with factor 2 on the model grid's first axis, and the module
    (shared through the jobs' model cache) keeps the factor and axis it was trained with."""
    import numpy as np

    from volgen.io.volume import Volume
    from volgen.modules.prior import InterpolationPrior
    from volgen.tasks.super_resolution import super_resolve

    module = build_conditioner("vcm", _backbone(), {**SETTINGS, "conditions": ("lowres",), "prior": "interpolation"})
    module.eval()
    calls = []
    forward = InterpolationPrior.forward
    monkeypatch.setattr(InterpolationPrior, "forward", lambda self, *a, **kw: calls.append(kw) or forward(self, *a,
                                                                                                            **kw))
    thick = Volume(np.random.default_rng(0).random((8, 16, 16)).astype(np.float32) + 1,
                   np.diag([4.0, 2.0, 2.0, 1.0]), name="scan-t2f")
    super_resolve(thick, factor=2, axis="x", sampling=None, model=module, steps=1, samples=1)
    assert calls and all((kw["factor"], kw["dim"]) == (2, 2) for kw in calls)
    assert (module.prior.factor, module.prior.dim) == (4, 4)          # as built: nothing set on the cached model


def test_the_spline_depends_on_the_factor_as_well_as_the_number_of_slices():
    """The spline cache was keyed by the thick-slice count alone: a 2x call after a 4x one with as many slices got
    the 4x spline."""
    from volgen.baselines import cubic_upsample
    from volgen.modules.prior import InterpolationPrior

    prior = InterpolationPrior(4, 2)
    four = prior.matrix(6)
    two = prior.matrix(6, 2)
    assert four.shape == (24, 6) and two.shape == (12, 6)
    assert torch.allclose(two, torch.as_tensor(cubic_upsample(np.eye(6), 2, axis=0), dtype=torch.float32))