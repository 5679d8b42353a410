"""A study acquired bed by bed (whole-body protocols): one 4D PET per bed position, each with its own PET-BIDS sidecar
(`FrameTimesStart`, `FrameDuration`), merged onto one grid.

In a multi-pass protocol the scanner visits bed 1, bed 2, ... in turn, pass after pass, so a voxel is only measured
while its bed is under the scanner: its frames are its bed's (both beds' where they overlap), with gaps between.
The merged study keeps every bed's frames in time order on the union of the beds' grids, with a per-voxel validity
(which frames each voxel has); the Patlak fit then uses each voxel's own frames and times
(`kinetics.patlak_statistics(..., valid=)`).

Refused: a bed without its timing, beds whose voxels are not on one lattice (another orientation or spacing, or an
offset of a fraction of a voxel), beds that leave part of the merged grid unscanned, frames of two beds at the same
time (one scanner cannot measure two beds at once: a copied sidecar), beds in different units.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from volgen.errors import InputError
from volgen.io.pet import read_dynamic
from volgen.io.volume import Volume
from volgen.kinetics import FrameSchedule

BED_ENTITY = re.compile(r"[_-]bed-?[A-Za-z0-9]+")      # sub-01_bed-2_pet -> sub-01_pet


@dataclass
class BedStudy:
    volume: Volume                 # (X, Y, Z, frames) on the merged grid; NaN where a voxel's bed was not scanned
    valid: np.ndarray              # (frames, X, Y, Z) bool: which frames each voxel has
    schedule: FrameSchedule        # every bed's frames, in time order (minutes)
    bed_of_frame: np.ndarray       # (frames,) index of the bed each frame comes from
    facts: dict                    # Units, ImageDecayCorrected, frame_source, beds (file, timing, place)


def read_beds(paths) -> BedStudy:
    paths = [Path(p) for p in paths]
    beds = []
    for path in paths:
        volume, schedule, facts = read_dynamic(path)
        if "slice_offsets_min" in facts:
            raise InputError(path, "SliceTiming in a bed's sidecar: per-slice offsets within beds are not supported")
        beds.append((path, volume, schedule, facts))
    _check_same(beds, "Units")
    _check_same(beds, "ImageDecayCorrected")
    offsets = _lattice_offsets(beds)
    low = offsets.min(0)
    high = np.max([o + np.array(v.shape[:3]) for o, (_, v, _, _) in zip(offsets, beds)], 0)
    shape = tuple(int(s) for s in high - low)
    covered = np.zeros(shape, bool)
    for offset, (_, volume, _, _) in zip(offsets, beds):
        covered[_box(offset - low, volume.shape[:3])] = True
    if not covered.all():
        raise InputError(paths[-1], f"the beds leave {int((~covered).sum())} voxels of their merged grid unscanned: "
                                    f"beds must overlap or abut, on the same in-plane grid")
    _check_no_simultaneous_frames(beds)
    start = np.concatenate([s.start for _, _, s, _ in beds])
    end = np.concatenate([s.end for _, _, s, _ in beds])
    bed_of_frame = np.concatenate([np.full(len(s), b) for b, (_, _, s, _) in enumerate(beds)])
    order = np.argsort(start, kind="stable")
    frames = np.full(shape + (len(order),), np.nan, np.float32)
    valid = np.zeros((len(order),) + shape, bool)
    first_frame = np.concatenate([[0], np.cumsum([len(s) for _, _, s, _ in beds])])
    position = np.argsort(order)                     # where each bed's frame lands in time order
    for b, (offset, (_, volume, schedule, _)) in enumerate(zip(offsets, beds)):
        box = _box(offset - low, volume.shape[:3])
        for f in range(len(schedule)):
            k = position[first_frame[b] + f]
            frames[box + (k,)] = volume.array[..., f]
            valid[(k,) + box] = True
    affine = beds[0][1].affine.copy()
    affine[:3, 3] = affine[:3, :3] @ low + affine[:3, 3]
    header = beds[0][1].header.copy() if beds[0][1].header is not None else None
    if header is not None:
        header.set_data_shape(frames.shape)
    merged = Volume(frames, affine, header, beds[0][1].name, {"path": str(paths[0])})
    facts = {"Units": beds[0][3].get("Units"), "ImageDecayCorrected": beds[0][3].get("ImageDecayCorrected"),
             "frame_source": ", ".join(f["frame_source"] for _, _, _, f in beds),
             "beds": [{"file": str(path), "FrameTimesStart": [round(float(t) * 60, 6) for t in s.start],
                       "FrameDuration": [round(float(d) * 60, 6) for d in s.duration],
                       "voxel_offset": [int(v) for v in o - low], "shape": [int(v) for v in vol.shape[:3]]}
                      for o, (path, vol, s, _) in zip(offsets, beds)]}
    return BedStudy(merged, valid, FrameSchedule(start=start[order], end=end[order]), bed_of_frame[order], facts)


def study_stem(stem: str) -> str:
    """The study's name from its first bed's: 'sub-01_bed-1' -> 'sub-01'."""
    return BED_ENTITY.sub("", stem) or stem


def _box(offset, shape) -> tuple:
    return tuple(slice(int(o), int(o) + int(s)) for o, s in zip(offset, shape))


def _check_same(beds, key: str) -> None:
    first = beds[0][3].get(key)
    for path, _, _, facts in beds[1:]:
        if facts.get(key) != first:
            raise InputError(path, f"{key} is {facts.get(key)!r} here but {first!r} in {beds[0][0].name}: the beds "
                                   f"of a study must agree")


def _lattice_offsets(beds) -> np.ndarray:
    """Each bed's first voxel in the first bed's voxel coordinates: whole numbers, or the beds are refused."""
    reference = beds[0][1].affine
    inverse = np.linalg.inv(reference)
    offsets = []
    for path, volume, _, _ in beds:
        if not np.allclose(volume.affine[:3, :3], reference[:3, :3], rtol=0, atol=1e-4 * np.abs(reference).max()):
            raise InputError(path, f"voxel size or orientation differs from {beds[0][0].name}'s: beds must share "
                                   f"one grid")
        offset = inverse[:3, :3] @ volume.affine[:3, 3] + inverse[:3, 3]
        if np.abs(offset - np.round(offset)).max() > 1e-3:
            raise InputError(path, f"this bed starts {', '.join(f'{v:.3g}' for v in offset)} voxels from "
                                   f"{beds[0][0].name}'s first voxel: not a whole number of voxels, so the beds do "
                                   f"not overlap on one grid")
        offsets.append(np.round(offset).astype(int))
    return np.array(offsets)


def _check_no_simultaneous_frames(beds) -> None:
    for i, (path_i, _, a, _) in enumerate(beds):
        for path_j, _, b, _ in beds[i + 1:]:
            clash = (a.start[:, None] < b.end[None] - 1e-9) & (b.start[None] < a.end[:, None] - 1e-9)
            if clash.any():
                f, g = np.argwhere(clash)[0]
                raise InputError(path_j, f"frame {g} ({b.start[g] * 60:g}-{b.end[g] * 60:g} s) overlaps frame {f} "
                                         f"of {path_i.name} ({a.start[f] * 60:g}-{a.end[f] * 60:g} s): one scanner "
                                         f"measures one bed at a time (a copied sidecar?)")
