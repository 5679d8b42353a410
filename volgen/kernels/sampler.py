"""What a sampler does between two network calls, each in one pass over the voxels.

- `x0_eps`: classifier-free guidance's combination and the parameterization's conversion to (x0, eps), which is
  linear in (x_t, prediction) for every parameterization: reads x_t and the prediction(s), writes x0 and eps.
- `ode_step`: the deterministic samplers' update, x_next = c_x x + c_0 x0 (+ c_p x0_prev): whatever the network
  predicts and whatever projection corrected x0, the loop's eps equals (x - alpha x0) / sigma, so DDIM (eta = 0),
  Euler on a rectified flow and DPM-Solver++(2M) (which adds the previous step's x0) are each a linear combination
  of x and the x0 estimates with per-step scalars: one read of each, one write. `ddim_step` gives DDIM's.
- `mean_spread`: the mean and standard deviation over K samples per voxel (the estimate and its uncertainty),
  one read of the K samples.
"""
from __future__ import annotations

import functools

import torch

from volgen.kernels import backend, blocks

BLOCK = 4096


def ode_step_eager(x: torch.Tensor, x0: torch.Tensor, c_x: float, c_0: float, x0_prev: torch.Tensor | None = None,
                   c_prev: float = 0.0) -> torch.Tensor:
    out = c_x * x + c_0 * x0
    return out + c_prev * x0_prev if x0_prev is not None else out


def ddim_coefficients(alpha: float, sigma: float, alpha_next: float, sigma_next: float) -> tuple[float, float]:
    """DDIM (eta = 0) as ode_step's (c_x, c_0): alpha' x0 + sigma' (x - alpha x0) / sigma."""
    return sigma_next / sigma, alpha_next - sigma_next * alpha / sigma


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
def _ode_step_kernel():
    import triton
    import triton.language as tl

    @triton.jit
    def step(x_ptr, x0_ptr, prev_ptr, out_ptr, n, c_x, c_0, c_prev, HAS_PREV: tl.constexpr, BLOCK: tl.constexpr):
        offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        mask = offs < n
        x = tl.load(x_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        x0 = tl.load(x0_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        out = c_x * x + c_0 * x0
        if HAS_PREV:
            out += c_prev * tl.load(prev_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        tl.store(out_ptr + offs, out.to(out_ptr.dtype.element_ty), mask=mask)

    return step


def ode_step(x: torch.Tensor, x0: torch.Tensor, c_x: float, c_0: float, x0_prev: torch.Tensor | None = None,
             c_prev: float = 0.0) -> torch.Tensor:
    """c_x x + c_0 x0 (+ c_prev x0_prev), in x's dtype: a deterministic sampler's step to the next noise level."""
    tensors = (x, x0) + ((x0_prev,) if x0_prev is not None else ())
    if backend(*tensors) == "eager":
        return ode_step_eager(x, x0, c_x, c_0, x0_prev, c_prev)
    x, x0 = x.contiguous(), x0.contiguous().to(x.dtype)
    has_prev = x0_prev is not None
    prev = x0_prev.contiguous().to(x.dtype) if has_prev else x0
    out = torch.empty_like(x)
    _ode_step_kernel()[blocks(x.numel(), BLOCK)](x, x0, prev, out, x.numel(), float(c_x), float(c_0), float(c_prev),
                                                 HAS_PREV=has_prev, BLOCK=BLOCK)
    return out


def ddim_step(x: torch.Tensor, x0: torch.Tensor, alpha: float, sigma: float, alpha_next: float,
              sigma_next: float) -> torch.Tensor:
    """x at the next noise level (alpha', sigma') from x at (alpha, sigma) and its x0 estimate (DDIM, eta = 0)."""
    return ode_step(x, x0, *ddim_coefficients(alpha, sigma, alpha_next, sigma_next))


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
