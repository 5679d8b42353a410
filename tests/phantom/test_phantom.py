import nibabel as nib
import numpy as np
import pytest

from volgen.io import find_case, read_volume
from volgen.phantom import PhantomSpec, generate_case
from volgen.phantom.mri import SEQUENCES, TISSUES_3T, csf_null_ti, signal


def _pure(case, tissue, threshold=0.9):
    """Voxels (almost) entirely of one tissue; healthy tissues only outside the lesion."""
    lesion = tissue in ("necrotic", "oedema", "enhancing")
    return (case.fractions[tissue] >= threshold) & ((case.seg > 0) if lesion else (case.seg == 0)) & (case.brain > 0)


def _mean(image, mask):
    assert mask.sum() > 20
    return float(image[mask].mean())


def test_deterministic_per_seed_and_different_across_seeds(phantom_case):
    spec = PhantomSpec(pet=None)
    again = generate_case(seed=7, index=0, spec=spec)
    for c in ("t1n", "t1c", "t2w", "t2f"):
        np.testing.assert_array_equal(again.images[c], phantom_case.images[c])
    np.testing.assert_array_equal(again.seg, phantom_case.seg)
    other = generate_case(seed=8, index=0, spec=spec)
    assert not np.array_equal(other.seg, phantom_case.seg)
    assert not np.array_equal(other.images["t1n"], phantom_case.images["t1n"])


def test_labels_are_brats_and_consistent_with_the_images(phantom_case):
    case = phantom_case
    assert set(np.unique(case.seg)) == {0, 1, 2, 3}
    assert np.all(case.brain[case.seg > 0])                 # the lesion lies inside the brain
    for c, img in case.images.items():
        assert np.all(img[case.brain == 0] == 0)           # skull-stripped background
        twin = case.healthy[c]
        outside = case.seg == 0
        np.testing.assert_array_equal(twin[outside], img[outside])   # same anatomy, bias and noise
        assert np.mean(np.abs(twin[~outside] - img[~outside])) > 0.05 * img[case.brain > 0].mean()


def test_contrasts_ordered_as_the_physics_says(phantom_case):
    case, im = phantom_case, phantom_case.images
    csf, gm, wm = (_pure(case, t) for t in ("csf", "gm", "wm"))
    oedema, enhancing = _pure(case, "oedema"), _pure(case, "enhancing")
    # CSF dark in t1n and FLAIR, bright in t2w
    assert _mean(im["t1n"], csf) < _mean(im["t1n"], gm) < _mean(im["t1n"], wm)
    assert _mean(im["t2f"], csf) < 0.3 * _mean(im["t2f"], wm)
    assert _mean(im["t2w"], csf) > 1.5 * _mean(im["t2w"], gm) > 1.5 * _mean(im["t2w"], wm)
    # oedema bright in FLAIR
    assert _mean(im["t2f"], oedema) > 1.15 * max(_mean(im["t2f"], gm), _mean(im["t2f"], wm))
    # enhancing tumour bright only after contrast
    assert _mean(im["t1c"], enhancing) > 1.3 * _mean(im["t1c"], wm)
    assert _mean(im["t1n"], enhancing) < _mean(im["t1n"], wm)
    ratio_pre = _mean(im["t1n"], enhancing) / _mean(im["t1n"], wm)
    ratio_post = _mean(im["t1c"], enhancing) / _mean(im["t1c"], wm)
    assert ratio_post > 1.5 * ratio_pre


def test_flair_inversion_time_nulls_csf():
    ti = csf_null_ti(9000.0, 4200.0)
    assert signal(TISSUES_3T["csf"], SEQUENCES["t2f"], 4200.0) == pytest.approx(0.0, abs=1e-12)
    # hand-derived: TI = T1 ln(2 / (1 + e^{-TR/T1}))
    assert ti == pytest.approx(4200.0 * np.log(2.0 / (1.0 + np.exp(-9000.0 / 4200.0))))


def test_written_case_layout_and_geometry(phantom_dir, phantom_case):
    name = phantom_case.name
    case = find_case(phantom_dir)
    assert sorted(case.paths) == ["petsum", "seg", "t1c", "t1n", "t2f", "t2w"]
    for suffix in ("t1n-healthy", "t2f-healthy", "brainmask", "pet", "pet-ki", "pet-v"):
        assert (phantom_dir / f"{name}-{suffix}.nii.gz").exists(), suffix
    for extra in ("pet-frames.tsv", "pet-input.tsv", "pet.json", "blood.tsv", "blood.json", "phantom.json",
                  "montage.png"):
        assert (phantom_dir / f"{name}-{extra}").exists(), extra
    t1n = read_volume(case.paths["t1n"])
    assert t1n.shape == (96, 112, 96) and t1n.orientation == "RAS"
    np.testing.assert_allclose(t1n.spacing, 2.0)
    np.testing.assert_array_equal(t1n.array, phantom_case.images["t1n"])
    pet = read_volume(phantom_dir / f"{name}-pet.nii.gz", allow_4d=True)
    assert pet.shape == (96, 112, 96, len(phantom_case.pet.schedule))
    assert nib.load(str(case.paths["seg"])).get_data_dtype() == np.uint8
    assert not list(phantom_dir.parent.glob(".*partial*"))


def test_texture_is_a_bounded_smooth_gain_the_spec_can_switch_off(phantom_case):
    """The texture knob changes the texture only: with noise and texture off, the noiseless case over the textureless
    one is 1 + a tanh(f) in the brain, within [1 - a, 1 + a], the same field in every contrast."""
    from dataclasses import replace

    spec = PhantomSpec(pet=None)
    noiseless = spec.without_noise()
    flat = replace(spec, mri=replace(spec.mri, noise=(0.0, 0.0), texture=0.0))
    textured, plain = generate_case(7, 0, noiseless), generate_case(7, 0, flat)
    np.testing.assert_array_equal(plain.seg, phantom_case.seg)
    contrasts = ("t1n", "t2w", "t2f")
    brain = (phantom_case.brain > 0) & np.all([plain.images[c] > 1.0 for c in contrasts], axis=0)
    ratios = [textured.images[c][brain] / plain.images[c][brain] for c in contrasts]
    a = spec.mri.texture
    assert a == 0.03 and all(r.min() >= 1 - a - 1e-4 and r.max() <= 1 + a + 1e-4 for r in ratios)
    assert ratios[0].std() > a / 10                                      # a real texture, not a constant
    np.testing.assert_allclose(ratios[1], ratios[0], rtol=1e-4)
    np.testing.assert_allclose(ratios[2], ratios[0], rtol=1e-4)


def test_a_noiseless_draw_is_the_same_case_without_its_rician_noise(phantom_case):
    """The 1 mm bench scores the noiseless draw as the measure's ceiling: same labels and tissues, and the noisy
    images differ from it by noise of the spec's size (sigma 1-3% of the brain's 99th percentile), centred where
    the signal is high enough for Rician noise to be nearly Gaussian."""
    quiet = generate_case(7, 0, PhantomSpec(pet=None).without_noise())
    np.testing.assert_array_equal(quiet.seg, phantom_case.seg)
    for tissue, fraction in phantom_case.fractions.items():
        np.testing.assert_array_equal(quiet.fractions[tissue], fraction)
    for c in ("t1n", "t1c", "t2w", "t2f"):
        clean, noisy = quiet.images[c], phantom_case.images[c]
        top = np.percentile(clean[phantom_case.brain > 0], 99)
        bright = (phantom_case.brain > 0) & (clean > 0.3 * top)
        residual = (noisy - clean)[bright] / top
        assert 0.008 < residual.std() < 0.035, (c, residual.std())
        assert abs(residual.mean()) < 0.2 * residual.std(), (c, residual.mean())
