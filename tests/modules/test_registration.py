"""Registration and the registered inpainting prior, against shifts made by scipy (the reference for where the
anatomy went) and the plain harmonic fill (the baseline the prior must beat inside a hole it never saw)."""
import numpy as np
import pytest
import torch
from scipy import ndimage

from volgen import hub
from volgen.baselines import harmonic_fill
from volgen.modules import build_conditioner
from volgen.modules import template_prior
from volgen.modules.registration import Warp, apply_warp, groupwise_template, register
from volgen.modules.template_prior import TemplateFillPrior
from volgen.tasks.fine_fill import FINE_WARP_CONTROLS
from volgen.training.data import CaseArrays

from tests.modules.test_template_prior import INPAINTING
from tests.modules.test_vcm_codec_path import SETTINGS as SYNTHESIS
from tests.modules.test_vcm_codec_path import _backbone

SIZE = 24


def _pattern(seed=0) -> np.ndarray:
    """Smooth random structure in [-0.8, 0.8], a few voxels across: something a shift visibly moves."""
    x = ndimage.gaussian_filter(np.random.default_rng(seed).standard_normal((SIZE,) * 3), 1.5)
    return (0.8 * x / np.abs(x).max()).astype(np.float32)


def _shifted(x: np.ndarray, shift) -> np.ndarray:
    return ndimage.shift(x, shift, order=3, mode="nearest").astype(np.float32)


def _hole() -> np.ndarray:
    hole = np.zeros((SIZE,) * 3, bool)
    hole[9:15, 8:16, 9:15] = True
    return hole


def test_registration_finds_a_shift_and_a_line_of_intensities_and_fills_a_hole_it_never_saw():
    pattern = _pattern()
    fixed = 0.3 + 0.6 * _shifted(pattern, (1.5, -1.0, 0.5))       # moved, with another gain and offset
    hole = _hole()
    warp = register(torch.from_numpy(pattern)[None], torch.from_numpy(fixed)[None],
                    torch.from_numpy((~hole).astype(np.float32)))
    warped = apply_warp(torch.from_numpy(pattern)[None, None], warp)[0, 0].numpy()
    before = np.abs(0.3 + 0.6 * pattern - fixed)[hole].mean()
    after = np.abs(0.3 + 0.6 * warped - fixed)[hole].mean()
    assert after < 0.25 * before, (before, after)


def test_the_groupwise_template_of_shifted_copies_is_sharper_than_their_mean():
    pattern = _pattern(1)
    copies = [torch.from_numpy(_shifted(pattern, s))[None] for s in ((1.5, 0, -1), (-1.5, 1, 0), (0, -1, 1))]
    mean = torch.stack(copies).mean(0)[0].numpy()
    template = groupwise_template(copies)[0].numpy()
    inner = (slice(4, -4),) * 3                                     # away from the edges a shift brings in
    assert np.abs(template - pattern)[inner].mean() < 0.5 * np.abs(mean - pattern)[inner].mean()


def _twins(n=3):
    """Healthy twins (4 contrasts each, one anatomy per twin, moved by its own shift)."""
    pattern = _pattern(2)
    shifts = ((1.0, 0, -1.0), (-1.0, 1.0, 0), (0, -1.0, 1.0), (0.5, 0.5, 0.5))[:n]
    return [torch.from_numpy(np.stack([(0.2 + 0.2 * c) * _shifted(pattern, s) for c in range(4)])) for s in shifts], \
        pattern


def test_the_registered_prior_fills_a_new_case_better_than_the_harmonic_fill():
    twins, pattern = _twins()
    prior = TemplateFillPrior(4, registered=True)
    prior.fit(twins)
    truth = 0.1 + 0.5 * _shifted(pattern, (1.0, 1.0, -0.5))        # contrast 1 of a new case, its own gain
    hole = _hole()
    mask = torch.from_numpy(hole.astype(np.float32))[None, None]
    image = torch.from_numpy(truth)[None, None]
    conditions = torch.cat([image * (1 - mask) - mask, mask, torch.zeros_like(mask)], dim=1)
    filled = prior(conditions, None, torch.tensor([1]))[0, 0].numpy()
    assert np.array_equal(filled[~hole], truth[~hole])               # known voxels exactly as they were
    harmonic = harmonic_fill(truth, hole)
    assert np.abs(filled - truth)[hole].mean() < 0.5 * np.abs(harmonic - truth)[hole].mean()
    with torch.autocast("cpu", dtype=torch.bfloat16):               # as the CPU's default sampler runs it
        in_bf16 = prior(conditions, None, torch.tensor([1]))[0, 0].numpy()
        warp = register(torch.from_numpy(pattern)[None], torch.from_numpy(truth)[None], torch.ones(hole.shape))
    assert np.array_equal(in_bf16, filled)                           # the prior is arithmetic: float32 throughout
    assert warp.affine.dtype == warp.displacement.dtype == torch.float32


def test_the_registered_prior_registers_on_each_lattice_asked_for_and_takes_the_mean_of_the_warped_atlases(
        monkeypatch):
    prior = TemplateFillPrior(1, registered=True)
    prior.use_atlas(torch.from_numpy(_pattern())[None])
    seen = []

    def shift_by_lattice(moving, fixed, weight, *, control, smooth):     # a known warp per lattice
        seen.append(control)
        affine = torch.eye(3, 4)
        affine[0, 3] = 0.05 * control                                     # normalised: a shift of ~0.5 voxel per unit
        return Warp(affine, torch.zeros(1, 3, 2, 2, 2))

    monkeypatch.setattr(template_prior, "register", shift_by_lattice)
    image = torch.from_numpy(_pattern(1))[None]
    weight = torch.ones(SIZE, SIZE, SIZE)
    assert len(prior.case_warps(image, weight, 0)) == 1 and seen == [template_prior.CASE_WARP_CONTROL]
    seen.clear()
    warps = prior.case_warps(image, weight, 0, FINE_WARP_CONTROLS)
    assert tuple(seen) == FINE_WARP_CONTROLS and len(seen) > 1
    registered = prior.warped_atlas(warps, 0, image.shape[1:])
    singles = [apply_warp(prior.atlas[None], shift_by_lattice(None, None, None, control=c, smooth=0))[0, 0]
               for c in FINE_WARP_CONTROLS]
    torch.testing.assert_close(registered, torch.stack(singles).mean(0))
    assert all((registered - single).abs().max() > 0.01 for single in singles)   # the lattices' warps differ


def test_a_module_with_the_registered_prior_saves_its_atlas_and_the_switch(tmp_path):
    backbone = _backbone()
    hub.save_pretrained(backbone, tmp_path / "backbone")
    twins = [t[:, 4:20, 4:20, 4:20] for t in _twins(2)[0]]              # the test backbone's 16^3 grid
    seg = torch.zeros(16, 16, 16, dtype=torch.int64)
    seg[5:10, 5:10, 5:10] = 2
    cases = [CaseArrays(f"c{i}", h + 0.1, healthy=h, seg=seg) for i, h in enumerate(twins)]
    module = build_conditioner("vcm", backbone, {**INPAINTING, "prior_registered": True})
    module.prepare(cases)
    assert module.prior.atlas.shape == (4, 16, 16, 16)
    hub.save_pretrained(module, tmp_path / "m")
    loaded = hub.from_pretrained(tmp_path / "m")
    assert loaded.prior.registered and loaded.config.prior_registered
    assert torch.equal(loaded.prior.atlas, module.prior.atlas.half().float())
    plain = build_conditioner("vcm", backbone, INPAINTING)
    plain.prepare(cases)
    assert "prior.atlas" not in plain.state_dict()                    # the models saved before it load as they were


@pytest.mark.parametrize("task_name", ["inpainting", "synthesis"])
def test_the_gate_refit_finds_the_rows_where_the_modules_own_loss_is_least(task_name):
    from volgen.training.config import DataConfig
    from volgen.training.examples import make_example
    from volgen.training.gate_refit import refit_gate
    from volgen.training.objectives import prediction_target

    backbone = _backbone()
    twins = [t[:, 4:20, 4:20, 4:20] for t in _twins(2)[0]]
    if task_name == "inpainting":
        module = build_conditioner("vcm", backbone, {**INPAINTING, "gate_buckets": 4})
        seg = torch.zeros(16, 16, 16, dtype=torch.int64)
        seg[5:10, 5:10, 5:10] = 2
        cases = [CaseArrays(f"c{i}", h + 0.1, healthy=h, seg=seg) for i, h in enumerate(twins)]
    else:                   # synthesis cases carry no twins or labels, and the module makes the whole volume
        module = build_conditioner("vcm", backbone, {**SYNTHESIS, "gate_buckets": 4})
        cases = [CaseArrays(f"c{i}", h + 0.1 * h ** 2) for i, h in enumerate(twins)]
    torch.nn.init.normal_(module.gate.weight, std=0.05)               # a trained gate is not zero
    module.prepare(cases)
    data = DataConfig(root="unused", crop=[16, 16, 16])
    table = refit_gate(module, cases[:1], data, task_name, sampler_steps=1, seed=3, progress=False)
    assert torch.equal(module.gate_bias, table)
    # the same example and noise again, scored through the module's own forward
    gen = torch.Generator().manual_seed(3)
    batch = {"images": cases[0].images[None]}
    if task_name == "inpainting":
        batch.update(healthy=cases[0].healthy[None], seg=cases[0].seg[None, None])
    target, cond = make_example("module", task_name, batch, data, gen, labelled=True)
    denoiser = backbone.denoiser
    z0 = backbone.codec.encode(target)
    t = torch.as_tensor(denoiser.schedule.timesteps(1)).reshape(1).to(denoiser.schedule.timestep_dtype)
    eps = torch.randn(z0.shape, generator=gen)
    alpha, sigma = denoiser.alpha_sigma(t, z0)
    x_t = alpha * z0 + sigma * eps
    goal = prediction_target(z0, eps, alpha, sigma, denoiser.parameterization)
    region = torch.nn.functional.adaptive_max_pool3d(cond["conditions"][:, 1:2], z0.shape[2:]) \
        if task_name == "inpainting" else torch.ones_like(z0[:, :1])
    row = int(module._bucket(t)[0])

    def loss():
        with torch.no_grad():
            out = module(x_t, t, conditions=cond["conditions"], class_labels=cond["class_labels"])
        return float((region * (out - goal) ** 2).sum())

    best = loss()
    for step in (0.02, -0.02):
        with torch.no_grad():
            module.gate_bias[row] += step
        assert loss() > best
        with torch.no_grad():
            module.gate_bias[row] -= step
    untouched = [r for r in range(4) if r != row]
    assert torch.equal(table[untouched], torch.zeros(3, table.shape[1]))     # rows no timestep visits are kept


def test_the_atlas_is_saved_as_its_head_voxels_and_a_bit_mask_and_loads_back_whole():
    prior = TemplateFillPrior(4, registered=True)
    atlas = torch.full((4, 13, 9, 11), -1.0)
    atlas[:, 3:9, 2:7, 4:10] = torch.rand(4, 6, 5, 6)                 # a head amid background
    atlas[2, 0, 0, 0] = 0.3                                            # one contrast alone leaves the background
    prior.atlas = atlas
    state = prior.state_dict()
    assert "atlas" not in state and state["atlas_values"].shape == (4, 6 * 5 * 6 + 1)
    assert np.array_equal(state["atlas_support"].numpy(), np.packbits((atlas != -1).any(0).flatten().numpy()))
    loaded = TemplateFillPrior(4, registered=True)
    loaded.load_state_dict(state)
    assert torch.equal(loaded.atlas, atlas.half().float())                # float16, as the basis
