"""Lesion insertion from a BraTS label map into every contrast of a case (`volgen inpaint CASE --mask LABELS --mode
lesion`), with a tiny untrained module: the plumbing, the outputs and the refusals (quality: bench_lesion.py)."""
import json

import nibabel as nib
import numpy as np
import pytest
import torch
from scipy.ndimage import binary_dilation, distance_transform_edt

from tests.helpers import save_nifti, write_brats_case
from volgen.cli import main
from volgen.ops import KnownVoxels, compartments, keep_known, label_zones, tiled

FAST = ["--steps", "2", "--no-progress"]
AFFINE = np.diag([2.0, 2.0, 2.0, 1.0])


def _labels(shape=(32, 36, 28)):
    """A necrotic core inside an enhancing shell inside oedema, in the middle of the volume."""
    idx = np.indices(shape)
    r = np.sqrt(sum((idx[i] - shape[i] / 2) ** 2 for i in range(3)))
    labels = np.zeros(shape, np.uint8)
    labels[r < 7] = 2
    labels[r < 4.5] = 3
    labels[r < 2.5] = 1
    return labels


@pytest.fixture
def healthy_case(tmp_path):
    folder = write_brats_case(tmp_path, "healthy-a")
    (folder / "healthy-a-seg.nii.gz").unlink()              # a healthy case has no labels
    save_nifti(tmp_path / "labels.nii.gz", _labels(), AFFINE)
    return folder, tmp_path / "labels.nii.gz"


def test_label_zones_are_the_labels_and_their_one_voxel_border():
    seg = torch.zeros(1, 1, 9, 9, 9, dtype=torch.long)
    seg[0, 0, 4, 4, 3:6] = torch.tensor([1, 3, 2])
    labels, region = label_zones(compartments(seg))
    assert torch.equal(labels, seg)
    expected = torch.zeros(9, 9, 9, dtype=torch.bool)
    expected[3:6, 3:6, 2:7] = True                          # a 3x3x5 box: each labelled voxel grown by one
    assert torch.equal(region[0, 0], expected)


def test_known_voxels_tile_a_group_over_the_samples():
    known = torch.arange(2.0).view(2, 1, 1, 1, 1).expand(2, 1, 2, 2, 2).clone()      # G = 2 images
    mask = torch.zeros(2, 1, 2, 2, 2)
    mask[:, :, 0] = 1
    x = torch.full((6, 1, 2, 2, 2), 9.0)                    # K = 3 samples of the group
    out = KnownVoxels(known, mask)(x)
    assert torch.equal(out[:, :, 0], x[:, :, 0])
    assert torch.equal(out[:, 0, 1, 0, 0], torch.tensor([0.0, 1.0, 0.0, 1.0, 0.0, 1.0]))
    assert torch.equal(keep_known(x, known[:1], mask[:1])[:, :, 1], torch.zeros(6, 1, 2, 2))
    with pytest.raises(ValueError, match="do not tile"):
        tiled(known, 5)


def test_insertion_writes_a_brats_case_and_changes_only_the_tumour(healthy_case, tmp_path, tiny_models, capsys):
    folder, labels = healthy_case
    out = tmp_path / "new-case"
    assert main(["inpaint", str(folder), "--mask", str(labels), "--mode", "lesion", "-o", str(out),
                 "--model", str(tiny_models["lesion"]), *FAST]) == 0
    assert "t1n, t1c, t2w, t2f and seg" in capsys.readouterr().out
    seg = nib.load(out / "new-case-seg.nii.gz")
    assert np.array_equal(np.asarray(seg.dataobj), _labels()) and np.array_equal(seg.affine, AFFINE)
    tumour = _labels() > 0
    near = binary_dilation(tumour, np.ones((3, 3, 3)))      # the labels and their one-voxel border (2 mm grid)
    for contrast in ("t1n", "t1c", "t2w", "t2f"):
        before = nib.load(folder / f"healthy-a-{contrast}.nii.gz")
        after = nib.load(out / f"new-case-{contrast}.nii.gz")
        a, b = np.asarray(before.dataobj), np.asarray(after.dataobj)
        assert b.dtype == a.dtype == np.int16 and b.shape == a.shape and np.array_equal(after.affine, before.affine)
        assert np.array_equal(a[~near], b[~near]), contrast          # outside: bit for bit
        assert not np.array_equal(a[tumour], b[tumour]), contrast    # inside: the module's output
        u = nib.load(out / f"new-case-{contrast}-uncertainty.nii.gz").get_fdata()
        assert np.all(u[~near] == 0) and u[tumour].max() > 0
    info = json.loads((out / "new-case.json").read_text())
    assert info["contrasts"] == ["t1n", "t1c", "t2w", "t2f"] and info["samples"] == 2
    assert info["label_voxels"]["necrotic"] == int((_labels() == 1).sum())
    assert (out / "new-case.png").is_file()
    # the sampled box is the tumour's, not the whole grid
    box = info["sampled_box"]
    assert any(hi - lo < n for (lo, hi), n in zip(box, info["model_grid"]))


def test_the_contrasts_differ_by_their_own_healthy_images(healthy_case, tmp_path, tiny_models):
    """One group, one contrast per item: each output follows its own contrast's input (not item 0's)."""
    import volgen

    folder, labels = healthy_case
    result = volgen.api.run_lesion_insertion(folder, labels, model=str(tiny_models["lesion"]), steps=2,
                                             progress=False)
    outputs = result.outputs
    assert set(outputs) == {"t1n", "t1c", "t2w", "t2f", "seg"}
    tumour = _labels() > 0
    assert not np.array_equal(outputs["t1n"].array[tumour], outputs["t2f"].array[tumour])


@pytest.mark.parametrize("problem, message", [
    ("values", "not a BraTS label map: values 5"),
    ("grid", "label grid differs"),
    ("empty", "label map is empty"),
])
def test_bad_labels_are_one_line_and_write_nothing(healthy_case, tmp_path, tiny_models, capsys, problem, message):
    folder, _ = healthy_case
    bad = tmp_path / "bad-labels.nii.gz"
    labels = _labels()
    if problem == "values":
        labels[labels == 3] = 5
        save_nifti(bad, labels, AFFINE)
    elif problem == "grid":
        save_nifti(bad, labels[:30], AFFINE)
    else:
        save_nifti(bad, np.zeros_like(labels), AFFINE)
    out = tmp_path / "never"
    assert main(["inpaint", str(folder), "--mask", str(bad), "--mode", "lesion", "-o", str(out),
                 "--model", str(tiny_models["lesion"]), *FAST]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "bad-labels.nii.gz" in err[0] and message in err[0], err
    assert not out.exists() or not any(out.iterdir())


@pytest.fixture(scope="module")
def phantom_twin(tmp_path_factory, phantom_case):
    """The phantom's healthy twin as a case folder of its own, beside the phantom's tumour labels."""
    folder = tmp_path_factory.mktemp("twin") / "twin-0"
    folder.mkdir()
    for contrast, array in phantom_case.healthy.items():
        save_nifti(folder / f"twin-0-{contrast}.nii.gz", array, phantom_case.affine)
    return folder


def test_lesion_mask_draws_a_tumour_in_the_brain_per_seed(phantom_twin, phantom_case, tmp_path, capsys):
    out = tmp_path / "labels.nii.gz"
    assert main(["lesion-mask", str(phantom_twin), "-o", str(out), "--seed", "4"]) == 0
    assert "wrote" in capsys.readouterr().out
    img = nib.load(out)
    labels = np.asarray(img.dataobj)
    assert np.array_equal(img.affine, phantom_case.affine) and labels.shape == phantom_case.seg.shape
    assert set(np.unique(labels)) <= {0, 1, 2, 3} and (labels == 3).sum() > 20 and (labels == 2).sum() > 20
    brain = np.any([a > a.min() for a in phantom_case.healthy.values()], axis=0)
    assert not np.any(labels[~brain])
    main(["lesion-mask", str(phantom_twin), "-o", str(tmp_path / "again.nii.gz"), "--seed", "4"])
    main(["lesion-mask", str(phantom_twin), "-o", str(tmp_path / "other.nii.gz"), "--seed", "5"])
    assert np.array_equal(np.asarray(nib.load(tmp_path / "again.nii.gz").dataobj), labels)
    assert not np.array_equal(np.asarray(nib.load(tmp_path / "other.nii.gz").dataobj), labels)
    # a case with a tumour of its own gets a new one that keeps clear of it
    save_nifti(phantom_twin / "twin-0-seg.nii.gz", phantom_case.seg, phantom_case.affine)
    try:
        assert main(["lesion-mask", str(phantom_twin), "-o", str(tmp_path / "beside.nii.gz"), "--seed", "4"]) == 0
        beside = np.asarray(nib.load(tmp_path / "beside.nii.gz").dataobj)
        assert beside.any() and not np.any(binary_dilation(beside > 0) & (phantom_case.seg > 0))
    finally:
        (phantom_twin / "twin-0-seg.nii.gz").unlink()
    assert main(["lesion-mask", str(phantom_twin), "-o", str(out), "--seed", "4"]) == 1      # no overwrite
    assert "exists" in capsys.readouterr().err


def test_lesion_mask_radius_sets_the_tumours_size(phantom_twin, tmp_path, capsys):
    """--radius-mm fixes the enhancing tumour's radius (the seed draws the rest); outside the module's trained
    8-22 mm it is refused in one line naming the option, and nothing is written."""
    sizes = {}
    for radius in (9, 20):
        out = tmp_path / f"r{radius}.nii.gz"
        assert main(["lesion-mask", str(phantom_twin), "-o", str(out), "--seed", "4", "--radius-mm", str(radius)]) == 0
        assert f"radius {radius} mm" in capsys.readouterr().out
        sizes[radius] = int((np.asarray(nib.load(out).dataobj) == 3).sum())
    assert sizes[20] > 4 * sizes[9] > 0                         # volume ~ r^3: (20/9)^3 = 11
    assert main(["lesion-mask", str(phantom_twin), "-o", str(tmp_path / "big.nii.gz"), "--radius-mm", "30"]) == 1
    err = capsys.readouterr().err
    assert "--radius-mm 30" in err and "8 to 22 mm" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "big.nii.gz").exists()


def test_insertion_on_a_1mm_grid_keeps_its_geometry_and_dtype(tmp_path, tiny_models):
    """A BraTS-like 1 mm LPS case: the module samples on its 2 mm grid, the result comes back on the case's grid."""
    import volgen

    affine = np.array([[-1.0, 0, 0, 40], [0, -1.0, 0, 50], [0, 0, 1.0, -20], [0, 0, 0, 1]])
    folder = write_brats_case(tmp_path, "one-mm", shape=(48, 56, 40), affine=affine)
    (folder / "one-mm-seg.nii.gz").unlink()
    labels = _labels((48, 56, 40))
    save_nifti(tmp_path / "labels.nii.gz", labels, affine)
    outputs = volgen.insert_lesion(folder, tmp_path / "labels.nii.gz", out=tmp_path / "new", model=str(
        tiny_models["lesion"]), steps=2, progress=False)
    far = distance_transform_edt(labels == 0) > 2.0             # beyond one model voxel (2 mm) of the labels
    for contrast in ("t1n", "t1c", "t2w", "t2f"):
        source = nib.load(folder / f"one-mm-{contrast}.nii.gz")
        written = nib.load(tmp_path / "new" / f"new-{contrast}.nii.gz")
        assert written.shape == source.shape and np.array_equal(written.affine, source.affine)
        assert written.get_data_dtype() == source.get_data_dtype() == np.int16
        a, b = np.asarray(source.dataobj), np.asarray(written.dataobj)
        assert np.array_equal(a[far], b[far]) and not np.array_equal(a[labels > 0], b[labels > 0])
        assert np.array_equal(outputs[contrast].array, b)
    assert np.array_equal(np.asarray(nib.load(tmp_path / "new" / "new-seg.nii.gz").dataobj), labels)


def test_a_case_with_its_own_tumour_keeps_its_labels_beside_the_new_ones(tmp_path, tiny_models):
    folder = write_brats_case(tmp_path, "with-own")                # its seg: a block of label 1
    own = np.asarray(nib.load(folder / "with-own-seg.nii.gz").dataobj)
    new = np.zeros_like(_labels())
    new[20:26, 24:30, 18:24] = 3                                    # apart from the block
    save_nifti(tmp_path / "labels.nii.gz", new, AFFINE)
    assert main(["inpaint", str(folder), "--mask", str(tmp_path / "labels.nii.gz"), "--mode", "lesion", "-o",
                 str(tmp_path / "out"), "--model", str(tiny_models["lesion"]), *FAST]) == 0
    seg = np.asarray(nib.load(tmp_path / "out" / "out-seg.nii.gz").dataobj)
    assert np.array_equal(seg, np.where(new > 0, new, own)) and (seg == 1).any() and (seg == 3).any()


def test_a_sample_draws_its_tumours_levels_and_the_mean_keeps_the_lines(healthy_case, tmp_path, tiny_models):
    """With a label prior that has a level spread, one sample's tumour moves with the drawn levels; the posterior mean
    (the lines) and everything outside the tumour do not."""
    from volgen import hub
    from volgen.api import run_lesion_insertion
    from volgen.modules import VCM, VCMConfig
    from volgen.taskspec import TASKS

    folder, labels = healthy_case
    backbone = hub.from_pretrained(tiny_models["backbone"])
    module = VCM(backbone, VCMConfig(conditions=TASKS["lesion"].conditions(()), channels=(8, 16),
                                     encoder_channels=(8,), features=8, head_channels=8, num_head_channels=8,
                                     norm_num_groups=8, prior="label_table"))
    module.prior.line[..., 1] = 0.5
    module.prior.done.fill_(True)
    with torch.no_grad():
        module.gate_bias.fill_(1.0 / 32)                    # open the gate (x GATE_GAIN): the output follows the prior
    outputs = {}
    for spread in (0.0, 0.2):
        module.prior.level_factor.copy_(torch.eye(module.prior.level_size) * spread)
        hub.save_pretrained(module, tmp_path / f"lesion-{spread}", overwrite=True)
        for estimate in ("mean", "sample"):
            outputs[spread, estimate] = run_lesion_insertion(
                folder, labels, model=str(tmp_path / f"lesion-{spread}"), steps=2, estimate=estimate,
                progress=False).outputs["t1c"].array
    tumour, far = _labels() > 0, ~binary_dilation(_labels() > 0, iterations=2)
    np.testing.assert_array_equal(outputs[0.0, "mean"], outputs[0.2, "mean"])
    assert np.abs(outputs[0.2, "sample"][tumour] - outputs[0.0, "sample"][tumour]).mean() > 0
    np.testing.assert_array_equal(outputs[0.2, "sample"][far], outputs[0.0, "sample"][far])
