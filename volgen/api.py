"""The jobs from Python, with the CLI's defaults: take Volumes or paths, return Volumes; with `out=` they also write
the files the CLI writes (NIfTI, PNG montage, JSON sidecar).

    import volgen
    t1c = volgen.synthesize("BraTS-GLI-00001-000", cond="t1,t2,flair")["t1c"]
    thin = volgen.super_resolve("case-t2f.nii.gz", factor=4, out="case-t2f-sr.nii.gz")
    healthy = volgen.inpaint("case-t2f.nii.gz", "case-seg.nii.gz", mode="healthy")
    maps = volgen.patlak("sub-01_pet.nii.gz", input="sub-01_blood.tsv")     # {"Ki": Volume, "V": Volume}
    case = volgen.insert_lesion("healthy-case", "labels.nii.gz", out="healthy-case-lesion")   # every contrast + seg

Sampling settings (all optional): model (name or folder), backbone ("wavelet" | "latent"), steps (default 5 on
the CPU, 10 on a GPU), samples (K drawn as one batch: 2 on the CPU, 8 on a GPU), estimate ("mean": the posterior
mean, or "sample": one draw), sampler (ddim | ddpm | dpm++ | euler), guidance (1.0), seed (0), device, progress.
`run_synthesis`, `run_super_resolution` and `run_inpainting` return the whole JobResult, whose `uncertainty` holds
the per-voxel uncertainty map: for a posterior mean from a shipped module, the expected absolute error (the spread
over the samples calibrated, volgen/error_model.py), else the spread itself; with `out=` it is written beside each
output as `<name>-uncertainty.nii.gz`.
"""
from __future__ import annotations

from pathlib import Path

from volgen.io.contrasts import Case, FileNaming, find_case, parse_contrasts
from volgen.io.atomic import atomic_paths
from volgen.io.nifti import write_volume
from volgen.io.volume import Volume
from volgen.tasks.inpainting import inpaint as inpaint_job
from volgen.tasks.job import JobResult
from volgen.tasks.lesion import insert_lesion as insert_lesion_job
from volgen.tasks.lesion_mask import draw_labels
from volgen.tasks.patlak import output_names, patlak as patlak_job, stem_of, uncertainty_names
from volgen.tasks.patlak_error import prior_is_calibrated
from volgen.tasks.outputs import (check_outputs, companion_paths, output_paths, write_dataset_description,
                                  write_result)
from volgen.tasks.super_resolution import super_resolve as super_resolve_job
from volgen.tasks.synthesis import default_conditions, pick_targets, synthesize as synthesize_job


def _contrast_list(value):
    if value is None or isinstance(value, (list, tuple)):
        return value
    return parse_contrasts(value)


def synthesis_outputs(case_name: str, targets, out, naming: FileNaming = FileNaming()) -> tuple[dict, Path, Path]:
    """out/<case>/<case>-<target>.nii.gz for each target (in the input files' naming convention: BraTS 2021's
    <case>_t1ce.nii.gz for 2021 inputs), plus the case's montage and sidecar."""
    folder = Path(out) / case_name
    images = {t: folder / naming.file_name(case_name, t) for t in targets}
    return (images, *companion_paths(folder / f"{case_name}-synthesis.nii.gz"))


def run_synthesis(case, *, cond=None, target=None, out=None, overwrite=False, **settings) -> JobResult:
    cond = _contrast_list(cond)
    found = find_case(case) if isinstance(case, (str, Path)) else case if isinstance(case, Case) else None
    naming = found.naming if found is not None else FileNaming()
    if out is not None and found is not None:                  # refuse existing outputs before any work
        have = cond or default_conditions(found.paths, target)
        images, montage, sidecar = synthesis_outputs(found.name, pick_targets(have, target), out, naming)
        images = output_paths(images, _with_uncertainty(settings))
        check_outputs([*images.values(), montage, sidecar], overwrite=overwrite)
    result = synthesize_job(case, cond=cond, target=target, **settings)
    if out is not None:
        name = result.info["case"]
        images, montage, sidecar = synthesis_outputs(name, result.outputs, out, naming)
        title = f"{name}: {', '.join(result.outputs)} from {', '.join(result.inputs)} ({result.info['steps']} steps)"
        result.info = write_result(result, images, montage, sidecar, overwrite=overwrite, title=title)
    return result


def _with_uncertainty(settings: dict) -> bool:
    """Whether a job with these settings writes uncertainty maps (every default draws several samples)."""
    return (settings.get("samples") or 2) > 1


def _run_single(job, image, out, overwrite, title, **kwargs) -> JobResult:
    if out is not None:
        images = output_paths({"out": Path(out)}, _with_uncertainty(kwargs))
        check_outputs([*images.values(), *companion_paths(Path(out))], overwrite=overwrite)
    result = job(image, **kwargs)
    if out is not None:
        key = next(iter(result.outputs))
        result.info = write_result(result, {key: Path(out)}, *companion_paths(Path(out)), overwrite=overwrite,
                                   title=title(result))
    return result


def run_super_resolution(volume, *, factor=4, axis="z", out=None, overwrite=False, **settings) -> JobResult:
    return _run_single(super_resolve_job, volume, out, overwrite,
                       lambda r: f"{factor}x along {axis}: {r.info['input_spacing']} -> {r.info['output_spacing']} mm",
                       factor=factor, axis=axis, **settings)


def run_inpainting(volume, mask, *, mode="healthy", out=None, overwrite=False, **settings) -> JobResult:
    return _run_single(lambda v, **kw: inpaint_job(v, mask, **kw), volume, out, overwrite,
                       lambda r: f"inpainting ({mode}), {r.info['mask_voxels']} voxels", mode=mode, **settings)


def lesion_outputs(contrasts, out, naming: FileNaming = FileNaming()) -> tuple[dict, Path, Path]:
    """A new BraTS-layout case: out/<name>-<contrast>.nii.gz for each contrast and out/<name>-seg.nii.gz, where
    <name> is the folder's (in the input files' naming convention), plus its montage and sidecar."""
    folder = Path(out)
    images = {c: folder / naming.file_name(folder.name, c) for c in [*contrasts, "seg"]}
    return (images, *companion_paths(folder / f"{folder.name}.nii.gz"))


def run_lesion_insertion(case, labels, *, out=None, overwrite=False, **settings) -> JobResult:
    found = find_case(case) if isinstance(case, (str, Path)) else case if isinstance(case, Case) else None
    naming = found.naming if found is not None else FileNaming()
    if out is not None:
        contrasts = [c for c in found.paths if c != "seg"] if found is not None else list(case)
        images, montage, sidecar = lesion_outputs(contrasts, out, naming)
        with_uncertainty = output_paths({c: p for c, p in images.items() if c != "seg"}, _with_uncertainty(settings))
        check_outputs([*with_uncertainty.values(), images["seg"], montage, sidecar], overwrite=overwrite)
    result = insert_lesion_job(case, labels, **settings)
    if out is not None:
        images, montage, sidecar = lesion_outputs([c for c in result.outputs if c != "seg"], out, naming)
        title = (f"{Path(out).name}: tumour of {Path(result.info['labels']).name} in "
                 f"{', '.join(result.info['contrasts'])} ({result.info['steps']} steps)")
        result.info = write_result(result, images, montage, sidecar, overwrite=overwrite, title=title)
    return result


def insert_lesion(case, labels, *, out=None, overwrite=False, **settings) -> dict[str, Volume]:
    """Every contrast of a healthy case (folder, or {contrast: path or Volume}) with the tumour of a BraTS label map
    (1 necrotic core, 2 oedema, 3 enhancing tumour; path or Volume on the case's grid) drawn in: {contrast: Volume,
    "seg": the labels}. With `out=` (a folder) they are written as a BraTS-layout case named after the folder."""
    return run_lesion_insertion(case, labels, out=out, overwrite=overwrite, **settings).outputs


def lesion_mask(case, *, out=None, seed: int = 0, radius_mm: float | None = None, overwrite=False) -> Volume:
    """A plausible BraTS label map for a case that has none (volgen/tasks/lesion_mask.py), on its grid (int16);
    with `out=` (a NIfTI path) also written there; `radius_mm` fixes the tumour's size, the seed draws the rest."""
    if out is not None:
        check_outputs([Path(out)], overwrite=overwrite)
    reference, labels, info = draw_labels(case, seed=seed, radius_mm=radius_mm)
    volume = reference.with_array(labels, name=f"{info['case']}-seg", meta={"tumour": info})
    if out is not None:
        with atomic_paths([Path(out)], overwrite=overwrite) as (tmp,):
            write_volume(volume, tmp, overwrite=True)
    return volume


def patlak_outputs(pet, out, method: str = "ls", calibrated: bool = False) -> tuple[dict, dict, Path, Path]:
    """OUT/<stem>_model-patlak_meas-{Ki,V}_mimap.nii.gz, their uncertainty maps (meas-KiSE / KiErr / KiSD), the
    montage and the derivative JSON."""
    stem = stem_of(pet)
    images = {key: Path(out) / name for key, name in output_names(stem).items()}
    uncertainty = {key: Path(out) / name for key, name in uncertainty_names(stem, method, calibrated).items()}
    return (images, uncertainty, Path(out) / f"{stem}_model-patlak_mimap.png",
            Path(out) / f"{stem}_model-patlak_mimap.json")


def run_patlak(pet, *, input, out=None, overwrite=False, **options) -> JobResult:
    """Ki and V maps (method ls | smoothed | diffusion) of a 4D PET with its input function; with `out=` (a
    folder: a BIDS derivatives folder, given a dataset_description.json when it has none) the maps, their
    uncertainty, a montage and the derivative JSON are written there."""
    if out is not None:
        method = options.get("method", "ls")
        prior = options["sampling"].model if options.get("sampling") else options.get("model")
        calibrated = method == "diffusion" and prior_is_calibrated(prior)
        images, uncertainty, montage, sidecar = patlak_outputs(pet, out, method, calibrated)
        check_outputs([*images.values(), *uncertainty.values(), montage, sidecar], overwrite=overwrite)
    result = patlak_job(pet, input=input, **options)
    if out is not None:
        title = f"Patlak ({result.info['method']}), t* {result.info['tstar_min']:g} min"
        result.info = write_result(result, images, montage, sidecar, overwrite=overwrite, title=title,
                                   uncertainty=uncertainty)
        write_dataset_description(out)
    return result


def patlak(pet, *, input, out=None, overwrite=False, **options) -> dict[str, Volume]:
    """Patlak Ki (1/min) and V (mL/mL) maps of a 4D PET (path) given its plasma input (path): {"Ki", "V"}."""
    return run_patlak(pet, input=input, out=out, overwrite=overwrite, **options).outputs


def synthesize(case, *, cond=None, target=None, out=None, overwrite=False, **settings) -> dict[str, Volume]:
    """The missing contrast(s) of a case (folder, or {contrast: path or Volume}): {contrast: Volume}."""
    return run_synthesis(case, cond=cond, target=target, out=out, overwrite=overwrite, **settings).outputs


def super_resolve(volume, *, factor=4, axis="z", out=None, overwrite=False, **settings) -> Volume:
    """A thick-slice volume (Volume or path) with `factor`x thinner slices along `axis` (x, y or z)."""
    result = run_super_resolution(volume, factor=factor, axis=axis, out=out, overwrite=overwrite, **settings)
    return result.outputs["sr"]


def inpaint(volume, mask, *, mode="healthy", out=None, overwrite=False, **settings) -> Volume:
    """`volume` with the region under `mask` filled with healthy tissue (mode="healthy") or a lesion ("lesion")."""
    return run_inpainting(volume, mask, mode=mode, out=out, overwrite=overwrite, **settings).outputs["inpainted"]
