"""The 3D Haar DWT and its inverse, with the codec's low-pass scaling folded in: one read and one write.

Subband s = 4 fd + 2 fh + fw of channel c is output channel 8c + s (PyWavelets' dwtn order); its value at
(i, j, k) is sum over the 2x2x2 block of (-1)^(fd a + fh b + fw c) x[2i + a, 2j + b, 2k + c] / (2 sqrt 2), and the
low-pass band (s = 0) is divided by `lowpass_scale` (volgen's codec: 2 sqrt 2, the block mean).
"""
from __future__ import annotations

import functools
import math

import torch

from volgen.kernels import backend, blocks
from volgen.kernels.haar_eager import check_even as _check_even, haar_dwt3 as _dwt_reference
from volgen.kernels.haar_eager import haar_idwt3 as _idwt_reference
from volgen.ops import keep_known, thick_slice_projection, tiled

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
    from volgen.kernels import _haar_triton as k

    return k.dwt, k.idwt, k.keep_known, k.keep_thick_slices


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


def haar_keep_known_eager(z: torch.Tensor, known: torch.Tensor, mask: torch.Tensor,
                          lowpass_scale: float = 1.0) -> torch.Tensor:
    return haar_dwt3_eager(keep_known(haar_idwt3_eager(z, lowpass_scale), known, mask), lowpass_scale)


def haar_keep_known(z: torch.Tensor, known: torch.Tensor, mask: torch.Tensor,
                    lowpass_scale: float = 1.0) -> torch.Tensor:
    """The known-voxel projection of a codec-space estimate, encode(known (1 - mask) + decode(z) mask), in one pass:
    z is (B, 8C, D, H, W); known and mask are images (G, C, 2D, 2H, 2W) with G dividing B (`volgen.ops.tiled`)."""
    if backend(z, known, mask) == "eager":
        return haar_keep_known_eager(z, known, mask, lowpass_scale)
    b, c8, d, h, w = z.shape
    image = (c8 // 8, 2 * d, 2 * h, 2 * w)
    if known.shape[1:] != image or b % known.shape[0]:
        raise ValueError(f"known image {tuple(known.shape)} does not match the estimate's image (B, {image})")
    z = z.contiguous()
    known = known.to(z.dtype).contiguous()
    mask = tiled(mask.to(z.dtype), len(known)).expand_as(known).contiguous()
    out = torch.empty_like(z)
    n = b * (c8 // 8) * d * h * w
    _kernels()[2][blocks(n, BLOCK)](z, known, mask, out, n, known.shape[0] * (c8 // 8), d, h, w,
                                    float(lowpass_scale), BLOCK=BLOCK)
    return out


def haar_keep_thick_slices_eager(z: torch.Tensor, observed: torch.Tensor, factor: int, axis: int,
                                 lowpass_scale: float = 1.0) -> torch.Tensor:
    x = haar_idwt3_eager(z, lowpass_scale)
    return haar_dwt3_eager(thick_slice_projection(observed, factor, 2 + axis)(x), lowpass_scale)


def haar_keep_thick_slices(z: torch.Tensor, observed: torch.Tensor, factor: int, axis: int,
                           lowpass_scale: float = 1.0) -> torch.Tensor:
    """The thick-slice projection of a codec-space estimate, encode(x + repeat(observed - thick_slices(x))) with
    x = decode(z), in one pass: z is (B, 8C, D, H, W); observed (B or 1, C, ...) has the image's shape with the
    size along spatial `axis` (0-2) divided by the even `factor`."""
    if backend(z, observed) == "eager":
        return haar_keep_thick_slices_eager(z, observed, factor, axis, lowpass_scale)
    b, c8, d, h, w = z.shape
    grid = [d, h, w]
    image = [2 * d, 2 * h, 2 * w]
    if factor % 2 or grid[axis] % (factor // 2):
        raise ValueError(f"factor {factor} must be even and divide the image's size {image[axis]} along axis {axis}")
    thick = list(image)
    thick[axis] //= factor
    if list(observed.shape[2:]) != thick or observed.shape[1] != c8 // 8 or observed.shape[0] not in (1, b):
        raise ValueError(f"observed {tuple(observed.shape)} does not match the thick slices (B, {c8 // 8}, "
                         f"{', '.join(map(str, thick))}) of the estimate's image")
    z = z.contiguous()
    observed = observed.to(z.dtype).contiguous()
    strides = observed.stride()
    in_plane = [a for a in range(3) if a != axis]
    u_size, v_size, t_size = grid[in_plane[0]], grid[in_plane[1]], thick[axis]
    out = torch.empty_like(z)
    n = b * (c8 // 8) * u_size * v_size * t_size
    _kernels()[3][blocks(n, BLOCK)](z, observed, out, n, observed.shape[0] * (c8 // 8), u_size, v_size, t_size,
                                    d, h, w, float(lowpass_scale), strides[2 + in_plane[0]],
                                    strides[2 + in_plane[1]], strides[2 + axis], strides[1],
                                    M=factor // 2, AXIS=axis, BLOCK=BLOCK)
    return out
