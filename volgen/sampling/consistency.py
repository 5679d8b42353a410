"""Forward operators and data-consistency projections (applied to the x0 estimate at every sampling step).

A projection takes (x0, t) and returns a corrected x0; it is the only place a task's physics enters sampling.
The same forward operators make the degraded inputs modules are trained on, so training and sampling agree.
"""
from __future__ import annotations

import torch


def thick_slices(x: torch.Tensor, factor: int, dim: int) -> torch.Tensor:
    """Thick-slice acquisition along `dim`: the mean of each block of `factor` slices (the size must divide)."""
    n = x.shape[dim]
    if n % factor:
        raise ValueError(f"size {n} along axis {dim} is not divisible by the factor {factor}")
    shape = list(x.shape)
    shape[dim:dim + 1] = [n // factor, factor]
    return x.reshape(shape).mean(dim=dim + 1)


def repeat_slices(x: torch.Tensor, factor: int, dim: int) -> torch.Tensor:
    """Each thick slice repeated `factor` times: the thin grid's view of a thick-slice volume."""
    return x.repeat_interleave(factor, dim=dim)
