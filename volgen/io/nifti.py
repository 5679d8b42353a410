"""Read and write NIfTI files as `Volume`s, refusing bad input with one clear line."""
from __future__ import annotations

import math
from pathlib import Path

import nibabel as nib
import numpy as np

from volgen.errors import InputError
from volgen.io.atomic import atomic_path
from volgen.io.volume import Volume
from volgen.memory import available_memory, gigabytes

NIFTI_SUFFIXES = (".nii", ".nii.gz")


def is_nifti_path(path) -> bool:
    return str(path).endswith(NIFTI_SUFFIXES)


def volume_name(path) -> str:
    """'case-t1n' for '/x/case-t1n.nii.gz'."""
    name = Path(path).name
    for suffix in (".nii.gz", ".nii"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def _load_image(path: Path):
    if not path.exists():
        raise InputError(path, "file not found")
    if path.is_dir():
        raise InputError(path, "is a folder, not a NIfTI file")
    try:
        img = nib.load(str(path))
    except Exception as exc:  # nibabel raises many types for foreign or broken files
        raise InputError(path, f"not a readable NIfTI file ({_reason(exc)})") from None
    if not isinstance(img, (nib.Nifti1Image, nib.Nifti2Image)):
        raise InputError(path, f"not a NIfTI file (nibabel read it as {type(img).__name__})")
    return img


# deflate cannot compress better than 1032:1, so a .nii.gz smaller than this fraction of its voxels is truncated
MAX_GZIP_RATIO = 1032


def _check_claimed_size(path: Path, img) -> None:
    """Before reading or allocating: does the file hold what the header claims, and does it fit in memory?"""
    shape = tuple(int(n) for n in img.shape)
    dtype = np.dtype(img.get_data_dtype())
    voxels = math.prod(shape)
    stored = voxels * dtype.itemsize
    offset = int(img.header.get("vox_offset", 0) or 0) if str(path).endswith(".nii") else 0
    size = path.stat().st_size
    claimed = f"header says {'x'.join(map(str, shape))} {dtype.name}, {gigabytes(stored)}"
    if str(path).endswith(".gz"):
        if stored > (size + 1) * MAX_GZIP_RATIO:
            raise InputError(path, f"{claimed}; the compressed file holds {size} bytes, too few for that "
                                   f"(truncated, or a wrong header)")
    elif size < offset + stored:
        raise InputError(path, f"{claimed}; the file holds {size} bytes (truncated, or a wrong header)")
    scaled = img.header.get_slope_inter() not in ((None, None), (1.0, 0.0))     # scaled voxels come as float64
    in_memory = voxels * (8 if scaled else dtype.itemsize) * 2    # read + copy
    free = available_memory("cpu")
    if free is not None and in_memory > free:
        raise InputError(path, f"{claimed}; reading it needs about {gigabytes(in_memory)} of memory and "
                               f"{gigabytes(free)} is free")


def _read_voxels(path: Path, img) -> np.ndarray:
    try:
        # dataobj keeps the stored dtype when there is no scaling (int16 stays int16); copy out of any memmap.
        array = np.array(np.asanyarray(img.dataobj), copy=True)
    except Exception as exc:  # EOFError / zlib.error / OSError / ValueError for truncated or corrupt data
        raise InputError(path, f"truncated or corrupt image data ({_reason(exc)})") from None
    if not array.dtype.isnative:
        array = array.astype(array.dtype.newbyteorder("="))
    return array


def _reason(exc: Exception) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text if len(text) < 160 else text[:157] + "..."


def _check_dims(path: Path, array: np.ndarray, allow_4d: bool) -> np.ndarray:
    while array.ndim > 3 and array.shape[-1] == 1:  # trailing singleton dimensions are harmless
        array = array[..., 0]
    if array.ndim < 3:
        raise InputError(path, f"is {array.ndim}D (shape {array.shape}); a 3D volume is expected")
    if array.ndim == 4 and allow_4d:
        return array
    if array.ndim > 3:
        what = "a 3D volume is expected" if not allow_4d else "a 3D or 4D volume is expected"
        raise InputError(path, f"is {array.ndim}D (shape {array.shape}); {what}")
    return array


def check_affine(path, affine: np.ndarray) -> None:
    if not np.all(np.isfinite(affine)):
        raise InputError(path, "affine (voxel-to-world matrix) contains NaN or Inf")
    det = np.linalg.det(affine[:3, :3])
    if not np.isfinite(det) or abs(det) < 1e-9:
        raise InputError(path, f"affine is singular (determinant {det:.3g}); the voxel geometry is undefined")


def check_values(path, array: np.ndarray, *, allow_constant: bool = False) -> None:
    if np.issubdtype(array.dtype, np.floating):
        bad = int(np.count_nonzero(~np.isfinite(array)))
        if bad:
            raise InputError(path, f"contains {bad} NaN or Inf voxel{'s' if bad > 1 else ''}")
    if not allow_constant and array.size and array.min() == array.max():
        raise InputError(path, f"all voxels have the same value ({array.flat[0]}); nothing to work with")


def read_volume(path, *, allow_4d: bool = False, allow_constant: bool = False, name: str | None = None) -> Volume:
    """Read a NIfTI file; refuse missing, foreign, truncated, wrong-dimension, non-finite or constant images.

    `allow_constant` is for masks and label maps (an all-zero mask is a task's concern, not a reading error).
    """
    path = Path(path)
    img = _load_image(path)
    _check_claimed_size(path, img)
    array = _check_dims(path, _read_voxels(path, img), allow_4d)
    affine = np.asarray(img.affine, dtype=np.float64)
    check_affine(path, affine)
    check_values(path, array, allow_constant=allow_constant)
    header = img.header.copy()
    return Volume(array=array, affine=affine, header=header, name=name or volume_name(path), meta={"path": str(path)})


def volume_from_image(img, *, allow_constant: bool = False, name: str | None = None) -> Volume:
    """A Volume from a nibabel image already in memory (its file name, when it has one, names it), checked as a
    read file is."""
    path = img.get_filename()
    where = path or name or "nibabel image"
    array = _check_dims(Path(where), np.array(np.asanyarray(img.dataobj), copy=True), False)
    affine = np.asarray(img.affine, dtype=np.float64)
    check_affine(where, affine)
    check_values(where, array, allow_constant=allow_constant)
    meta = {"path": str(path)} if path else {}
    return Volume(array=array, affine=affine, header=img.header.copy(),
                  name=name or (volume_name(path) if path else "image"), meta=meta)


def write_volume(volume: Volume, path, *, overwrite: bool = False, dtype=None) -> Path:
    """Write `volume` to `path` (.nii or .nii.gz) via a temporary file; keep an existing file unless `overwrite`.

    The source header travels with the volume (descriptions, units, intent, qform/sform codes); the data type is
    the array's own unless `dtype` is given.
    """
    path = Path(path)
    if not is_nifti_path(path):
        raise InputError(path, "output must end in .nii or .nii.gz")
    array = np.asarray(volume.array)
    if dtype is not None:
        array = array.astype(dtype)
    if array.dtype == np.bool_:
        array = array.astype(np.uint8)
    header = volume.header.copy() if volume.header is not None else None
    img = nib.Nifti1Image(array, volume.affine, header=header)
    img.set_data_dtype(array.dtype)
    if header is not None:
        # Keep the source's codes; nibabel would otherwise reset an unset sform to "aligned" silently.
        img.set_sform(volume.affine, code=int(header["sform_code"]) or 2)
        img.set_qform(volume.affine, code=int(header["qform_code"]) or 1)
        # Values are written as they are: stale scaling from the source would rescale them again.
        img.header.set_slope_inter(np.nan, np.nan)
    with atomic_path(path, overwrite=overwrite) as tmp:
        nib.save(img, str(tmp))
    return path
