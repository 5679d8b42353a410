"""What the jobs share: taking Volumes or paths, the sampling settings, timing, and the result they return."""
from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np
import torch

from volgen.error_model import CALIBRATED, describe_uncertainty, error_model_of, uncertainty_map
from volgen.io.nifti import read_volume, volume_from_image
from volgen.io.volume import Volume
from volgen.memory import available_memory, gigabytes, sampling_bytes
from volgen.tasks.generate import ESTIMATES, PRECISIONS, default_sampler, generate, resolve_precision
from volgen.tasks.models import backbone_of, default_samples, default_steps, default_timesteps, describe, load_model
from volgen.errors import InputError


@dataclass
class JobResult:
    """A job's outputs on the source grid (name -> Volume), their per-voxel uncertainty (same keys and grid; the
    expected absolute error where the model has an error model, else the spread over the samples; empty for one
    sample), the inputs worth showing beside them, and the facts a
    sidecar records (model and sha256, sampler, steps, samples, estimate, seed, timings)."""

    outputs: dict[str, Volume]
    uncertainty: dict[str, Volume] = field(default_factory=dict)
    inputs: dict[str, Volume] = field(default_factory=dict)
    info: dict = field(default_factory=dict)
    labels: Volume | None = None          # drawn over the montage (a mask), when there is one


def as_volume(item, *, allow_constant: bool = False, what: str = "volume") -> Volume:
    """A Volume from a Volume, a nibabel image or a NIfTI path."""
    if isinstance(item, Volume):
        if item.array.ndim != 3:
            raise InputError(item.meta.get("path", item.name or what), f"expected a 3D {what}, got {item.shape}")
        return item
    if isinstance(item, (str, Path)):
        return read_volume(item, allow_constant=allow_constant)
    if isinstance(item, (nib.Nifti1Image, nib.Nifti2Image)):
        return volume_from_image(item, allow_constant=allow_constant)
    raise TypeError(f"{what}: expected a Volume, a nibabel image or a path, got {type(item).__name__}")


def volume_path(volume: Volume) -> str:
    return volume.meta.get("path", volume.name or "volume")


@dataclass
class Sampling:
    """How to sample: the model (name, folder or a loaded one) and the sampler settings, with the CLI's defaults.
    `guidance` is the module's conditioning scale: 1 as trained, 0 the bare backbone; for a VCM it is exactly
    classifier-free guidance against the backbone, at no extra network call. `samples` are drawn as one batch;
    `estimate` is their posterior mean (default) or the first sample."""

    model: object = None
    backbone: str = "wavelet"
    steps: int | None = None
    samples: int | None = None
    estimate: str = "mean"
    precision: str = "auto"
    sampler: str | None = None
    guidance: float = 1.0
    seed: int = 0
    device: object = None
    progress: bool = False

    def __post_init__(self):
        # 0 is not "the default" (None is): refused as the CLI refuses it
        for name in ("steps", "samples"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or int(value) != value or value < 1):
                raise InputError(None, f"--{name} must be at least 1, got {value}")

    def load(self, job: str):
        if isinstance(self.model, torch.nn.Module):
            return self.model
        return load_model(job, self.model, backbone=self.backbone, device=self.device)

    def device_and_steps(self, model) -> tuple[torch.device, int]:
        """Where `model` runs, and the steps to take there (the device's default unless asked)."""
        device = next(backbone_of(model).parameters()).device
        return device, self.steps or default_steps(device)

    def timesteps(self, model, mean_of: str = "first") -> list:
        """The timesteps to sample at: the asked number of steps' sampler, else the device's default. `mean_of` is
        the job's rule for its posterior mean (generate's: "first", "draws" or "final")."""
        device, steps = self.device_and_steps(model)
        schedule = backbone_of(model).denoiser.schedule
        if self.steps:
            return schedule.timesteps(steps)
        return default_timesteps(schedule, device, finished=mean_of == "final" or self.estimate == "sample")

    def sample_count(self, model) -> int:
        return self.samples or default_samples(next(backbone_of(model).parameters()).device)

    def check_memory(self, model, image_shape, group: int = 1) -> None:
        """Refuse, with the figures and what to change, a job whose sampling batch cannot fit where it runs."""
        device, _ = self.device_and_steps(model)
        samples = self.sample_count(model) * group
        channels = getattr(getattr(backbone_of(model).network, "config", None), "channels", None)
        need = sampling_bytes(image_shape, samples, channels[0] if channels else None)
        free = available_memory(device)
        if free is not None and need > free:
            grid = "x".join(str(n) for n in image_shape)
            raise InputError(None, f"sampling needs about {gigabytes(need)} on {device} ({samples} samples of the "
                                   f"{grid} model grid) but {gigabytes(free)} is free; use fewer --samples "
                                   f"(each is a batch member), another --device, or crop the image to the head "
                                   f"(the model grid covers the field of view at the model's voxel size)")

    def estimate_of(self, model, image_shape, **kwargs):
        """The Estimate of one volume (or a group of coupled ones) on the model grid, with these settings."""
        _, steps = self.device_and_steps(model)
        if steps < 1:
            raise InputError(None, f"--steps must be at least 1, got {steps}")
        if self.sample_count(model) < 1:
            raise InputError(None, f"--samples must be at least 1, got {self.samples}")
        if self.estimate not in ESTIMATES:
            raise InputError(None, f"--estimate must be one of {', '.join(ESTIMATES)}, got '{self.estimate}'")
        if self.precision not in PRECISIONS:
            raise InputError(None, f"--precision must be one of {', '.join(PRECISIONS)}, got '{self.precision}'")
        self.check_memory(model, image_shape, kwargs.get("group", 1))
        timesteps = self.timesteps(model, kwargs.get("mean_of", "first"))
        return generate(model, (1, *image_shape), steps=timesteps, sampler=self.sampler, seed=self.seed,
                        guidance=self.guidance, samples=self.sample_count(model), estimate=self.estimate,
                        precision=self.precision, progress=self.progress, **kwargs)

    def run(self, model, image_shape, **kwargs) -> tuple[np.ndarray, np.ndarray | None]:
        """One volume on the model grid, (D, H, W) as numpy in the model's range [-1, 1], and its uncertainty map
        in the same units: for a posterior mean, the expected absolute error where the model has an error model for
        the contrast (volgen/error_model.py), else the spread over the samples; None for one sample."""
        out = self.estimate_of(model, image_shape, **kwargs)
        image = out.image[0, 0].float().cpu().numpy()
        if out.spread is None:
            return image, None
        spread = out.spread[0, 0].float().cpu().numpy()
        if self.estimate != "mean":            # a calibration is fitted to a mean's error, not a sample's
            return image, spread
        return image, uncertainty_map(model, kwargs.get("contrast"), image, spread)

    def describe(self, model, mean_of: str = "first", contrasts=()) -> dict:
        """The sidecar's sampling facts; `contrasts` are the job's targets (what its uncertainty maps are depends
        on their calibrations)."""
        device, _ = self.device_and_steps(model)
        timesteps = [round(float(t), 3) for t in self.timesteps(model, mean_of)]
        uncertainty = describe_uncertainty(model, contrasts if self.estimate == "mean" else (None,),
                                           self.sample_count(model))
        # the settings the calibration was fitted at: other samples or timesteps change the spread's scale
        calibration = {"uncertainty_calibration": error_model_of(model).fitted_on} if uncertainty == CALIBRATED else {}
        return {**describe(model), "sampler": self.sampler or default_sampler(backbone_of(model)),
                "steps": len(timesteps), "timesteps": timesteps, "samples": self.sample_count(model),
                "estimate": self.estimate, **({"mean_of": mean_of} if self.estimate == "mean" else {}),
                "uncertainty": uncertainty, **calibration,
                "precision": resolve_precision(self.precision, device), "seed": self.seed,
                "guidance": self.guidance, "device": str(device)}


def model_spacing(model) -> float:
    """The voxel size (mm) the model was trained at, from its training metadata (volgen's defaults: 2 mm)."""
    for source in (model, backbone_of(model)):
        spacing = (getattr(source, "hub_metadata", None) or {}).get("spacing")
        if spacing:
            return float(spacing)
    return 2.0


class Timer:
    """Named wall-clock seconds: with timer("sample"): ..."""

    def __init__(self):
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = round(self.seconds.get(name, 0.0) + time.perf_counter() - start, 3)


def to_unit(model_array: np.ndarray) -> np.ndarray:
    """Model range [-1, 1] -> [0, 1], clipped."""
    return ((np.asarray(model_array, dtype=np.float32) + 1.0) / 2.0).clip(0.0, 1.0)
