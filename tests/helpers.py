"""What tests share: small test images written with nibabel directly (an independent writer), BraTS-layout case
folders, and the benches' harness (scripts/ is not a package: it is loaded from its file)."""
import importlib.util
import sys
from pathlib import Path

import nibabel as nib
import numpy as np

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts" / "benchmarks"


def load_script(name: str):
    if str(SCRIPTS) not in sys.path:          # the benches import each other by bare name, as when run as scripts
        sys.path.insert(0, str(SCRIPTS))
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


bench_harness = load_script("bench_harness")


def save_nifti(path, array, affine=None, dtype=None):
    """Write a test image with nibabel directly (an independent writer)."""
    img = nib.Nifti1Image(np.asarray(array), np.eye(4) if affine is None else affine)
    if dtype is not None:
        img.set_data_dtype(dtype)
    nib.save(img, str(path))
    return path


def smooth_volume(shape=(20, 24, 16), seed=0):
    """A smooth positive test volume with a zero background border."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    vol = ndimage.gaussian_filter(rng.random(shape), 2.0)
    vol = (vol - vol.min()) / np.ptp(vol) * 900 + 100
    vol[:2] = 0
    vol[:, -2:] = 0
    return vol.astype(np.float32)


def write_brats_case(root, name, shape=(32, 36, 28), affine=None, contrasts=("t1n", "t1c", "t2w", "t2f"),
                     dtype=np.int16, seed=0):
    """A BraTS-layout case folder of smooth volumes: root/name/name-<contrast>.nii.gz (and a seg)."""
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    affine = np.diag([2.0, 2.0, 2.0, 1.0]) if affine is None else affine
    for i, contrast in enumerate(contrasts):
        save_nifti(folder / f"{name}-{contrast}.nii.gz", smooth_volume(shape, seed=seed + i).astype(dtype), affine)
    seg = np.zeros(shape, np.uint8)
    seg[tuple(slice(n // 3, n // 3 + max(2, n // 6)) for n in shape)] = 1
    save_nifti(folder / f"{name}-seg.nii.gz", seg, affine)
    return folder


def assert_refused(capsys, argv: list, out: Path, needle: str) -> None:
    """`volgen ARGV -o OUT` exits 1 with one error line that holds `needle`, and leaves nothing under OUT."""
    from volgen.cli import main

    capsys.readouterr()
    assert main([*argv, "-o", str(out)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0], err
    assert not out.exists() or not any(out.iterdir())
