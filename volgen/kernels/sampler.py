"""The deterministic DDIM update (eta = 0) in one pass: eps = (x - alpha x0) / sigma, x_next = alpha' x0 + sigma' eps.

Whatever the network predicts (x0, eps or v) and whatever projection corrected x0, the loop's eps equals
(x - alpha x0) / sigma, so the update needs only x and x0: one read of each, one write.
"""
from __future__ import annotations

import functools

import torch

from volgen.kernels import backend, blocks

BLOCK = 4096


def ddim_step_eager(x: torch.Tensor, x0: torch.Tensor, alpha: float, sigma: float, alpha_next: float,
                    sigma_next: float) -> torch.Tensor:
    return alpha_next * x0 + sigma_next * (x - alpha * x0) / sigma


@functools.cache
def _kernel():
    import triton
    import triton.language as tl

    @triton.jit
    def step(x_ptr, x0_ptr, out_ptr, n, alpha, inv_sigma, alpha_next, sigma_next, BLOCK: tl.constexpr):
        offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        mask = offs < n
        x = tl.load(x_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        x0 = tl.load(x0_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        out = alpha_next * x0 + sigma_next * (x - alpha * x0) * inv_sigma
        tl.store(out_ptr + offs, out.to(out_ptr.dtype.element_ty), mask=mask)

    return step


def ddim_step(x: torch.Tensor, x0: torch.Tensor, alpha: float, sigma: float, alpha_next: float,
              sigma_next: float) -> torch.Tensor:
    """x at the next noise level (alpha', sigma') from x at (alpha, sigma) and its x0 estimate."""
    if backend(x, x0) == "eager":
        return ddim_step_eager(x, x0, alpha, sigma, alpha_next, sigma_next)
    x, x0 = x.contiguous(), x0.contiguous().to(x.dtype)
    out = torch.empty_like(x)
    _kernel()[blocks(x.numel(), BLOCK)](x, x0, out, x.numel(), float(alpha), 1.0 / float(sigma), float(alpha_next),
                                        float(sigma_next), BLOCK=BLOCK)
    return out
