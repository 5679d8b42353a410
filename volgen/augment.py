"""volgen's jobs as dictionary transforms for other people's training code.

They work as plain callables on dicts, inside MONAI `Compose` (values: arrays, tensors or MetaTensors, channel-first
(1, D, H, W) or (D, H, W)) and inside TorchIO `Compose` (a `Subject` of `ScalarImage`/`LabelMap`). Each value keeps
its container type, channel layout and affine. Plain arrays without an affine are taken as `spacing`-mm voxels.

- `RandomContrastDropout`: drops contrasts at random (at least `min_keep` stay); records them in sample["dropped"].
  `ContrastDropout` drops the ones it is told to.
- `SynthesizeMissing`: fills absent or dropped contrasts with synthesised ones; sample["synthesized"] is a float
  tensor of flags in `keys` order, so training code can tell real from synthetic (non-leaky training).
- `PseudoHealthy` / `InsertLesion`: inpaint the region of a mask key with healthy tissue / a lesion; `InsertLesion`
  with a `label_key` draws a labelled tumour into every contrast at once and updates the labels.
- `RandomSuperResolution`: thick slices simulated along an axis and restored by super-resolution.

Models load once per process (each data-loader worker loads its own on first use) and run on `device` with a
`steps` budget. Synthesised and inpainted contrasts come back in [0, 1] (synthesis) or in the input's units
(inpainting, super-resolution): normalise intensities after these transforms, or let `PseudoHealthy` and
`InsertLesion` z-score with the statistics from before them (`z_score=True`).

Randomness, as in MONAI's `Randomizable` and TorchIO's random transforms: every call draws fresh (other dropped
contrasts, another diffusion sample), so an epoch never repeats the last one. The draws come from the pipeline's
seeds: MONAI's `Compose.set_random_state` and its DataLoader's worker seeding, or, in a plain torch DataLoader
(TorchIO), the worker's torch seed, which torch draws anew for every epoch from its default generator. So
`set_determinism(seed)` / `torch.manual_seed(seed)` make a whole run reproducible. The deterministic forms, for those
who want each case augmented the same way every epoch: `ContrastDropout(drop=...)`, and `same_each_epoch=True` on the
others (the draw then depends only on `seed` and the sample's voxels, whatever the worker or the order).
"""
from __future__ import annotations

import os
import zlib

import numpy as np
import torch
from monai.data import MetaTensor
from monai.transforms import Randomizable

from volgen.io.contrasts import MRI_CONTRASTS, canonical_contrast
from volgen.io.volume import Volume
from volgen.tasks.inpainting import inpaint
from volgen.tasks.job import Sampling
from volgen.tasks.lesion import insert_lesion
from volgen.tasks.lesion_mask import draw_labels
from volgen.tasks.super_resolution import super_resolve, thick_array_axis, thick_volume
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


MAX_SEED = 2 ** 32


def _worker_key():
    """Which data-loader worker (process and torch's seed for it) is running; None outside a worker."""
    info = torch.utils.data.get_worker_info()
    return None if info is None else (os.getpid(), info.seed)


class _Random(Randomizable):
    """Draws from `self.R`, a numpy RandomState, like MONAI's random transforms. `seed=None` seeds it from torch's
    default generator (so `torch.manual_seed` / `set_determinism` decide it). A pipeline may re-seed it
    (`set_random_state`); in a data-loader worker that nobody re-seeded (a plain torch DataLoader) it is re-seeded
    from `seed` and the worker's torch seed, which differs between workers and between epochs."""

    def __init__(self, seed: int | None = None, same_each_epoch: bool = False):
        self.seed, self.same_each_epoch = seed, same_each_epoch
        base = seed if seed is not None else int(torch.randint(0, 2 ** 31 - 1, (1,)))
        self._base = base % MAX_SEED
        self.R = np.random.RandomState(self._base)
        self._seeded_for = _worker_key()

    def set_random_state(self, seed: int | None = None, state: np.random.RandomState | None = None):
        super().set_random_state(seed=seed, state=state)
        self._seeded_for = _worker_key()
        return self

    def randomize(self, data=None) -> None:
        """Re-seed in a worker that was started without the pipeline seeding this transform."""
        key = _worker_key()
        if key is not None and key != self._seeded_for:
            self.R = np.random.RandomState(zlib.crc32(np.array([self._base, key[1] % MAX_SEED], np.uint64).tobytes()))
            self._seeded_for = key

    def generator(self, sample: dict, keys) -> np.random.Generator:
        """The random numbers for one call: fresh each call, or, with `same_each_epoch`, from `seed` and the
        sample's voxels only."""
        if self.same_each_epoch:
            return np.random.default_rng(sample_seed(self.seed or 0, sample, keys))
        self.randomize()
        return np.random.default_rng(self.R.randint(MAX_SEED, dtype=np.uint64))


class _VolgenTransform(_Random):
    """Shared settings: model, steps, device, seed, voxel size for arrays without an affine. A transform writes one
    sample (what augmentation needs, not the posterior mean); with `samples=K` > 1 it draws K as one batch, still
    writes the first, and also writes their per-voxel spread under "<key>_uncertainty"."""

    job = ""

    def __init__(self, model=None, steps: int | None = 10, device="cpu", seed: int | None = None,
                 spacing: float = 2.0, guidance: float = 1.0, samples: int = 1, same_each_epoch: bool = False):
        super().__init__(seed, same_each_epoch)
        self.model, self.steps, self.device = model, steps, device
        self.spacing, self.guidance, self.samples = spacing, guidance, samples

    def sampling(self, rng: np.random.Generator) -> Sampling:
        seed = int(rng.integers(2 ** 31 - 1))
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


def _drop(sample, keys, drop, mode: str):
    """Remove (or zero) the `drop` keys; sample["dropped"] = float flags in `keys` order."""
    for key in drop:
        if mode == "remove":
            del sample[key]
        else:
            array, _ = read_value(sample[key], 1.0)
            sample[key] = write_value(sample[key], np.zeros_like(array))
    sample["dropped"] = torch.tensor([float(k in drop) for k in keys])
    return sample


def _check_mode(mode: str) -> str:
    if mode not in ("remove", "zero"):
        raise ValueError(f"mode must be 'remove' or 'zero', got {mode!r}")
    return mode


class RandomContrastDropout(_Random):
    """Drop each of `keys` with probability `prob` (at least `min_keep` stay), drawn afresh at every call.
    `mode="remove"` deletes the key, `"zero"` zeroes it; sample["dropped"] holds float flags in `keys` order."""

    def __init__(self, keys=MRI_CONTRASTS, prob: float = 0.3, min_keep: int = 1, mode: str = "remove",
                 seed: int | None = None, same_each_epoch: bool = False):
        super().__init__(seed, same_each_epoch)
        self.keys, self.prob, self.min_keep, self.mode = tuple(keys), prob, min_keep, _check_mode(mode)

    def __call__(self, sample):
        present = [k for k in self.keys if k in sample]
        rng = self.generator(sample, present)
        drop = [k for k in present if rng.random() < self.prob]
        while len(present) - len(drop) < self.min_keep and drop:
            drop.pop(int(rng.integers(len(drop))))
        return _drop(sample, self.keys, drop, self.mode)


class ContrastDropout:
    """The deterministic form: drop the contrasts named in `drop` (those present) from every sample."""

    def __init__(self, keys=MRI_CONTRASTS, drop=(), mode: str = "remove"):
        self.keys, self.drop, self.mode = tuple(keys), tuple(drop), _check_mode(mode)
        unknown = [k for k in self.drop if k not in self.keys]
        if unknown:
            raise ValueError(f"drop names {unknown}, which are not among keys {list(self.keys)}")

    def __call__(self, sample):
        return _drop(sample, self.keys, [k for k in self.drop if k in sample], self.mode)


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
                                sampling=self.sampling(self.generator(sample, have)))
            for key in missing:
                sample[key] = sample[have[0]]            # the container type to write into
                self.write(sample, key, result, self.contrasts[key])
        sample["synthesized"] = torch.tensor([float(k in missing and bool(have)) for k in self.keys])
        return sample


def nonzero_statistics(array: np.ndarray) -> tuple[float, float]:
    """Mean and sd (the population's, as MONAI's NormalizeIntensity) of the nonzero voxels, a skull-stripped scan's
    brain; (0, 1) for an empty image, sd 1 for a constant one."""
    values = array[array != 0].astype(np.float64)
    if values.size == 0:
        return 0.0, 1.0
    sd = float(values.std())
    return float(values.mean()), sd if sd > 0 else 1.0


def z_scored(array: np.ndarray, mean: float, sd: float) -> np.ndarray:
    """float32 `array` with its nonzero voxels z-scored by `mean` and `sd`; zeros stay zero."""
    out = array.astype(np.float32)
    nonzero = array != 0
    out[nonzero] = ((array[nonzero].astype(np.float64) - mean) / sd).astype(np.float32)
    return out


class _Inpaint(_VolgenTransform):
    """With `z_score=True`, each of `keys` comes back z-scored over its nonzero voxels with the mean and sd it had
    before this transform, whether it changed or not: use it in place of a NormalizeIntensityd(nonzero=True,
    channel_wise=True) after the transform. Z-scored after it, a case whose tumour was added (or removed) has its
    untouched tissue on another scale than its source's: a second tumour raises the brain's mean and sd on T2 and
    FLAIR, and healthy tissue comes out darker in z than in the real cases the segmenter meets (README, Does it help
    my segmenter?)."""

    mode = "healthy"

    def __init__(self, keys=("t2f",), mask_key: str = "seg", prob: float = 1.0, z_score: bool = False, **settings):
        super().__init__(**settings)
        self.keys, self.mask_key, self.prob, self.z_score = tuple(keys), mask_key, prob, z_score

    def __call__(self, sample):
        if not self.z_score:
            return self.apply(sample)
        before = {k: nonzero_statistics(read_value(sample[k], self.spacing)[0]) for k in self.keys if k in sample}
        sample = self.apply(sample)
        for key, (mean, sd) in before.items():
            sample[key] = write_value(sample[key], z_scored(read_value(sample[key], self.spacing)[0], mean, sd))
        return sample

    def apply(self, sample):
        rng = self.generator(sample, self.keys)
        done = False
        if self.mask_key in sample and rng.random() < self.prob:
            mask, affine = read_value(sample[self.mask_key], self.spacing)
            if np.any(mask > 0):
                for key in self.keys:
                    image = self.volume(sample, key)
                    result = inpaint(image, Volume((mask > 0).astype(np.uint8), image.affine), mode=self.mode,
                                     contrast=canonical_contrast(key), sampling=self.sampling(rng))
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
    """With probability `prob`, a tumour in the sample; sample["lesion_inpainted"] flags it. Two forms:

    - with `label_key` (the sample's BraTS labels, e.g. "seg"): a labelled tumour drawn into every contrast of
      `keys` in one sampling call (the lesion module, `volgen inpaint CASE --mask LABELS --mode lesion`). Its label
      map is sample[`labels`] when that names a key (say another case's seg, paired in by the pipeline), else one
      drawn afresh at each call (`volgen lesion-mask`, away from a tumour the sample has). sample[label_key]
      becomes the sample's labels with the new tumour's on top, so a segmenter trains on what was drawn.
      `mass_effect_mm` (mm, or a (low, high) range drawn per call) pushes the tissue around it aside first;
    - without: a lesion grown inside sample[mask_key] in each of `keys`, one contrast at a time, the labels left
      as they are.
    With `z_score=True` the contrasts come back z-scored with their statistics from before the insertion (see
    `_Inpaint`): the scale the few-label bench gives its made cases (README, Does it help my segmenter?)."""

    mode = "lesion"

    def __init__(self, keys=("t2f",), mask_key: str = "seg", prob: float = 1.0, label_key: str | None = None,
                 labels: str | None = None, mass_effect_mm=0.0, **settings):
        super().__init__(keys, mask_key, prob, **settings)
        self.label_key, self.labels = label_key, labels
        self.mass_effect_mm = (mass_effect_mm, mass_effect_mm) if np.isscalar(mass_effect_mm) else mass_effect_mm

    def apply(self, sample):
        if self.label_key is None:
            return super().apply(sample)
        rng = self.generator(sample, self.keys)
        done = rng.random() < self.prob
        if done:
            keys = [k for k in self.keys if k in sample]
            case = {canonical_contrast(k): self.volume(sample, k) for k in keys}
            affine = case[canonical_contrast(keys[0])].affine
            if self.label_key in sample:          # the job keeps the sample's own tumour beside the new one
                case["seg"] = Volume(read_value(sample[self.label_key], self.spacing)[0].astype(np.int16), affine)
            if self.labels is not None:
                new = read_value(sample[self.labels], self.spacing)[0].astype(np.int16)
            else:
                _, new, _ = draw_labels(case, seed=int(rng.integers(2 ** 31 - 1)))
            result = insert_lesion(case, Volume(new, affine), sampling=self.sampling(rng),
                                   mass_effect_mm=float(rng.uniform(*self.mass_effect_mm)))
            for key in keys:
                self.write(sample, key, result, canonical_contrast(key))
            like = sample.get(self.label_key, sample[keys[0]])
            sample[self.label_key] = write_value(like, result.outputs["seg"].array)
        sample["lesion_inpainted"] = torch.tensor(float(done))
        return sample


class RandomSuperResolution(_VolgenTransform):
    """With probability `prob`, simulate `factor`x thick slices along `axis` (block means) in each of `keys` and
    restore them with volgen's super-resolution: training images as a super-resolved clinical scan looks.
    The axis length must be a multiple of `factor`."""

    def __init__(self, keys=MRI_CONTRASTS, factor: int = 4, axis: str = "z", prob: float = 0.5, **settings):
        super().__init__(**settings)
        self.keys, self.factor, self.axis, self.prob = tuple(keys), factor, axis, prob

    def __call__(self, sample):
        rng = self.generator(sample, self.keys)
        applied = rng.random() < self.prob
        if applied:
            for key in (k for k in self.keys if k in sample):
                image = self.volume(sample, key)
                axis, _ = thick_array_axis(image, self.axis)
                result = super_resolve(thick_volume(image, self.factor, axis), factor=self.factor, axis=self.axis,
                                       contrast=canonical_contrast(key), sampling=self.sampling(rng))
                self.write(sample, key, result, "sr")
        sample["super_resolved"] = torch.tensor(float(applied))
        return sample
