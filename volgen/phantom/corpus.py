"""A corpus of phantom cases in the BraTS folder layout, with a progress bar."""
from __future__ import annotations

from pathlib import Path

from tqdm import tqdm

from volgen.io.atomic import prepare_output
from volgen.phantom.case import PhantomSpec, case_name, generate_case, write_case


def generate_corpus(n: int, out, *, seed: int = 0, spec: PhantomSpec = PhantomSpec(), overwrite: bool = False,
                    start: int = 0, progress: bool = True, montage: bool = True) -> list[Path]:
    """Cases `start .. start+n-1` of `seed` under `out`; existing cases are refused up front unless `overwrite`."""
    out = Path(out)
    for index in range(start, start + n):  # refuse before generating anything
        prepare_output(out / case_name(seed, index), overwrite=overwrite)
    paths = []
    for index in tqdm(range(start, start + n), desc="phantoms", unit="case", disable=not progress):
        paths.append(write_case(generate_case(seed, index, spec), out, overwrite=overwrite, montage=montage))
    return paths
