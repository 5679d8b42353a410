"""A corpus of phantom cases in the BraTS folder layout, with a progress bar."""
from __future__ import annotations

from pathlib import Path

from tqdm import tqdm

from volgen.errors import InputError
from volgen.io.atomic import prepare_output
from volgen.phantom.atlas import nilearn_data_dir
from volgen.phantom.case import PhantomSpec, case_name, generate_case, write_case
from volgen.phantom.pet_bids import write_pet_bids_subject


def generate_corpus(n: int, out, *, seed: int = 0, spec: PhantomSpec = PhantomSpec(), overwrite: bool = False,
                    start: int = 0, progress: bool = True, montage: bool = True, pet_bids=None) -> list[Path]:
    """Cases `start .. start+n-1` of `seed` under `out`; existing cases are refused up front unless `overwrite`.
    With `pet_bids` (a folder), each case's PET study is also written there as a PET-BIDS subject."""
    out = Path(out)
    nilearn_data_dir()                     # the maps must be there before any folder is made
    if pet_bids is not None and spec.pet is None:
        raise InputError(pet_bids, "a PET-BIDS dataset needs the PET study (drop --no-pet)")
    for index in range(start, start + n):  # refuse before generating anything
        prepare_output(out / case_name(seed, index), overwrite=overwrite)
    paths = []
    for index in tqdm(range(start, start + n), desc="phantoms", unit="case", disable=not progress):
        case = generate_case(seed, index, spec)
        paths.append(write_case(case, out, overwrite=overwrite, montage=montage))
        if pet_bids is not None:
            write_pet_bids_subject(case, pet_bids, overwrite=overwrite)
    return paths
