"""The wheel is the product: built from this checkout, installed without dependencies into a fresh virtual environment
that reuses this test environment's packages (torch, MONAI, ...) through a .pth file, and run from another folder:
`volgen --version`, `python -m volgen`, the shipped models and their cards, the packaged training configs, and one
job with the shipped default model. Nothing from the checkout may be imported."""
import json
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

import volgen
from tests.helpers import write_brats_case

ROOT = Path(__file__).parents[1]


def _run(args, cwd, **kwargs):
    result = subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=600, **kwargs)
    assert result.returncode == 0, f"{args}: {result.stderr[-2000:]}"
    return result.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(python, volgen command) of a fresh environment holding only the wheel, and the folder to run from."""
    root = tmp_path_factory.mktemp("wheel")
    # --no-build-isolation: build with this environment's setuptools, no download
    _run([sys.executable, "-m", "pip", "wheel", ROOT, "--no-deps", "--no-build-isolation", "-q", "-w", root / "dist"],
         cwd=root)
    wheel = next((root / "dist").glob("volgen-*.whl"))
    env = root / "env"
    venv.create(env, with_pip=False)
    python = env / "bin" / "python"
    site = Path(_run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], cwd=root).strip())
    # the test environment's packages, after the new environment's own (so the wheel's volgen wins)
    (site / "test-environment.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _run([sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index", "-q", wheel],
         cwd=root)
    elsewhere = root / "elsewhere"
    elsewhere.mkdir()
    return python, env / "bin" / "volgen", elsewhere, site


def test_the_installed_package_is_the_wheel_not_the_checkout(installed):
    python, _, elsewhere, site = installed
    where = _run([python, "-c", "import volgen; print(volgen.__file__)"], cwd=elsewhere).strip()
    assert Path(where).is_relative_to(site), where


def test_version_is_single_sourced_and_python_m_volgen_is_the_command(installed):
    python, volgen_command, elsewhere, _ = installed
    assert _run([volgen_command, "--version"], cwd=elsewhere).strip() == f"volgen {volgen.__version__}"
    assert _run([python, "-m", "volgen", "--version"], cwd=elsewhere).strip() == f"volgen {volgen.__version__}"


def test_the_wheel_carries_models_cards_and_configs(installed):
    _, volgen_command, elsewhere, site = installed
    models = json.loads(_run([volgen_command, "models", "--json"], cwd=elsewhere))
    assert {m["name"] for m in models} >= {"volgen-wavelet-brain-2mm", "volgen-vcm-synthesis-2mm",
                                           "volgen-vcm-super-resolution-2mm", "volgen-vcm-inpainting-2mm"}
    for m in models:
        assert Path(m["card"]).is_file() and Path(m["card"]).is_relative_to(site), m
    listed = _run([volgen_command, "train", "--list"], cwd=elsewhere)
    assert "vcm_synthesis" in listed and "backbone_wavelet" in listed


def test_a_job_runs_from_another_folder_with_the_shipped_default(installed):
    _, volgen_command, elsewhere, _ = installed
    case = write_brats_case(elsewhere / "cases", "case-w", contrasts=("t1n", "t2w", "t2f"))
    _run([volgen_command, "synthesize", case, "-o", "out", "--steps", "1", "--no-progress"], cwd=elsewhere)
    info = json.loads((elsewhere / "out/case-w/case-w-synthesis.json").read_text())
    assert info["model"]["name"] == "volgen-vcm-synthesis-2mm" and info["software"]["version"] == volgen.__version__
    assert (elsewhere / "out/case-w/case-w-t1c.nii.gz").is_file()


def test_fine_tuning_a_shipped_module_on_a_folder_of_cases_is_one_command(installed):
    _, volgen_command, elsewhere, _ = installed
    for i in range(2):
        write_brats_case(elsewhere / "my_cases", f"sub-{i}", seed=10 * i)
    out = _run([volgen_command, "train", "vcm_synthesis", "data.root=my_cases", "init_from=volgen-vcm-synthesis-2mm",
                "output.dir=runs/my-vcm", "train.steps=1", "train.checkpoint_every=1", "--no-progress"],
               cwd=elsewhere)
    assert "model written to runs/my-vcm/model" in out
    _run([volgen_command, "synthesize", elsewhere / "my_cases/sub-0", "--cond", "t1n,t2w", "--target", "t1c",
          "-o", "tuned", "--model", "runs/my-vcm/model", "--steps", "1", "--no-progress"], cwd=elsewhere)
    assert (elsewhere / "tuned/sub-0/sub-0-t1c.nii.gz").is_file()
