"""`Volume`: a voxel array with the geometry and header it came with."""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import nibabel as nib
import numpy as np


@dataclass
class Volume:
    """A 3D (or 4D, for dynamic PET) image.

    `array` is indexed (i, j, k[, t]) in the file's own voxel order; `affine` maps (i, j, k, 1) to RAS+ world
    millimetres (NIfTI convention). `header` is the source NIfTI header, kept so outputs carry it back.
    """

    array: np.ndarray
    affine: np.ndarray
    header: nib.Nifti1Header | None = None
    name: str = ""
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        self.affine = np.asarray(self.affine, dtype=np.float64)
        if self.affine.shape != (4, 4):
            raise ValueError(f"affine must be 4x4, got {self.affine.shape}")

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.array.shape)

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size in mm along the three array axes (column norms of the affine)."""
        return tuple(float(s) for s in np.linalg.norm(self.affine[:3, :3], axis=0))

    @property
    def orientation(self) -> str:
        """Axis codes such as 'RAS' or 'LPS' (nearest world direction of each array axis)."""
        return "".join(nib.aff2axcodes(self.affine))

    def with_array(self, array: np.ndarray, **changes) -> "Volume":
        """Same geometry and header, new voxels."""
        return replace(self, array=array, **changes)
