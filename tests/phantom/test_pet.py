import numpy as np
import pytest

from volgen.io import read_volume
from volgen.kinetics import (FDG_60MIN, FrameSchedule, default_tstar, feng_input, input_samples, patlak_fit,
                             patlak_frames, patlak_regressors)
from volgen.phantom import read_tsv
from volgen.phantom.pet import PetSpec, exponential_regressors, simulate_pet


def test_feng_input_canonical_form():
    t = np.linspace(0, 60, 3601)
    cp = feng_input(t)
    assert cp[0] == 0.0 and np.all(cp >= 0)
    assert 0.1 < t[np.argmax(cp)] < 1.0                       # bolus peak within the first minute
    # tail: the slow exponentials, A2 e^{l2 t} + A3 e^{l3 t}, once the first term has died out
    assert cp[-1] == pytest.approx(21.8798 * np.exp(-0.1191 * 60) + 20.8113 * np.exp(-0.0104 * 60), rel=1e-9)


def test_regressors_by_hand_for_a_constant_input():
    frames = FrameSchedule(np.array([0.0, 2.0, 5.0]), np.array([2.0, 5.0, 9.0]))
    t = np.linspace(0, 10, 11)
    reg = patlak_regressors(t, np.full_like(t, 3.0), frames)
    # int_0^t 3 ds = 3t, mean over [a, b] = 3 (a + b) / 2; mean of Cp = 3
    np.testing.assert_allclose(reg[:, 0], 3.0 * (frames.start + frames.end) / 2)
    np.testing.assert_allclose(reg[:, 1], 3.0)


def test_regressors_match_dense_integration_of_the_analytic_curve():
    frames = FrameSchedule.from_durations(FDG_60MIN)
    t, cp = input_samples(60.0, 1.0)
    reg = patlak_regressors(t, cp, frames)
    fine = np.linspace(0, 60, 360001)
    c = feng_input(fine)
    cum = np.concatenate([[0.0], np.cumsum((c[1:] + c[:-1]) / 2 * np.diff(fine))])
    # 1 s samples cut the bolus peak a little (linear interpolation, error ~ h^2 f''); the bolus error carries into int Cp (~2e-5)
    for f, rel in ((3, 2e-3), (15, 1e-4), (28, 5e-5)):
        sel = (fine >= frames.start[f] - 1e-12) & (fine <= frames.end[f] + 1e-12)
        assert reg[f, 0] == pytest.approx(np.trapezoid(cum[sel], fine[sel]) / frames.duration[f], rel=rel)
        assert reg[f, 1] == pytest.approx(np.trapezoid(c[sel], fine[sel]) / frames.duration[f], rel=max(rel, 1e-4))


def test_noiseless_phantom_frames_give_back_ki_and_v(phantom_dir, phantom_case):
    """Read what the phantom wrote (4D NIfTI + TSVs) and fit least-squares Patlak after the default t* (20 min):
    V is by definition the intercept of these frames; Ki is the 2TCM's (1 - vB) K1 k3 / (k2 + k3), which the late
    frames' slope approaches but does not reach exactly (the reversible compartment is still decaying)."""
    name = phantom_case.name
    frames = np.moveaxis(read_volume(phantom_dir / f"{name}-pet.nii.gz", allow_4d=True).array, -1, 0)
    schedule_tsv = read_tsv(phantom_dir / f"{name}-pet-frames.tsv")
    blood = read_tsv(phantom_dir / f"{name}-pet-input.tsv")
    schedule = FrameSchedule(schedule_tsv["frame_start_min"], schedule_tsv["frame_end_min"])
    reg = patlak_regressors(blood["time_min"], blood["plasma_activity"], schedule)
    assert default_tstar(schedule) == 20.0
    ki, v = patlak_fit(frames, reg, schedule.start, t_star=default_tstar(schedule))
    ki_true = read_volume(phantom_dir / f"{name}-pet-ki.nii.gz").array
    v_true = read_volume(phantom_dir / f"{name}-pet-v.nii.gz").array
    brain = phantom_case.brain > 0
    assert np.abs(v - v_true)[brain].max() < 1e-4 * v_true.max()
    gm = (phantom_case.fractions["gm"] > 0.95) & (phantom_case.seg == 0)
    assert ki[gm].mean() == pytest.approx(ki_true[gm].mean(), rel=0.03)
    assert ki_true[gm].mean() == pytest.approx(0.033, rel=0.15)      # grey matter Ki ~ 0.033 /min (Huang 1980)
    wm = (phantom_case.fractions["wm"] > 0.95) & (phantom_case.seg == 0)
    assert ki_true[wm].mean() < 0.7 * ki_true[gm].mean()         # white matter about half of grey
    early = patlak_fit(frames, reg, schedule.start, t_star=0.0)[0]        # t* matters: from t = 0 Ki is far off
    assert abs(early[gm].mean() / ki_true[gm].mean() - 1) > 0.1


def test_the_exponential_convolution_by_hand_for_a_constant_input():
    frames = FrameSchedule(np.array([0.0, 2.0, 5.0]), np.array([2.0, 5.0, 9.0]))
    t = np.linspace(0, 10, 601)
    a, b = frames.start, frames.end
    for kappa in (0.05, 0.3, 2.0):
        got = exponential_regressors(t, np.full_like(t, 3.0), frames, [kappa])[0]
        # (e^{-k t} * 3)(t) = 3 (1 - e^{-k t}) / k; its mean over [a, b]
        expected = 3.0 / kappa * ((b - a) - (np.exp(-kappa * a) - np.exp(-kappa * b)) / kappa) / (b - a)
        np.testing.assert_allclose(got, expected, rtol=1e-4)


def test_within_tissue_heterogeneity_and_the_psf():
    block = {"gm": np.ones((32, 32, 32), np.float32)}
    block.update({k: np.zeros_like(block["gm"]) for k in ("csf", "wm", "necrotic", "oedema", "enhancing")})
    flat = simulate_pet(block, 2.0, np.random.default_rng(0), PetSpec(jitter=0.0, dose=None, heterogeneity=0.0,
                                                                       psf_fwhm_mm=0.0))
    varied = simulate_pet(block, 2.0, np.random.default_rng(0), PetSpec(jitter=0.0, dose=None, psf_fwhm_mm=0.0))
    assert flat.ki.std() < 1e-6 * flat.ki.mean()
    assert 0.05 < varied.ki.std() / varied.ki.mean() < 0.5
    assert abs(varied.ki.mean() / flat.ki.mean() - 1) < 0.1       # log-normal fields with mean 1
    blurred = simulate_pet(block, 2.0, np.random.default_rng(0), PetSpec(jitter=0.0, dose=None, heterogeneity=0.0))
    # a 5 mm FWHM PSF (sigma 1.06 voxels) leaves the middle of a uniform block alone; at a face, with no activity
    # outside, a voxel keeps the taps at offsets >= 0 of the 1-D kernel: 0.5 + w0 / 2 = 0.69
    np.testing.assert_allclose(blurred.frames[-1][16, 16, 16], flat.frames[-1][16, 16, 16], rtol=1e-4)
    sigma = 5.0 / (2 * np.sqrt(2 * np.log(2))) / 2.0
    taps = np.exp(-0.5 * (np.arange(-4, 5) / sigma) ** 2)
    kept = taps[4:].sum() / taps.sum()
    assert blurred.frames[-1][0, 16, 16] == pytest.approx(kept * flat.frames[-1][0, 16, 16], rel=0.02)


def test_poisson_noise_scales_with_frame_duration_and_dose():
    block = {"gm": np.ones((40, 40, 40), np.float32)}
    block.update({k: np.zeros_like(block["gm"]) for k in ("csf", "wm", "necrotic", "oedema", "enhancing")})
    plain = dict(jitter=0.0, heterogeneity=0.0, psf_fwhm_mm=0.0, noise_fwhm_mm=0.0)
    spec = PetSpec(dose=1.0, **plain)
    study = simulate_pet(block, 2.0, np.random.default_rng(0), spec)
    clean = simulate_pet(block, 2.0, np.random.default_rng(0), PetSpec(dose=None, **plain))
    expected = clean.frames.reshape(len(clean.schedule), -1).mean(1)
    measured_var = study.frames.reshape(len(study.schedule), -1).var(1)
    # Poisson: var(counts / s) = mean / s, with s = duration x sensitivity x voxel mL x dose x decay
    lam = np.log(2) / 109.77
    decay = (np.exp(-lam * study.schedule.start) - np.exp(-lam * study.schedule.end)) / (lam * study.schedule.duration)
    s = study.schedule.duration * 60 * spec.sensitivity * 0.008 * decay
    late = study.schedule.start >= 5
    np.testing.assert_allclose(measured_var[late], expected[late] / s[late], rtol=0.05)
    np.testing.assert_allclose(study.frames.reshape(len(study.schedule), -1).mean(1)[late], expected[late], rtol=0.01)
    high_dose = simulate_pet(block, 2.0, np.random.default_rng(0), PetSpec(dose=4.0, **plain))
    ratio = high_dose.frames.reshape(len(study.schedule), -1).var(1)[late] / measured_var[late]
    np.testing.assert_allclose(ratio, 0.25, rtol=0.1)


def test_the_noise_is_spatially_correlated_and_keeps_its_variance():
    block = {"gm": np.ones((40, 40, 40), np.float32)}
    block.update({k: np.zeros_like(block["gm"]) for k in ("csf", "wm", "necrotic", "oedema", "enhancing")})
    plain = dict(jitter=0.0, heterogeneity=0.0, psf_fwhm_mm=0.0)
    white = simulate_pet(block, 2.0, np.random.default_rng(1), PetSpec(noise_fwhm_mm=0.0, **plain))
    coloured = simulate_pet(block, 2.0, np.random.default_rng(1), PetSpec(noise_fwhm_mm=4.0, **plain))
    clean = simulate_pet(block, 2.0, np.random.default_rng(1), PetSpec(dose=None, **plain))

    def neighbour_correlation(study):
        n = study.frames[-1] - clean.frames[-1]
        return np.corrcoef(n[:-1].ravel(), n[1:].ravel())[0, 1]

    assert abs(neighbour_correlation(white)) < 0.05 and neighbour_correlation(coloured) > 0.5
    np.testing.assert_allclose(coloured.frames[-1].var(), white.frames[-1].var(), rtol=0.15)


def test_patlak_fit_recovers_synthetic_maps_exactly():
    frames = FrameSchedule.from_durations(FDG_60MIN)
    t, cp = input_samples()
    reg = patlak_regressors(t, cp, frames)
    ki = np.array([[0.01, 0.05]])
    v = np.array([[0.2, 0.6]])
    fit_ki, fit_v = patlak_fit(patlak_frames(ki, v, reg), reg, frames.start, t_star=20)
    np.testing.assert_allclose(fit_ki, ki, rtol=1e-10)
    np.testing.assert_allclose(fit_v, v, rtol=1e-10)


def test_a_corpus_can_draw_each_tumours_uptake_from_a_range():
    """lesion_k1_range: the tumour's K1, so its Ki (Ki = K1 k3 / (k2 + k3)), scaled by a log-uniform draw in the range
    per case; a degenerate range (2, 2) doubles it exactly, healthy tissue is untouched."""
    block = {k: np.zeros((8, 8, 8), np.float32) for k in ("csf", "gm", "wm", "necrotic", "oedema", "enhancing")}
    block["enhancing"][:4] = 1.0
    block["gm"][4:] = 1.0
    flat = dict(jitter=0.0, dose=None, heterogeneity=0.0, psf_fwhm_mm=0.0)
    base = simulate_pet(block, 2.0, np.random.default_rng(0), PetSpec(**flat))
    doubled = simulate_pet(block, 2.0, np.random.default_rng(0), PetSpec(**flat, lesion_k1_range=(2.0, 2.0)))
    np.testing.assert_allclose(doubled.ki[:4], 2 * base.ki[:4], rtol=1e-5)
    np.testing.assert_array_equal(doubled.ki[4:], base.ki[4:])
    ratios = [simulate_pet(block, 2.0, np.random.default_rng(s), PetSpec(**flat, lesion_k1_range=(0.5, 2.0))).ki[0, 0, 0]
              / base.ki[0, 0, 0] for s in range(6)]
    assert all(0.5 - 1e-6 <= r <= 2.0 + 1e-6 for r in ratios) and len({round(r, 4) for r in ratios}) == 6
