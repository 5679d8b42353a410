"""Writing a job's result: its NIfTI outputs, a PNG montage and a JSON sidecar, all or none of them."""
from __future__ import annotations

import json
import time
from pathlib import Path

from volgen.provenance import software
from volgen.io.atomic import atomic_paths, check_output, split_suffix
from volgen.io.montage import save_montage
from volgen.io.nifti import is_nifti_path, write_volume
from volgen.io.pet import BIDS_VERSION
from volgen.errors import InputError
from volgen.tasks.job import JobResult


def uncertainty_path(nifti: Path) -> Path:
    """The uncertainty map beside a NIfTI output: out/x.nii.gz -> out/x-uncertainty.nii.gz."""
    stem, suffix = split_suffix(Path(nifti))
    return Path(nifti).with_name(f"{stem}-uncertainty{suffix}")


def output_paths(images: dict[str, Path], with_uncertainty: bool,
                 uncertainty: dict[str, Path] | None = None) -> dict[str, Path]:
    """Every NIfTI a result writes: each output, and its uncertainty map under '<key> uncertainty' (at
    `uncertainty[key]` where given, else `uncertainty_path`)."""
    if not with_uncertainty:
        return dict(images)
    named = uncertainty or {}
    return {**images, **{f"{k} uncertainty": named.get(k) or uncertainty_path(p) for k, p in images.items()}}


def companion_paths(nifti: Path) -> tuple[Path, Path]:
    """(montage PNG, JSON sidecar) beside a NIfTI output: out/x.nii.gz -> out/x.png, out/x.json."""
    stem, _ = split_suffix(Path(nifti))
    return Path(nifti).with_name(stem + ".png"), Path(nifti).with_name(stem + ".json")


def check_outputs(paths, *, overwrite: bool) -> None:
    """Refuse before any work: an image output that is not NIfTI, an existing output, an unwritable folder."""
    for path in paths:
        if Path(path).suffix not in (".png", ".json") and not is_nifti_path(path):
            raise InputError(path, "output must end in .nii or .nii.gz")
        check_output(path, overwrite=overwrite)


def write_result(result: JobResult, images: dict[str, Path], montage: Path, sidecar: Path, *,
                 overwrite: bool = False, title: str = "", uncertainty: dict[str, Path] | None = None) -> dict:
    """Write result.outputs[key] to images[key] and its uncertainty map beside it (`uncertainty_path`, or
    `uncertainty[key]`), the montage (inputs, outputs, uncertainty) and the sidecar (which lists the others)."""
    volumes = {**result.outputs, **{f"{k} uncertainty": v for k, v in result.uncertainty.items()}}
    nifti = {k: p for k, p in output_paths(images, bool(result.uncertainty), uncertainty).items() if k in volumes}
    paths = [*nifti.values(), montage, sidecar]
    check_outputs(paths, overwrite=overwrite)
    start = time.perf_counter()
    with atomic_paths(paths, overwrite=overwrite) as tmps:
        for (key, _), tmp in zip(nifti.items(), tmps):
            write_volume(volumes[key], tmp, overwrite=True)
        shown = {**result.inputs, **{f"{k} (volgen)": v for k, v in result.outputs.items()},
                 **{f"{k} uncertainty": v for k, v in result.uncertainty.items()}}
        save_montage(shown, tmps[-2], labels=result.labels, overwrite=True, title=title)
        info = {"software": software(), **result.info,
                "outputs": {k: str(p) for k, p in images.items()},
                "uncertainty_maps": {k: str(nifti[f"{k} uncertainty"]) for k in result.uncertainty},
                "montage": str(montage)}
        info["seconds"] = {**info.get("seconds", {}), "write": round(time.perf_counter() - start, 3)}
        tmps[-1].write_text(json.dumps(info, indent=1, default=str))
    return info


def write_dataset_description(folder) -> Path:
    """A BIDS derivatives folder's dataset_description.json, written once (an existing one is the user's: kept)."""
    path = Path(folder) / "dataset_description.json"
    if not path.exists():
        description = {"Name": "volgen Patlak parametric maps", "BIDSVersion": BIDS_VERSION,
                       "DatasetType": "derivative",
                       "GeneratedBy": [{"Name": "volgen", "Version": software()["version"],
                                        "Description": "voxel-wise Patlak graphical analysis (Ki, V)"}]}
        with atomic_paths([path], overwrite=False) as (tmp,):
            tmp.write_text(json.dumps(description, indent=1))
    return path
