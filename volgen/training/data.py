"""Training data: BraTS-layout cases on the model grid, cached in memory, and deterministic random batches.

Every batch is drawn from a generator seeded by (seed, step, process), so a resumed run sees exactly the batches the
uninterrupted run would have seen, and each process of a multi-process run sees different ones.
"""
from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from volgen.errors import InputError
from volgen.io.bias_field import without_bias_on_model_grid
from volgen.io.contrasts import find_cases
from volgen.io.nifti import read_volume
from volgen.io.preprocess import GridSpec, preprocess


@dataclass
class CaseArrays:
    """One case on the model grid: contrasts in [-1, 1] (C, D, H, W); healthy twins on the same scale; labels."""

    name: str
    images: torch.Tensor
    healthy: torch.Tensor | None = None
    seg: torch.Tensor | None = None
    brain: torch.Tensor | None = None      # the brain mask (bool), when the case has one
    atlas: torch.Tensor | None = None      # the registered inpainting prior's atlas on this case (atlas_cache.py)


def load_cases(data, multiple: int, with_healthy: bool = False) -> list[CaseArrays]:
    """The cases under `data.root` that have every contrast in `data.contrasts` (and healthy twins and a seg when
    asked; a seg is loaded wherever there is one), preprocessed onto the model grid, in the order `find_cases`
    gives. Raises InputError naming the folder when none qualify. Cases are read in parallel worker processes (reading and resampling is most of a run's set-up:
    a quarter of a second per case on one core)."""
    root = Path(data.root)
    jobs, skipped = [], []
    for case in find_cases(root):
        if case.missing(data.contrasts):
            skipped.append(case.name)
            continue
        folder = next(iter(case.paths.values())).parent
        healthy_paths = [folder / f"{case.name}-{c}-healthy.nii.gz" for c in data.contrasts]
        seg_path = case.paths.get("seg")
        if with_healthy and (seg_path is None or not all(p.is_file() for p in healthy_paths)):
            skipped.append(case.name)
            continue
        jobs.append((case, folder, data, multiple, healthy_paths if with_healthy else None, seg_path))
        if data.max_cases and len(jobs) >= data.max_cases:
            break
    if not jobs:
        need = ", ".join(data.contrasts) + (", seg and healthy twins" if with_healthy else "")
        raise InputError(root, f"no usable training cases (each needs {need}; skipped {len(skipped)})")
    workers = min(len(jobs), os.cpu_count() or 1, 16)
    if workers == 1:
        cases = [_load_case(*job) for job in jobs]
    else:
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
            cases = list(pool.map(_load_case_job, jobs))
    # Collections mix fields of view (a 240x240x155 BraTS case is 128x128x80 on the 2 mm grid, a phantom 96x112x96):
    # every crop must have one size, the crop's, or the whole volume's where the crop is larger than every case. A
    # case smaller than that along an axis is padded with background.
    size = [min(c, max(case.images.shape[1 + axis] for case in cases)) for axis, c in enumerate(data.crop)]
    return [pad_to(case, size) for case in cases]


# the model grid's background: images in [-1, 1] are -1 outside the head, labels 0, masks False
_BACKGROUND = {"images": -1.0, "healthy": -1.0, "seg": 0, "brain": False}


def pad_to(case: CaseArrays, crop) -> CaseArrays:
    """`case` with every spatial axis shorter than `crop` padded (centred) with background up to it."""
    shape = case.images.shape[1:]
    if all(s >= c for s, c in zip(shape, crop)):
        return case
    before = [max(c - s, 0) // 2 for s, c in zip(shape, crop)]
    after = [max(c - s, 0) - b for s, c, b in zip(shape, crop, before)]
    pads = [n for b, a in zip(reversed(before), reversed(after)) for n in (b, a)]     # F.pad wants last axis first
    padded = {}
    for key, fill in _BACKGROUND.items():
        value = getattr(case, key)
        if value is not None:
            grown = torch.nn.functional.pad(value.to(torch.float32), pads, value=float(fill))
            padded[key] = grown.to(value.dtype)
    return CaseArrays(case.name, **padded)


def _load_case_job(job) -> CaseArrays:
    torch.set_num_threads(1)            # one case per worker process: no oversubscription
    return _load_case(*job)


def _load_case(case, folder: Path, data, multiple: int, healthy_paths, seg_path) -> CaseArrays:
    spec = GridSpec(spacing=(data.spacing,) * 3, multiple=multiple)
    first = preprocess(read_volume(case.paths[data.contrasts[0]]), spec, contrast=data.contrasts[0],
                       out_range=(-1.0, 1.0))
    prepared = [first] + [preprocess(read_volume(case.paths[c]), spec, grid=first.grid, contrast=c,
                                     out_range=(-1.0, 1.0)) for c in data.contrasts[1:]]
    arrays = [p.array for p in prepared]
    if data.bias_correction:
        arrays = list(without_bias_on_model_grid(dict(zip(data.contrasts, arrays)), spec.spacing).values())
    images = torch.from_numpy(np.stack(arrays))
    healthy = seg = None
    if healthy_paths is not None:
        # The healthy twin goes through its lesion image's intensity scale, so the two are comparable voxel for voxel.
        twins = [read_volume(path).array.astype(np.float32) for path in healthy_paths]
        healthy = torch.from_numpy(np.stack([
            p.scale.forward(first.grid.forward(twin, order=1, fill=float(twin.min())))
            for p, twin in zip(prepared, twins)]))
    if seg_path is not None:            # labels wherever a case has them (a segmenter trains on any labelled case)
        seg = torch.from_numpy(preprocess(read_volume(seg_path, allow_constant=True), spec, grid=first.grid,
                                          label=True).array.astype(np.uint8))
    brain = None
    brain_path = folder / f"{case.name}-brainmask.nii.gz"
    if brain_path.is_file():
        brain = torch.from_numpy(preprocess(read_volume(brain_path, allow_constant=True), spec, grid=first.grid,
                                            label=True).array > 0)
    return CaseArrays(case.name, images, healthy, seg, brain)


def step_generator(seed: int, step: int, rank: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(((seed * 1_000_003 + step) * 97 + rank) % (2 ** 63))


def _randint(high: int, gen: torch.Generator) -> int:
    return int(torch.randint(0, max(high, 1), (1,), generator=gen))


def _crop_start(centre: int, size: int, crop: int, gen) -> int:
    jitter = _randint(crop // 2 + 1, gen) - crop // 4
    return int(np.clip(centre - crop // 2 + jitter, 0, size - crop))


def sample_batch(cases: list[CaseArrays], batch_size: int, crop, flip_axes, gen: torch.Generator,
                 around_lesion: bool = False) -> dict:
    """A batch of random crops: {"images", "healthy"?, "seg"?, "atlas"?} (B, C, *crop). Crops are centred on a random
    foreground voxel (on the lesion when `around_lesion`), so few are empty background. Each axis in `flip_axes`
    (model-grid axes 0-2) is mirrored with probability 1/2."""
    out: dict[str, list] = {"images": [], "healthy": [], "seg": [], "atlas": []}
    for _ in range(batch_size):
        case = cases[_randint(len(cases), gen)]
        shape = case.images.shape[1:]
        size = [min(c, s) for c, s in zip(crop, shape)]
        region = (case.seg > 0) if around_lesion and case.seg is not None else (case.images[0] > -0.99)
        voxels = region.nonzero()
        centre = voxels[_randint(len(voxels), gen)].tolist() if len(voxels) else [s // 2 for s in shape]
        starts = [_crop_start(c, s, k, gen) for c, s, k in zip(centre, shape, size)]
        window = tuple(slice(a, a + k) for a, k in zip(starts, size))
        flips = [d for d in (1, 2, 3) if d - 1 in flip_axes and _randint(2, gen)]
        for key, value in (("images", case.images), ("healthy", case.healthy), ("seg", case.seg),
                           ("atlas", case.atlas)):
            if value is None:
                continue
            part = (value[(slice(None), *window)] if value.ndim == 4 else value[window][None])
            out[key].append(part.flip(flips) if flips else part)
    return {k: torch.stack(v) for k, v in out.items() if v}
