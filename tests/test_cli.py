import json
import subprocess
import sys

import numpy as np
import pytest

from tests.helpers import save_nifti, smooth_volume
from volgen.cli import main
from volgen.io.preprocess import MEDIAN_LEVEL


def test_phantom_command_writes_cases_and_keeps_existing_ones(tmp_path, capsys):
    out = tmp_path / "corpus"
    args = ["phantom", "--n", "1", "--seed", "5", "--out", str(out), "--no-pet", "--no-montage"]
    assert main(args) == 0
    case = out / "phantom-s5-0000"
    t1n = case / "phantom-s5-0000-t1n.nii.gz"
    assert t1n.exists() and not (case / "phantom-s5-0000-pet.nii.gz").exists()
    stamp = t1n.stat().st_mtime_ns
    capsys.readouterr()
    assert main(args) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "phantom-s5-0000" in err and "--overwrite" in err
    assert t1n.stat().st_mtime_ns == stamp
    assert main(args + ["--overwrite"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["phantom-s5-0000"]   # no temporary folders left


def test_evaluate_prints_a_table_and_writes_json(tmp_path, capsys):
    ref = smooth_volume()
    pred = ref + np.random.default_rng(0).normal(0, 10, ref.shape).astype(np.float32)
    mask = (ref > 500).astype(np.uint8)
    r = save_nifti(tmp_path / "ref.nii.gz", ref)
    p = save_nifti(tmp_path / "pred.nii.gz", pred)
    m = save_nifti(tmp_path / "mask.nii.gz", mask)
    assert main(["evaluate", "--pred", str(p), "--ref", str(r), "--mask", f"bright={m}"]) == 0
    printed = capsys.readouterr().out
    assert "bright" in printed and "PSNR" in printed
    report = json.loads((tmp_path / "pred-metrics.json").read_text())
    mse = float(np.mean((pred.astype(np.float64) - ref) ** 2))
    assert report["regions"]["all"]["mse"] == pytest.approx(mse, rel=1e-6)
    assert report["regions"]["all"]["psnr"] == pytest.approx(10 * np.log10(np.ptp(ref) ** 2 / mse), rel=1e-6)
    assert main(["evaluate", "--pred", str(p), "--ref", str(r)]) == 0      # JSON exists: kept, the table printed
    assert main(["evaluate", "--pred", str(p), "--ref", str(r), "--overwrite"]) == 0


@pytest.mark.parametrize("command", ["phantom", "evaluate", "synthesize", "super-resolve", "inpaint", "patlak", "models",
                                     "train", "calibrate"])
def test_help_is_complete_with_an_example(command):
    out = subprocess.run([sys.executable, "-m", "volgen", command, "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "example" in out.stdout and f"volgen {command}" in out.stdout


def test_evaluate_normalize_compares_images_in_different_units(tmp_path, capsys):
    ref = smooth_volume((20, 24, 16))
    r = save_nifti(tmp_path / "case-t1c.nii.gz", ref)
    # the reference on volgen's [0, 1] scale by hand: background 0, the head's median at t1c's level
    high = np.median(ref[ref > ref.min()]) / MEDIAN_LEVEL["t1c"]
    p = save_nifti(tmp_path / "pred.nii.gz", np.clip((ref - ref.min()) / (high - ref.min()), 0, 1))
    assert main(["evaluate", "--pred", str(p), "--ref", str(r), "--normalize", "--json", str(tmp_path / "n.json")]) == 0
    assert json.loads((tmp_path / "n.json").read_text())["regions"]["all"]["mse"] < 1e-10
    assert main(["evaluate", "--pred", str(p), "--ref", str(r), "--json", str(tmp_path / "raw.json")]) == 0
    assert json.loads((tmp_path / "raw.json").read_text())["regions"]["all"]["psnr"] < 10


def test_evaluate_normalize_needs_the_references_contrast(tmp_path, capsys):
    r = save_nifti(tmp_path / "reference.nii.gz", smooth_volume((20, 24, 16)))
    args = ["evaluate", "--pred", str(r), "--ref", str(r), "--normalize", "--json", str(tmp_path / "n.json")]
    assert main(args) != 0 and "--contrast" in capsys.readouterr().err
    assert not (tmp_path / "n.json").exists()
    assert main(args + ["--contrast", "flair"]) == 0


def test_the_command_and_its_parser_do_not_import_torch():
    """`volgen --version` and `--help` answer at once: torch and MONAI load only when a job needs them."""
    code = "import sys; from volgen.cli import build_parser; build_parser(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == "False", out.stderr


@pytest.mark.parametrize("value", ["2,1", "0,2", "1", "a,b"])
def test_phantom_refuses_a_bad_tumour_uptake_range(tmp_path, capsys, value):
    assert main(["phantom", "--out", str(tmp_path / "never"), "--pet-tumour-uptake", value]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--pet-tumour-uptake must be LOW,HIGH" in err[0], err
    assert not (tmp_path / "never").exists()
