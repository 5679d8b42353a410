"""One phantom case (four MR contrasts, labels, healthy twin, dynamic PET) and a corpus of them on disk."""
from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import nibabel as nib
import numpy as np

from volgen.version import __version__
from volgen.io.atomic import atomic_folder
from volgen.io.contrasts import MRI_CONTRASTS
from volgen.io.montage import save_montage
from volgen.io.volume import Volume
from volgen.phantom.anatomy import random_warp, smooth_field, warp
from volgen.phantom.atlas import load_atlas
from volgen.phantom.mri import MRISpec, RicianNoise, bias_field, jitter_tissues, render
from volgen.phantom.pet import PetSpec, PetStudy, simulate_pet
from volgen.phantom.tumour import TumourSpec, random_tumour
from volgen.phantom.pet_bids import blood_sidecar, pet_sidecar, write_blood_tsv

LESION_TISSUE = {1: "necrotic", 2: "oedema", 3: "enhancing"}


@dataclass(frozen=True)
class PhantomSpec:
    spacing: int = 2                    # 1 or 2 mm
    tumour: bool = True
    mri: MRISpec = field(default_factory=MRISpec)
    lesion: TumourSpec = field(default_factory=TumourSpec)
    pet: PetSpec | None = field(default_factory=PetSpec)

    def without_noise(self) -> "PhantomSpec":
        """The same spec with no Rician noise: a case drawn with it is the noisy draw's signal (the noise stream is
        still drawn, so every other draw is unchanged); the benches score it as what a perfect estimate reaches."""
        return replace(self, mri=replace(self.mri, noise=(0.0, 0.0)))


@dataclass
class PhantomCase:
    name: str
    affine: np.ndarray
    images: dict[str, np.ndarray]            # t1n, t1c, t2w, t2f (with the tumour, if any)
    healthy: dict[str, np.ndarray] | None    # the same case without the tumour (same anatomy, bias and noise)
    seg: np.ndarray                          # uint8 BraTS labels
    brain: np.ndarray                        # uint8 brain mask (the skull-strip)
    pet: PetStudy | None
    info: dict
    fractions: dict[str, np.ndarray]         # tissue fractions behind the images (csf, gm, wm, lesion tissues)


def case_name(seed: int, index: int) -> str:
    return f"phantom-s{seed}-{index:04d}"


def _streams(seed: int, index: int) -> dict[str, np.random.Generator]:
    """Independent streams per part, so changing one part's parameters leaves the others' draws alone."""
    names = ("warp", "lesion", "contrast", "noise", "texture", "pet")
    children = np.random.SeedSequence([seed, index]).spawn(len(names))
    return {n: np.random.default_rng(c) for n, c in zip(names, children)}


def generate_case(seed: int, index: int = 0, spec: PhantomSpec = PhantomSpec()) -> PhantomCase:
    """Deterministic in (seed, index, spec)."""
    rng = _streams(seed, index)
    atlas = load_atlas(spec.spacing)
    coords = random_warp(atlas.shape, atlas.spacing, rng["warp"])
    healthy = {name: warp(getattr(atlas, name), coords) for name in ("csf", "gm", "wm")}
    brain_fraction = healthy["csf"] + healthy["gm"] + healthy["wm"]
    brain = brain_fraction >= 0.5
    seg = np.zeros(atlas.shape, np.uint8)
    info = {"seed": seed, "index": index, "spacing_mm": spec.spacing, "volgen": __version__}
    if spec.tumour:
        seg, info["tumour"] = random_tumour(brain_fraction, healthy["gm"], healthy["wm"], atlas.affine,
                                            rng["lesion"], spec.lesion)
        seg[~brain] = 0
    fractions = _with_lesion(healthy, brain_fraction, seg)

    tissues = jitter_tissues(spec.mri.tissues, rng["contrast"], spec.mri.jitter)
    gd = rng["contrast"].uniform(*spec.mri.gd_mM)
    enh = tissues["enhancing"]
    tissues["enhancing"] = type(enh)(enh.t1, enh.t2, enh.pd, gd)
    texture_field = smooth_field(atlas.shape, rng["texture"], spec.mri.texture_mm, atlas.spacing)[0]
    texture = 1.0 + spec.mri.texture * np.tanh(texture_field)
    images, twins, sigmas = {}, {}, {}
    for contrast in MRI_CONTRASTS:
        seq = spec.mri.sequences[contrast]
        gain = np.float32(spec.mri.scale * rng["contrast"].uniform(0.9, 1.1)) * texture
        gain = gain * bias_field(atlas.shape, rng["contrast"], spec.mri.bias)
        noise = RicianNoise.draw(atlas.shape, rng["noise"])
        clean = render(fractions, tissues, seq) * gain
        sigma = float(rng["noise"].uniform(*spec.mri.noise) * np.percentile(clean[brain], 99))
        images[contrast] = np.where(brain, noise.apply(clean, sigma), 0).astype(np.float32)
        if spec.tumour:
            clean_twin = render(healthy, tissues, seq) * gain
            twins[contrast] = np.where(brain, noise.apply(clean_twin, sigma), 0).astype(np.float32)
        sigmas[contrast] = sigma
    info["noise_sigma"] = sigmas
    info["gd_mM"] = float(gd)
    info["tissues"] = {k: asdict(v) for k, v in tissues.items()}
    pet = simulate_pet(fractions, atlas.spacing, rng["pet"], spec.pet) if spec.pet is not None else None
    if pet is not None and pet.bed_slices:
        info["pet_beds"] = [{"slices": list(s), "frames": int((pet.bed_of_frame == b).sum())}
                            for b, s in enumerate(pet.bed_slices)]
    return PhantomCase(case_name(seed, index), atlas.affine.copy(), images, twins or None, seg,
                       brain.astype(np.uint8), pet, info, fractions)


def _with_lesion(healthy: dict[str, np.ndarray], brain_fraction: np.ndarray, seg: np.ndarray) -> dict:
    """Tissue fractions with each labelled voxel's brain fraction handed to its lesion tissue."""
    out = {name: np.where(seg > 0, 0, frac).astype(np.float32) for name, frac in healthy.items()}
    for label, tissue in LESION_TISSUE.items():
        out[tissue] = np.where(seg == label, brain_fraction, 0).astype(np.float32)
    return out


def _header(description: str, dtype) -> nib.Nifti1Header:
    header = nib.Nifti1Header()
    header.set_xyzt_units("mm", "sec")
    header["descrip"] = description[:79].encode()
    header.set_data_dtype(dtype)
    return header


STATIC_FROM_MIN = 40.0


def static_pet(pet: PetStudy) -> np.ndarray:
    """The static scan a clinic would take: the mean of the frames from 40 min on (activity per mL); with beds, of
    each voxel's own frames."""
    late = pet.schedule.start >= STATIC_FROM_MIN - 1e-9
    shape = (-1,) + (1,) * (pet.frames.ndim - 1)
    weights = pet.schedule.duration[late].reshape(shape) * (1.0 if pet.valid is None else pet.valid[late])
    return (np.nansum(weights * pet.frames[late], 0) / weights.sum(0)).astype(np.float32)


def case_volumes(case: PhantomCase) -> dict[str, Volume]:
    """Every file of the case as {file suffix: Volume}."""
    def vol(array, what):
        return Volume(array=array, affine=case.affine, header=_header(f"volgen phantom {what}", array.dtype))

    out = {c: vol(a, c) for c, a in case.images.items()}
    out["seg"] = vol(case.seg, "seg (1 NCR, 2 ED, 3 ET)")
    out["brainmask"] = vol(case.brain, "brain mask")
    for c, a in (case.healthy or {}).items():
        out[f"{c}-healthy"] = vol(a, f"{c} healthy twin")
    if case.pet is not None:
        if case.pet.valid is not None:
            out.update(bed_volumes(case))
        else:
            out["pet"] = vol(np.moveaxis(case.pet.frames, 0, -1), "dynamic FDG PET")
        out["pet-ki"] = vol(case.pet.ki, "Patlak Ki (1/min)")
        out["pet-v"] = vol(case.pet.v, "Patlak V (mL/mL)")
        out["petsum"] = vol(static_pet(case.pet), "static FDG PET, mean of the 40-60 min frames")
    return out


def write_case(case: PhantomCase, root, *, overwrite: bool = False, montage: bool = True) -> Path:
    """Write `<root>/<case>/<case>-<suffix>.nii.gz` (+ PET TSVs, JSON, montage), all or nothing."""
    target = Path(root) / case.name
    with atomic_folder(target, overwrite=overwrite) as tmp:
        volumes = case_volumes(case)
        for suffix, volume in volumes.items():
            nib.save(nib.Nifti1Image(volume.array, volume.affine, volume.header), str(tmp / f"{case.name}-{suffix}.nii.gz"))
        if case.pet is not None and case.pet.valid is None:      # beds: the timing is in each bed's sidecar
            s = case.pet.schedule
            _write_tsv(tmp / f"{case.name}-pet-frames.tsv", ("frame_start_min", "frame_end_min", "duration_min"),
                       np.stack([s.start, s.end, s.duration], 1))
        if case.pet is not None:
            _write_tsv(tmp / f"{case.name}-pet-input.tsv", ("time_min", "plasma_activity"),
                       np.stack([case.pet.input_time, case.pet.input_activity], 1))
            _write_pet_bids(case, tmp)
        (tmp / f"{case.name}-phantom.json").write_text(json.dumps(case.info, indent=1))
        if montage:
            save_montage_of_case(case, volumes, tmp / f"{case.name}-montage.png")
    return target


def write_twin_case(case_folder, out) -> Path:
    """A written phantom case's healthy twins as a case folder of their own (`out`, its files named after it): what
    a user's healthy case looks like, for the jobs that take one (lesion insertion)."""
    case_folder, out = Path(case_folder), Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for contrast in MRI_CONTRASTS:
        shutil.copyfile(case_folder / f"{case_folder.name}-{contrast}-healthy.nii.gz",
                        out / f"{out.name}-{contrast}.nii.gz")
    return out


def bed_volumes(case: PhantomCase) -> dict[str, Volume]:
    """A study scanned bed by bed: {"bed<k>-pet": that bed's slices and frames}, each on its own grid (its affine
    starts at its first slice)."""
    out = {}
    for b, (first, end) in enumerate(case.pet.bed_slices):
        frames = case.pet.frames[case.pet.bed_of_frame == b][..., first:end]
        affine = case.affine.copy()
        affine[:3, 3] += affine[:3, 2] * first
        array = np.moveaxis(frames, 0, -1).astype(np.float32)
        out[f"bed{b + 1}-pet"] = Volume(array=array, affine=affine,
                                        header=_header(f"volgen phantom dynamic FDG PET, bed {b + 1}", array.dtype))
    return out


def _write_pet_bids(case: PhantomCase, folder: Path) -> None:
    """The PET-BIDS view of the study beside the case's files: the 4D image's sidecar (one per bed when scanned bed
    by bed) and the blood TSV + JSON."""
    if case.pet.valid is None:
        (folder / f"{case.name}-pet.json").write_text(json.dumps(pet_sidecar(case), indent=1))
    for b in range(len(case.pet.bed_slices or ())):
        sidecar = pet_sidecar(case, case.pet.bed_of_frame == b)
        (folder / f"{case.name}-bed{b + 1}-pet.json").write_text(json.dumps(sidecar, indent=1))
    write_blood_tsv(case, folder / f"{case.name}-blood.tsv")
    (folder / f"{case.name}-blood.json").write_text(json.dumps(blood_sidecar(), indent=1))


def _write_tsv(path: Path, columns, table: np.ndarray) -> None:
    np.savetxt(path, table, fmt="%.10g", delimiter="\t", header="\t".join(columns), comments="")


def read_tsv(path) -> dict[str, np.ndarray]:
    """Columns of a TSV written by volgen (header row, tab separated)."""
    table = np.genfromtxt(path, delimiter="\t", names=True)
    return {name: np.asarray(table[name], dtype=np.float64) for name in table.dtype.names}


def save_montage_of_case(case: PhantomCase, volumes: dict[str, Volume], path) -> Path:
    rows = {c: volumes[c] for c in MRI_CONTRASTS}
    if case.healthy:
        rows["t2f healthy twin"] = volumes["t2f-healthy"]
    if case.pet is not None:
        rows["PET Ki"] = volumes["pet-ki"]
        rows["PET 40-60 min"] = volumes["petsum"]
    return save_montage(rows, path, labels=volumes["seg"] if case.seg.any() else None, overwrite=True,
                        title=f"{case.name}  ({case.info['spacing_mm']} mm)")
