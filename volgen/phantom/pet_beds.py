"""A whole-body style acquisition of the phantom's PET: the brain split into overlapping bed positions along the
axial (last) axis, scanned in passes (bed 1, bed 2, bed 1, ...), each frame of one bed only, with the time the bed
takes to move between frames as a gap. What `volgen patlak` reads as one 4D file per bed with its own sidecar."""
from __future__ import annotations

import numpy as np

from volgen.kinetics import FrameSchedule

PASSES = 6
FIRST_PASS_MIN = 10.0        # passes start after the bolus (the Patlak fit uses the frames after t* only)
FRAME_MIN = 3.5              # one bed's frame in a pass
MOVE_MIN = 0.5               # bed motion between frames: no bed is measured
OVERLAP_SLICES = 8           # beds overlap as scanners' do (here 16 mm at 2 mm)


def multi_pass_schedule(beds: int, passes: int = PASSES) -> tuple[FrameSchedule, np.ndarray]:
    """(every frame in time order, the bed of each frame): pass p scans bed 0, 1, ..., beds - 1 in turn."""
    step = FRAME_MIN + MOVE_MIN
    start = FIRST_PASS_MIN + step * np.arange(passes * beds)
    return FrameSchedule(start=start, end=start + FRAME_MIN), np.tile(np.arange(beds), passes)


def bed_slices(n_slices: int, beds: int, overlap: int = OVERLAP_SLICES) -> list[tuple[int, int]]:
    """[(first, end), ...] axial slices of each bed: equal lengths covering the volume, neighbours overlapping."""
    length = int(np.ceil((n_slices + (beds - 1) * overlap) / beds))
    starts = np.linspace(0, n_slices - length, beds).round().astype(int)
    return [(int(s), int(s) + length) for s in starts]


def bed_validity(shape, slices, bed_of_frame: np.ndarray) -> np.ndarray:
    """(frames, *shape) bool: a voxel has a frame when the frame's bed covers its slice."""
    valid = np.zeros((len(bed_of_frame), *shape), bool)
    for f, b in enumerate(bed_of_frame):
        first, end = slices[b]
        valid[f, ..., first:end] = True
    return valid
