"""The Patlak proximal step per voxel (see volgen.sampling.patlak): theta = (G / s2 + P)^-1 (c / s2 + P theta0)."""
from __future__ import annotations

import functools

import torch

from volgen.kernels import backend, blocks

BLOCK = 4096


def patlak_proximal_eager(ki0, v0, c0, c1, s2, g00: float, g01: float, g11: float, p_ki: float, p_v: float):
    h00, h01, h11 = g00 / s2, g01 / s2, g11 / s2
    a00, a11 = h00 + p_ki, h11 + p_v
    r0, r1 = c0 / s2 + p_ki * ki0, c1 / s2 + p_v * v0
    det = a00 * a11 - h01 * h01
    return (a11 * r0 - h01 * r1) / det, (a00 * r1 - h01 * r0) / det


@functools.cache
def _kernel():
    import triton
    import triton.language as tl

    @triton.jit
    def proximal(ki0_ptr, v0_ptr, c0_ptr, c1_ptr, s2_ptr, ki_ptr, v_ptr, n, per_sample,
                 g00, g01, g11, p_ki, p_v, BLOCK: tl.constexpr):
        offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        mask = offs < n
        voxel = offs % per_sample                   # the statistics are shared by every sample
        ki0 = tl.load(ki0_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        v0 = tl.load(v0_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        c0 = tl.load(c0_ptr + voxel, mask=mask, other=0.0).to(tl.float32)
        c1 = tl.load(c1_ptr + voxel, mask=mask, other=0.0).to(tl.float32)
        inv = 1.0 / tl.load(s2_ptr + voxel, mask=mask, other=1.0).to(tl.float32)
        a00 = g00 * inv + p_ki
        a11 = g11 * inv + p_v
        h01 = g01 * inv
        r0 = c0 * inv + p_ki * ki0
        r1 = c1 * inv + p_v * v0
        det = a00 * a11 - h01 * h01
        tl.store(ki_ptr + offs, (a11 * r0 - h01 * r1) / det, mask=mask)
        tl.store(v_ptr + offs, (a00 * r1 - h01 * r0) / det, mask=mask)

    return proximal


def patlak_proximal(ki0, v0, c0, c1, s2, g00: float, g01: float, g11: float, p_ki: float, p_v: float):
    """(Ki, V): ki0, v0 are (K, *grid) prior estimates; c0, c1, s2 are (*grid) statistics shared by the K."""
    if backend(ki0, v0, c0, c1, s2) == "eager":
        return patlak_proximal_eager(ki0, v0, c0, c1, s2, g00, g01, g11, p_ki, p_v)
    ki0, v0 = ki0.contiguous(), v0.contiguous()
    c0, c1, s2 = c0.contiguous(), c1.contiguous(), s2.contiguous()
    ki, v = torch.empty_like(ki0, dtype=torch.float32), torch.empty_like(v0, dtype=torch.float32)
    _kernel()[blocks(ki0.numel(), BLOCK)](ki0, v0, c0, c1, s2, ki, v, ki0.numel(), c0.numel(), float(g00),
                                          float(g01), float(g11), float(p_ki), float(p_v), BLOCK=BLOCK)
    return ki, v
