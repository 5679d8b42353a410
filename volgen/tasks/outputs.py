"""Writing a job's result: its NIfTI outputs, a PNG montage and a JSON sidecar, all or none of them."""
from __future__ import annotations

import json
import time
from pathlib import Path

from volgen.io.atomic import atomic_paths, check_output, split_suffix
from volgen.io.montage import save_montage
from volgen.io.nifti import is_nifti_path, write_volume
from volgen.errors import InputError
from volgen.tasks.job import JobResult


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
                 overwrite: bool = False, title: str = "") -> dict:
    """Write result.outputs[key] to images[key], the montage and the sidecar (which lists the others)."""
    paths = [*images.values(), montage, sidecar]
    check_outputs(paths, overwrite=overwrite)
    start = time.perf_counter()
    with atomic_paths(paths, overwrite=overwrite) as tmps:
        for (key, _), tmp in zip(images.items(), tmps):
            write_volume(result.outputs[key], tmp, overwrite=True)
        shown = {**result.inputs, **{f"{k} (volgen)": v for k, v in result.outputs.items()}}
        save_montage(shown, tmps[-2], labels=result.labels, overwrite=True, title=title)
        info = {**result.info, "outputs": {k: str(p) for k, p in images.items()}, "montage": str(montage)}
        info["seconds"] = {**info.get("seconds", {}), "write": round(time.perf_counter() - start, 3)}
        tmps[-1].write_text(json.dumps(info, indent=1, default=str))
    return info
