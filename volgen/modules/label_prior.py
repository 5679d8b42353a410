"""Lesion insertion's prior: each labelled compartment's intensity, as a linear function of the healthy tissue there.

The lesion task (volgen/taskspec.py) inserts a tumour given as a BraTS label map (1 necrotic core, 2 oedema,
3 enhancing tumour) into a healthy image. Its estimate that learns nothing is a table: for each contrast and each
zone (0: the one-voxel border around the labels, where the tumour's edge blurs into tissue; 1-3: the labels), the
least-squares line from the healthy image's intensity to the tumour image's, over the training cases' voxels of that
zone. The line covers both extremes: a compartment that replaces the tissue (slope near 0: the enhancing rim on t1c
is bright whatever was there) and one that shifts it (slope near 1). Outside the zones the healthy image is kept.

The line is each compartment's level on average. A tumour's own level departs from it (one oedema is wetter than
another), jointly across contrasts and compartments, and nothing in the healthy image says by how much. The fit also
keeps the covariance of those departures over the training cases (each case's mean residual per contrast and zone),
so a sample can draw a case's levels (`level_noise`: one standard normal vector per case, shared by its contrasts)
instead of every made tumour sitting at the average, which a segmenter trained on made cases would learn as a rule.
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
        # levels = level_factor @ standard normal: a case's departure from the lines, (contrast, zone) flattened
        self.register_buffer("level_factor", torch.zeros(n_contrasts * ZONES, n_contrasts * ZONES))
        self.register_buffer("done", torch.tensor(False))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # a module fitted before the level spread existed: no spread (every draw at the lines), as it was
        state_dict.setdefault(prefix + "level_factor", torch.zeros_like(self.level_factor))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @property
    def level_size(self) -> int:
        """The length of one case's `level_noise` vector."""
        return self.level_factor.shape[1]

    @property
    def fitted(self) -> bool:
        return bool(self.done)

    @torch.no_grad()
    def fit_cases(self, cases, ridge: float = 1e-3) -> None:
        """The lines from the cases' healthy twins to their tumour images (CaseArrays with `images`, `healthy`
        (C, ...) and `seg`), zone by zone."""
        n = self.line.shape[0]
        cases = list(cases)
        sums = torch.zeros(n, ZONES, 5, dtype=torch.float64)       # count, sum x, sum y, sum xx, sum xy
        for case in cases:
            if case.healthy is None or case.seg is None:
                raise ValueError("the label prior needs healthy twins and segmentations "
                                 "(load_cases(with_healthy=True))")
            for zone, x, y in _zones(case):
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
        self.level_factor.copy_(self._level_factor(cases).to(self.level_factor.dtype))
        self.done.fill_(True)

    def _level_factor(self, cases) -> torch.Tensor:
        """A square root of the covariance of the cases' mean residuals from the lines, per (contrast, zone); pairs
        of zones that no two cases share (a tumour without necrosis) are left out of that entry's average."""
        line = self.line.double()
        departures = torch.full((len(cases), self.level_size), float("nan"), dtype=torch.float64)
        for i, case in enumerate(cases):
            for zone, x, y in _zones(case):
                residual = (y - line[:, zone, :1] - line[:, zone, 1:] * x).mean(1)            # (contrasts,)
                departures[i, zone::ZONES] = residual
        seen = ~departures.isnan()
        d = torch.where(seen, departures - departures.nanmean(0), 0.0)
        pairs = seen.double().T @ seen.double()
        covariance = torch.where(pairs > 1, (d.T @ d) / (pairs - 1).clamp_min(1), 0.0)
        values, vectors = torch.linalg.eigh(covariance)                 # pairwise averages: clip to a covariance
        return vectors * values.clamp_min(0).sqrt()

    def level_noise(self, samples: int, group: int, seed: int) -> torch.Tensor:
        """(samples * group, level_size) standard normals for a sampling call's batch: one row per sample, shared by
        the `group` contrasts of that sample (batch item k * group + g)."""
        generator = torch.Generator().manual_seed(seed)
        return torch.randn(samples, self.level_size, generator=generator,
                           dtype=torch.float64).repeat_interleave(group, 0)

    def levels(self, noise: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """(B, ZONES) departures from the lines for items of contrasts `index` (B,), from `noise` (B, level_size)."""
        drawn = (noise.to(self.level_factor.dtype) @ self.level_factor.T).view(len(noise), -1, ZONES)
        return drawn[torch.arange(len(noise), device=noise.device), index]

    def forward(self, conditions: torch.Tensor, present=None, target=None, level_noise=None) -> torch.Tensor:
        """The tumour image of each item; `level_noise` (B, level_size), when given, draws the items' levels (the
        items of one case share a row)."""
        if not self.fitted:
            raise RuntimeError("the label prior has not been fitted (VCM.prepare fits it on training cases)")
        healthy = conditions[:, :1]
        labels, region = label_zones(conditions[:, 1:4])
        index = torch.zeros(len(healthy), dtype=torch.long, device=healthy.device) if target is None \
            else torch.as_tensor(target, device=healthy.device).long().reshape(-1)
        line = self.line.to(healthy.dtype)[index]                             # (B, ZONES, 2)
        zone_line = line[torch.arange(len(healthy), device=healthy.device).view(-1, 1, 1, 1, 1), labels]
        inserted = zone_line[..., 0] + zone_line[..., 1] * healthy
        if level_noise is not None:
            level = self.levels(level_noise.to(healthy.device), index).to(healthy.dtype)      # (B, ZONES)
            inserted = inserted + level[torch.arange(len(healthy), device=healthy.device).view(-1, 1, 1, 1, 1),
                                        labels]
        inserted = inserted.clamp(-1.0, 1.0)
        return torch.where(region, inserted, healthy)


def _zones(case):
    """(zone, healthy (C, n), tumour (C, n)) for each zone a case has."""
    labels, region = label_zones(compartments(case.seg[None, None]))
    for zone in range(ZONES):
        where = (region & (labels == zone))[0, 0]
        if where.any():
            yield zone, case.healthy[:, where].double(), case.images[:, where].double()
