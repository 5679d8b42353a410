"""Batches: a folder of cases for synthesize, super-resolve and inpaint; under torchrun with two CPU processes
(gloo) the cases split across the processes, the outputs are those of one process, a bad case skips only itself,
and one summary is printed."""
import subprocess
import sys

import nibabel as nib
import numpy as np

from tests.helpers import save_nifti, smooth_volume, write_brats_case
from volgen.cli import main

FAST = ["--steps", "2", "--no-progress"]


def _cases(root):
    for i in range(3):
        write_brats_case(root, f"case-{i}", contrasts=("t1n", "t2w", "t2f"), seed=10 * i)
    bad = root / "case-1" / "case-1-t2w.nii.gz"
    bad.write_bytes(bad.read_bytes()[:200])                       # a truncated file: this case must fail alone
    return root


def _arrays(out):
    return {p.relative_to(out).as_posix(): np.asarray(nib.load(str(p)).dataobj)
            for p in sorted(out.rglob("*.nii.gz"))}


def test_two_processes_split_a_folder_and_give_the_outputs_of_one(tmp_path, tiny_models):
    cases = _cases(tmp_path / "cases")
    model = ["--model", str(tiny_models["synthesis"])]
    single = subprocess.run([sys.executable, "-m", "volgen", "synthesize", str(cases), "-o", str(tmp_path / "one"),
                             *model, *FAST], capture_output=True, text=True, timeout=600)
    assert single.returncode == 1 and "2 of 3 cases synthesised" in single.stdout, single.stderr[-2000:]
    launched = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                               "--master_port", "29517", "-m", "volgen", "synthesize", str(cases),
                               "-o", str(tmp_path / "two"), *model, *FAST], capture_output=True, text=True,
                              timeout=600)
    assert launched.returncode != 0                                # the bad case still fails the batch
    assert launched.stdout.count("cases synthesised") == 1, launched.stdout
    assert "2 of 3 cases synthesised" in launched.stdout and "failed: case-1" in launched.stdout
    assert launched.stderr.count("case-1:") == 1                   # reported once, by the process that had it
    one, two = _arrays(tmp_path / "one"), _arrays(tmp_path / "two")
    assert sorted(one) == sorted(two) and len(one) == 4            # t1c and its uncertainty for case-0 and case-2
    for name in one:
        np.testing.assert_array_equal(one[name], two[name])


def test_super_resolve_and_inpaint_take_folders(tmp_path, tiny_models, capsys):
    thick = tmp_path / "thick"
    thick.mkdir()
    for i in range(2):
        save_nifti(thick / f"scan{i}-t2f.nii.gz", smooth_volume((32, 32, 6), seed=i), np.diag([2.0, 2.0, 8.0, 1.0]))
    assert main(["super-resolve", str(thick), "-o", str(tmp_path / "sr"), "--model",
                 str(tiny_models["super_resolution"]), *FAST]) == 0
    assert sorted(p.name for p in (tmp_path / "sr").glob("*-sr.nii.gz")) == ["scan0-t2f-sr.nii.gz",
                                                                           "scan1-t2f-sr.nii.gz"]
    cases = tmp_path / "cases"
    for i in range(2):
        write_brats_case(cases, f"case-{i}", contrasts=("t2f",), seed=i)
    assert main(["inpaint", str(cases), "-o", str(tmp_path / "filled"), "--model", str(tiny_models["inpainting"]),
                 *FAST]) == 0
    assert (tmp_path / "filled/case-1/case-1-t2f-healthy.nii.gz").is_file()
    assert "2 of 2 cases inpainted" in capsys.readouterr().out
