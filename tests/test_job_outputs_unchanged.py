"""The shipped models' outputs stay what they were: one case per job (a crop of a phantom), at fp32 with the CPU
defaults, compared with the outputs recorded in tests/data/job_outputs.npz (every third voxel along each axis, and
the sum of all). A refactor that changes a job's arithmetic fails here; a change meant to alter an output re-records
them with `python tests/test_job_outputs_unchanged.py` and says why in its commit.

Recorded on this repository's 2-core CPU; the tolerance (1e-5 of the output's range) absorbs the last-bit
differences another CPU's vector units may give, nothing a change of method would. Inpainting registers its atlas to
the case by 200 Adam steps (modules/registration.py), which amplify those differences: on an AMD EPYC with AVX-512
its outputs came out up to 8e-5 of the range off the record (50 of 3584 sampled voxels past 1e-5; every other job
within 3e-7), so its entries get 1e-3, still far under what a change of its method moves."""
import json
import sys
from pathlib import Path

import nibabel as nib
import numpy as np

REFERENCE = Path(__file__).parent / "data" / "job_outputs.npz"
CROP = (slice(28, 76), slice(36, 84), slice(36, 76))          # 48 x 48 x 40 voxels around the phantom's centre
SETTINGS = dict(precision="fp32", seed=3, device="cpu")
TOLERANCE = 1e-5                        # of the output's range
ITERATIVE_TOLERANCE = {"inpainting healthy": 1e-3, "inpainting lesion": 1e-3}     # registered by an optimiser


def _crop_case(folder: Path, out: Path) -> dict[str, Path]:
    """The case's files cropped to CROP (nibabel's slicer keeps the affine right)."""
    out.mkdir(parents=True, exist_ok=True)
    name = folder.name
    paths = {}
    for suffix in ("t1n", "t1c", "t2w", "t2f", "seg", "pet"):
        image = nib.load(folder / f"{name}-{suffix}.nii.gz")
        cropped = image.slicer[CROP] if image.ndim == 3 else image.slicer[(*CROP, slice(None))]
        paths[suffix] = out / f"crop-{suffix}.nii.gz"
        nib.save(cropped, str(paths[suffix]))
    (out / "crop-pet.json").write_text((folder / f"{name}-pet.json").read_text())
    paths["blood"] = out / "crop-blood.tsv"
    paths["blood"].write_text((folder / f"{name}-blood.tsv").read_text())
    (out / "crop-blood.json").write_text((folder / f"{name}-blood.json").read_text())
    return paths


def job_outputs(folder: Path, work: Path) -> dict[str, np.ndarray]:
    """Every job's output arrays on the cropped case, by name."""
    from volgen.api import run_inpainting, run_patlak, run_super_resolution, run_synthesis
    from volgen.io.nifti import read_volume
    from volgen.tasks.super_resolution import thick_volume

    paths = _crop_case(folder, work)
    out = {}
    made = run_synthesis({c: paths[c] for c in ("t1n", "t2w", "t2f")}, target="t1c", **SETTINGS)
    out["synthesis t1c"] = made.outputs["t1c"].array
    out["synthesis t1c uncertainty"] = made.uncertainty["t1c"].array
    t2f = read_volume(paths["t2f"])
    made = run_super_resolution(thick_volume(t2f.with_array(t2f.array.astype(np.float32)), 4, 2), factor=4,
                                axis="z", contrast="t2f", **SETTINGS)
    out["super-resolution"] = made.outputs["sr"].array
    for mode in ("healthy", "lesion"):
        made = run_inpainting(paths["t2f"], paths["seg"], mode=mode, **SETTINGS)
        out[f"inpainting {mode}"] = made.outputs["inpainted"].array
    made = run_patlak(paths["pet"], input=paths["blood"], method="ls")
    out["patlak ls Ki"] = made.outputs["Ki"].array
    made = run_patlak(paths["pet"], input=paths["blood"], method="diffusion", steps=3, samples=2, **SETTINGS)
    out["patlak diffusion Ki"] = made.outputs["Ki"].array
    return out


def _summary(array: np.ndarray) -> np.ndarray:
    values = np.asarray(array, dtype=np.float64)
    return np.concatenate([values[::3, ::3, ::3].ravel(), [values.sum()]])


def test_the_shipped_models_give_the_recorded_outputs(phantom_dir, tmp_path):
    recorded = np.load(REFERENCE)
    outputs = job_outputs(phantom_dir, tmp_path)
    assert sorted(outputs) == sorted(recorded.files)
    for name, array in outputs.items():
        expected = recorded[name]
        got = _summary(array)
        span = float(np.ptp(expected[:-1])) or 1.0
        assert got.shape == expected.shape, name
        tolerance = ITERATIVE_TOLERANCE.get(name, TOLERANCE) * span
        assert np.abs(got[:-1] - expected[:-1]).max() <= tolerance, (name, np.abs(got - expected).max())
        assert abs(got[-1] - expected[-1]) <= tolerance * array.size, name


if __name__ == "__main__":            # re-record (from the repository root): python tests/test_job_outputs_unchanged.py
    import tempfile

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from volgen.phantom import PhantomSpec, generate_case, write_case
    from volgen.phantom.pet import PetSpec

    with tempfile.TemporaryDirectory() as tmp:
        case = generate_case(seed=7, index=0, spec=PhantomSpec(pet=PetSpec(dose=None, psf_fwhm_mm=0.0)))
        folder = write_case(case, Path(tmp) / "phantoms", montage=False)
        outputs = job_outputs(folder, Path(tmp) / "work")
    REFERENCE.parent.mkdir(exist_ok=True)
    np.savez_compressed(REFERENCE, **{name: _summary(a) for name, a in outputs.items()})
    print(json.dumps({name: float(np.asarray(a, dtype=np.float64).sum()) for name, a in outputs.items()}, indent=1))
