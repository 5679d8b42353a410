"""Which model a job runs, loaded once per process: the shipped defaults, or a name or folder the user gives.

Loaded models are cached by (name or folder, device), so a batch of cases, or an augmentation transform in a data
loader worker, loads each model once.
"""
from __future__ import annotations

import os

import torch

from volgen import hub
from volgen.backbones.backbone import Backbone
from volgen.errors import InputError
from volgen.kernels.swap import use_fused_kernels

# (job, backbone kind) -> shipped model name
DEFAULT_MODELS = {
    ("synthesis", "wavelet"): "volgen-vcm-synthesis-2mm",
    ("super_resolution", "wavelet"): "volgen-vcm-super-resolution-2mm",
    ("inpainting", "wavelet"): "volgen-vcm-inpainting-2mm",
    ("lesion", "wavelet"): "volgen-vcm-lesion-2mm",
    ("synthesis", "latent"): "volgen-vcm-synthesis-latent-2mm",
    ("patlak", "wavelet"): "volgen-pet-prior-2mm",          # a backbone on static PET images (the Ki and V prior)
}
BACKBONE_KINDS = ("wavelet", "latent")
_CACHE: dict[tuple[str, str], torch.nn.Module] = {}


def pick_device(device=None) -> torch.device:
    """The asked device, else CUDA when there is one (process r of a torchrun / accelerate launch takes GPU
    LOCAL_RANK), else the CPU; an unusable device is one clear error."""
    if device is None or device == "auto":
        if not torch.cuda.is_available():
            return torch.device("cpu")
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")) % torch.cuda.device_count())
    try:
        device = torch.device(device)
    except RuntimeError as exc:
        raise InputError(None, f"--device: {exc}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError(None, f"--device {device}: CUDA is not available on this machine")
    return device


def default_steps(device: torch.device) -> int:
    """10 sampling steps on a GPU (the timesteps the shipped modules were trained at), 5 on the CPU (a subset of
    them: the posterior mean comes from the first step, so more steps only refine the samples; bench_estimate)."""
    return 10 if device.type == "cuda" else 5


def default_timesteps(schedule, device: torch.device, finished: bool) -> list:
    """The timesteps a job samples at when none are asked for: the default steps' sampler, except on the CPU for a
    posterior mean that does not need `finished` samples, where it stops after two of the 5-step sampler's timesteps
    (800 and 400 on volgen's backbones). A mean taken at the first step is then the 5-step sampler's exactly; each
    sample ends as its own x0 prediction at the middle noise level, which is what the uncertainty map is the spread
    of. Two network calls instead of five."""
    steps = schedule.timesteps(default_steps(device))
    return steps if device.type != "cpu" or finished else steps[0:3:2]


def default_samples(device: torch.device) -> int:
    """Samples drawn (as one batch) for the estimate and its uncertainty. On the CPU, 2: the posterior mean is the
    first step's x0 averaged, which two samples already pin down (more cost time, not accuracy)."""
    return 8 if device.type == "cuda" else 2


def model_name_for(job: str, model: str | None, backbone: str = "wavelet") -> str:
    if model:
        return str(model)
    if backbone not in BACKBONE_KINDS:
        raise InputError(None, f"--backbone must be one of {', '.join(BACKBONE_KINDS)}, got '{backbone}'")
    name = DEFAULT_MODELS.get((job, backbone))
    if name is None or name not in hub.registry():
        raise InputError(None, f"no shipped {job.replace('_', '-')} model for the {backbone} backbone; train one "
                               f"(volgen train) and pass it with --model")
    return name


def load_model(job: str, model: str | None = None, *, backbone: str = "wavelet", device=None):
    """The module (or backbone) a job runs, on `device`, in eval mode."""
    name = model_name_for(job, model, backbone)
    device = pick_device(device)
    key = (name, str(device))
    if key not in _CACHE:
        loaded = use_fused_kernels(hub.from_pretrained(name, device=device))   # fused on CUDA, identical elsewhere
        loaded.eval()
        _CACHE[key] = loaded
    return _CACHE[key]


def backbone_of(model) -> Backbone:
    return model if isinstance(model, Backbone) else model.backbone


def describe(model) -> dict:
    """Name and sha256 of a loaded model and of its backbone, for sidecars."""
    out = {"model": getattr(model, "hub_source", None)}
    backbone = backbone_of(model)
    if backbone is not model:
        out["backbone"] = getattr(backbone, "hub_source", None)
    return out
