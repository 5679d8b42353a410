"""`volgen synthesize`, `super-resolve`, `inpaint` and `models` end to end on small cases with tiny models (the
shipped models' quality is measured by scripts/benchmarks/bench_quality.py, not here)."""
import json
import shutil

import nibabel as nib
import numpy as np
import pytest

import volgen

from tests.helpers import save_nifti, smooth_volume, write_brats_case
from volgen.cli import main

FAST = ["--steps", "2", "--no-progress"]


def _files(folder):
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()) if folder.exists() \
        else []


def _one_error_line(capsys, *needles):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("volgen: error:"), err
    for needle in needles:
        assert needle in err[0], err[0]
    return err[0]


def test_synthesize_finds_the_missing_contrast_and_keeps_the_geometry(tmp_path, tiny_models, capsys):
    case = write_brats_case(tmp_path / "in", "case-a", contrasts=("t1n", "t2w", "t2f"))
    out = tmp_path / "out"
    assert main(["synthesize", str(case), "-o", str(out), "--model", str(tiny_models["synthesis"]), *FAST]) == 0
    assert _files(out) == ["case-a/case-a-synthesis.json", "case-a/case-a-synthesis.png",
                           "case-a/case-a-t1c-uncertainty.nii.gz", "case-a/case-a-t1c.nii.gz"]
    src, syn = nib.load(case / "case-a-t1n.nii.gz"), nib.load(out / "case-a/case-a-t1c.nii.gz")
    assert syn.shape == src.shape and np.allclose(syn.affine, src.affine)
    data = syn.get_fdata()
    assert np.isfinite(data).all() and 0 <= data.min() and data.max() <= 1 and data.std() > 0
    spread = nib.load(out / "case-a/case-a-t1c-uncertainty.nii.gz")
    assert spread.shape == src.shape and np.allclose(spread.affine, src.affine)
    head = np.asarray(nib.load(case / "case-a-t1n.nii.gz").dataobj) > 0
    u = spread.get_fdata()
    assert u.min() >= 0 and u[head].max() > 0 and np.all(u[~head] == 0)
    info = json.loads((out / "case-a/case-a-synthesis.json").read_text())
    assert info["targets"] == ["t1c"] and info["conditions"] == ["t1n", "t2w", "t2f"]
    assert info["model"]["sha256"] and info["backbone"]["sha256"]
    assert (info["sampler"], info["steps"], info["seed"]) == ("ddim", 2, 0)
    assert (info["samples"], info["estimate"]) == (2, "mean")          # the CPU defaults
    assert info["uncertainty_maps"] == {"t1c": str(out / "case-a/case-a-t1c-uncertainty.nii.gz")}
    assert info["seconds"]["sample t1c"] > 0
    assert info["software"]["version"] == volgen.__version__ and info["software"]["command"]


def test_the_conditions_bias_fields_are_divided_out_unless_asked_not_to(tmp_path, tiny_models):
    case = write_brats_case(tmp_path / "in", "case-b", contrasts=("t1n", "t2w", "t2f"))
    given = {c: (case / f"case-b-{c}.nii.gz").read_bytes() for c in ("t1n", "t2w", "t2f")}
    outputs = {}
    for name, flags in (("default", []), ("plain", ["--no-bias-correction"])):
        out = tmp_path / name
        assert main(["synthesize", str(case), "-o", str(out), "--model", str(tiny_models["synthesis"]), *FAST,
                     *flags]) == 0
        info = json.loads((out / "case-b/case-b-synthesis.json").read_text())
        assert info["bias_correction"] is (name == "default")
        outputs[name] = nib.load(out / "case-b/case-b-t1c.nii.gz").get_fdata()
    assert outputs["default"].shape == outputs["plain"].shape and not np.allclose(outputs["default"], outputs["plain"])
    assert {c: (case / f"case-b-{c}.nii.gz").read_bytes() for c in given} == given       # the inputs untouched


def test_one_sample_writes_no_uncertainty_and_says_so(tmp_path, tiny_models):
    case = write_brats_case(tmp_path / "in", "case-e", contrasts=("t1n", "t2w", "t2f"))
    out = tmp_path / "out"
    assert main(["synthesize", str(case), "-o", str(out), "--model", str(tiny_models["synthesis"]), "--samples", "1",
                 "--estimate", "sample", *FAST]) == 0
    assert _files(out) == ["case-e/case-e-synthesis.json", "case-e/case-e-synthesis.png", "case-e/case-e-t1c.nii.gz"]
    info = json.loads((out / "case-e/case-e-synthesis.json").read_text())
    assert (info["samples"], info["estimate"], info["uncertainty_maps"]) == (1, "sample", {})
    assert info["uncertainty"].startswith("none")
    # the mean of 3 samples is another volume than one sample
    assert main(["synthesize", str(case), "-o", str(tmp_path / "mean"), "--model", str(tiny_models["synthesis"]),
                 "--samples", "3", *FAST]) == 0
    one = nib.load(out / "case-e/case-e-t1c.nii.gz").get_fdata()
    mean = nib.load(tmp_path / "mean/case-e/case-e-t1c.nii.gz").get_fdata()
    assert not np.allclose(one, mean)


def test_synthesize_aliases_explicit_files_and_seeds(tmp_path, tiny_models):
    case = write_brats_case(tmp_path / "in", "case-b")
    model = ["--model", str(tiny_models["synthesis"]), *FAST]
    assert main(["synthesize", "--cond", "t1,t2,flair", str(case), "-o", str(tmp_path / "a"), *model]) == 0
    assert main(["synthesize", "--t1", str(case / "case-b-t1n.nii.gz"), "--t2", str(case / "case-b-t2w.nii.gz"),
                 "--flair", str(case / "case-b-t2f.nii.gz"), "--target", "t1ce", "-o", str(tmp_path / "b"),
                 *model]) == 0
    a = nib.load(tmp_path / "a/case-b/case-b-t1c.nii.gz").get_fdata()
    b = nib.load(tmp_path / "b/case-b/case-b-t1c.nii.gz").get_fdata()
    assert np.array_equal(a, b)                               # same conditions, same seed: same volume
    assert main(["synthesize", "--cond", "t1,t2,flair", str(case), "-o", str(tmp_path / "c"), "--seed", "5",
                 *model]) == 0
    assert not np.array_equal(a, nib.load(tmp_path / "c/case-b/case-b-t1c.nii.gz").get_fdata())


def test_brats_geometry_comes_back_on_its_grid(tmp_path, tiny_models):
    """240x240x155 int16 with an LPS affine (BraTS's own geometry) at 1 mm."""
    affine = np.array([[-1.0, 0, 0, 0], [0, -1.0, 0, 239], [0, 0, 1.0, 0], [0, 0, 0, 1]])
    case = tmp_path / "BraTS-GLI-00000-000"
    case.mkdir()
    for i, contrast in enumerate(("t1n", "t2w", "t2f")):
        vol = np.zeros((240, 240, 155), np.int16)
        vol[40:200, 30:210, 10:140] = (smooth_volume((160, 180, 130), seed=i)).astype(np.int16)
        save_nifti(case / f"{case.name}-{contrast}.nii.gz", vol, affine, dtype=np.int16)
    out = tmp_path / "out"
    assert main(["synthesize", str(case), "-o", str(out), "--model", str(tiny_models["synthesis"]), *FAST]) == 0
    img = nib.load(out / case.name / f"{case.name}-t1c.nii.gz")
    assert img.shape == (240, 240, 155) and np.array_equal(img.affine, affine)
    assert nib.aff2axcodes(img.affine) == ("L", "P", "S")
    data = np.asarray(img.dataobj)
    assert data[0, 0, 0] == 0 and data[120, 120, 75] != 0     # background stays 0, the head is filled


def test_a_batch_skips_a_bad_case_and_reports_it(tmp_path, tiny_models, capsys):
    root = tmp_path / "cases"
    for name in ("c1", "c3"):
        write_brats_case(root, name, contrasts=("t1n", "t2w", "t2f"))
    bad = write_brats_case(root, "c2", contrasts=("t1n", "t2w", "t2f"))
    vol = smooth_volume((32, 36, 28))
    vol[3, 3, 3] = np.nan
    save_nifti(bad / "c2-t2w.nii.gz", vol, np.diag([2.0, 2.0, 2.0, 1.0]))
    out = tmp_path / "out"
    assert main(["synthesize", str(root), "-o", str(out), "--model", str(tiny_models["synthesis"]), *FAST]) == 1
    captured = capsys.readouterr()
    assert "c2-t2w.nii.gz: contains 1 NaN or Inf voxel" in captured.err
    assert "2 of 3 cases synthesised" in captured.out and "1 failed: c2" in captured.out
    assert [p.name for p in sorted(out.iterdir())] == ["c1", "c3"]


@pytest.mark.parametrize("problem", ["missing contrast", "grids disagree", "nan", "unknown contrast",
                                     "unwritable output", "existing output", "corrupt model"])
def test_bad_input_is_one_line_nonzero_and_writes_nothing(tmp_path, tiny_models, capsys, problem):
    case = write_brats_case(tmp_path / "in", "case-c", contrasts=("t1n", "t2w", "t2f"))
    out = tmp_path / "out"
    model = tiny_models["synthesis"]
    args = ["synthesize", str(case), "-o", str(out)]
    expect = []
    if problem == "missing contrast":
        args += ["--cond", "t1,t1c"]
        expect = ["case-c", "no t1c file"]
    elif problem == "grids disagree":
        save_nifti(case / "case-c-t2w.nii.gz", smooth_volume((32, 36, 30)), np.diag([2.0, 2.0, 2.0, 1.0]))
        expect = ["case-c-t2w.nii.gz", "differs from t1n"]
    elif problem == "nan":
        vol = smooth_volume((32, 36, 28))
        vol[1, 2, 3] = np.nan
        save_nifti(case / "case-c-t2f.nii.gz", vol, np.diag([2.0, 2.0, 2.0, 1.0]))
        expect = ["case-c-t2f.nii.gz", "NaN"]
    elif problem == "unknown contrast":
        args += ["--cond", "t1,pd"]
        expect = ["unknown contrast 'pd'"]
    elif problem == "unwritable output":
        (tmp_path / "a-file").write_text("x")
        out = tmp_path / "a-file" / "out"
        args[3] = str(out)
        expect = ["cannot create output folder"]
    elif problem == "existing output":
        (out / "case-c").mkdir(parents=True)
        (out / "case-c" / "case-c-t1c.nii.gz").write_bytes(b"keep me")
        expect = ["already exists", "--overwrite"]
    elif problem == "corrupt model":
        model = tmp_path / "corrupt"
        shutil.copytree(tiny_models["synthesis"], model)
        weights = model / "model.safetensors"
        data = bytearray(weights.read_bytes())
        data[-10] ^= 0xFF
        weights.write_bytes(bytes(data))
        expect = ["model.safetensors", "sha256", "corrupt or was modified"]
    before = _files(out) if out.exists() else []
    assert main([*args, "--model", str(model), *FAST]) == 1
    _one_error_line(capsys, *expect)
    if problem == "existing output":
        assert (out / "case-c" / "case-c-t1c.nii.gz").read_bytes() == b"keep me"
    if problem != "unwritable output":
        assert _files(out) == before                          # nothing half-written


def test_super_resolve_reproduces_the_thick_slices(tmp_path, tiny_models, capsys):
    thick = smooth_volume((32, 36, 8)) * 3.7
    affine = np.array([[-2.0, 0, 0, 30], [0, 2.0, 0, -20], [0, 0, 8.0, -40], [0, 0, 0, 1]])
    src = save_nifti(tmp_path / "case-t2f.nii.gz", thick, affine)
    out = tmp_path / "sr" / "case-t2f-sr.nii.gz"
    assert main(["super-resolve", str(src), "-o", str(out), "--model", str(tiny_models["super_resolution"]),
                 *FAST]) == 0
    img = nib.load(out)
    assert img.shape == (32, 36, 32)
    assert np.allclose(img.header.get_zooms(), (2, 2, 2))
    # thin voxel centres: four per thick voxel, centred on it
    assert np.allclose(img.affine[:3, 3], affine[:3, 3] - np.array([0, 0, 3.0]))
    data = img.get_fdata(dtype=np.float64)
    means = data.reshape(32, 36, 8, 4).mean(axis=3)
    assert np.abs(means - thick).max() <= 1e-5 * np.ptp(thick)
    assert data.reshape(32, 36, 8, 4).std(axis=3).max() > 0    # not just the slices repeated
    info = json.loads(out.with_suffix("").with_suffix(".json").read_text())
    assert info["consistency_error"] <= 1e-5 and info["output_spacing"] == [2.0, 2.0, 2.0]
    assert (tmp_path / "sr" / "case-t2f-sr.png").is_file()
    spread = nib.load(tmp_path / "sr" / "case-t2f-sr-uncertainty.nii.gz")
    assert spread.shape == img.shape and np.allclose(spread.affine, img.affine)
    assert spread.get_fdata().min() >= 0 and spread.get_fdata().max() > 0


def test_inpaint_changes_only_the_mask(tmp_path, tiny_models, capsys):
    case = write_brats_case(tmp_path, "case-d", contrasts=("t2f",))
    src, mask = case / "case-d-t2f.nii.gz", case / "case-d-seg.nii.gz"
    for mode in ("healthy", "lesion"):
        out = tmp_path / f"{mode}.nii.gz"
        assert main(["inpaint", str(src), "--mask", str(mask), "-o", str(out), "--mode", mode,
                     "--model", str(tiny_models["inpainting"]), *FAST]) == 0
        before, after = nib.load(src), nib.load(out)
        a, b = np.asarray(before.dataobj), np.asarray(after.dataobj)
        inside = np.asarray(nib.load(mask).dataobj) > 0
        assert b.dtype == a.dtype == np.int16 and np.array_equal(after.affine, before.affine)
        assert np.array_equal(a[~inside], b[~inside]) and not np.array_equal(a[inside], b[inside])
        u = nib.load(tmp_path / f"{mode}-uncertainty.nii.gz").get_fdata()     # only where it synthesised
        assert np.all(u[~inside] == 0) and u[inside].max() > 0
    save_nifti(tmp_path / "empty.nii.gz", np.zeros((32, 36, 28), np.uint8), np.diag([2.0, 2.0, 2.0, 1.0]))
    assert main(["inpaint", str(src), "--mask", str(tmp_path / "empty.nii.gz"), "-o", str(tmp_path / "x.nii.gz"),
                 "--model", str(tiny_models["inpainting"]), *FAST]) == 1
    _one_error_line(capsys, "empty.nii.gz", "mask is empty")
    save_nifti(tmp_path / "small.nii.gz", np.ones((16, 16, 16), np.uint8), np.diag([2.0, 2.0, 2.0, 1.0]))
    assert main(["inpaint", str(src), "--mask", str(tmp_path / "small.nii.gz"), "-o", str(tmp_path / "x.nii.gz"),
                 "--model", str(tiny_models["inpainting"]), *FAST]) == 1
    _one_error_line(capsys, "small.nii.gz", "differs from the image's")
    assert not (tmp_path / "x.nii.gz").exists()


def test_models_lists_the_shipped_ones(capsys):
    from volgen import hub

    assert main(["models"]) == 0
    text = capsys.readouterr().out
    for entry in hub.list_models():
        assert entry["name"] in text and entry["sha256"] in text


def test_a_job_that_cannot_fit_in_memory_is_refused_with_the_figures(tmp_path, tiny_models, monkeypatch, capsys):
    import volgen.tasks.job

    monkeypatch.setattr(volgen.tasks.job, "available_memory", lambda device: 50 * 2 ** 20)
    case = write_brats_case(tmp_path / "in", "case-m", contrasts=("t1n", "t2w", "t2f"))
    out = tmp_path / "out"
    rc = main(["synthesize", str(case), "-o", str(out), "--model", str(tiny_models["synthesis"]), "--samples", "8",
               *FAST])
    assert rc == 1
    _one_error_line(capsys, "sampling needs about", "8 samples", "50 MB is free", "--samples", "--device")
    assert _files(out) == []


def _write_named(folder, names, shape=(32, 36, 28)):
    folder.mkdir(parents=True)
    for i, name in enumerate(names):
        save_nifti(folder / name, smooth_volume(shape, seed=i).astype(np.int16), np.diag([2.0, 2.0, 2.0, 1.0]))
    return folder


def test_brats_2021_and_plain_names_in_and_out(tmp_path, tiny_models):
    model = ["--model", str(tiny_models["synthesis"]), *FAST]
    old = _write_named(tmp_path / "in" / "BraTS2021_00000",
                       ["BraTS2021_00000_t1.nii.gz", "BraTS2021_00000_t2.nii.gz", "BraTS2021_00000_flair.nii.gz"])
    assert main(["synthesize", str(old), "-o", str(tmp_path / "a"), *model]) == 0
    assert "BraTS2021_00000/BraTS2021_00000_t1ce.nii.gz" in _files(tmp_path / "a")
    plain = _write_named(tmp_path / "in" / "subject-07", ["T1.nii.gz", "T2.nii.gz", "FLAIR.nii.gz"])
    for source in (plain, plain.parent):                     # the case or its parent: the same case found
        out = tmp_path / f"b-{source.name}"
        assert main(["synthesize", str(source), "-o", str(out), "--target", "t1c", *model]) == 0
    assert "subject-07/T1CE.nii.gz" in _files(tmp_path / "b-subject-07")
    assert {"subject-07/T1CE.nii.gz", "BraTS2021_00000/BraTS2021_00000_t1ce.nii.gz"} <= set(_files(tmp_path / "b-in"))
    assert main(["synthesize", "--t1", str(plain / "T1.nii.gz"), "--flair", str(plain / "FLAIR.nii.gz"),
                 "--target", "t1c", "-o", str(tmp_path / "c"), *model]) == 0
    assert "subject-07/T1CE.nii.gz" in _files(tmp_path / "c")


def test_a_stray_folder_does_not_abort_a_batch(tmp_path, tiny_models, capsys):
    root = tmp_path / "in"
    for name in ("case-a", "case-b"):
        write_brats_case(root, name, contrasts=("t1n", "t2w", "t2f"))
    (root / "notes").mkdir()
    (root / "notes" / "protocol.txt").write_text("3 T, 1 mm")
    out = tmp_path / "out"
    assert main(["synthesize", str(root), "-o", str(out), "--model", str(tiny_models["synthesis"]), *FAST]) == 0
    assert {p.split("/")[0] for p in _files(out)} == {"case-a", "case-b"}
    err = [line for line in capsys.readouterr().err.splitlines() if "notes" in line]
    assert len(err) == 1 and err[0].startswith("volgen: note:")


@pytest.fixture(scope="module")
def sr_model_4x(tmp_path_factory, tiny_models):
    """The tiny SR module saved with the training metadata a real one carries (4x at 2 mm)."""
    from volgen import hub

    folder = tmp_path_factory.mktemp("sr4x") / "model"
    hub.save_pretrained(hub.from_pretrained(tiny_models["super_resolution"]), folder,
                        metadata={"task": "super_resolution", "spacing": 2.0, "sr_factor": 4, "sr_axis": 2})
    return folder


def test_super_resolve_runs_on_the_modules_grid_and_warns_outside_its_factor(tmp_path, sr_model_4x, capsys):
    """1x1x4 mm slices, 4x: the module samples its own 2 mm grid (each 4 mm slice two model voxels), not a 1 mm grid
    eight times larger; the output is the 1 mm grid, each thick slice's mean exact; it says, in one line and in the
    sidecar, that the module sees 2x where it was trained for 4x."""
    thick = smooth_volume((64, 60, 10)) * 2.5
    affine = np.diag([1.0, 1.0, 4.0, 1.0])
    src = save_nifti(tmp_path / "scan-t2f.nii.gz", thick, affine)
    out = tmp_path / "scan-sr.nii.gz"
    assert main(["super-resolve", str(src), "-o", str(out), "--model", str(sr_model_4x), *FAST]) == 0
    info = json.loads((tmp_path / "scan-sr.json").read_text())
    assert info["model_spacing"] == [2.0, 2.0, 2.0] and info["model_factor"] == 2
    assert info["model_grid"][0] * 2 <= 64 + 32                       # in-plane at 2 mm, not 1 mm
    img = nib.load(out)
    assert img.shape == (64, 60, 40) and np.allclose(img.header.get_zooms(), (1, 1, 1))
    data = img.get_fdata(dtype=np.float64)
    assert np.abs(data.reshape(64, 60, 10, 4).mean(-1) - thick).max() <= 1e-5 * np.ptp(thick)
    warned = [line for line in capsys.readouterr().err.splitlines() if line.startswith("volgen: warning:")]
    assert len(warned) == 1 and "trained for 4x" in warned[0] and info["warnings"] == [warned[0][17:]]
    assert main(["super-resolve", str(src), "-o", str(tmp_path / "f3.nii.gz"), "--factor", "3", "--model",
                 str(sr_model_4x), *FAST]) == 0
    assert "--factor 3" in capsys.readouterr().err


def test_super_resolve_refuses_the_wrong_axis_and_factors_below_two_in_one_line(tmp_path, sr_model_4x, capsys):
    src = save_nifti(tmp_path / "scan-t2f.nii.gz", smooth_volume((32, 36, 8)), np.diag([2.0, 2.0, 8.0, 1.0]))
    model = ["--model", str(sr_model_4x), *FAST]
    assert main(["super-resolve", str(src), "-o", str(tmp_path / "x.nii.gz"), "--axis", "x", *model]) == 1
    _one_error_line(capsys, "scan-t2f.nii.gz", "--axis x is not the thick-slice axis", "thick axis of this volume is z")
    iso = save_nifti(tmp_path / "iso-t2f.nii.gz", smooth_volume((32, 36, 28)), np.diag([2.0, 2.0, 2.0, 1.0]))
    assert main(["super-resolve", str(iso), "-o", str(tmp_path / "x.nii.gz"), *model]) == 1
    _one_error_line(capsys, "iso-t2f.nii.gz", "not the thick-slice axis", "no thick axis")
    for factor in ("0", "1"):
        assert main(["super-resolve", str(src), "-o", str(tmp_path / "x.nii.gz"), "--factor", factor, *model]) == 1
        _one_error_line(capsys, f"--factor must be an integer of at least 2, got {factor}")
    assert not (tmp_path / "x.nii.gz").exists()


def test_super_resolve_keeps_an_integer_dtype_and_writes_no_negative_voxel(tmp_path, sr_model_4x):
    rng = np.random.default_rng(3)
    thick = smooth_volume((32, 36, 8)).astype(np.int16)
    thick[:, :, 2] = np.where(rng.random((32, 36)) < 0.3, 0, thick[:, :, 2])     # sharp dark holes invite undershoot
    src = save_nifti(tmp_path / "scan-t2f.nii.gz", thick, np.diag([2.0, 2.0, 8.0, 1.0]), dtype=np.int16)
    out = tmp_path / "sr.nii.gz"
    assert main(["super-resolve", str(src), "-o", str(out), "--model", str(sr_model_4x), *FAST]) == 0
    img = nib.load(out)
    data = np.asarray(img.dataobj)
    assert img.get_data_dtype() == np.int16 and data.dtype == np.int16
    assert data.min() >= 0
    assert np.array_equal(data.reshape(32, 36, 8, 4).astype(np.int64).sum(-1), 4 * thick.astype(np.int64))


def test_the_block_mean_projection_is_the_closest_point_with_bounds():
    """Against scipy's constrained least squares on random blocks: min |x - y|^2, mean(x) = m, x >= 0."""
    from scipy.optimize import minimize

    from volgen.tasks.slice_means import project_block_means

    rng = np.random.default_rng(0)
    y = rng.normal(size=(3, 4, 8)) * 5
    m = np.abs(rng.normal(size=(3, 4, 2))) * 2
    x = project_block_means(y, m, 4, 2, low=0.0)
    for i, j, k in [(0, 0, 0), (1, 2, 1), (2, 3, 0)]:
        block, mean = y[i, j, 4 * k:4 * k + 4], m[i, j, k]
        ref = minimize(lambda v: ((v - block) ** 2).sum(), np.full(4, mean), bounds=[(0, None)] * 4,
                       constraints=[{"type": "eq", "fun": lambda v: v.mean() - mean}], tol=1e-12).x
        assert np.allclose(x[i, j, 4 * k:4 * k + 4], ref, atol=1e-5)
    assert x.min() >= 0 and np.allclose(x.reshape(3, 4, 2, 4).mean(-1), m, atol=1e-12)


def test_an_output_that_cannot_be_written_is_refused_before_sampling(tmp_path, tiny_models, capsys, monkeypatch):
    from volgen.tasks.job import Sampling

    def no_sampling(*args, **kwargs):
        raise AssertionError("sampled before checking the output")

    monkeypatch.setattr(Sampling, "run", no_sampling)
    src = save_nifti(tmp_path / "scan-t2f.nii.gz", smooth_volume((32, 36, 8)), np.diag([2.0, 2.0, 8.0, 1.0]))
    assert main(["super-resolve", str(src), "-o", "/proc/volgen-x.nii.gz", "--model",
                 str(tiny_models["super_resolution"]), *FAST]) == 1
    line = _one_error_line(capsys, "/proc", "not writable")
    assert "partial" not in line


def test_a_mask_on_a_shifted_grid_is_refused_naming_the_shift(tmp_path, tiny_models, capsys):
    case = write_brats_case(tmp_path, "case-m", contrasts=("t2f",))
    shifted = np.diag([2.0, 2.0, 2.0, 1.0])
    shifted[:3, 3] = [0, 0, 4.0]
    mask = save_nifti(tmp_path / "mask.nii.gz", (smooth_volume((32, 36, 28)) > 500).astype(np.uint8), shifted)
    assert main(["inpaint", str(case / "case-m-t2f.nii.gz"), "--mask", str(mask), "-o", str(tmp_path / "x.nii.gz"),
                 "--model", str(tiny_models["inpainting"]), *FAST]) == 1
    _one_error_line(capsys, "mask.nii.gz", "origin (0.0, 0.0, 4.0) mm vs (0.0, 0.0, 0.0) mm")


def test_patlak_help_has_no_backbone_option(capsys):
    with pytest.raises(SystemExit):
        main(["patlak", "--help"])
    text = capsys.readouterr().out
    assert "--backbone" not in text and "--model" in text
    with pytest.raises(SystemExit):
        main(["synthesize", "--help"])
    assert "--backbone" in capsys.readouterr().out


def test_evaluate_prints_its_table_again_and_keeps_the_json(tmp_path, capsys):
    ref = save_nifti(tmp_path / "ref.nii.gz", smooth_volume())
    pred = save_nifti(tmp_path / "pred.nii.gz", smooth_volume() * 0.9)
    assert main(["evaluate", "--pred", str(pred), "--ref", str(ref)]) == 0
    first = capsys.readouterr()
    written = (tmp_path / "pred-metrics.json").read_bytes()
    assert main(["evaluate", "--pred", str(pred), "--ref", str(ref)]) == 0
    again = capsys.readouterr()
    assert "PSNR" in again.out and again.out.splitlines()[:2] == first.out.splitlines()[:2]
    assert "kept" in again.err and (tmp_path / "pred-metrics.json").read_bytes() == written


def test_a_target_the_case_has_is_left_out_of_the_default_conditions(tmp_path, tiny_models):
    """A complete case asked for --target t1c (to compare with the acquired one) conditions on the other three."""
    case = write_brats_case(tmp_path / "in", "case-full")
    out = tmp_path / "out"
    assert main(["synthesize", str(case), "--target", "t1c", "-o", str(out), "--model", str(tiny_models["synthesis"]),
                 *FAST]) == 0
    info = json.loads((out / "case-full" / "case-full-synthesis.json").read_text())
    assert info["targets"] == ["t1c"] and info["conditions"] == ["t1n", "t2w", "t2f"]
