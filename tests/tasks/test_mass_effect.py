"""Mass effect (volgen/tasks/mass_effect.py): tissue pushed aside by a growing tumour, checked against the
incompressible growth law by hand, and through the lesion job and its CLI option."""
import json

import nibabel as nib
import numpy as np
import pytest

from tests.helpers import assert_refused, save_nifti, write_brats_case
from volgen.cli import main
from volgen.errors import InputError
from volgen.tasks.mass_effect import REACH, push_aside

FAST = ["--steps", "2", "--no-progress"]


def _ball(shape, centre, radius):
    idx = np.indices(shape)
    return np.sqrt(sum((idx[i] - centre[i]) ** 2 for i in range(3))) < radius


def test_tissue_moves_as_an_incompressible_shell_and_nothing_moves_beyond_the_reach():
    """1 mm grid, a ball-shaped brain, a ball tumour of equivalent radius a pushing p: a voxel at distance r on the
    x axis shows the tissue that was at r0 = cbrt(r^3 - (a^3 - (a - p)^3)); an image linear in x is resampled
    exactly, so its value there is centre + r0."""
    shape, centre, push = (48, 48, 48), (24, 24, 24), 2.0
    brain = _ball(shape, centre, 23)
    labels = _ball(shape, centre, 5).astype(np.int16) * 2
    a = (3 * labels.astype(bool).sum() / (4 * np.pi)) ** (1 / 3)
    x = np.broadcast_to(np.arange(48.0)[:, None, None], shape).copy()
    own = np.zeros(shape, np.int16)
    own[30:34, 20:28, 20:28] = 1                                    # a label map beside the tumour
    image = np.where(brain, x, 0.0)
    out, moved = push_aside({"image": image, "seg": own}, labels, brain, np.eye(4), push, nearest=("seg",))
    for r in (6, 7, 8, 9):                                          # deep in the brain, within 2a: no fading
        r0 = np.cbrt(r ** 3 - (a ** 3 - (a - push) ** 3))
        assert out["image"][24 + r, 24, 24] == pytest.approx(24 + r0, abs=1e-6), r
        assert out["image"][24 - r, 24, 24] == pytest.approx(24 - r0, abs=1e-6), r
    assert r0 < 9 and 9 - r0 > 0.05                                 # the displacement there is not negligible
    idx = np.indices(shape)
    far = np.sqrt(sum((idx[i] - centre[i]) ** 2 for i in range(3))) >= REACH * a
    assert not moved[far].any() and np.array_equal(out["image"][far], image[far])
    assert np.array_equal(out["image"][~brain], image[~brain])      # the skull holds: nothing outside the brain moves
    assert set(np.unique(out["seg"])) == {0, 1} and out["seg"].dtype == np.int16
    assert out["seg"][30, 24, 24] == 0 and out["seg"][33, 24, 24] == 1     # the block's inner face pushed outward


def test_a_push_as_large_as_the_tumour_is_refused():
    labels = _ball((24, 24, 24), (12, 12, 12), 3).astype(np.int16)
    with pytest.raises(InputError, match="not less than the tumour's radius"):
        push_aside({"image": np.ones((24, 24, 24))}, labels, np.ones((24, 24, 24), bool), np.eye(4), 5.0)


def test_insertion_with_mass_effect_moves_the_tissue_near_the_tumour_only(tmp_path, tiny_models):
    folder = write_brats_case(tmp_path, "healthy-m")
    (folder / "healthy-m-seg.nii.gz").unlink()
    labels = np.zeros((32, 36, 28), np.int16)
    labels[_ball(labels.shape, (16, 18, 14), 4)] = 2
    labels[_ball(labels.shape, (16, 18, 14), 2)] = 3
    save_nifti(tmp_path / "labels.nii.gz", labels, np.diag([2.0, 2.0, 2.0, 1.0]))
    out = tmp_path / "pushed"
    assert main(["inpaint", str(folder), "--mask", str(tmp_path / "labels.nii.gz"), "--mode", "lesion", "-o",
                 str(out), "--mass-effect", "2", "--model", str(tiny_models["lesion"]), *FAST]) == 0
    a_mm = (3 * (labels > 0).sum() * 8 / (4 * np.pi)) ** (1 / 3)
    idx = np.indices(labels.shape)
    distance_mm = 2 * np.sqrt(sum((idx[i] - c) ** 2 for i, c in enumerate((16, 18, 14))))
    shell = (distance_mm > a_mm + 4) & (distance_mm < 2 * a_mm)      # beyond the inserted tumour's border
    far = distance_mm >= REACH * a_mm
    assert far.any()
    for contrast in ("t1n", "t1c", "t2w", "t2f"):
        before = np.asarray(nib.load(folder / f"healthy-m-{contrast}.nii.gz").dataobj)
        after = np.asarray(nib.load(out / f"pushed-{contrast}.nii.gz").dataobj)
        assert after.dtype == before.dtype and np.array_equal(after[far], before[far]), contrast
        assert not np.array_equal(after[shell], before[shell]), contrast
    assert np.array_equal(np.asarray(nib.load(out / "pushed-seg.nii.gz").dataobj), labels)
    info = json.loads((out / "pushed.json").read_text())
    assert info["mass_effect_mm"] == 2.0 and info["changed_voxels"] > int(shell.sum())


@pytest.mark.parametrize("argv, needle", [
    (["--mode", "lesion", "--mass-effect", "-1"], "--mass-effect must be 0 or more"),
    (["--mass-effect", "2"], "--mass-effect needs --mode lesion"),
    (["--mode", "lesion", "--mass-effect", "30"], "labels.nii.gz: mass effect of 30 mm is not less"),
])
def test_bad_mass_effect_is_one_line_and_writes_nothing(tmp_path, tiny_models, capsys, argv, needle):
    folder = write_brats_case(tmp_path, "case-b")
    labels = np.zeros((32, 36, 28), np.int16)
    labels[14:18, 16:20, 12:16] = 2
    save_nifti(tmp_path / "labels.nii.gz", labels, np.diag([2.0, 2.0, 2.0, 1.0]))
    assert_refused(capsys, ["inpaint", str(folder), "--mask", str(tmp_path / "labels.nii.gz"), *argv,
                            "--model", str(tiny_models["lesion"]), *FAST], tmp_path / "never", needle)
