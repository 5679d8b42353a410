"""Volumes on disk and on the model grid: NIfTI IO, contrast names, preprocessing and its exact inverse."""
from volgen.io.atomic import atomic_folder, atomic_path, atomic_paths
from volgen.io.contrasts import (CONTRASTS, MRI_CONTRASTS, Case, canonical_contrast, case_from_paths, find_case,
                                 find_cases, parse_contrasts)
from volgen.io.nifti import read_volume, write_volume
from volgen.io.preprocess import GridMap, GridSpec, IntensityScale, Preprocessed, preprocess
from volgen.io.resample import align_grids, resample_like, same_grid
from volgen.io.volume import Volume

__all__ = [
    "CONTRASTS", "MRI_CONTRASTS", "Case", "GridMap", "GridSpec", "IntensityScale", "Preprocessed", "Volume",
    "align_grids", "atomic_folder", "atomic_path", "atomic_paths", "canonical_contrast", "case_from_paths", "find_case",
    "find_cases", "parse_contrasts", "preprocess", "read_volume", "resample_like", "same_grid", "write_volume",
]
