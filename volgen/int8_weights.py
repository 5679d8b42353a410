"""The shipping form of large weights: int8 values with one float32 scale per row, a row being one index of the
first dimension (a convolution's output channel, a prior basis's contrast).

Why: the shipped models must stay small enough to ship inside the wheel. Symmetric absmax rounding,
q = round(w / s) with s = max |w_row| / 127, keeps every element within s / 2 of its value, about 0.4% of the row's
largest one, far below what moves a posterior mean (the model cards give the measured figures). Only tensors of at least MIN_ELEMENTS floating values with two or more dimensions are
packed: biases, norms, scales and small tables stay as they are.

In the safetensors file a packed tensor keeps its key, now int8, and its scales sit beside it under
`<key>.int8_scale` (float32), shaped (rows, 1, ...) to broadcast; unpack() gives back float32 tensors.
"""
from __future__ import annotations

import torch

SCALE_SUFFIX = ".int8_scale"
MIN_ELEMENTS = 16384


def packable(value: torch.Tensor) -> bool:
    return value.is_floating_point() and value.dim() >= 2 and value.numel() >= MIN_ELEMENTS


def pack(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """`tensors` with every packable one replaced by its int8 values and float32 scales."""
    packed = {}
    for key, value in tensors.items():
        if not packable(value):
            packed[key] = value
            continue
        rows = value.detach().float().flatten(1)
        # float32 scales: a float16 one would floor rows smaller than 127 x 6e-5 at a coarser step (4 bytes a row)
        scale = (rows.abs().amax(1, keepdim=True) / 127).clamp_min(torch.finfo(torch.float32).tiny)
        packed[key] = torch.round(rows / scale).clamp(-127, 127).to(torch.int8).view(value.shape)
        packed[key + SCALE_SUFFIX] = scale.view(-1, *[1] * (value.dim() - 1))
    return packed


def unpack(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The state with every packed tensor back in float32 (a state without packed tensors is returned as it is)."""
    if not is_packed(state):
        return state
    out = {}
    for key, value in state.items():
        if key.endswith(SCALE_SUFFIX):
            continue
        scale = state.get(key + SCALE_SUFFIX)
        out[key] = value if scale is None else value.float() * scale.float()
    return out


def is_packed(state: dict[str, torch.Tensor]) -> bool:
    return any(key.endswith(SCALE_SUFFIX) for key in state)
