"""What each conditioning task is, in one place, for training, the jobs, the augmentation hooks and the benches.

A `TaskSpec` owns:
- `conditions(contrasts)`: the module's condition channels;
- `example(...)`: how a training example is made from a batch of clean images (the degradation the module learns
  to undo), with the same forward operators (`volgen.ops`) the jobs' data consistency uses;
- `inputs(...)`: the keyword arguments `tasks.generate` samples with, from what the job has on the model grid (the
  conditions tensor, the consistency projection, the estimate's rule);
- `priors`: the VCM prior kinds that fit the task; `output`: the job's output key; `metadata(data)`: what a trained
  module records about its data; `needs_healthy` / `crop_around_lesion`: what its training cases need.

A new task is a TaskSpec registered with `register` plus a run config (`task: <name>`); `tests/test_taskspec.py`
adds a toy one end to end.
"""
from __future__ import annotations

import torch

from volgen.ops import (GuidedFit, KnownVoxels, ThickSlices, TowardPrior, compartments, dilate, label_zones,
                        random_blobs, repeat_slices, thick_slices)

# a masked voxel reads as background on the model's [-1, 1] scale, not as a value the module could take literally
MASKED = -1.0


def pick(images: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """(B, 1, ...): item i's contrast k[i]."""
    return images[torch.arange(len(k)), k][:, None]


def masked_input(image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The image with its masked voxels (mask = 1) set to background."""
    return image * (1 - mask) + MASKED * mask


class TaskSpec:
    name = ""
    priors: tuple[str, ...] = ("none",)
    output = ""
    mean_of = "first"             # tasks.generate's rule for the posterior mean
    needs_healthy = False
    crop_around_lesion = False
    has_region = False            # `region` marks what the module makes (train.region_weight)

    def conditions(self, contrasts) -> tuple[str, ...]:
        raise NotImplementedError

    def example(self, images: torch.Tensor, k: torch.Tensor, batch: dict, data, gen: torch.Generator) -> tuple:
        """(target (B, 1, ...), the network's keyword conditions) for contrasts `k` of a batch of `images`."""
        raise NotImplementedError

    def inputs(self, **given) -> dict:
        raise NotImplementedError

    def metadata(self, data) -> dict:
        return {}

    def region(self, cond: dict) -> torch.Tensor:
        """(B, 1, ...) bool: the voxels a training example asks the module to make rather than keep, from its
        conditions (what train.region_weight weighs), for a task that `has_region`."""
        raise NotImplementedError


class Synthesis(TaskSpec):
    """Missing contrasts from the present ones: the target hidden, each other contrast hidden with
    `data.contrast_dropout` (one always stays); the module sees which are present.

    The job's posterior mean is then fitted, in each 3^3 window, as a linear combination of the present conditions
    (`GuidedFit`): a conditional mean blurs the edges between compartments (enhancing rim, oedema, necrosis) that the
    conditions show sharply. Chosen on validation phantoms (seed 300, 12 cases, session 37) among radius 1-2 and
    ridge 1e-4 to 2e-3: radius 1, ridge 5e-4 had the best brain PSNR, t1c +0.31 dB and t2f +0.29 dB over the plain
    mean (t1n +0.15, t2w -0.02 on 6 cases), and the bench segmenter's ET Dice on the t1c 0.883 -> 0.896.
    The module's prior as a further guide was tried on the same cases (session 58, the bench's ensemble
    segmenter): t1c 29.48 dB and ET Dice 0.932 against 29.58 and 0.935 without it (ridge 2e-3: 29.51, 0.933)."""

    name, priors = "synthesis", ("regression", "table", "none")
    refine_radius, refine_eps = 1, 5e-4

    def conditions(self, contrasts) -> tuple[str, ...]:
        return tuple(contrasts)

    def example(self, images, k, batch, data, gen):
        b, c = images.shape[:2]
        present = (torch.rand(b, c, generator=gen) >= data.contrast_dropout).float()
        present[torch.arange(b), k] = 0.0
        for i in range(b):                          # at least one source contrast stays
            if present[i].sum() == 0:
                others = [j for j in range(c) if j != int(k[i])]
                present[i, others[int(torch.randint(0, len(others), (1,), generator=gen))]] = 1.0
        return pick(images, k), {"conditions": images, "present": present}

    def inputs(self, *, volumes: dict, contrasts, shape) -> dict:
        """From {contrast: (D, H, W) tensor} on the model grid, in the module's `contrasts` order."""
        conditions = torch.zeros(1, len(contrasts), *shape)
        present = torch.zeros(1, len(contrasts))
        for contrast, volume in volumes.items():
            conditions[0, contrasts.index(contrast)] = volume
            present[0, contrasts.index(contrast)] = 1.0
        # views of the present conditions, not a copy: the detail transfer asks for these inputs on a 1 mm grid and
        # never uses the refine
        guides = [conditions[0, i] for i in range(len(contrasts)) if present[0, i] > 0]
        return {"conditions": conditions, "present": present,
                "refine": GuidedFit(guides, self.refine_radius, self.refine_eps)}


class SuperResolution(TaskSpec):
    """Thin slices from thick ones: the condition is the thick-slice volume repeated onto the thin grid, the data
    consistency keeps every thick slice's mean."""

    name, priors, output = "super_resolution", ("interpolation", "none"), "sr"

    def conditions(self, contrasts) -> tuple[str, ...]:
        return ("lowres",)

    def example(self, images, k, batch, data, gen):
        target = pick(images, k)
        dim = 2 + data.sr_axis
        return target, {"conditions": repeat_slices(thick_slices(target, data.sr_factor, dim), data.sr_factor, dim)}

    def inputs(self, *, lowres: torch.Tensor, factor: int, dim: int, device=None) -> dict:
        """From the thick slices repeated onto the model grid, (1, 1, ...), `factor` model voxels each along `dim`."""
        observed = thick_slices(lowres, factor, dim)
        return {"conditions": lowres, "projection": ThickSlices(observed.to(device), factor, dim),
                "prior_options": {"factor": factor, "dim": dim}}     # the interpolation prior follows this volume

    def metadata(self, data) -> dict:
        return {"sr_factor": data.sr_factor, "sr_axis": data.sr_axis}


class Inpainting(TaskSpec):
    """A masked region re-synthesised: a dilated lesion mask; half the items fill it with healthy tissue (target:
    the healthy twin), half grow the lesion into it (target: the lesion image, input: the healthy twin), told apart
    by the `insert_lesion` channel. With `data.inpainting_blobs` > 0, that share of the healthy fills gets a random
    blob in its healthy twin instead (input and target the twin): a user's hole can be anywhere, and the training
    cases' own tumours are few places and shapes. The data consistency keeps the voxels outside the mask."""

    name, priors, output = "inpainting", ("template_fill", "fill", "none"), "inpainted"
    has_region = True
    # the posterior mean of the draws as the sampler leaves them, not of the first step's x0: the first step sees the
    # masked image only through the module, while each draw's last x0 has had the known voxels projected in once
    mean_of = "draws"
    # A healthy fill's posterior mean is then shrunk toward the module's prior (`TowardPrior`): 0.2 x mean + 0.8 x
    # prior. The module's mean erred brighter than its prior by about 1.5% of the peak on every hole (session 44),
    # right on large holes (where the prior was too dark) and wrong on small ones. Chosen on validation phantoms
    # (seed 300, 8 cases x 5 mask kinds) among 0 to 1 in steps of 0.1, with the case warp of session 45
    # (template_prior.CASE_WARP_SMOOTH): margin over the exact harmonic fill +5.88 dB at 0.1-0.2, +5.86 at 0.3, mean
    # alone +5.43, prior alone +5.87; holes under 4,000 voxels +5.20 (+4.44, +5.25). With the earlier, smoother warp
    # 0.3 was best (+5.04; +4.82, +4.99). A per-voxel shrinkage by the draws' spread (a Wiener gain) kept the
    # mean's bias.
    mean_weight = 0.2
    needs_healthy = crop_around_lesion = True
    max_margin = 2          # training holes: the tumour dilated by 0 to max_margin voxels

    def conditions(self, contrasts) -> tuple[str, ...]:
        return ("masked", "mask", "insert_lesion")

    def example(self, images, k, batch, data, gen):
        lesion_img, healthy = pick(images, k), pick(batch["healthy"], k)
        b = images.shape[0]
        radius = int(torch.randint(0, self.max_margin + 1, (1,), generator=gen))
        mask = dilate((batch["seg"] > 0).float(), radius)
        insert = (torch.rand(b, generator=gen) < 0.5).float().view(b, 1, 1, 1, 1)
        source = insert * healthy + (1 - insert) * lesion_img
        target = insert * lesion_img + (1 - insert) * healthy
        if data.inpainting_blobs > 0:          # drawn only then: older runs resume with the same random stream
            blob = ((torch.rand(b, generator=gen) < data.inpainting_blobs).view(b, 1, 1, 1, 1) & (insert == 0))
            mask = torch.where(blob, random_blobs(healthy > -0.99, gen), mask)
            source = torch.where(blob, healthy, source)
        else:
            blob = torch.zeros(b, 1, 1, 1, 1, dtype=torch.bool)
        cond = {"conditions": torch.cat([masked_input(source, mask), mask, insert.expand_as(mask)], dim=1)}
        if "atlas" in batch:      # the registered prior's atlas, registered once per case (training/atlas_cache.py)
            # a blob hole is not the one the cache was registered without: NaN has the prior register it
            cond["prior_options"] = {"warped": torch.where(blob, float("nan"), pick(batch["atlas"], k).float())}
        return target, cond

    def inputs(self, *, image: torch.Tensor, mask: torch.Tensor, insert: bool, device=None) -> dict:
        """From the image and the mask (1, 1, ...) on the model grid; `insert` grows a lesion instead of a fill."""
        flag = torch.full_like(mask, 1.0 if insert else 0.0)
        given = {"conditions": torch.cat([masked_input(image, mask), mask, flag], dim=1),
                 "projection": KnownVoxels(image.to(device), mask.to(device)), "mean_of": self.mean_of}
        if not insert:                       # chosen on healthy fills only: a grown lesion keeps the module's mean
            given["refine"] = TowardPrior(self.mean_weight, mask)
        return given

    def region(self, cond: dict) -> torch.Tensor:
        return cond["conditions"][:, 1:2] > 0.5            # the mask channel


class LesionInsertion(TaskSpec):
    """A tumour drawn by its label map into a healthy image, each contrast of a case from the same labels: the
    conditions are the whole healthy image (the tissue the tumour grows in stays visible) and the three compartments;
    the target is the tumour image. The data consistency keeps every voxel outside the labels and their one-voxel
    border (`volgen.ops.label_zones`)."""

    name, priors, output = "lesion", ("label_table", "none"), "lesion"
    needs_healthy = crop_around_lesion = True

    def conditions(self, contrasts) -> tuple[str, ...]:
        return ("healthy", "necrotic", "oedema", "enhancing")

    def example(self, images, k, batch, data, gen):
        return pick(images, k), {"conditions": torch.cat([pick(batch["healthy"], k), compartments(batch["seg"])],
                                                         dim=1)}

    def inputs(self, *, healthy: torch.Tensor, seg: torch.Tensor, device=None, level_noise=None) -> dict:
        """From the healthy images (G, 1, ...), one per contrast sampled together, and the labels (1, 1, ...) on the
        model grid; `level_noise` draws each sample's compartment levels (the label prior's `level_noise`)."""
        one_hot = compartments(seg).expand(len(healthy), -1, *seg.shape[2:])
        _, region = label_zones(one_hot)
        given = {"conditions": torch.cat([healthy, one_hot], dim=1),
                 "projection": KnownVoxels(healthy.to(device), region.float().to(device)), "group": len(healthy)}
        if level_noise is not None:
            given["prior_options"] = {"level_noise": level_noise}
        return given


TASKS: dict[str, TaskSpec] = {}


def register(spec: TaskSpec) -> TaskSpec:
    """Make a task known to training (`task: <name>` in a run config) and to the jobs."""
    TASKS[spec.name] = spec
    return spec


def task(name: str) -> TaskSpec:
    if name not in TASKS:
        raise ValueError(f"task: '{name}' is not one of {', '.join(TASKS)}")
    return TASKS[name]


for _spec in (Synthesis(), SuperResolution(), Inpainting(), LesionInsertion()):
    register(_spec)
