"""Lesion insertion's prior: each labelled compartment's intensity, as a linear function of the healthy tissue there.

The lesion task (volgen/taskspec.py) inserts a tumour given as a BraTS label map (1 necrotic core, 2 oedema,
3 enhancing tumour) into a healthy image. Its estimate that learns nothing is a table: for each contrast and each
zone (0: the one-voxel border around the labels, where the tumour's edge blurs into tissue; 1-3: the labels), the
least-squares line from the healthy image's intensity to the tumour image's, over the training cases' voxels of that
zone. The line covers both extremes: a compartment that replaces the tissue (slope near 0: the enhancing rim on t1c
is bright whatever was there) and one that shifts it (slope near 1). Outside the zones the healthy image is kept.
"""
from __future__ import annotations

import torch

from volgen.ops import compartments, label_zones

ZONES = 4                   # border, necrotic, oedema, enhancing


class LabelTablePrior(torch.nn.Module):
    """Conditions: (healthy image, necrotic, oedema, enhancing) (B, 4, ...); target: the contrast of each item."""

    def __init__(self, n_contrasts: int):
        super().__init__()
        # line[contrast, zone] = (intercept, slope) on the model's [-1, 1] scale
        self.register_buffer("line", torch.zeros(n_contrasts, ZONES, 2))
        self.register_buffer("done", torch.tensor(False))

    @property
    def fitted(self) -> bool:
        return bool(self.done)

    @torch.no_grad()
    def fit_cases(self, cases, ridge: float = 1e-3) -> None:
        """The lines from the cases' healthy twins to their tumour images (CaseArrays with `images`, `healthy`
        (C, ...) and `seg`), zone by zone."""
        n = self.line.shape[0]
        sums = torch.zeros(n, ZONES, 5, dtype=torch.float64)       # count, sum x, sum y, sum xx, sum xy
        for case in cases:
            if case.healthy is None or case.seg is None:
                raise ValueError("the label prior needs healthy twins and segmentations "
                                 "(load_cases(with_healthy=True))")
            labels, region = label_zones(compartments(case.seg[None, None]))
            for zone in range(ZONES):
                where = (region & (labels == zone))[0, 0]
                if not where.any():
                    continue
                x, y = case.healthy[:, where].double(), case.images[:, where].double()
                sums[:, zone] += torch.stack([torch.full_like(x[:, 0], x.shape[1]), x.sum(1), y.sum(1),
                                              (x * x).sum(1), (x * y).sum(1)], dim=1)
        if not sums[..., 0].any():
            raise ValueError("no case has a tumour: the label prior needs segmentations with labels 1-3")
        count = sums[..., 0].clamp_min(1)
        mean_x, mean_y = sums[..., 1] / count, sums[..., 2] / count
        var = sums[..., 3] / count - mean_x ** 2
        cov = sums[..., 4] / count - mean_x * mean_y
        slope = cov / (var + ridge)
        self.line.copy_(torch.stack([mean_y - slope * mean_x, slope], dim=-1).to(self.line.dtype))
        self.done.fill_(True)

    def forward(self, conditions: torch.Tensor, present=None, target=None) -> torch.Tensor:
        if not self.fitted:
            raise RuntimeError("the label prior has not been fitted (VCM.prepare fits it on training cases)")
        healthy = conditions[:, :1]
        labels, region = label_zones(conditions[:, 1:4])
        index = torch.zeros(len(healthy), dtype=torch.long, device=healthy.device) if target is None \
            else torch.as_tensor(target, device=healthy.device).long().reshape(-1)
        line = self.line.to(healthy.dtype)[index]                             # (B, ZONES, 2)
        zone_line = line[torch.arange(len(healthy), device=healthy.device).view(-1, 1, 1, 1, 1), labels]
        inserted = (zone_line[..., 0] + zone_line[..., 1] * healthy).clamp(-1.0, 1.0)
        return torch.where(region, inserted, healthy)
