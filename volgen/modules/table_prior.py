"""A per-voxel conditional-mean table from the present contrasts to a target contrast: the best any per-voxel map can
do (scripts/bench_voxelwise_ceiling.py), as a module's prior.

For each (target, subset of present conditions without the target) the intensities of the present contrasts are
binned (`bins` per contrast on [-1, 1]) and each cell holds the mean target intensity of the training head voxels
that fall in it; a cell no training voxel reached holds the subset's linear regression at its centre. On held-out
phantoms it beats the quadratic regression by 0.5-1 dB for t1n, t2w and t2f (brain PSNR t1n 24.85, t1c 21.80, t2w
24.03, t2f 22.85 dB with 32 bins and all three others present), which the shipped synthesis VCM (trained on the
regression) does not reach. One table of bins^(C-1) cells per (target, subset): 4 x 16 x 24^3 values for BraTS.
"""
from __future__ import annotations

import torch

from volgen.modules.prior import BACKGROUND, HalfPrecisionBuffers


class TablePrior(HalfPrecisionBuffers, torch.nn.Module):
    half_buffers = ("table",)       # 1.7 MB in float16 for BraTS at 24 bins; float16 keeps 11 significant bits

    def __init__(self, n_conditions: int, n_targets: int, bins: int = 24):
        super().__init__()
        self.n_conditions, self.bins = n_conditions, bins
        self.register_buffer("table", torch.zeros(n_targets, 2 ** n_conditions, bins ** (n_conditions - 1)))
        self.register_buffer("done", torch.tensor(False))

    @property
    def fitted(self) -> bool:
        return bool(self.done)

    def _sources(self, subset: int, target: int) -> list[int]:
        return [i for i in range(self.n_conditions) if subset >> i & 1 and i != target]

    def _cells(self, values: torch.Tensor) -> torch.Tensor:
        """Flat cell index of (K, N) intensities in [-1, 1] (K <= C - 1 contrasts)."""
        index = ((values + 1) / 2 * self.bins).long().clamp(0, self.bins - 1)
        powers = self.bins ** torch.arange(len(values), device=values.device)
        return (index * powers[:, None]).sum(0)

    @torch.no_grad()
    def fit(self, volumes, ridge: float = 1e-3) -> None:
        """Fill every table from volumes (C, D, H, W) in [-1, 1], each holding all C contrasts, on the voxels inside
        the head (any contrast above the background)."""
        flats = []
        for images in volumes:
            flat = images.reshape(self.n_conditions, -1).double()
            flats.append(flat[:, (flat > BACKGROUND + 1e-3).any(0)])
        voxels = torch.cat(flats, dim=1)
        centres = (torch.arange(self.bins, dtype=torch.float64) + 0.5) / self.bins * 2 - 1
        table = torch.zeros_like(self.table, dtype=torch.float64)
        for target in range(self.table.shape[0]):
            y = voxels[target]
            for subset in range(1, 2 ** self.n_conditions):
                sources = self._sources(subset, target)
                if not sources:
                    continue
                x = voxels[sources]
                cells = self._cells(x)
                size = self.bins ** len(sources)
                counts = torch.bincount(cells, minlength=size).double()
                sums = torch.bincount(cells, weights=y, minlength=size)
                # empty cells: the subset's linear regression at the cell's centre
                design = torch.cat([x, torch.ones(1, x.shape[1], dtype=torch.float64)])
                coef = torch.linalg.solve(design @ design.T + ridge * torch.eye(len(design), dtype=torch.float64),
                                          design @ y)
                grid = torch.stack(torch.meshgrid(*[centres] * len(sources), indexing="ij"), 0)
                grid = grid.permute(0, *range(len(sources), 0, -1)).reshape(len(sources), -1)   # cell order
                fallback = coef[:-1] @ grid + coef[-1]
                table[target, subset, :size] = torch.where(counts > 0, sums / counts.clamp_min(1), fallback)
        self.table.copy_(table.to(self.table.dtype))
        self.done.fill_(True)

    def forward(self, conditions: torch.Tensor, present: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """(B, 1, D, H, W): the table's estimate of contrast `target` (B,) from the present conditions (B, C, D, H,
        W), background outside the head."""
        out = []
        for i in range(len(conditions)):
            t = int(target[i])
            bits = [int(round(float(p))) for p in present[i]]
            subset = sum(b << k for k, b in enumerate(bits) if k != t)
            sources = self._sources(subset, t)
            image = conditions[i]
            if not sources:
                out.append(torch.full_like(image[:1], BACKGROUND))
                continue
            cells = self._cells(image[sources].reshape(len(sources), -1).float())
            estimate = self.table[t, subset].to(image.dtype)[cells].view(1, *image.shape[1:])
            head = (image[sources] > BACKGROUND + 1e-3).any(0, keepdim=True)
            out.append(torch.where(head, estimate, torch.full_like(estimate, BACKGROUND)))
        return torch.stack(out)
