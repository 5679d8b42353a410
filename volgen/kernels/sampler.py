"""What a sampler does between two network calls, each in one pass over the voxels.

- `x0_eps`: classifier-free guidance's combination and the parameterization's conversion to (x0, eps), which is
  linear in (x_t, prediction) for every parameterization: reads x_t and the prediction(s), writes x0 and eps.
- `ddim_step`: the deterministic DDIM update (eta = 0), eps = (x - alpha x0) / sigma, x_next = alpha' x0 +
  sigma' eps. Whatever the network predicts and whatever projection corrected x0, the loop's eps equals
  (x - alpha x0) / sigma, so the update needs only x and x0: one read of each, one write.
- `mean_spread`: the mean and standard deviation over K samples per voxel (the estimate and its uncertainty),
  one read of the K samples.
"""
from __future__ import annotations

import functools

import torch

from volgen.kernels import backend, blocks

BLOCK = 4096


def ddim_step_eager(x: torch.Tensor, x0: torch.Tensor, alpha: float, sigma: float, alpha_next: float,
                    sigma_next: float) -> torch.Tensor:
    return alpha_next * x0 + sigma_next * (x - alpha * x0) / sigma


def x0_eps_eager(x: torch.Tensor, prediction: torch.Tensor, coefficients: tuple, uncond: torch.Tensor | None = None,
                 guidance: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    a_x, a_p, e_x, e_p = coefficients
    prediction = prediction.to(x.dtype)
    if uncond is not None:
        uncond = uncond.to(x.dtype)
        prediction = uncond + guidance * (prediction - uncond)
    return a_x * x + a_p * prediction, e_x * x + e_p * prediction


def mean_spread_eager(draws: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    # plain passes (torch's std over the first axis of a (K, ...) tensor is 8x slower on a CPU), shifted by the
    # first sample like the kernel: where every sample agrees (known voxels) the spread is exactly 0
    shifted = draws - draws[0]
    offset = shifted.mean(0)
    return draws[0] + offset, ((shifted - offset) ** 2).mean(0).sqrt()


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


@functools.cache
def _x0_eps_kernel():
    import triton
    import triton.language as tl

    @triton.jit
    def convert(x_ptr, p_ptr, u_ptr, x0_ptr, eps_ptr, n, a_x, a_p, e_x, e_p, guidance, GUIDED: tl.constexpr,
                BLOCK: tl.constexpr):
        offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        mask = offs < n
        x = tl.load(x_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        p = tl.load(p_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        if GUIDED:
            u = tl.load(u_ptr + offs, mask=mask, other=0.0).to(tl.float32)
            p = u + guidance * (p - u)
        tl.store(x0_ptr + offs, (a_x * x + a_p * p).to(x0_ptr.dtype.element_ty), mask=mask)
        tl.store(eps_ptr + offs, (e_x * x + e_p * p).to(eps_ptr.dtype.element_ty), mask=mask)

    return convert


def x0_eps(x: torch.Tensor, prediction: torch.Tensor, coefficients: tuple, uncond: torch.Tensor | None = None,
           guidance: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """(x0, eps) = (a_x x + a_p p, e_x x + e_p p), p = the prediction, or uncond + guidance (prediction - uncond);
    in x's dtype (the network's may differ under autocast)."""
    tensors = (x, prediction) + ((uncond,) if uncond is not None else ())
    if backend(*tensors) == "eager":
        return x0_eps_eager(x, prediction, coefficients, uncond, guidance)
    x, prediction = x.contiguous(), prediction.contiguous()
    guided = uncond is not None
    uncond = uncond.contiguous() if guided else prediction
    x0, eps = torch.empty_like(x), torch.empty_like(x)
    _x0_eps_kernel()[blocks(x.numel(), BLOCK)](x, prediction, uncond, x0, eps, x.numel(),
                                               *(float(c) for c in coefficients), float(guidance),
                                               GUIDED=guided, BLOCK=BLOCK)
    return x0, eps


@functools.cache
def _mean_spread_kernel():
    import triton
    import triton.language as tl

    @triton.jit
    def reduce(d_ptr, mean_ptr, std_ptr, n, K, BLOCK: tl.constexpr):
        offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        mask = offs < n
        first = tl.load(d_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        total = tl.zeros((BLOCK,), dtype=tl.float32)
        squares = tl.zeros((BLOCK,), dtype=tl.float32)
        for k in range(0, K):
            # shifted by the first sample, so the variance does not cancel catastrophically
            d = tl.load(d_ptr + k * n + offs, mask=mask, other=0.0).to(tl.float32) - first
            total += d
            squares += d * d
        mean = total / K
        var = tl.maximum(squares / K - mean * mean, 0.0)
        tl.store(mean_ptr + offs, (first + mean).to(mean_ptr.dtype.element_ty), mask=mask)
        tl.store(std_ptr + offs, tl.sqrt(var).to(std_ptr.dtype.element_ty), mask=mask)

    return reduce


def mean_spread(draws: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean, standard deviation) over the first axis of (K, ...): the estimate of K samples and its spread."""
    if backend(draws) == "eager":
        return mean_spread_eager(draws)
    draws = draws.contiguous()
    mean = torch.empty(draws.shape[1:], dtype=draws.dtype, device=draws.device)
    std = torch.empty_like(mean)
    n = mean.numel()
    _mean_spread_kernel()[blocks(n, BLOCK)](draws, mean, std, n, draws.shape[0], BLOCK=BLOCK)
    return mean, std
