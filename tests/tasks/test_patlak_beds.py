"""`volgen patlak` on a study acquired bed by bed: every voxel fitted on its own bed's frames and times (against an
independent least-squares solve, and against the single-timing fit of one bed alone), the diffusion path's data
consistency per voxel, the phantom's multi-bed study, and the refusals of beds that do not fit together."""
import json

import nibabel as nib
import numpy as np
import pytest

from volgen.cli import main
from volgen.io.nifti import read_volume
from volgen.kinetics import FrameSchedule, input_samples, patlak_regressors
from volgen.phantom.pet_beds import bed_slices, bed_validity, multi_pass_schedule
from tests.helpers import assert_refused

AFFINE = np.diag([2.0, 2.0, 2.0, 1.0])
SHAPE = (16, 16, 16)
BEDS = ((0, 10), (6, 16))                     # axial slices: 4 overlapping
# two beds scanned in turn, 3.5-min frames with 0.5 min for the bed to move: bed 1 at 20, 28, ..., bed 2 at 24, ...
TIMES = (np.arange(20.0, 60.0, 8.0)[:4], np.arange(24.0, 60.0, 8.0)[:4])
FRAME_MIN = 3.5


def _truth(seed=0):
    rng = np.random.default_rng(seed)
    return rng.uniform(0.01, 0.05, SHAPE), rng.uniform(0.1, 0.6, SHAPE)


def _regressors(start):
    t, cp = input_samples()
    return patlak_regressors(t, cp, FrameSchedule(start=start, end=start + FRAME_MIN))


def write_beds(folder, *, noise=0.05, offsets_mm=None, times=TIMES, units=("kBq/mL", "kBq/mL")):
    """sub-01_bed-<k>_pet.nii.gz + .json per bed (Patlak frames plus noise) and the blood TSV; the frames too."""
    folder.mkdir(parents=True, exist_ok=True)
    ki, v = _truth()
    rng = np.random.default_rng(1)
    paths, frames = [], []
    for b, ((first, end), start) in enumerate(zip(BEDS, times)):
        reg = _regressors(start)
        y = (reg[:, 0, None, None, None] * ki[..., first:end] + reg[:, 1, None, None, None] * v[..., first:end])
        y = y + rng.normal(0, noise, y.shape)
        affine = AFFINE.copy()
        affine[2, 3] = 2.0 * first if offsets_mm is None else offsets_mm[b]
        path = folder / f"sub-01_bed-{b + 1}_pet.nii.gz"
        nib.save(nib.Nifti1Image(np.moveaxis(y, 0, -1).astype(np.float32), affine), str(path))
        (folder / f"sub-01_bed-{b + 1}_pet.json").write_text(json.dumps({
            "FrameTimesStart": list(start * 60), "FrameDuration": [FRAME_MIN * 60] * len(start), "Units": units[b],
            "ImageDecayCorrected": True}))
        paths.append(path)
        frames.append(np.moveaxis(np.asarray(nib.load(str(path)).dataobj, dtype=np.float64), -1, 0))
    t, cp = input_samples()
    blood = folder / "sub-01_blood.tsv"
    blood.write_text("time\tplasma_radioactivity\n" + "".join(f"{a:.6f}\t{c:.9g}\n" for a, c in zip(t * 60, cp)))
    (folder / "sub-01_blood.json").write_text(json.dumps({"time": {"Units": "s"},
                                                          "plasma_radioactivity": {"Units": "kBq/mL"}}))
    return paths, blood, frames


def _lstsq(a, y):
    return np.linalg.lstsq(a, y, rcond=None)[0]


def test_each_voxel_is_fitted_on_its_own_beds_frames(tmp_path):
    paths, blood, frames = write_beds(tmp_path / "in")
    out = tmp_path / "out"
    assert main(["patlak", *map(str, paths), "--input", str(blood), "-o", str(out)]) == 0
    ki = read_volume(out / "sub-01_model-patlak_meas-Ki_mimap.nii.gz").array
    assert ki.shape == SHAPE
    reg = [_regressors(s) for s in TIMES]
    only_first, overlap, only_second = (3, 4, 2), (5, 7, 8), (9, 1, 14)     # (x, y, z) on the merged grid
    x, y, z = only_first
    assert ki[only_first] == pytest.approx(_lstsq(reg[0], frames[0][:, x, y, z])[0], rel=1e-5)
    x, y, z = only_second
    assert ki[only_second] == pytest.approx(_lstsq(reg[1], frames[1][:, x, y, z - BEDS[1][0]])[0], rel=1e-5)
    x, y, z = overlap                       # both beds' frames, each at its own times
    stacked = np.concatenate([frames[0][:, x, y, z], frames[1][:, x, y, z - BEDS[1][0]]])
    assert ki[overlap] == pytest.approx(_lstsq(np.concatenate(reg), stacked)[0], rel=1e-5)
    info = json.loads((out / "sub-01_model-patlak_mimap.json").read_text())
    assert [b["voxel_offset"] for b in info["beds"]] == [[0, 0, 0], [0, 0, 6]]
    assert info["beds"][1]["FrameTimesStart"] == list(TIMES[1] * 60)


def test_where_the_timings_agree_the_merged_fit_is_the_single_timing_fit(tmp_path):
    """Bed 1 alone, read as a one-timing study: its own voxels' Ki match the merged study's to float rounding."""
    paths, blood, _ = write_beds(tmp_path / "in")
    assert main(["patlak", *map(str, paths), "--input", str(blood), "-o", str(tmp_path / "both")]) == 0
    assert main(["patlak", str(paths[0]), "--input", str(blood), "-o", str(tmp_path / "one")]) == 0
    both = read_volume(tmp_path / "both" / "sub-01_model-patlak_meas-Ki_mimap.nii.gz").array
    one = read_volume(tmp_path / "one" / "sub-01_bed-1_model-patlak_meas-Ki_mimap.nii.gz").array
    only_first = BEDS[1][0]
    np.testing.assert_allclose(both[..., :only_first], one[..., :only_first], rtol=1e-5, atol=1e-7)
    assert not np.allclose(both[..., only_first:BEDS[0][1]], one[..., only_first:])    # the overlap has more frames


def test_the_diffusion_path_keeps_each_voxels_own_timing(tmp_path, tiny_models, monkeypatch):
    """A prior doubted entirely: every step is the data's own solution, per voxel with its own Gram matrix."""
    import volgen.tasks.patlak_diffusion

    monkeypatch.setattr(volgen.tasks.patlak_diffusion, "PRIOR_DOUBT", 1e6)
    monkeypatch.setattr(volgen.tasks.patlak_diffusion, "PRIOR_ERROR_FLOOR", 0.0)
    paths, blood, _ = write_beds(tmp_path / "in", noise=0.0)
    assert main(["patlak", *map(str, paths), "--input", str(blood), "--method", "diffusion", "--model",
                 str(tiny_models["backbone"]), "--steps", "3", "--samples", "1", "--precision", "fp32",
                 "--no-progress", "-o", str(tmp_path / "out")]) == 0
    ki = read_volume(tmp_path / "out" / "sub-01_model-patlak_meas-Ki_mimap.nii.gz").array
    truth = _truth()[0]
    assert np.abs(ki - truth).max() / truth.max() < 1e-3


def test_the_phantoms_multi_pass_schedule_alternates_beds_with_gaps():
    schedule, bed = multi_pass_schedule(2, passes=6)
    assert len(schedule) == 12 and list(bed[:4]) == [0, 1, 0, 1]
    assert np.all(schedule.start[1:] - schedule.end[:-1] > 0)            # the bed moves between frames
    slices = bed_slices(96, 2)
    assert slices[0][0] == 0 and slices[-1][1] == 96 and slices[0][1] > slices[1][0]      # overlapping, covering
    valid = bed_validity((2, 2, 96), slices, bed)
    assert valid.any(0).all() and valid[:, 0, 0, slices[1][0]:slices[0][1]].all(0).all()


def test_the_phantom_writes_a_study_bed_by_bed_that_patlak_reads(tmp_path):
    assert main(["phantom", "--n", "1", "--seed", "4", "--pet-beds", "2", "--no-montage", "--out",
                 str(tmp_path / "cases")]) == 0
    case = tmp_path / "cases" / "phantom-s4-0000"
    beds = [case / f"phantom-s4-0000-bed{b}-pet.nii.gz" for b in (1, 2)]
    assert all(b.is_file() for b in beds) and not (case / "phantom-s4-0000-pet.nii.gz").exists()
    timing = [json.loads((case / f"phantom-s4-0000-bed{b}-pet.json").read_text())["FrameTimesStart"] for b in (1, 2)]
    assert len(timing[0]) == len(timing[1]) == 6 and timing[0][0] < timing[1][0] < timing[0][1]
    out = tmp_path / "out"
    assert main(["patlak", *map(str, beds), "--input", str(case / "phantom-s4-0000-blood.tsv"), "--mask",
                 str(case / "phantom-s4-0000-brainmask.nii.gz"), "-o", str(out)]) == 0
    truth = read_volume(case / "phantom-s4-0000-pet-ki.nii.gz").array
    fit = read_volume(out / "phantom-s4-0000_model-patlak_meas-Ki_mimap.nii.gz").array
    brain = truth > 0.3 * truth.max()
    assert fit.shape == truth.shape and abs(np.median(fit[brain]) / np.median(truth[brain]) - 1) < 0.1


def _bad(tmp_path, case):
    folder = tmp_path / "in"
    if case == "missing timing":
        paths, blood, _ = write_beds(folder)
        (folder / "sub-01_bed-2_pet.json").unlink()
        return [*map(str, paths), "--input", str(blood)], "sub-01_bed-2_pet.nii.gz: no frame timing"
    if case == "off the lattice":
        paths, blood, _ = write_beds(folder, offsets_mm=(0.0, 13.0))
        return [*map(str, paths), "--input", str(blood)], "not a whole number of voxels"
    if case == "a gap":
        paths, blood, _ = write_beds(folder, offsets_mm=(0.0, 24.0))
        return [*map(str, paths), "--input", str(blood)], "unscanned"
    if case == "copied sidecar":
        paths, blood, _ = write_beds(folder, times=(TIMES[0], TIMES[0]))
        return [*map(str, paths), "--input", str(blood)], "one scanner measures one bed at a time"
    if case == "units":
        paths, blood, _ = write_beds(folder, units=("kBq/mL", "Bq/mL"))
        return [*map(str, paths), "--input", str(blood)], "Units is 'Bq/mL' here but 'kBq/mL'"
    if case == "--frames":
        paths, blood, _ = write_beds(folder)
        return [*map(str, paths), "--input", str(blood), "--frames", str(folder / "sub-01_bed-1_pet.json")], \
            "a study's beds take theirs from their own sidecars"
    if case == "too few late frames in a bed":
        paths, blood, _ = write_beds(folder)
        return [*map(str, paths), "--input", str(blood), "--tstar", "36"], \
            "sub-01_bed-1_pet.nii.gz: 2 of this bed's frames"
    raise AssertionError(case)


@pytest.mark.parametrize("case", ["missing timing", "off the lattice", "a gap", "copied sidecar", "units", "--frames",
                                  "too few late frames in a bed"])
def test_beds_that_do_not_fit_together_are_refused_in_one_line(tmp_path, case, capsys):
    args, needle = _bad(tmp_path, case)
    assert_refused(capsys, ["patlak", *args], tmp_path / "out", needle)
