"""Patlak data consistency for sampling Ki and V images under a diffusion prior.

The frames after t* give, per voxel, the sufficient statistics of a weighted least-squares Patlak fit: the 2x2 Gram
matrix G = A^T W A of the regressors (shared by every voxel, or a voxel's own when its frame times are: beds scanned
in turn), c = A^T W y, and the residual variance s2. The data's likelihood in
(Ki, V) is Gaussian with precision G / s2 around the LS solution. Given the prior's x0 estimates (Ki0, V0) and how
sure the prior is at this noise level (standard deviations tau_Ki, tau_V), the proximal (HQS) step is

    theta = (G / s2 + P)^-1 (c / s2 + P theta0),   P = diag(1 / tau_Ki^2, 1 / tau_V^2),

a closed-form 2x2 solve per voxel (`volgen.kernels.patlak`: fused on CUDA). At high noise tau is large and the data
dominate (theta -> LS); as sampling goes on the prior's estimate is trusted more. tau follows the MMSE error of a
unit-variance prior at noise level sigma_t / alpha_t, scaled by `doubt` (tuned on training cases), combined with a
floor, and scaled by each map's intensity scale. The floor is the prior's own x0 error at the lowest noise: a
trained network is never as sure as the formula for a perfect prior says, and trusting it more than that pulls
what it has seen little of (a hot tumour) toward what it has seen much of.
"""
from __future__ import annotations

import torch

from volgen.kernels.patlak import patlak_proximal


def prior_uncertainty(schedule, t, doubt: float, floor: float = 0.0) -> float:
    """The prior's x0 error (std, in the model's [-1, 1] units) at timestep t: doubt * s / sqrt(1 + s^2), s the
    noise-to-signal ratio sigma_t / alpha_t (the MMSE error of a unit-variance Gaussian prior), combined in
    quadrature with `floor`, the error the network keeps at the lowest noise."""
    alpha, sigma = schedule.alpha_sigma(torch.as_tensor(t))
    ratio = float(sigma / alpha)
    return ((doubt * ratio) ** 2 / (1.0 + ratio ** 2) + floor ** 2) ** 0.5


class PatlakProjection:
    """Data consistency for a batch of (Ki, V) pairs in the model's range: item 2k is sample k's Ki image, 2k + 1
    its V image, x = 2 * map / scale - 1. Outside `region` the maps stay background (-1). `gram` is (2, 2) shared by
    every voxel or (2, 2, *grid), each voxel's own."""

    takes_timestep = True

    def __init__(self, c: torch.Tensor, s2: torch.Tensor, gram: torch.Tensor, scales: tuple[float, float],
                 region: torch.Tensor, schedule, doubt: float, floor: float = 0.0):
        s2 = s2.clamp_min(1e-12)
        gram = gram.to(c.dtype)
        # the data's information vector and precision per voxel, computed once for every step
        self.r = c / s2
        self.h = tuple((gram[i, j] / s2).expand_as(s2).contiguous() for i, j in ((0, 0), (0, 1), (1, 1)))
        self.scales, self.region, self.schedule, self.doubt, self.floor = scales, region, schedule, doubt, floor

    def __call__(self, image: torch.Tensor, t) -> torch.Tensor:
        if t is None:                                   # the end of sampling: the samples are the estimate
            return torch.where(self.region, image, torch.full_like(image, -1.0))
        pairs = image.view(-1, 2, *image.shape[1:]).float()
        s_ki, s_v = self.scales
        ki0, v0 = (pairs[:, 0] + 1) / 2 * s_ki, (pairs[:, 1] + 1) / 2 * s_v
        tau = prior_uncertainty(self.schedule, t, self.doubt, self.floor)
        ki, v = patlak_proximal(ki0, v0, self.r[0], self.r[1], *self.h, 1.0 / (tau * s_ki / 2) ** 2,
                                1.0 / (tau * s_v / 2) ** 2)
        out = torch.stack([2 * ki / s_ki - 1, 2 * v / s_v - 1], dim=1).view_as(image).to(image.dtype)
        return torch.where(self.region, out, torch.full_like(out, -1.0))
