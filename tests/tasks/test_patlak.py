"""`volgen patlak`: PET-BIDS inputs, exact recovery of noiseless Patlak frames, weighted least squares against an
independent solve, smoothing, and each bad input refused in one line with nothing written."""
import json
import re

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from volgen.cli import main
from volgen.io.nifti import read_volume
from volgen.kinetics import FDG_60MIN, FrameSchedule, input_samples, patlak_frames, patlak_regressors
from volgen.ops import smooth_alike, smooth_inside
from tests.helpers import assert_refused, bench_harness

weighted_patlak = bench_harness.weighted_patlak

SCHEDULE = FrameSchedule.from_durations(FDG_60MIN)
AFFINE = np.diag([2.0, 2.0, 2.0, 1.0])


def _maps(shape=(12, 14, 10), seed=0):
    rng = np.random.default_rng(seed)
    ki = rng.uniform(0.01, 0.05, shape)
    v = rng.uniform(0.1, 0.6, shape)
    return ki, v


def write_study(folder, name="sub-01", *, ki=None, v=None, blood_units="kBq/mL", pet_units="kBq/mL",
                parent_fraction=None, noise=0.0, decay_corrected=True, aif_column=False):
    """A PET-BIDS study: <name>_pet.nii.gz + _pet.json, <name>_blood.tsv + .json; frames follow Patlak exactly."""
    folder.mkdir(parents=True, exist_ok=True)
    if ki is None:
        ki, v = _maps()
    t, cp = input_samples()
    frames = patlak_frames(ki, v, patlak_regressors(t, cp, SCHEDULE))
    if noise:
        frames = frames + np.random.default_rng(1).normal(0, noise, frames.shape)
    pet = folder / f"{name}_pet.nii.gz"
    nib.save(nib.Nifti1Image(np.moveaxis(frames, 0, -1).astype(np.float32), AFFINE), str(pet))
    (folder / f"{name}_pet.json").write_text(json.dumps({
        "FrameTimesStart": list(SCHEDULE.start * 60), "FrameDuration": list(SCHEDULE.duration * 60),
        "Units": pet_units, "ImageDecayCorrected": decay_corrected}))
    factor = {"kBq/mL": 1.0, "Bq/mL": 1000.0}[blood_units]
    plasma = cp * factor / (parent_fraction if parent_fraction else 1.0)    # what a blood sampler would report
    column = "AIF" if aif_column else "plasma_radioactivity"
    rows = [f"{a:.6f}\t{b:.9g}" + (f"\t{parent_fraction}" if parent_fraction else "") for a, b in zip(t * 60, plasma)]
    header = "time\t" + column + ("\tmetabolite_parent_fraction" if parent_fraction else "")
    blood = folder / f"{name}_blood.tsv"
    blood.write_text(header + "\n" + "\n".join(rows) + "\n")
    (folder / f"{name}_blood.json").write_text(json.dumps({"time": {"Units": "s"}, column: {"Units": blood_units}}))
    return pet, blood, ki, v


def test_noiseless_frames_give_back_ki_and_v_on_the_pet_grid(tmp_path):
    pet, blood, ki, v = write_study(tmp_path / "in")
    out = tmp_path / "out"
    assert main(["patlak", str(pet), "--input", str(blood), "-o", str(out)]) == 0
    ki_map = read_volume(out / "sub-01_model-patlak_meas-Ki_mimap.nii.gz")
    v_map = read_volume(out / "sub-01_model-patlak_meas-V_mimap.nii.gz")
    np.testing.assert_allclose(ki_map.array, ki, rtol=1e-4)
    np.testing.assert_allclose(v_map.array, v, rtol=1e-4)
    assert ki_map.shape == ki.shape and np.allclose(ki_map.affine, AFFINE)
    se = read_volume(out / "sub-01_model-patlak_meas-KiSE_mimap.nii.gz", allow_constant=True).array
    assert np.all(se < 1e-4 * ki.max())                                  # exact frames: no residual
    info = json.loads((out / "sub-01_model-patlak_mimap.json").read_text())
    assert info["ModelName"] == "Patlak" and info["tstar_min"] == 20.0 and len(info["frames_used"]) == 8
    assert info["units"]["Ki"] == "1/min" and info["software"]["command"].startswith("volgen patlak")
    assert (out / "sub-01_model-patlak_mimap.png").is_file()
    # every name is BIDS-valid (the suffix last), and the folder is a BIDS derivatives dataset
    assert all(re.fullmatch(r"sub-01(_[a-z]+-[A-Za-z0-9]+)*_mimap\.(nii\.gz|json|png)", p.name)
               for p in out.iterdir() if p.name != "dataset_description.json")
    description = json.loads((out / "dataset_description.json").read_text())
    assert description["DatasetType"] == "derivative" and description["GeneratedBy"][0]["Name"] == "volgen"


@pytest.mark.parametrize("variant", ["Bq/mL blood", "parent fraction", "AIF column"])
def test_pet_bids_blood_units_and_metabolites_are_applied(tmp_path, variant):
    kwargs = {"Bq/mL blood": {"blood_units": "Bq/mL"}, "parent fraction": {"parent_fraction": 0.8},
              "AIF column": {"aif_column": True}}[variant]
    pet, blood, ki, v = write_study(tmp_path / "in", **kwargs)
    assert main(["patlak", str(pet), "--input", str(blood), "-o", str(tmp_path / "out")]) == 0
    np.testing.assert_allclose(read_volume(tmp_path / "out/sub-01_model-patlak_meas-Ki_mimap.nii.gz").array, ki,
                               rtol=1e-4)
    info = json.loads((tmp_path / "out/sub-01_model-patlak_mimap.json").read_text())
    if variant == "Bq/mL blood":
        assert any("converted from Bq/mL to kBq/mL" in note for note in info["assumptions"])
    if variant == "parent fraction":
        assert any("metabolite_parent_fraction" in note for note in info["assumptions"])


def test_the_phantoms_own_files_work(phantom_dir, phantom_case, tmp_path):
    name = phantom_case.name
    out = tmp_path / "patlak-out"                      # not beside the shared phantom: training tests read that folder
    assert main(["patlak", str(phantom_dir / f"{name}-pet.nii.gz"), "--input", str(phantom_dir / f"{name}-pet-input.tsv"),
                 "--frames", str(phantom_dir / f"{name}-pet-frames.tsv"), "-o", str(out)]) == 0
    v = read_volume(out / f"{name}_model-patlak_meas-V_mimap.nii.gz").array
    brain = phantom_case.brain > 0
    np.testing.assert_allclose(v[brain], phantom_case.pet.v[brain], atol=1e-4 * phantom_case.pet.v.max())


def test_weighted_least_squares_matches_an_independent_solve():
    rng = np.random.default_rng(0)
    reg = rng.uniform(0.5, 5.0, (6, 2))
    y = rng.normal(size=(6, 3))
    w = rng.uniform(0.5, 3.0, 6)
    ki, v, ki_se, _ = weighted_patlak(y, reg, w)
    for j in range(3):   # sqrt(w)-scaled ordinary least squares
        coef, residual, *_ = np.linalg.lstsq(reg * np.sqrt(w)[:, None], y[:, j] * np.sqrt(w), rcond=None)
        np.testing.assert_allclose([ki[j], v[j]], coef, rtol=1e-10)
        cov = residual[0] / (6 - 2) * np.linalg.inv((reg * w[:, None]).T @ reg)
        np.testing.assert_allclose(ki_se[j], np.sqrt(cov[0, 0]), rtol=1e-10)


def test_per_voxel_frame_times_fit_each_voxel_on_its_own_frames():
    """Two beds scanned in alternating passes: bed A's voxels have frames at 20-25, 30-35, 40-45 min, bed B's at
    25-30, 35-40, 45-50; one voxel in the overlap has all six. Frames hold Ki x int Cp + V x Cp for each voxel's own
    frame times, with a NaN where a voxel's bed was not scanned: each voxel gets its Ki and V back, and the fit of
    bed A's voxels equals the ordinary single-timing fit of those voxels on bed A's frames."""
    from volgen.kinetics import patlak_statistics

    t, cp = input_samples(60.0)
    starts = np.array([20.0, 25.0, 30.0, 35.0, 40.0, 45.0])
    schedule = FrameSchedule(starts, starts + 5.0)
    regressors = patlak_regressors(t, cp, schedule)                       # (6, 2): one row per frame's own times
    in_a, in_b = np.array([1, 0, 1, 0, 1, 0], bool), np.array([0, 1, 0, 1, 0, 1], bool)
    valid = np.stack([in_a, in_a, in_b, in_a | in_b], axis=1)              # voxels: A, A, B, overlap
    ki, v = np.array([0.01, 0.03, 0.02, 0.05]), np.array([0.3, 0.5, 0.4, 0.6])
    frames = np.where(valid, regressors[:, :1] * ki + regressors[:, 1:] * v, np.nan)
    fit = patlak_statistics(frames, regressors, valid=valid)
    np.testing.assert_allclose(fit.ki, ki, rtol=1e-10)
    np.testing.assert_allclose(fit.v, v, rtol=1e-10)
    assert fit.gram.shape == (2, 2, 4)
    # by hand for the overlap voxel: A^T A over all six frames
    np.testing.assert_allclose(fit.gram[..., 3], regressors.T @ regressors, rtol=1e-12)
    noisy = frames + np.where(valid, np.random.default_rng(0).normal(0, 1e-3, frames.shape), 0.0)
    per_voxel = patlak_statistics(noisy, regressors, valid=valid)
    shared = patlak_statistics(noisy[in_a][:, :2], regressors[in_a])       # bed A alone, one timing
    np.testing.assert_allclose(per_voxel.ki[:2], shared.ki, rtol=1e-12)
    np.testing.assert_allclose(per_voxel.standard_errors()[0][:2], shared.standard_errors()[0], rtol=1e-10)


def test_a_per_slice_time_offset_shifts_each_slices_regressors():
    """One 4D image whose slices were acquired later by a per-slice offset: regressors (frames, 2, slices) fit
    every slice on its own frame times."""
    from volgen.kinetics import patlak_statistics

    t, cp = input_samples(70.0)
    starts = np.array([20.0, 30.0, 40.0, 50.0])
    offsets = np.array([0.0, 2.0, 5.0])                                    # minutes, per slice
    regressors = np.stack([patlak_regressors(t, cp, FrameSchedule(starts + o, starts + o + 10.0))
                           for o in offsets], axis=-1)                       # (4, 2, 3)
    ki, v = 0.02, 0.4
    frames = regressors[:, 0] * ki + regressors[:, 1] * v                   # (4, 3): one voxel per slice
    fit = patlak_statistics(frames[:, None, :], regressors[:, :, None, :])  # voxels (1, 3)
    np.testing.assert_allclose(fit.ki, np.full((1, 3), ki), rtol=1e-10)
    np.testing.assert_allclose(fit.v, np.full((1, 3), v), rtol=1e-10)
    unshifted = patlak_statistics(frames, regressors[..., 0])               # every slice given slice 0's times
    assert abs(unshifted.ki[2] - ki) > 1e-4


def test_slice_timing_in_the_sidecar_gives_each_slice_its_own_frame_times(tmp_path):
    """A 4D PET whose slices along j were acquired 0, 40, 80, ... s after each frame started (BIDS SliceTiming,
    SliceEncodingDirection j): noiseless Patlak frames at those times fit back exactly; read as one timing they
    would not."""
    ki, v = _maps((6, 5, 4))
    offsets_s = 40.0 * np.arange(5)
    t, cp = input_samples(70.0)
    frames = np.stack([patlak_frames(ki[:, j], v[:, j], patlak_regressors(
        t, cp, FrameSchedule(SCHEDULE.start + o / 60, SCHEDULE.end + o / 60))) for j, o in enumerate(offsets_s)], 2)
    folder = tmp_path / "in"
    folder.mkdir()
    pet = folder / "sub-01_pet.nii.gz"
    nib.save(nib.Nifti1Image(np.moveaxis(frames, 0, -1).astype(np.float32), AFFINE), str(pet))
    sidecar = {"FrameTimesStart": list(SCHEDULE.start * 60), "FrameDuration": list(SCHEDULE.duration * 60),
               "Units": "kBq/mL", "ImageDecayCorrected": True, "SliceTiming": list(offsets_s),
               "SliceEncodingDirection": "j"}
    (folder / "sub-01_pet.json").write_text(json.dumps(sidecar))
    blood = folder / "sub-01_blood.tsv"
    blood.write_text("time\tplasma_radioactivity\n" + "".join(f"{a:.6f}\t{c:.9g}\n" for a, c in zip(t * 60, cp)))
    assert main(["patlak", str(pet), "--input", str(blood), "-o", str(tmp_path / "out")]) == 0
    fit = read_volume(tmp_path / "out" / "sub-01_model-patlak_meas-Ki_mimap.nii.gz").array
    np.testing.assert_allclose(fit, ki, rtol=2e-4)
    info = json.loads((tmp_path / "out" / "sub-01_model-patlak_mimap.json").read_text())
    assert info["SliceTiming"] == list(offsets_s) and info["SliceEncodingDirection"] == "j"
    del sidecar["SliceTiming"]
    (folder / "sub-01_pet.json").write_text(json.dumps(sidecar))
    assert main(["patlak", str(pet), "--input", str(blood), "-o", str(tmp_path / "one")]) == 0
    one = read_volume(tmp_path / "one" / "sub-01_model-patlak_meas-Ki_mimap.nii.gz").array
    assert np.abs(one[:, 4] / ki[:, 4] - 1).max() > 1e-2            # the last slice read at the first's times


def test_smoothing_inside_the_mask_keeps_a_constant_and_the_background():
    mask = np.zeros((20, 20, 20), bool)
    mask[4:16, 3:17, 5:15] = True
    image = np.where(mask, 0.03, 0.0)
    out = smooth_inside(image, mask, 6.0, (2.0, 2.0, 2.0))
    np.testing.assert_allclose(out[mask], 0.03, rtol=1e-10)
    assert np.all(out[~mask] == 0)


def test_smoothing_among_alike_voxels_is_a_bilateral_filter():
    """Against the bilateral filter summed voxel by voxel (Gaussian in space and in the guide's value)."""
    rng = np.random.default_rng(0)
    mask = np.zeros((14, 14, 14), bool)
    mask[2:12, 1:13, 3:11] = True
    guide = ndimage.gaussian_filter(rng.standard_normal(mask.shape), 2.0)
    guide /= guide[mask].std()
    image = guide + 0.3 * rng.standard_normal(mask.shape)
    out = smooth_alike(image, guide, mask, 6.0, (2.0, 2.0, 2.0), width=0.5, fallback=0.0)
    where = np.argwhere(mask) * 2.0
    sigma = 6.0 / (2 * np.sqrt(2 * np.log(2)))
    space = np.exp(-0.5 * ((where[:, None] - where[None]) ** 2).sum(-1) / sigma ** 2)
    alike = np.exp(-0.5 * ((guide[mask][:, None] - guide[mask][None]) / 0.5) ** 2)
    reference = (space * alike) @ image[mask] / (space * alike).sum(1)
    plain = smooth_inside(image, mask, 6.0, (2.0, 2.0, 2.0))[mask]
    error = np.abs(out[mask] - reference).max()
    assert error < 0.05 and error < 0.05 * np.abs(plain - reference).max()     # levels interpolated: near, not equal
    assert np.all(out[~mask] == 0)
    # a constant guide: every voxel alike, the plain smoothing
    np.testing.assert_allclose(smooth_alike(image, np.ones_like(image), mask, 6.0, (2.0,) * 3, width=0.5)[mask],
                               plain, rtol=1e-4, atol=1e-5)


def test_smoothing_among_alike_voxels_does_not_mix_two_levels():
    """A region whose guide differs from its surround's by 10 widths is smoothed over its own voxels alone."""
    rng = np.random.default_rng(1)
    mask = np.zeros((20, 20, 20), bool)
    mask[2:18, 2:18, 2:18] = True
    spot = np.zeros_like(mask)
    spot[7:12, 8:13, 6:11] = True
    guide = np.where(spot, 1.0, 0.0)
    image = np.where(spot, -0.1, 0.02) + 0.01 * rng.standard_normal(mask.shape)
    out = smooth_alike(image, guide, mask, 12.0, (2.0, 2.0, 2.0), width=0.1, fallback=0.0)
    np.testing.assert_allclose(out[spot], smooth_inside(image, spot, 12.0, (2.0,) * 3)[spot], rtol=1e-4)
    np.testing.assert_allclose(out[mask & ~spot], smooth_inside(image, mask & ~spot, 12.0, (2.0,) * 3)[mask & ~spot],
                               rtol=1e-4)


def test_debiasing_corrects_a_hot_spot_by_its_own_residual():
    from volgen.tasks.patlak_diffusion import debiased

    mask = np.zeros((24, 24, 24), bool)
    mask[2:22, 2:22, 2:22] = True
    spot = np.zeros_like(mask)
    spot[9:14, 9:14, 9:14] = True
    truth = np.where(spot, 0.09, 0.03) * mask
    estimate = np.where(spot, 0.8 * 0.09, 0.03) * mask                         # the prior pulled the spot down 20%
    error = {similarity: abs((estimate + debiased(estimate, truth, mask, 12.0, (2.0,) * 3, similarity))[spot].mean()
                             / 0.09 - 1) for similarity in (0.0, 0.1)}
    assert error[0.1] < 0.01 and error[0.0] > 0.1                           # plain smoothing spreads it away


def test_debiasing_moves_an_estimates_local_means_to_the_fits_and_keeps_its_detail():
    from volgen.tasks.patlak_diffusion import debiased

    mask = np.zeros((20, 20, 20), bool)
    mask[4:16, 3:17, 5:15] = True
    rng = np.random.default_rng(0)
    fit = np.where(mask, 0.03 + 0.005 * rng.standard_normal(mask.shape), 0.0)      # unbiased, noisy
    detail = np.where(mask, 0.004 * np.sin(np.arange(20) * 2.5)[:, None, None], 0.0)
    estimate = np.where(mask, 0.9 * 0.03 + detail, 0.0)                             # 10% low, with its detail
    corrected = estimate + debiased(estimate, fit, mask, 12.0, (2.0, 2.0, 2.0))
    assert abs(corrected[mask].mean() / 0.03 - 1) < 0.01 < abs(estimate[mask].mean() / 0.03 - 1)
    # a constant offset comes back exactly, and the estimate's own structure is untouched by it
    offset = debiased(estimate, estimate + np.where(mask, 0.002, 0.0), mask, 12.0, (2.0, 2.0, 2.0))
    np.testing.assert_allclose(offset[mask], 0.002, rtol=1e-6)         # float32: a mean of many voxels
    assert np.all(offset[~mask] == 0)
    assert np.all(debiased(estimate, fit, mask, 0.0, (2.0,) * 3) == 0)


def test_the_maps_scale_does_not_ride_on_the_noise():
    from volgen.kinetics import PatlakStatistics
    from volgen.tasks.patlak_diffusion import SCALE_SMOOTHING_RATIO, map_scales

    mask = np.zeros((24, 24, 24), bool)
    mask[3:21, 3:21, 3:21] = True
    clean = np.where(mask, 0.03, 0.0)
    noisy = clean + np.where(mask, 0.006 * np.random.default_rng(0).standard_normal(mask.shape), 0.0)

    def fit(ki):
        return PatlakStatistics(ki=ki, v=2 * ki, c=None, gram=None, residual_variance=None)

    # a constant map's smoothed percentile is the constant: the scale is it over the smoothing's ratio, exactly
    np.testing.assert_allclose(map_scales(fit(clean), mask, (2.0,) * 3), (0.03 / SCALE_SMOOTHING_RATIO,
                                                                           0.06 / SCALE_SMOOTHING_RATIO), rtol=1e-9)
    raw = map_scales(fit(noisy), mask, (2.0,) * 3, fwhm_mm=0.0)[0]
    smoothed = map_scales(fit(noisy), mask, (2.0,) * 3)[0]
    assert raw > 1.4 * 0.03                    # 99.5th percentile of noise of sd 1/5 of the level: about 1.5x
    assert abs(smoothed * SCALE_SMOOTHING_RATIO / 0.03 - 1) < 0.08


def test_smoothed_maps_are_closer_to_the_truth_on_noisy_frames(tmp_path):
    ki = np.full((16, 16, 16), 0.03)
    v = np.full((16, 16, 16), 0.3)
    pet, blood, *_ = write_study(tmp_path / "in", ki=ki, v=v, noise=2.0)
    errors = {}
    for method in ("ls", "smoothed"):
        assert main(["patlak", str(pet), "--input", str(blood), "--method", method, "-o", str(tmp_path / method)]) == 0
        fit = read_volume(tmp_path / method / "sub-01_model-patlak_meas-Ki_mimap.nii.gz").array
        errors[method] = np.sqrt(((fit - ki) ** 2).mean())
    assert errors["smoothed"] < 0.5 * errors["ls"]
    assert not list((tmp_path / "smoothed").glob("*uncertainty*"))     # no standard error after smoothing


def _bad(tmp_path, case):
    folder = tmp_path / "in"
    if case == "too few frames after t*":
        pet, blood, *_ = write_study(folder)
        return [str(pet), "--input", str(blood), "--tstar", "50"], "2 frame(s) start at or after t* = 50"
    if case == "not decay corrected":
        pet, blood, *_ = write_study(folder, decay_corrected=False)
        return [str(pet), "--input", str(blood)], "ImageDecayCorrected is false"
    if case == "frame count":
        pet, blood, *_ = write_study(folder)
        meta = json.loads((folder / "sub-01_pet.json").read_text())
        meta["FrameTimesStart"], meta["FrameDuration"] = meta["FrameTimesStart"][:-1], meta["FrameDuration"][:-1]
        (folder / "sub-01_pet.json").write_text(json.dumps(meta))
        return [str(pet), "--input", str(blood)], "29 frames in the image but 28"
    if case == "no frame timing":
        pet, blood, *_ = write_study(folder)
        (folder / "sub-01_pet.json").unlink()
        return [str(pet), "--input", str(blood)], "no frame timing"
    if case == "short input":
        pet, blood, *_ = write_study(folder)
        lines = blood.read_text().splitlines()
        blood.write_text("\n".join(lines[:1200]) + "\n")
        return [str(pet), "--input", str(blood)], "the input function ends at 19.97 min"
    if case == "unknown columns":
        pet, _, *_ = write_study(folder)
        blood = folder / "odd.tsv"
        blood.write_text("t\tcounts\n0\t1\n1\t2\n")
        return [str(pet), "--input", str(blood)], "expected time and plasma_radioactivity"
    if case == "overlapping frames":
        pet, blood, *_ = write_study(folder)
        meta = json.loads((folder / "sub-01_pet.json").read_text())
        meta["FrameTimesStart"][5] -= 5.0
        (folder / "sub-01_pet.json").write_text(json.dumps(meta))
        return [str(pet), "--input", str(blood)], "frame 5 starts at 45 s, before frame 4 ends (50 s)"
    if case == "3D image":
        pet, blood, *_ = write_study(folder)
        flat = folder / "flat_pet.nii.gz"
        nib.save(nib.Nifti1Image(np.random.default_rng(0).random((8, 8, 8)).astype(np.float32), AFFINE), str(flat))
        return [str(flat), "--input", str(blood)], "a 4D dynamic PET is expected"
    if case == "NaN frames":
        pet, blood, *_ = write_study(folder)
        img = nib.load(str(pet))
        data = np.asarray(img.dataobj).copy()
        data[2, 2, 2, 3] = np.nan
        nib.save(nib.Nifti1Image(data, AFFINE), str(pet))
        return [str(pet), "--input", str(blood)], "NaN or Inf"
    if case == "slice timing length":
        pet, blood, *_ = write_study(folder)
        meta = json.loads((folder / "sub-01_pet.json").read_text())
        meta["SliceTiming"] = [0.0, 10.0]
        (folder / "sub-01_pet.json").write_text(json.dumps(meta))
        return [str(pet), "--input", str(blood)], "SliceTiming has 2 entries for 10 slices along k"
    raise AssertionError(case)


@pytest.mark.parametrize("case", ["slice timing length", "too few frames after t*", "not decay corrected",
                                  "frame count", "no frame timing", "short input", "unknown columns", "overlapping frames", "3D image", "NaN frames"])
def test_bad_input_is_refused_in_one_line_and_nothing_is_written(tmp_path, case, capsys):
    args, needle = _bad(tmp_path, case)
    assert_refused(capsys, ["patlak", *args], tmp_path / "out", needle)


@pytest.mark.parametrize("doubt, close_to_ls", [(1e6, True), (1e-6, False)])
def test_the_diffusion_path_on_a_tiny_backbone_follows_the_data_as_far_as_the_prior_is_doubted(
        tmp_path, tiny_models, monkeypatch, doubt, close_to_ls):
    """An untrained tiny backbone as the prior: doubted entirely, every step is the least-squares fit (the data
    consistency alone); not doubted at all, the maps are the prior's samples and nothing like the fit."""
    import volgen.tasks.patlak_diffusion

    monkeypatch.setattr(volgen.tasks.patlak_diffusion, "PRIOR_DOUBT", doubt)
    monkeypatch.setattr(volgen.tasks.patlak_diffusion, "PRIOR_ERROR_FLOOR", 0.0)   # the two ends of the doubt scale
    pet, blood, ki, v = write_study(tmp_path / "in", ki=_maps((16, 16, 16))[0], v=_maps((16, 16, 16))[1])
    out = tmp_path / "out"
    assert main(["patlak", str(pet), "--input", str(blood), "--method", "diffusion", "--model",
                 str(tiny_models["backbone"]), "--steps", "3", "--samples", "2", "--precision", "fp32",
                 "--no-progress", "-o", str(out)]) == 0
    fit = read_volume(out / "sub-01_model-patlak_meas-Ki_mimap.nii.gz").array
    spread = read_volume(out / "sub-01_model-patlak_meas-KiSD_mimap.nii.gz", allow_constant=True).array
    error = np.abs(fit - ki).max() / ki.max()
    assert (error < 1e-3) == close_to_ls, error
    assert (spread.max() < 1e-4 * ki.max()) == close_to_ls       # the samples agree only when the data decide
    info = json.loads((out / "sub-01_model-patlak_mimap.json").read_text())
    assert info["method"] == "diffusion" and info["samples"] == 2 and info["model"]["sha256"]


def test_a_pet_bids_phantom_dataset_runs_through_patlak_with_bids_names(tmp_path):
    bids = tmp_path / "bids"
    assert main(["phantom", "--n", "1", "--seed", "3", "--no-montage", "--out", str(tmp_path / "cases"),
                 "--pet-bids", str(bids)]) == 0
    pet = bids / "sub-s3n0000" / "pet"
    assert sorted(p.name for p in pet.iterdir()) == [
        "sub-s3n0000_pet.json", "sub-s3n0000_pet.nii.gz", "sub-s3n0000_recording-manual_blood.json",
        "sub-s3n0000_recording-manual_blood.tsv"]
    assert (bids / "participants.tsv").read_text().split() == ["participant_id", "sub-s3n0000"]
    assert json.loads((bids / "dataset_description.json").read_text())["DatasetType"] == "raw"
    sidecar = json.loads((pet / "sub-s3n0000_pet.json").read_text())
    assert sidecar["FrameDuration"][0] > 0 and sidecar["ImageDecayCorrected"] is True
    out = bids / "derivatives" / "volgen"
    assert main(["patlak", str(pet / "sub-s3n0000_pet.nii.gz"), "--input",
                 str(pet / "sub-s3n0000_recording-manual_blood.tsv"), "-o", str(out)]) == 0
    assert {"sub-s3n0000_model-patlak_meas-Ki_mimap.nii.gz", "sub-s3n0000_model-patlak_meas-KiSE_mimap.nii.gz",
            "sub-s3n0000_model-patlak_meas-VSE_mimap.nii.gz", "dataset_description.json"} <= {
        p.name for p in out.iterdir()}
    truth = read_volume(tmp_path / "cases" / "phantom-s3-0000" / "phantom-s3-0000-pet-ki.nii.gz").array
    fit = read_volume(out / "sub-s3n0000_model-patlak_meas-Ki_mimap.nii.gz").array
    brain = truth > 0.3 * truth.max()
    assert abs(np.median(fit[brain]) / np.median(truth[brain]) - 1) < 0.1      # the same study, read the BIDS way


def test_phantom_without_nilearn_writes_nothing(tmp_path, monkeypatch, capsys):
    import importlib.util

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "nilearn" else
                        find_spec(name, *a))
    assert main(["phantom", "--n", "1", "--out", str(tmp_path / "phantoms")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nilearn" in err[0]
    assert not (tmp_path / "phantoms").exists()
