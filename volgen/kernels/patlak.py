"""The Patlak proximal step per voxel (see volgen.sampling.patlak): theta = (H + P)^-1 (r + P theta0), with the data's
precision H = G / s2 and information vector r = c / s2 per voxel (a voxel's own Gram matrix when its frame times
are its own: beds, slice offsets) and the prior's precision P = diag(p_ki, p_v)."""
from __future__ import annotations

import functools

import torch

from volgen.kernels import backend, blocks

BLOCK = 4096


def patlak_proximal_eager(ki0, v0, r0, r1, h00, h01, h11, p_ki: float, p_v: float):
    a00, a11 = h00 + p_ki, h11 + p_v
    b0, b1 = r0 + p_ki * ki0, r1 + p_v * v0
    det = a00 * a11 - h01 * h01
    return (a11 * b0 - h01 * b1) / det, (a00 * b1 - h01 * b0) / det


@functools.cache
def _kernel():
    import triton
    import triton.language as tl

    @triton.jit
    def proximal(ki0_ptr, v0_ptr, r0_ptr, r1_ptr, h00_ptr, h01_ptr, h11_ptr, ki_ptr, v_ptr, n, per_sample,
                 p_ki, p_v, BLOCK: tl.constexpr):
        offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        mask = offs < n
        voxel = offs % per_sample                   # the data's statistics are shared by every sample
        ki0 = tl.load(ki0_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        v0 = tl.load(v0_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        r0 = tl.load(r0_ptr + voxel, mask=mask, other=0.0).to(tl.float32)
        r1 = tl.load(r1_ptr + voxel, mask=mask, other=0.0).to(tl.float32)
        a00 = tl.load(h00_ptr + voxel, mask=mask, other=1.0).to(tl.float32) + p_ki
        h01 = tl.load(h01_ptr + voxel, mask=mask, other=0.0).to(tl.float32)
        a11 = tl.load(h11_ptr + voxel, mask=mask, other=1.0).to(tl.float32) + p_v
        b0 = r0 + p_ki * ki0
        b1 = r1 + p_v * v0
        det = a00 * a11 - h01 * h01
        tl.store(ki_ptr + offs, (a11 * b0 - h01 * b1) / det, mask=mask)
        tl.store(v_ptr + offs, (a00 * b1 - h01 * b0) / det, mask=mask)

    return proximal


def patlak_proximal(ki0, v0, r0, r1, h00, h01, h11, p_ki: float, p_v: float):
    """(Ki, V): ki0, v0 are (K, *grid) prior estimates; r0, r1 (information) and h00, h01, h11 (precision) are
    (*grid) data statistics shared by the K."""
    statistics = (r0, r1, h00, h01, h11)
    if backend(ki0, v0, *statistics) == "eager":
        return patlak_proximal_eager(ki0, v0, *statistics, p_ki, p_v)
    ki0, v0 = ki0.contiguous(), v0.contiguous()
    statistics = tuple(s.contiguous() for s in statistics)
    ki, v = torch.empty_like(ki0, dtype=torch.float32), torch.empty_like(v0, dtype=torch.float32)
    _kernel()[blocks(ki0.numel(), BLOCK)](ki0, v0, *statistics, ki, v, ki0.numel(), r0.numel(), float(p_ki),
                                          float(p_v), BLOCK=BLOCK)
    return ki, v
