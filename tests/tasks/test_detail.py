"""Detail transfer (volgen/tasks/detail.py, on by default for a case finer than the model grid): on a 1 mm case the
module's estimate is fitted locally as a linear combination of its guides (its prior and the conditions) on the
model grid, and the fit is applied to the 1 mm guides, written on the case's own grid."""
import numpy as np
import pytest
import torch

from tests.helpers import save_nifti, smooth_volume, write_brats_case
from volgen import hub
from volgen.io.contrasts import MRI_CONTRASTS
from volgen.io.preprocess import MEDIAN_LEVEL, background_level
from volgen.modules import VCM, VCMConfig
from volgen.ops import GuidedFit, guided_filter, local_linear_fit, window_fit
from volgen.tasks.detail import at_median_level, transfer_detail
from volgen.io.volume import Volume
from volgen.tasks.noise_match import noise_level, relative_noise
from volgen.tasks.synthesis import synthesize, with_scans_noise


def test_the_local_fit_recovers_a_linear_combination_and_matches_a_windows_least_squares():
    rng = np.random.default_rng(0)
    guides = [rng.normal(size=(12, 12, 12)) for _ in range(2)]
    exact = 2.0 * guides[0] - 0.5 * guides[1] + 0.3
    (a0, a1), b = local_linear_fit(guides, exact, radius=1, eps=1e-9)
    inner = (slice(3, -3),) * 3                      # away from the edge's replicated windows
    for got, want in ((a0, 2.0), (a1, -0.5), (b, 0.3)):
        np.testing.assert_allclose(got[inner], want, atol=1e-5)
    noisy = exact + rng.normal(size=exact.shape)               # each window's fit: ordinary least squares
    (c0, c1), c = window_fit(guides, noisy, radius=1, eps=1e-12)
    window = (slice(4, 7), slice(5, 8), slice(6, 9))                        # the 3^3 window around (5, 6, 7)
    design = np.stack([guides[0][window].ravel(), guides[1][window].ravel(), np.ones(27)], 1)
    want = np.linalg.lstsq(design, noisy[window].ravel(), rcond=None)[0]
    np.testing.assert_allclose([c0[5, 6, 7], c1[5, 6, 7], c[5, 6, 7]], want, rtol=1e-6, atol=1e-6)


def test_a_guided_fit_filters_each_channel_by_the_guides_and_keeps_what_they_explain():
    rng = np.random.default_rng(1)
    guides = rng.normal(size=(2, 10, 10, 10))
    image = torch.from_numpy(rng.normal(size=(1, 2, 10, 10, 10))).to(torch.float64)
    image[0, 1] = torch.from_numpy(0.5 * guides[0] + guides[1] - 0.2)
    fitted = GuidedFit(torch.from_numpy(guides), radius=1, eps=1e-6)(image)
    assert fitted.shape == image.shape and fitted.dtype == torch.float64
    np.testing.assert_allclose(fitted[0, 0].numpy(), guided_filter(list(guides), image[0, 0].numpy(), 1, 1e-6),
                               atol=1e-5)
    np.testing.assert_allclose(fitted[0, 1].numpy(), image[0, 1].numpy(), atol=1e-4)
    assert not np.allclose(fitted[0, 0].numpy(), image[0, 0].numpy(), atol=0.1)


def _tiny_synthesis_module(tmp_path, tiny_models):
    backbone = hub.from_pretrained(tiny_models["backbone"])
    module = VCM(backbone, VCMConfig(conditions=MRI_CONTRASTS, channels=(8, 16), encoder_channels=(8,), features=8,
                                     head_channels=8, num_head_channels=8, norm_num_groups=8, prior="regression"))
    module.prior.fit([torch.rand(4, 16, 16, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1])
    hub.save_pretrained(module, tmp_path / "synthesis")
    return str(tmp_path / "synthesis")


def test_a_1mm_case_gets_the_detail_by_default_on_its_own_grid(tmp_path, tiny_models):
    folder = write_brats_case(tmp_path, "fine", shape=(40, 44, 36), affine=np.diag([1.0, 1.0, 1.0, 1.0]))
    cases = {c: folder / f"fine-{c}.nii.gz" for c in ("t1n", "t2w", "t2f")}
    settings = dict(target="t1c", model=_tiny_synthesis_module(tmp_path, tiny_models), steps=2, progress=False)
    plain = synthesize(cases, detail=False, **settings).outputs["t1c"]
    default = synthesize(cases, **settings)
    fine = synthesize(cases, detail=True, **settings).outputs["t1c"]
    assert default.info["detail_transfer"] is True
    np.testing.assert_array_equal(default.outputs["t1c"].array, fine.array)
    assert not np.array_equal(plain.array, fine.array)
    assert fine.shape == plain.shape == (40, 44, 36) and fine.array.dtype == np.float32
    np.testing.assert_array_equal(fine.affine, plain.affine)
    assert 0.0 <= fine.array.min() and fine.array.max() <= 1.0
    head = np.any([v.array > background_level(v.array) for v in default.inputs.values()], axis=0)
    assert abs(np.median(fine.array[head & (fine.array > 0)]) - MEDIAN_LEVEL["t1c"]) < 1e-3


def test_a_sample_fitted_to_noisy_1mm_conditions_gets_their_noise_relative_to_their_signal():
    """The fit to the 1 mm conditions smooths their noise away; a sample (for users who want the scan's look) gets
    white noise up to the conditions' noise level per unit of their median, times its own head median."""
    rng = np.random.default_rng(0)
    conditions = {}
    for i, (c, relative_sd) in enumerate((("t1n", 0.02), ("t2w", 0.04), ("t2f", 0.03))):     # scans with noise
        image = smooth_volume((40, 44, 36), seed=i) + 100.0
        conditions[c] = Volume(image + relative_sd * np.median(image) * rng.standard_normal(image.shape), np.eye(4))
    head = np.zeros((40, 44, 36), bool)
    head[4:36, 4:40, 4:32] = True
    smooth = np.where(head, smooth_volume((40, 44, 36), seed=7) / 1000 * 0.2 + 0.4, 0.0).astype(np.float32)
    smooth[10, 10, 10] = 0.999                                    # near the top: the noise may not take it past 1
    relative = relative_noise([v.array for v in conditions.values()], head)
    noisy, sd = with_scans_noise(smooth, head, relative, seed=0, index=0)
    wanted = 0.03 * np.median(smooth[head])                       # the middle of 0.02, 0.03 and 0.04
    assert noise_level(noisy, head) == pytest.approx(wanted, rel=0.1) and sd == pytest.approx(wanted, rel=0.1)
    assert np.all(noisy[~head] == 0) and noisy.max() <= 1.0 and noisy.dtype == np.float32
    again, _ = with_scans_noise(smooth, head, relative, seed=0, index=0)
    np.testing.assert_array_equal(noisy, again)                  # the seed decides the noise


def test_only_a_sample_on_a_finer_grid_gets_the_noise(tmp_path, tiny_models):
    settings = dict(target="t1c", model=_tiny_synthesis_module(tmp_path, tiny_models), steps=2, progress=False)
    for name, spacing in (("fine", 1.0), ("coarse", 2.0)):
        shape = (40, 44, 36) if spacing == 1.0 else (20, 22, 18)
        folder = write_brats_case(tmp_path, name, shape=shape, affine=np.diag([spacing] * 3 + [1.0]))
        cases = {c: folder / f"{name}-{c}.nii.gz" for c in ("t1n", "t2w", "t2f")}
        assert "matched_noise_sd" not in synthesize(cases, **settings).info
        assert ("matched_noise_sd" in synthesize(cases, estimate="sample", **settings).info) == (spacing == 1.0)


def test_a_fine_estimate_is_rescaled_to_put_its_heads_median_at_the_contrasts_level():
    rng = np.random.default_rng(0)
    estimate = np.zeros((20, 20, 20), np.float32)
    head = np.zeros(estimate.shape, bool)
    head[4:16, 4:16, 4:16] = True
    estimate[head] = rng.uniform(0.3, 0.9, head.sum())
    estimate[2, 2, 2] = 0.95                           # outside the head: rescaled, not counted
    out = at_median_level(estimate, head, "t2f")
    assert abs(np.median(out[head]) - MEDIAN_LEVEL["t2f"]) < 1e-3
    ratio = out[head] / estimate[head]
    np.testing.assert_allclose(ratio, ratio[0], rtol=1e-5)         # one scale for every voxel: nothing else moves
    assert ratio[0] > 1 and out[2, 2, 2] == 1.0                    # scaled past 1: clipped to the range
    assert out.dtype == np.float32 and out[0, 0, 0] == 0


def test_a_case_on_the_model_grid_or_with_thick_slices_is_resampled_as_before(tmp_path, tiny_models):
    settings = dict(target="t1c", model=_tiny_synthesis_module(tmp_path, tiny_models), steps=2, progress=False)
    for name, spacing in (("coarse", (2.0, 2.0, 2.0)), ("thick", (1.0, 1.0, 3.0))):
        folder = write_brats_case(tmp_path, name, shape=(20, 22, 18), affine=np.diag([*spacing, 1.0]))
        cases = {c: folder / f"{name}-{c}.nii.gz" for c in ("t1n", "t2w", "t2f")}
        default = synthesize(cases, **settings)
        assert default.info["detail_transfer"] is False
        np.testing.assert_array_equal(default.outputs["t1c"].array,
                                      synthesize(cases, detail=False, **settings).outputs["t1c"].array)


def test_the_model_grid_mean_is_fitted_to_the_conditions_except_before_a_detail_transfer(tmp_path, tiny_models,
                                                                                          monkeypatch):
    """The mean is refined by the present conditions on the model grid (TaskSpec Synthesis); on a 1 mm case the
    detail transfer does that fit at 1 mm instead, so the model grid's is skipped."""
    from volgen import ops
    guides = []
    original = ops.GuidedFit.__call__

    def counted(self, image):
        guides.append(len(self.guides))
        return original(self, image)
    monkeypatch.setattr(ops.GuidedFit, "__call__", counted)
    model = _tiny_synthesis_module(tmp_path, tiny_models)
    for name, spacing in (("coarse", 2.0), ("fine", 1.0)):
        folder = write_brats_case(tmp_path, name, shape=(24, 26, 20), affine=np.diag([spacing] * 3 + [1.0]))
        cases = {c: folder / f"{name}-{c}.nii.gz" for c in ("t1n", "t2f")}
        synthesize(cases, target="t1c", model=model, steps=2, progress=False)
        assert guides == [2]                             # the coarse case's two conditions; not again at 1 mm


def test_the_prior_guides_every_target(tmp_path, tiny_models, monkeypatch):
    import volgen.tasks.detail as detail
    calls = []

    def counted(model, volumes, target, spec_inputs):
        calls.append(target)
        return original(model, volumes, target, spec_inputs)
    original = detail._prior
    monkeypatch.setattr(detail, "_prior", counted)
    folder = write_brats_case(tmp_path, "fine", shape=(24, 26, 20), affine=np.diag([1.0, 1.0, 1.0, 1.0]))
    model = _tiny_synthesis_module(tmp_path, tiny_models)
    for target in ("t1c", "t2f"):
        cases = {c: folder / f"fine-{c}.nii.gz" for c in MRI_CONTRASTS if c != target}
        synthesize(cases, target=target, model=model, steps=2, progress=False)
    assert calls == ["t1c", "t1c", "t2f", "t2f"]              # the model grid's prior and the 1 mm grid's


def test_a_module_without_a_prior_is_guided_by_the_conditions_alone(tmp_path, tiny_models):
    folder = write_brats_case(tmp_path, "fine", shape=(24, 26, 20), affine=np.diag([1.0, 1.0, 1.0, 1.0]))
    cases = {c: folder / f"fine-{c}.nii.gz" for c in ("t1n", "t1c", "t2w")}
    settings = dict(target="t2f", model=str(tiny_models["synthesis"]), steps=2, progress=False)
    result = synthesize(cases, **settings)
    assert result.info["detail_transfer"] is True and result.outputs["t2f"].shape == (24, 26, 20)
    assert not np.array_equal(result.outputs["t2f"].array,
                              synthesize(cases, detail=False, **settings).outputs["t2f"].array)


def test_an_estimate_that_follows_a_condition_comes_back_with_that_conditions_1mm_detail(tmp_path, tiny_models,
                                                                                       monkeypatch):
    """The module's 2 mm estimate made 0.6 t1n + 0.1 (the sampler replaced): the 1 mm output is 0.6 t1n + 0.1 of
    the 1 mm t1n, voxel-scale detail included, where the resampled 2 mm estimate is blurred."""
    from volgen.tasks.job import Sampling
    from volgen.tasks.synthesis import to_unit

    def follows_t1n(self, model, shape, conditions, **kwargs):
        return (0.6 * conditions[0, 0] + 0.1).numpy(), None
    monkeypatch.setattr(Sampling, "run", follows_t1n)
    folder = write_brats_case(tmp_path, "fine", shape=(40, 44, 36), affine=np.diag([1.0, 1.0, 1.0, 1.0]))
    cases = {c: folder / f"fine-{c}.nii.gz" for c in ("t1n", "t2w", "t2f")}
    import volgen.tasks.synthesis as synthesis
    scales = {}

    def spy(model, prepared, *args, **kwargs):
        scales.update({c: p.scale for c, p in prepared.items()})
        return transfer_detail(model, prepared, *args, **kwargs)
    monkeypatch.setattr(synthesis, "transfer_detail", spy)
    settings = dict(target="t1c", model=_tiny_synthesis_module(tmp_path, tiny_models), progress=False)
    result = synthesize(cases, detail=True, **settings)
    plain = synthesize(cases, detail=False, **settings).outputs["t1c"].array
    fine = result.outputs["t1c"].array
    # on the job's scale: every output of the detail transfer has its head's median at the contrast's level
    head_mask = np.any([v.array > background_level(v.array) for v in result.inputs.values()], axis=0)
    want = at_median_level(to_unit(0.6 * scales["t1n"].forward(result.inputs["t1n"].array) + 0.1), head_mask, "t1c")
    plain = at_median_level(plain, head_mask, "t1c")
    inner = (slice(6, -6),) * 3
    head = (fine > 0)[inner]
    error_fine = np.abs(fine - want)[inner][head].mean()
    error_plain = np.abs(plain - want)[inner][head].mean()
    assert error_fine < 0.5 * error_plain, (error_fine, error_plain)    # 0.0051 against 0.0153 when written
