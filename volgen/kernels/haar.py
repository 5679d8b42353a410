"""The 3D Haar DWT and its inverse, with the codec's low-pass scaling folded in: one read and one write.

Subband s = 4 fd + 2 fh + fw of channel c is output channel 8c + s (PyWavelets' dwtn order); its value at
(i, j, k) is sum over the 2x2x2 block of (-1)^(fd a + fh b + fw c) x[2i + a, 2j + b, 2k + c] / (2 sqrt 2), and the
low-pass band (s = 0) is divided by `lowpass_scale` (volgen's codec: 2 sqrt 2, the block mean).
"""
from __future__ import annotations

import functools
import math

import torch

from volgen.codecs.haar import _check_even, haar_dwt3 as _dwt_reference, haar_idwt3 as _idwt_reference
from volgen.kernels import backend, blocks

BLOCK = 1024
NORM = 1.0 / (2.0 * math.sqrt(2.0))


def _band_scale(channels: int, lowpass_scale: float, like: torch.Tensor) -> torch.Tensor:
    scale = torch.ones(8, dtype=like.dtype, device=like.device)
    scale[0] = lowpass_scale
    return scale.repeat(channels // 8).view(1, -1, 1, 1, 1)


def haar_dwt3_eager(x: torch.Tensor, lowpass_scale: float = 1.0) -> torch.Tensor:
    z = _dwt_reference(x)
    return z / _band_scale(z.shape[1], lowpass_scale, z) if lowpass_scale != 1.0 else z


def haar_idwt3_eager(z: torch.Tensor, lowpass_scale: float = 1.0) -> torch.Tensor:
    return _idwt_reference(z * _band_scale(z.shape[1], lowpass_scale, z) if lowpass_scale != 1.0 else z)


@functools.cache
def _kernels():
    import triton
    import triton.language as tl

    @triton.jit
    def dwt(x_ptr, z_ptr, n, D2, H2, W2, low, BLOCK: tl.constexpr):
        # one lane per output voxel (b, c, i, j, k) of one subband position; it writes all 8 subbands
        offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        mask = offs < n
        k = offs % W2
        j = (offs // W2) % H2
        i = (offs // (W2 * H2)) % D2
        bc = offs // (W2 * H2 * D2)
        H, W = 2 * H2, 2 * W2
        base = bc * (2 * D2) * H * W + (2 * i) * H * W + (2 * j) * W + 2 * k
        x000 = tl.load(x_ptr + base, mask=mask, other=0.0).to(tl.float32)
        x001 = tl.load(x_ptr + base + 1, mask=mask, other=0.0).to(tl.float32)
        x010 = tl.load(x_ptr + base + W, mask=mask, other=0.0).to(tl.float32)
        x011 = tl.load(x_ptr + base + W + 1, mask=mask, other=0.0).to(tl.float32)
        x100 = tl.load(x_ptr + base + H * W, mask=mask, other=0.0).to(tl.float32)
        x101 = tl.load(x_ptr + base + H * W + 1, mask=mask, other=0.0).to(tl.float32)
        x110 = tl.load(x_ptr + base + H * W + W, mask=mask, other=0.0).to(tl.float32)
        x111 = tl.load(x_ptr + base + H * W + W + 1, mask=mask, other=0.0).to(tl.float32)
        # butterflies along W, then H, then D
        lw00, hw00 = x000 + x001, x000 - x001
        lw01, hw01 = x010 + x011, x010 - x011
        lw10, hw10 = x100 + x101, x100 - x101
        lw11, hw11 = x110 + x111, x110 - x111
        ll0, hl0, lh0, hh0 = lw00 + lw01, lw00 - lw01, hw00 + hw01, hw00 - hw01
        ll1, hl1, lh1, hh1 = lw10 + lw11, lw10 - lw11, hw10 + hw11, hw10 - hw11
        norm = 0.35355339059327373
        band = D2 * H2 * W2
        out = bc * 8 * band + i * H2 * W2 + j * W2 + k
        tl.store(z_ptr + out, (ll0 + ll1) * norm / low, mask=mask)          # aaa
        tl.store(z_ptr + out + band, (lh0 + lh1) * norm, mask=mask)         # aad
        tl.store(z_ptr + out + 2 * band, (hl0 + hl1) * norm, mask=mask)     # ada
        tl.store(z_ptr + out + 3 * band, (hh0 + hh1) * norm, mask=mask)     # add
        tl.store(z_ptr + out + 4 * band, (ll0 - ll1) * norm, mask=mask)     # daa
        tl.store(z_ptr + out + 5 * band, (lh0 - lh1) * norm, mask=mask)     # dad
        tl.store(z_ptr + out + 6 * band, (hl0 - hl1) * norm, mask=mask)     # dda
        tl.store(z_ptr + out + 7 * band, (hh0 - hh1) * norm, mask=mask)     # ddd

    @triton.jit
    def idwt(z_ptr, x_ptr, n, D2, H2, W2, low, BLOCK: tl.constexpr):
        offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        mask = offs < n
        k = offs % W2
        j = (offs // W2) % H2
        i = (offs // (W2 * H2)) % D2
        bc = offs // (W2 * H2 * D2)
        band = D2 * H2 * W2
        src = bc * 8 * band + i * H2 * W2 + j * W2 + k
        s0 = tl.load(z_ptr + src, mask=mask, other=0.0).to(tl.float32) * low
        s1 = tl.load(z_ptr + src + band, mask=mask, other=0.0).to(tl.float32)
        s2 = tl.load(z_ptr + src + 2 * band, mask=mask, other=0.0).to(tl.float32)
        s3 = tl.load(z_ptr + src + 3 * band, mask=mask, other=0.0).to(tl.float32)
        s4 = tl.load(z_ptr + src + 4 * band, mask=mask, other=0.0).to(tl.float32)
        s5 = tl.load(z_ptr + src + 5 * band, mask=mask, other=0.0).to(tl.float32)
        s6 = tl.load(z_ptr + src + 6 * band, mask=mask, other=0.0).to(tl.float32)
        s7 = tl.load(z_ptr + src + 7 * band, mask=mask, other=0.0).to(tl.float32)
        # the same butterflies (the transform is its own inverse): along D, then H, then W
        a0, a1 = s0 + s4, s0 - s4
        b0, b1 = s1 + s5, s1 - s5
        c0, c1 = s2 + s6, s2 - s6
        d0, d1 = s3 + s7, s3 - s7
        norm = 0.35355339059327373
        H, W = 2 * H2, 2 * W2
        base = bc * (2 * D2) * H * W + (2 * i) * H * W + (2 * j) * W + 2 * k
        for_d0_h0 = a0 + c0
        for_d0_h1 = a0 - c0
        for_d0_h0b = b0 + d0
        for_d0_h1b = b0 - d0
        tl.store(x_ptr + base, (for_d0_h0 + for_d0_h0b) * norm, mask=mask)
        tl.store(x_ptr + base + 1, (for_d0_h0 - for_d0_h0b) * norm, mask=mask)
        tl.store(x_ptr + base + W, (for_d0_h1 + for_d0_h1b) * norm, mask=mask)
        tl.store(x_ptr + base + W + 1, (for_d0_h1 - for_d0_h1b) * norm, mask=mask)
        for_d1_h0 = a1 + c1
        for_d1_h1 = a1 - c1
        for_d1_h0b = b1 + d1
        for_d1_h1b = b1 - d1
        tl.store(x_ptr + base + H * W, (for_d1_h0 + for_d1_h0b) * norm, mask=mask)
        tl.store(x_ptr + base + H * W + 1, (for_d1_h0 - for_d1_h0b) * norm, mask=mask)
        tl.store(x_ptr + base + H * W + W, (for_d1_h1 + for_d1_h1b) * norm, mask=mask)
        tl.store(x_ptr + base + H * W + W + 1, (for_d1_h1 - for_d1_h1b) * norm, mask=mask)

    return dwt, idwt


def haar_dwt3(x: torch.Tensor, lowpass_scale: float = 1.0) -> torch.Tensor:
    """(B, C, D, H, W) -> (B, 8C, D/2, H/2, W/2), the low-pass band divided by `lowpass_scale`."""
    if backend(x) == "eager":
        return haar_dwt3_eager(x, lowpass_scale)
    _check_even(x.shape)
    x = x.contiguous()
    b, c, d, h, w = x.shape
    z = torch.empty((b, 8 * c, d // 2, h // 2, w // 2), dtype=x.dtype, device=x.device)
    n = b * c * (d // 2) * (h // 2) * (w // 2)
    _kernels()[0][blocks(n, BLOCK)](x, z, n, d // 2, h // 2, w // 2, float(lowpass_scale), BLOCK=BLOCK)
    return z


def haar_idwt3(z: torch.Tensor, lowpass_scale: float = 1.0) -> torch.Tensor:
    """(B, 8C, D, H, W) -> (B, C, 2D, 2H, 2W), the inverse of `haar_dwt3` with the same `lowpass_scale`."""
    if backend(z) == "eager":
        return haar_idwt3_eager(z, lowpass_scale)
    b, c8, d, h, w = z.shape
    if c8 % 8:
        raise ValueError(f"expected 8 subbands per channel, got {c8} channels")
    z = z.contiguous()
    x = torch.empty((b, c8 // 8, 2 * d, 2 * h, 2 * w), dtype=z.dtype, device=z.device)
    n = b * (c8 // 8) * d * h * w
    _kernels()[1][blocks(n, BLOCK)](z, x, n, d, h, w, float(lowpass_scale), BLOCK=BLOCK)
    return x
