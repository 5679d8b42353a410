"""GroupNorm of 5-D activations, optionally followed by SiLU, in two passes: partial sums per (item, group, chunk),
then one normalising pass. Channels-first and channels-last-3D inputs alike (indices go through the strides); the
output keeps the input's memory format. Statistics in float32 whatever the input's dtype."""
from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

from volgen.kernels import backend, blocks

BLOCK = 2048


def group_norm_eager(x: torch.Tensor, groups: int, weight: torch.Tensor | None, bias: torch.Tensor | None,
                     eps: float = 1e-5, silu: bool = False) -> torch.Tensor:
    out = F.group_norm(x, groups, weight, bias, eps)
    return F.silu(out) if silu else out


@functools.cache
def _kernels():
    import triton
    import triton.language as tl

    @triton.jit
    def partial_sums(x_ptr, sums_ptr, per_group, S, G, Cg, sb, sc, ss, chunks, BLOCK: tl.constexpr):
        bg = tl.program_id(0)                     # item b, group g
        chunk = tl.program_id(1)
        b = bg // G
        g = bg % G
        j = chunk * BLOCK + tl.arange(0, BLOCK)   # index inside the group: channel-major, then space
        mask = j < per_group
        c = g * Cg + j // S
        s = j % S
        x = tl.load(x_ptr + b * sb + c * sc + s * ss, mask=mask, other=0.0).to(tl.float32)
        tl.store(sums_ptr + (bg * chunks + chunk) * 2, tl.sum(x, axis=0))
        tl.store(sums_ptr + (bg * chunks + chunk) * 2 + 1, tl.sum(x * x, axis=0))

    @triton.jit
    def normalise(x_ptr, out_ptr, mean_ptr, rstd_ptr, w_ptr, b_ptr, n, C, S, G, Cg, sb, sc, ss,
                  HAS_AFFINE: tl.constexpr, SILU: tl.constexpr, BLOCK: tl.constexpr):
        offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        mask = offs < n
        s = offs % S
        c = (offs // S) % C
        b = offs // (S * C)
        address = b * sb + c * sc + s * ss
        x = tl.load(x_ptr + address, mask=mask, other=0.0).to(tl.float32)
        stat = b * G + c // Cg
        y = (x - tl.load(mean_ptr + stat, mask=mask, other=0.0)) * tl.load(rstd_ptr + stat, mask=mask, other=1.0)
        if HAS_AFFINE:
            y = y * tl.load(w_ptr + c, mask=mask, other=1.0).to(tl.float32) + \
                tl.load(b_ptr + c, mask=mask, other=0.0).to(tl.float32)
        if SILU:
            y = y / (1.0 + tl.exp(-y))
        tl.store(out_ptr + address, y.to(out_ptr.dtype.element_ty), mask=mask)

    return partial_sums, normalise


def _spatial_stride(x: torch.Tensor) -> int | None:
    """The stride of the flattened spatial index, when D, H, W are laid out as one block (both memory formats)."""
    _, _, d, h, w = x.shape
    sd, sh, sw = x.stride()[2:]
    return sw if (sh == sw * w or h == 1) and (sd == sh * h or d == 1) else None


def group_norm(x: torch.Tensor, groups: int, weight: torch.Tensor | None = None, bias: torch.Tensor | None = None,
               eps: float = 1e-5, silu: bool = False) -> torch.Tensor:
    """F.group_norm (then SiLU when `silu`) of a (B, C, D, H, W) tensor."""
    params = [p for p in (weight, bias) if p is not None]
    if x.dim() != 5 or backend(x, *params) == "eager":
        return group_norm_eager(x, groups, weight, bias, eps, silu)
    if _spatial_stride(x) is None:
        x = x.contiguous()
    b, c, d, h, w = x.shape
    spatial = d * h * w
    ss = _spatial_stride(x)
    cg = c // groups
    per_group = cg * spatial
    chunks = blocks(per_group, BLOCK)[0]
    partial_sums, normalise = _kernels()
    sums = torch.empty((b * groups, chunks, 2), dtype=torch.float32, device=x.device)
    partial_sums[(b * groups, chunks)](x, sums, per_group, spatial, groups, cg, x.stride(0), x.stride(1), ss,
                                       chunks, BLOCK=BLOCK)
    total = sums.double().sum(1)                 # a few numbers per group: summed in float64 on the device
    mean = total[:, 0] / per_group
    var = (total[:, 1] / per_group - mean ** 2).clamp_min(0)
    rstd = (var + eps).rsqrt()
    out = torch.empty_like(x)                    # same memory format as x, so the same strides
    affine = weight is not None
    normalise[blocks(x.numel(), BLOCK)](x, out, mean.float(), rstd.float(), weight if affine else x,
                                        bias if affine else x, x.numel(), c, spatial, groups, cg, x.stride(0),
                                        x.stride(1), ss, HAS_AFFINE=affine, SILU=silu, BLOCK=BLOCK)
    return out
