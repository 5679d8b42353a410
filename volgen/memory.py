"""How much memory there is, and how much a job will ask for: checked before reading or sampling, so a job that
cannot fit is refused with the figures instead of dying half-way (or swapping the machine to a halt)."""
from __future__ import annotations

import math
import os

import torch

# Peak memory of one sampling batch per model-grid voxel and per sample, for a backbone whose first U-Net level has
# REFERENCE_CHANNELS channels. Measured on the shipped wavelet backbone + synthesis VCM on a 96x112x96 grid:
# 350 MB for one sample, 1160 MB for four (about 280 bytes per voxel per sample); rounded up for fp32 and for the
# allocator's slack. Wider backbones scale with their first level's width.
BYTES_PER_VOXEL_SAMPLE = 400
REFERENCE_CHANNELS = 32


def gigabytes(n_bytes: float) -> str:
    return f"{n_bytes / 2 ** 30:.1f} GB" if n_bytes >= 2 ** 29 else f"{n_bytes / 2 ** 20:.0f} MB"


def available_memory(device="cpu") -> int | None:
    """Bytes free for a new allocation on `device` (None when it cannot be told)."""
    if str(device).startswith("cuda"):
        return int(torch.cuda.mem_get_info(torch.device(device))[0])
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def sampling_bytes(grid_shape, samples: int, first_level_channels: int | None = None) -> int:
    """Estimated peak bytes of sampling `samples` volumes of `grid_shape` (the model grid) as one batch."""
    voxels = math.prod(int(n) for n in grid_shape)
    width = (first_level_channels or REFERENCE_CHANNELS) / REFERENCE_CHANNELS
    return int(samples * voxels * BYTES_PER_VOXEL_SAMPLE * max(width, 1.0))
