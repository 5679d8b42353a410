"""The eager 3D Haar transform: a butterfly on 2x2x2 blocks (no convolutions), the reference the fused kernels in
`kernels/haar.py` are tested against (and what runs where Triton does not).

Subbands per channel come in PyWavelets' `dwtn` order `aaa, aad, ada, add, daa, dad, dda, ddd`, the letters naming
the filter along axes D, H, W ('a' low-pass (x0 + x1)/sqrt2, 'd' high-pass (x0 - x1)/sqrt2); channel c's subband s
is output channel 8c + s. The butterfly matrix [[1, 1], [1, -1]]/sqrt2 is its own inverse, so the inverse is the
same three butterflies: exact up to rounding, and differentiable both ways.
"""
from __future__ import annotations

import math

import torch

SUBBANDS = ("aaa", "aad", "ada", "add", "daa", "dad", "dda", "ddd")
_INV_SQRT2 = 1.0 / math.sqrt(2.0)


def check_even(shape) -> None:
    if len(shape) != 5:
        raise ValueError(f"expected a (B, C, D, H, W) tensor, got shape {tuple(shape)}")
    odd = [n for n in shape[2:] if n % 2]
    if odd:
        raise ValueError(f"Haar DWT needs even D, H, W; got {tuple(shape[2:])} (pad the volume to even sizes, "
                         "e.g. preprocess with GridSpec(multiple=16))")


def _butterfly(x: torch.Tensor, dim: int) -> torch.Tensor:
    """Along a size-2 axis: (x0, x1) -> ((x0 + x1), (x0 - x1)) / sqrt2."""
    x0, x1 = x.unbind(dim)
    return torch.stack((x0 + x1, x0 - x1), dim) * _INV_SQRT2


def haar_dwt3(x: torch.Tensor) -> torch.Tensor:
    """(B, C, D, H, W) -> (B, 8C, D/2, H/2, W/2), plain orthonormal transform."""
    check_even(x.shape)
    b, c, d, h, w = x.shape
    y = x.reshape(b, c, d // 2, 2, h // 2, 2, w // 2, 2)
    for dim in (3, 5, 7):
        y = _butterfly(y, dim)
    # (b, c, d2, fd, h2, fh, w2, fw) -> (b, c, fd, fh, fw, d2, h2, w2): subband index = 4 fd + 2 fh + fw
    return y.permute(0, 1, 3, 5, 7, 2, 4, 6).reshape(b, c * 8, d // 2, h // 2, w // 2)


def haar_idwt3(z: torch.Tensor) -> torch.Tensor:
    """(B, 8C, D, H, W) -> (B, C, 2D, 2H, 2W), the inverse of `haar_dwt3`."""
    b, c8, d, h, w = z.shape
    if c8 % 8:
        raise ValueError(f"expected 8 subbands per channel, got {c8} channels")
    y = z.reshape(b, c8 // 8, 2, 2, 2, d, h, w).permute(0, 1, 5, 2, 6, 3, 7, 4)
    for dim in (3, 5, 7):
        y = _butterfly(y, dim)
    return y.reshape(b, c8 // 8, 2 * d, 2 * h, 2 * w)
