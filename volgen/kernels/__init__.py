"""Fused kernels (Triton) beside an eager PyTorch reference of the same signature, and the dispatch between them.

`backend(*tensors)` picks "triton" when every tensor is on CUDA and Triton imports, "eager" otherwise;
VOLGEN_KERNELS=eager|triton forces either (triton on CPU tensors runs under TRITON_INTERPRET=1, which is how the
tests check the kernels without a GPU). The Triton kernels are compiled on first use, so the interpreter setting is
read then, and a CPU-only install never touches Triton.

- `haar`: the 3D Haar DWT and its inverse with the codec's low-pass scaling, one read and one write; and the
  known-voxel and the thick-slice projections of a codec-space estimate (decode, project, encode) in one pass each;
- `sampler`: classifier-free guidance with the conversion of a prediction to (x0, eps); the deterministic
  samplers' update (DDIM, Euler, DPM-Solver++(2M)) as one linear combination; the mean and spread of K samples:
  one pass each;
- `groupnorm`: GroupNorm(+SiLU) of 5-D activations, and `swap.use_fused_kernels` puts it into MONAI's networks;
- `patlak`: the per-voxel 2x2 Patlak proximal solve.
"""
from __future__ import annotations

import functools
import os

import torch

MODES = ("auto", "eager", "triton")


@functools.cache
def triton_available() -> bool:
    try:
        import triton  # noqa: F401
        import triton.language  # noqa: F401
    except Exception:        # not installed, or no usable backend
        return False
    return True


def backend(*tensors) -> str:
    """Which implementation runs: the kernels have no backward, so anything autograd will differentiate is eager."""
    if torch.is_grad_enabled() and any(t.requires_grad for t in tensors):
        return "eager"
    mode = os.environ.get("VOLGEN_KERNELS", "auto").strip().lower() or "auto"
    if mode not in MODES:
        raise ValueError(f"VOLGEN_KERNELS must be one of {', '.join(MODES)}, got '{mode}'")
    if mode == "eager":
        return "eager"
    if mode == "triton":
        if not triton_available():
            raise RuntimeError("VOLGEN_KERNELS=triton, but Triton does not import here")
        return "triton"
    return "triton" if triton_available() and all(t.is_cuda for t in tensors) else "eager"


def blocks(n: int, block: int) -> tuple[int]:
    return ((n + block - 1) // block,)
