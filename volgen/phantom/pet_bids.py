"""A phantom's PET study in PET-BIDS terms: the 4D image's `_pet.json` sidecar and the arterial plasma input as a
`_blood.tsv` with its `.json`; and a whole PET-BIDS dataset, `sub-<label>/pet/sub-<label>_pet.nii.gz`,
`sub-<label>_pet.json`, `sub-<label>_recording-manual_blood.tsv` / `.json`, with the dataset's own files."""
from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np

from volgen.version import __version__
from volgen.io.atomic import atomic_folder, atomic_paths
from volgen.io.pet import BIDS_VERSION

PET_UNITS = "kBq/mL"
INJECTED_MBQ = 185.0          # a typical adult FDG dose; the phantom's activity is per unit of it


def pet_sidecar(case, frames=None) -> dict:
    """The `_pet.json` of a phantom's dynamic study (of its `frames`, a bed's, when given): timing in seconds,
    units, decay correction and the fields PET-BIDS requires (those a phantom has no value for are "n/a")."""
    s = case.pet.schedule
    if frames is not None:
        s = type(s)(start=s.start[frames], end=s.end[frames])
    return {"Manufacturer": "volgen", "ManufacturersModelName": "phantom", "Modality": "PT",
            "TracerName": "FDG", "TracerRadionuclide": "F18", "Units": PET_UNITS,
            "InjectedRadioactivity": INJECTED_MBQ, "InjectedRadioactivityUnits": "MBq",
            "InjectedMass": "n/a", "InjectedMassUnits": "n/a", "SpecificRadioactivity": "n/a",
            "SpecificRadioactivityUnits": "n/a", "ModeOfAdministration": "bolus",
            "TimeZero": "00:00:00", "ScanStart": 0, "InjectionStart": 0,
            "FrameTimesStart": [round(float(x) * 60, 6) for x in s.start],
            "FrameDuration": [round(float(x) * 60, 6) for x in s.duration],
            "AcquisitionMode": "list mode", "ImageDecayCorrected": True, "ImageDecayCorrectionTime": 0,
            "ReconMethodName": "volgen phantom (2TCM frames, Gaussian PSF, correlated noise)",
            "ReconMethodParameterLabels": ["none"], "ReconMethodParameterUnits": ["none"],
            "ReconMethodParameterValues": [0], "ReconFilterType": "none", "ReconFilterSize": 0,
            "AttenuationCorrection": "none (simulated)"}


def blood_sidecar() -> dict:
    return {"PlasmaAvail": True, "MetaboliteAvail": False, "WholeBloodAvail": False, "DispersionCorrected": False,
            "time": {"Description": "time after injection", "Units": "s"},
            "plasma_radioactivity": {"Description": "arterial plasma activity of FDG", "Units": PET_UNITS}}


def write_blood_tsv(case, path: Path) -> None:
    table = np.stack([case.pet.input_time * 60.0, case.pet.input_activity], 1)
    np.savetxt(path, table, fmt="%.10g", delimiter="\t", header="time\tplasma_radioactivity", comments="")


def subject_label(case) -> str:
    """BIDS labels are alphanumeric: phantom-s1-0003 -> s1n0003."""
    return f"s{case.info['seed']}n{case.info['index']:04d}"


def write_pet_bids_subject(case, root, *, overwrite: bool = False) -> Path:
    """`root/sub-<label>/` with the case's PET study (all or nothing), and the dataset's own files at `root`."""
    label = f"sub-{subject_label(case)}"
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    with atomic_folder(root / label, overwrite=overwrite) as tmp:
        pet = tmp / "pet"
        pet.mkdir()
        image = nib.Nifti1Image(np.moveaxis(case.pet.frames, 0, -1).astype(np.float32), case.affine)
        image.header.set_xyzt_units("mm", "sec")
        nib.save(image, str(pet / f"{label}_pet.nii.gz"))
        (pet / f"{label}_pet.json").write_text(json.dumps(pet_sidecar(case), indent=1))
        write_blood_tsv(case, pet / f"{label}_recording-manual_blood.tsv")
        (pet / f"{label}_recording-manual_blood.json").write_text(json.dumps(blood_sidecar(), indent=1))
    write_dataset_files(root)
    return root / label


def write_dataset_files(root: Path) -> None:
    """dataset_description.json (kept when present) and participants.tsv listing every sub-* folder."""
    description = root / "dataset_description.json"
    participants = sorted(p.name for p in root.glob("sub-*") if p.is_dir())
    paths = [root / "participants.tsv"] + ([] if description.exists() else [description])
    with atomic_paths(paths, overwrite=True) as tmps:
        tmps[0].write_text("participant_id\n" + "".join(f"{p}\n" for p in participants))
        if len(tmps) > 1:
            tmps[1].write_text(json.dumps({
                "Name": "volgen PET phantoms", "BIDSVersion": BIDS_VERSION, "DatasetType": "raw",
                "GeneratedBy": [{"Name": "volgen phantom", "Version": __version__}]}, indent=1))
