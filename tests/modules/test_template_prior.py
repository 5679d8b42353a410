"""The template-guided fill prior: its fit against a numpy mean, its fill against scipy's harmonic fill of the
difference, centring on other grids, saving with the module, and the module's identity at initialisation."""
import numpy as np
import torch

from volgen import hub
from volgen.baselines import harmonic_fill
from volgen.modules import build_conditioner
from volgen.modules.lesion_profile import depth_bins
from volgen.modules.template_prior import TemplateFillPrior
from volgen.training.data import CaseArrays

from tests.modules.test_vcm_codec_path import SETTINGS, _backbone

INPAINTING = {**SETTINGS, "conditions": ("masked", "mask", "insert_lesion"), "prior": "template_fill"}


def _healthy(n=3, shape=(4, 16, 16, 16), seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.rand(*shape, generator=g) * 1.6 - 0.8 for _ in range(n)]


def _numpy_template(volumes, contrast):
    mean = np.mean([v[contrast].double().numpy() for v in volumes], axis=0)
    small = mean.reshape(8, 2, 8, 2, 8, 2).mean(axis=(1, 3, 5))
    return small


def test_the_template_is_the_mean_healthy_image_at_half_resolution():
    volumes = _healthy()
    prior = TemplateFillPrior(4)
    assert not prior.fitted
    prior.fit(volumes)
    assert prior.fitted and prior.template.shape == (4, 8, 8, 8)
    for contrast in range(4):
        np.testing.assert_allclose(prior.template[contrast].double().numpy(), _numpy_template(volumes, contrast),
                                   atol=1e-6)


def test_the_fill_is_the_template_plus_scipys_harmonic_fill_of_the_difference():
    volumes = _healthy()
    prior = TemplateFillPrior(4)
    prior.fit(volumes)
    g = torch.Generator().manual_seed(5)
    image = torch.rand(2, 1, 16, 16, 16, generator=g) * 2 - 1
    mask = torch.zeros_like(image)
    mask[0, 0, 4:11, 3:9, 5:13] = 1
    mask[1, 0, 0:5, 9:16, 6:10] = 1                          # touches the volume's edge
    labels = torch.tensor([3, 1])
    out = prior(torch.cat([image * (1 - mask) - mask, mask, torch.zeros_like(mask)], dim=1), None, labels)
    assert torch.equal(out * (1 - mask), image * (1 - mask))   # known voxels untouched
    full = prior.template_for(labels, (16, 16, 16), image)
    # the full-grid template is the stored one, trilinearly upsampled (a constant block stays constant)
    assert full.shape == (2, 1, 16, 16, 16)
    for i in range(2):
        t = full[i, 0].double().numpy()
        expected = t + harmonic_fill(image[i, 0].double().numpy() - t, mask[i, 0].numpy() > 0)
        np.testing.assert_allclose(out[i, 0].double().numpy(), expected, atol=1e-4)


def test_a_background_template_gives_the_plain_harmonic_fill_and_other_grids_are_centred():
    prior = TemplateFillPrior(1)
    prior.fit([torch.full((1, 8, 8, 8), -1.0)])
    image = torch.rand(1, 1, 12, 10, 14, generator=torch.Generator().manual_seed(1)) * 2 - 1
    mask = torch.zeros_like(image)
    mask[0, 0, 3:8, 2:7, 4:10] = 1
    out = prior(torch.cat([image * (1 - mask) - mask, mask], dim=1), None, None)
    expected = harmonic_fill(image[0, 0].double().numpy(), mask[0, 0].numpy() > 0)
    np.testing.assert_allclose(out[0, 0].double().numpy(), expected, atol=1e-4)
    # a template fitted on 8^3 placed in a 12 x 6 x 8 grid: centred, padded with background, cropped
    marked = TemplateFillPrior(1)
    volume = torch.full((1, 8, 8, 8), -1.0)
    volume[0, 2:4, 2:4, 2:4] = 0.5                           # one 2^3 block: one cell of the 4^3 template
    marked.fit([volume])
    placed = marked.template_for(None, (12, 6, 8), torch.zeros(1))[0, 0]
    assert placed.shape == (12, 6, 8)
    assert torch.all(placed[:2] == -1) and torch.all(placed[-2:] == -1)       # 2 slices of padding each side
    reference = torch.nn.functional.interpolate(marked.template[None, :1], scale_factor=2, mode="trilinear",
                                                align_corners=False)[0, 0]
    assert torch.allclose(placed[2:10], reference[:, 1:7, :])                # cropped by one on each side


def test_the_module_fits_the_template_on_healthy_twins_starts_as_the_identity_and_saves_it(tmp_path):
    backbone = _backbone()
    module = build_conditioner("vcm", backbone, INPAINTING)
    healthy = _healthy(2)
    seg = torch.zeros(16, 16, 16, dtype=torch.int64)
    seg[5:10, 5:10, 5:10] = 2
    cases = [CaseArrays(f"c{i}", h + 0.1, healthy=h, seg=seg) for i, h in enumerate(healthy)]
    module.prepare(cases)
    np.testing.assert_allclose(module.prior.template[2].double().numpy(), _numpy_template(healthy, 2), atol=1e-6)
    # the lesion profile: every case's images are its twins + 0.1, so at every depth the tumour adds 0.1
    grown = np.zeros((16, 16, 16), bool)
    grown[4:11, 4:11, 4:11] = True                     # the tumour dilated by one voxel, as the profile is fitted
    seen = np.unique(depth_bins(grown)[grown])
    assert torch.allclose(module.prior.lesion.profile[:, seen], torch.full((4, len(seen)), 0.1))
    g = torch.Generator().manual_seed(2)
    x_t, cond = torch.randn(1, 8, 8, 8, 8, generator=g), torch.rand(1, 3, 16, 16, 16, generator=g)
    t, labels = torch.tensor([500]), torch.tensor([3])
    with torch.no_grad():
        assert torch.allclose(module(x_t, t, conditions=cond, class_labels=labels),
                              backbone.network(x_t, t, class_labels=labels), atol=1e-6)
    hub.save_pretrained(backbone, tmp_path / "backbone")
    hub.save_pretrained(module, tmp_path / "m")
    loaded = hub.from_pretrained(tmp_path / "m")
    assert loaded.prior.fitted
    assert torch.equal(loaded.prior.template, module.prior.template)
    assert torch.equal(loaded.prior.lesion.profile, module.prior.lesion.profile)


def test_the_basis_spans_the_training_twins_with_unit_variance_scores():
    volumes = _healthy(4)
    prior = TemplateFillPrior(4, components=3)                # n - 1 components span every centred twin
    prior.fit(volumes)
    assert prior.basis.shape == (4, 3, 8, 8, 8)
    for contrast in range(4):
        basis = prior.basis[contrast].double().flatten(1).numpy()                     # (3, 512)
        centred = np.stack([v[contrast].double().numpy().reshape(8, 2, 8, 2, 8, 2).mean(axis=(1, 3, 5)).ravel()
                            for v in volumes]) - _numpy_template(volumes, contrast).ravel()
        scores, *_ = np.linalg.lstsq(basis.T, centred.T, rcond=None)                   # (3, 4)
        np.testing.assert_allclose(basis.T @ scores, centred.T, atol=1e-5)            # in the span
        np.testing.assert_allclose((scores ** 2).mean(axis=1), 1.0, rtol=1e-4)        # unit variance each


def test_a_case_in_the_span_of_the_basis_is_filled_exactly_and_the_mean_template_is_not():
    prior = TemplateFillPrior(4, components=2, shell=2, ridge=0.0)
    prior.fit(_healthy(3))
    labels = torch.tensor([2])
    mean = prior.template_for(labels, (16, 16, 16), torch.zeros(1))
    basis = torch.nn.functional.interpolate(prior.basis[2][None], scale_factor=2, mode="trilinear",
                                            align_corners=False)[0]
    case = mean + (0.7 * basis[0] - 1.3 * basis[1])[None, None]
    mask = torch.zeros_like(case)
    mask[0, 0, 4:12, 5:11, 3:12] = 1
    conditions = torch.cat([case * (1 - mask) - mask, mask, torch.zeros_like(mask)], dim=1)
    assert torch.allclose(prior(conditions, None, labels), case, atol=1e-4)
    prior.components = 0                                      # the mean template alone misses the case's own part
    assert (prior(conditions, None, labels) - case).abs().max() > 0.05


def test_a_module_with_components_saves_its_basis_sparse_in_half_precision_and_one_without_saves_none(tmp_path):
    backbone = _backbone()
    hub.save_pretrained(backbone, tmp_path / "backbone")
    healthy = _healthy(2)
    seg = torch.zeros(16, 16, 16, dtype=torch.int64)
    seg[5:10, 5:10, 5:10] = 2
    cases = [CaseArrays(f"c{i}", h + 0.1, healthy=h, seg=seg) for i, h in enumerate(healthy)]
    for components in (1, 0):
        module = build_conditioner("vcm", backbone, {**INPAINTING, "prior_components": components})
        module.prepare(cases)
        state = module.state_dict()
        assert "prior.basis" not in state and ("prior.basis_values" in state) == (components > 0)
        if components:
            assert state["prior.basis_values"].dtype == torch.float16
        hub.save_pretrained(module, tmp_path / f"m{components}")
        loaded = hub.from_pretrained(tmp_path / f"m{components}")
        assert loaded.prior.basis.shape == module.prior.basis.shape
        assert torch.equal(loaded.prior.basis, module.prior.basis.half().float())


def test_the_basis_is_saved_as_its_nonzero_voxels_and_a_dense_save_still_loads():
    volumes = _healthy(4)
    for v in volumes:
        v[:, :4] = -1.0                                       # background in every twin: zero in every component
    prior = TemplateFillPrior(4, components=3)
    prior.fit(volumes)
    state = prior.state_dict()
    support = state["basis_support"].bool()
    assert support.shape == (8, 8, 8) and not support[:2].any() and support[2:].all()
    assert state["basis_values"].shape == (4, 3, 6 * 8 * 8)
    for saved in (state, {**{k: v for k, v in state.items() if not k.startswith("basis_")},
                          "basis": prior.basis.half()}):          # the sparse form, and the dense one of older saves
        loaded = TemplateFillPrior(4, components=3)
        loaded.load_state_dict(dict(saved))
        assert torch.equal(loaded.basis, prior.basis.half().float())


def test_filling_the_whole_batch_at_once_equals_filling_item_by_item(monkeypatch):
    """A GPU fills and fits every item in one box around all the masks (no per-item waits for the device); the CPU
    goes item by item. Both must give the same fill, with an item without a mask in the batch."""
    import volgen.modules.prior as prior_module
    import volgen.modules.template_prior as template_module

    prior = TemplateFillPrior(4, components=2, shell=2)
    prior.fit(_healthy(3))
    image = torch.stack(_healthy(3, seed=1))[:, :1]
    mask = torch.zeros_like(image)
    mask[0, 0, 2:7, 3:9, 4:8] = 1
    mask[1, 0, 9:15, 10:16, 1:6] = 1                          # far from the first: the shared box spans both
    conditions = torch.cat([image * (1 - mask) - mask, mask, torch.zeros_like(mask)], dim=1)
    labels = torch.tensor([0, 3, 1])
    one_by_one = prior(conditions, None, labels)
    for module in (prior_module, template_module):
        monkeypatch.setattr(module, "item_groups", lambda batch: [slice(None)])
    at_once = prior(conditions, None, labels)
    assert torch.allclose(at_once, one_by_one, atol=1e-5)
    box = (slice(None), slice(0, 1))                          # and testing for convergence only every 16 iterations
    every = [prior_module.harmonic_fill(image[box], mask[box] > 0.5, 1e-5, 2000, check_every=n) for n in (1, 16)]
    assert torch.allclose(every[0], every[1], atol=1e-5)


def test_fine_tuning_from_a_saved_module_copies_its_fitted_template_whole(tmp_path):
    """init_from a module whose template and basis were fitted (their size set by the data): the fresh module, whose
    buffers are still empty, gets them whole, so a fine-tune that keeps the prior (train.refit_prior=false) keeps it
    rather than refitting it on the run's fewer cases."""
    from volgen.training.loop import _init_from

    backbone = _backbone()
    hub.save_pretrained(backbone, tmp_path / "backbone")
    healthy = _healthy(3)
    seg = torch.zeros(16, 16, 16, dtype=torch.int64)
    seg[5:10, 5:10, 5:10] = 2
    fitted = build_conditioner("vcm", backbone, {**INPAINTING, "prior_components": 2})
    fitted.prepare([CaseArrays(f"c{i}", h + 0.1, healthy=h, seg=seg) for i, h in enumerate(healthy)])
    hub.save_pretrained(fitted, tmp_path / "saved")
    fresh = build_conditioner("vcm", backbone, {**INPAINTING, "prior_components": 2})
    assert not fresh.prior.fitted
    _init_from(fresh, str(tmp_path / "saved"))
    assert fresh.prior.fitted
    assert torch.equal(fresh.prior.template, fitted.prior.template)
    assert torch.equal(fresh.prior.basis, fitted.prior.basis.half().float())
