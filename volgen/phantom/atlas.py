"""The MNI152 (ICBM 2009a, symmetric) T1 and tissue maps that nilearn ships, on the phantom grid.

The files are read straight from nilearn's package data with nibabel (importing nilearn itself costs ~2 s and is
not needed). The 1 mm grid is the template cropped/padded to 192 x 224 x 192 around the brain; the 2 mm grid is
its exact 2x2x2 block average (96 x 112 x 96), so 2 mm phantoms are free of resampling artefacts.
"""
from __future__ import annotations

import functools
import importlib.util
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

from volgen.errors import VolgenError

_FILES = {
    "t1": "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz",
    "gm": "mni_icbm152_gm_tal_nlin_sym_09a_converted.nii.gz",
    "wm": "mni_icbm152_wm_tal_nlin_sym_09a_converted.nii.gz",
}
# Window of the 1 mm template (197 x 233 x 189, origin (-98, -134, -72) mm) kept for the phantom grid.
_START_1MM = (2, 6, -18)
SHAPE_1MM = (192, 224, 192)


@dataclass(frozen=True)
class Atlas:
    """Tissue fractions (GM, WM, CSF; they sum to the brain fraction, at most 1) on the phantom grid."""

    gm: np.ndarray
    wm: np.ndarray
    csf: np.ndarray
    t1: np.ndarray          # template T1 intensity in [0, 1], used for within-tissue texture
    affine: np.ndarray

    @property
    def shape(self):
        return self.gm.shape

    @property
    def spacing(self) -> float:
        return float(self.affine[0, 0])


def nilearn_data_dir() -> Path:
    spec = importlib.util.find_spec("nilearn")
    if spec is None or spec.origin is None:
        raise VolgenError("phantoms need the MNI152 maps that nilearn ships: pip install 'volgen[phantom]'")
    return Path(spec.origin).parent / "datasets" / "data"


def _window_1mm(array: np.ndarray) -> np.ndarray:
    out = np.zeros(SHAPE_1MM, dtype=np.float32)
    src, dst = [], []
    for start, n, m in zip(_START_1MM, array.shape, SHAPE_1MM):
        lo, hi = max(0, start), min(n, start + m)
        src.append(slice(lo, hi))
        dst.append(slice(lo - start, hi - start))
    out[tuple(dst)] = array[tuple(src)]
    return out


def _block_mean(array: np.ndarray, k: int) -> np.ndarray:
    d, h, w = (s // k for s in array.shape)
    return array.reshape(d, k, h, k, w, k).mean(axis=(1, 3, 5), dtype=np.float64).astype(np.float32)


@functools.lru_cache(maxsize=2)
def load_atlas(spacing: int = 2) -> Atlas:
    """The atlas at 1 or 2 mm (cached per process)."""
    if spacing not in (1, 2):
        raise VolgenError(f"phantom spacing must be 1 or 2 mm, got {spacing}")
    folder = nilearn_data_dir()
    maps = {}
    for key, name in _FILES.items():
        img = nib.load(str(folder / name))
        maps[key] = _window_1mm(np.asarray(img.dataobj, dtype=np.float32) / 255.0)
    origin = np.asarray(img.affine)[:3, 3] + np.array(_START_1MM, dtype=np.float64)
    # Brain: the skull-stripped template's support; CSF is what the brain holds besides GM and WM (ventricles,
    # sulci). Smoothing the support by half a voxel gives it a partial-volume edge like the tissue maps have.
    brain = ndimage.gaussian_filter((maps["t1"] > 0.05).astype(np.float32), 0.5)
    gm, wm = maps["gm"], maps["wm"]
    tissue = gm + wm
    excess = np.maximum(tissue - 1.0, 0.0)  # rare voxels where the two maps overlap beyond 1
    gm, wm = gm - excess * gm / np.maximum(tissue, 1e-6), wm - excess * wm / np.maximum(tissue, 1e-6)
    csf = np.clip(np.maximum(brain, gm + wm) - gm - wm, 0.0, 1.0)
    affine = np.diag([1.0, 1.0, 1.0, 1.0])
    affine[:3, 3] = origin
    if spacing == 2:
        gm, wm, csf, t1 = (_block_mean(a, 2) for a in (gm, wm, csf, maps["t1"]))
        affine = np.diag([2.0, 2.0, 2.0, 1.0])
        affine[:3, 3] = origin + 0.5  # centre of the first 2x2x2 block
    else:
        t1 = maps["t1"]
    for a in (gm, wm, csf, t1):
        a.setflags(write=False)
    return Atlas(gm=gm, wm=wm, csf=csf, t1=t1, affine=affine)
