"""volgen's jobs as dictionary transforms for other people's training code.

They work as plain callables on dicts, inside MONAI `Compose` (values: arrays, tensors or MetaTensors, channel-first
(1, D, H, W) or (D, H, W)) and inside TorchIO `Compose` (a `Subject` of `ScalarImage`/`LabelMap`). Each value keeps
its container type, channel layout and affine. Plain arrays without an affine are taken as `spacing`-mm voxels.

- `RandomContrastDropout`: drops contrasts at random (at least `min_keep` stay); records them in sample["dropped"].
- `SynthesizeMissing`: fills absent or dropped contrasts with synthesised ones; sample["synthesized"] is a float
  tensor of flags in `keys` order, so training code can tell real from synthetic (non-leaky training).
- `PseudoHealthy` / `InsertLesion`: inpaint the region of a mask key with healthy tissue / a lesion.
- `RandomSuperResolution`: thick slices simulated along an axis and restored by super-resolution.

Models load once per process (each data-loader worker loads its own on first use) and run on `device` with a
`steps` budget. Randomness comes from `seed` and the sample's own voxels, so a sample gets the same augmentation
whatever the worker, the order or the number of workers. Synthesised and inpainted contrasts come back in [0, 1]
(synthesis) or in the input's units (inpainting, super-resolution): normalise intensities after these transforms.
"""
from __future__ import annotations

import zlib

import numpy as np
import torch

from volgen.io.contrasts import MRI_CONTRASTS, canonical_contrast
from volgen.io.volume import Volume
from volgen.sampling.consistency import thick_slices
from volgen.tasks.inpainting import inpaint
from volgen.tasks.job import Sampling
from volgen.tasks.super_resolution import super_resolve, thick_array_axis
from volgen.tasks.synthesis import synthesize


def _is_torchio_image(value) -> bool:
    return hasattr(value, "data") and hasattr(value, "affine") and hasattr(value, "set_data")


def read_value(value, spacing: float) -> tuple[np.ndarray, np.ndarray]:
    """(3D array, affine) of a sample value."""
    if _is_torchio_image(value):
        data, affine = value.data, np.asarray(value.affine)
    else:
        data = value
        affine = getattr(value, "affine", None)
        affine = np.diag([spacing, spacing, spacing, 1.0]) if affine is None else np.asarray(affine)
    array = data.detach().cpu().numpy() if isinstance(data, torch.Tensor) else np.asarray(data)
    if array.ndim == 4:
        if array.shape[0] != 1:
            raise ValueError(f"expected one channel, got shape {array.shape}")
        array = array[0]
    return array, np.asarray(affine, dtype=np.float64)


def write_value(like, array: np.ndarray):
    """`array` (3D) in the container, channel layout and dtype family of `like`."""
    if _is_torchio_image(like):
        out = type(like)(tensor=torch.from_numpy(np.ascontiguousarray(array))[None], affine=like.affine)
        return out
    channel = (like.ndim == 4) if hasattr(like, "ndim") else False
    values = array[None] if channel else array
    if isinstance(like, torch.Tensor):
        tensor = torch.from_numpy(np.ascontiguousarray(values)).to(like.dtype if like.is_floating_point()
                                                                   else torch.float32)
        if hasattr(like, "meta"):                   # MONAI MetaTensor: keep its affine and metadata
            from monai.data import MetaTensor
            return MetaTensor(tensor, meta=dict(like.meta))
        return tensor
    return values


def sample_seed(seed: int, sample: dict, keys) -> int:
    """A per-sample seed from `seed` and the sample's voxels (independent of worker and order)."""
    crc = seed & 0xFFFFFFFF
    for key in keys:
        if key in sample:
            array, _ = read_value(sample[key], 1.0)
            crc = zlib.crc32(np.ascontiguousarray(array).tobytes(), crc)
    return int(crc)


class _VolgenTransform:
    """Shared settings: model, steps, device, seed, voxel size for arrays without an affine. A transform writes one
    sample (what augmentation needs, not the posterior mean); with `samples=K` > 1 it draws K as one batch, still
    writes the first, and also writes their per-voxel spread under "<key>_uncertainty"."""

    job = ""

    def __init__(self, model=None, steps: int | None = 10, device="cpu", seed: int = 0, spacing: float = 2.0,
                 guidance: float = 1.0, samples: int = 1):
        self.model, self.steps, self.device, self.seed = model, steps, device, seed
        self.spacing, self.guidance, self.samples = spacing, guidance, samples

    def sampling(self, seed: int) -> Sampling:
        return Sampling(model=self.model, steps=self.steps, device=self.device, seed=seed, guidance=self.guidance,
                        samples=self.samples, estimate="sample")

    def write(self, sample, key, result, output: str) -> None:
        """sample[key] <- the job's output (in the input's container type), and its uncertainty when drawn."""
        like = sample[key]
        sample[key] = write_value(like, result.outputs[output].array)
        if output in result.uncertainty:
            sample[f"{key}_uncertainty"] = write_value(like, result.uncertainty[output].array)

    def volume(self, sample, key) -> Volume:
        array, affine = read_value(sample[key], self.spacing)
        return Volume(np.asarray(array, dtype=np.float32), affine, name=str(key))


class RandomContrastDropout:
    """Drop each of `keys` with probability `prob` (at least `min_keep` stay). `mode="remove"` deletes the key,
    `"zero"` zeroes it; sample["dropped"] holds float flags in `keys` order."""

    def __init__(self, keys=MRI_CONTRASTS, prob: float = 0.3, min_keep: int = 1, mode: str = "remove", seed: int = 0):
        if mode not in ("remove", "zero"):
            raise ValueError(f"mode must be 'remove' or 'zero', got {mode!r}")
        self.keys, self.prob, self.min_keep, self.mode, self.seed = tuple(keys), prob, min_keep, mode, seed

    def __call__(self, sample):
        present = [k for k in self.keys if k in sample]
        rng = np.random.default_rng(sample_seed(self.seed, sample, present))
        drop = [k for k in present if rng.random() < self.prob]
        while len(present) - len(drop) < self.min_keep and drop:
            drop.pop(int(rng.integers(len(drop))))
        for key in drop:
            if self.mode == "remove":
                del sample[key]
            else:
                array, _ = read_value(sample[key], 1.0)
                sample[key] = write_value(sample[key], np.zeros_like(array))
        sample["dropped"] = torch.tensor([float(k in drop) for k in self.keys])
        return sample


class SynthesizeMissing(_VolgenTransform):
    """Fill the `keys` (contrast names or aliases) that are absent, or flagged in sample["dropped"], with
    volumes synthesised from the others; sample["synthesized"] = float flags in `keys` order."""

    def __init__(self, keys=MRI_CONTRASTS, **settings):
        super().__init__(**settings)
        self.keys = tuple(keys)
        self.contrasts = {k: canonical_contrast(k) for k in self.keys}

    def __call__(self, sample):
        dropped = sample.get("dropped")
        dropped = [k for k, d in zip(self.keys, dropped.tolist()) if d] if dropped is not None else []
        have = [k for k in self.keys if k in sample and k not in dropped]
        missing = [k for k in self.keys if k not in have]
        if missing and have:
            volumes = {self.contrasts[k]: self.volume(sample, k) for k in have}
            result = synthesize(volumes, target=[self.contrasts[k] for k in missing],
                                sampling=self.sampling(sample_seed(self.seed, sample, have)))
            for key in missing:
                sample[key] = sample[have[0]]            # the container type to write into
                self.write(sample, key, result, self.contrasts[key])
        sample["synthesized"] = torch.tensor([float(k in missing and bool(have)) for k in self.keys])
        return sample


class _Inpaint(_VolgenTransform):
    mode = "healthy"

    def __init__(self, keys=("t2f",), mask_key: str = "seg", prob: float = 1.0, **settings):
        super().__init__(**settings)
        self.keys, self.mask_key, self.prob = tuple(keys), mask_key, prob

    def __call__(self, sample):
        seed = sample_seed(self.seed, sample, self.keys)
        done = False
        if self.mask_key in sample and np.random.default_rng(seed).random() < self.prob:
            mask, affine = read_value(sample[self.mask_key], self.spacing)
            if np.any(mask > 0):
                for key in self.keys:
                    image = self.volume(sample, key)
                    result = inpaint(image, Volume((mask > 0).astype(np.uint8), image.affine), mode=self.mode,
                                     contrast=canonical_contrast(key), sampling=self.sampling(seed))
                    self.write(sample, key, result, "inpainted")
                done = True
        sample[f"{self.mode}_inpainted"] = torch.tensor(float(done))
        return sample


class PseudoHealthy(_Inpaint):
    """Replace the region under sample[mask_key] (e.g. the tumour labels) in each of `keys` with healthy tissue,
    with probability `prob`; sample["healthy_inpainted"] flags it. Labels are left to the caller (typically
    zeroed with a MONAI/TorchIO label transform after this one)."""

    mode = "healthy"


class InsertLesion(_Inpaint):
    """Grow a lesion inside sample[mask_key] (a region where one should appear) in each of `keys`, with
    probability `prob`; sample["lesion_inpainted"] flags it."""

    mode = "lesion"


class RandomSuperResolution(_VolgenTransform):
    """With probability `prob`, simulate `factor`x thick slices along `axis` (block means) in each of `keys` and
    restore them with volgen's super-resolution: training images as a super-resolved clinical scan looks.
    The axis length must be a multiple of `factor`."""

    def __init__(self, keys=MRI_CONTRASTS, factor: int = 4, axis: str = "z", prob: float = 0.5, **settings):
        super().__init__(**settings)
        self.keys, self.factor, self.axis, self.prob = tuple(keys), factor, axis, prob

    def __call__(self, sample):
        seed = sample_seed(self.seed, sample, self.keys)
        applied = np.random.default_rng(seed).random() < self.prob
        if applied:
            for key in (k for k in self.keys if k in sample):
                image = self.volume(sample, key)
                axis, _ = thick_array_axis(image, self.axis)
                thick = thick_slices(torch.from_numpy(image.array), self.factor, axis).numpy()
                affine = image.affine.copy()
                affine[:3, axis] *= self.factor
                affine[:3, 3] += image.affine[:3, axis] * (self.factor - 1) / 2.0
                result = super_resolve(Volume(thick, affine, name=str(key)), factor=self.factor, axis=self.axis,
                                       contrast=canonical_contrast(key), sampling=self.sampling(seed))
                self.write(sample, key, result, "sr")
        sample["super_resolved"] = torch.tensor(float(applied))
        return sample
