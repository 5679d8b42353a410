"""A per-voxel conditional-mean table from the present contrasts to a target contrast: the best any per-voxel map can
do, as a module's prior.

For each (target, subset of present conditions without the target) the intensities of the present contrasts are
binned (`bins` per contrast on [-1, 1]) and each cell holds the mean target intensity of the training head voxels
that fall in it; a cell no training voxel reached holds the subset's linear regression at its centre. Why a table:
a conditional mean makes no assumption about how tissue contrast maps across sequences, which a regression of any
degree does (the CHANGELOG has the measured gap). One table of bins^(C-1) cells per (target, subset).

A second, context stage corrects the first by its neighbourhood: a table indexed by (the first stage's estimate at the
voxel, the mean of that estimate over the 26 neighbours inside the head) holding the mean target there. A voxel whose
noisy intensities land in a cell of mostly enhancing tumour shows as an isolated bright speckle in an otherwise normal
neighbourhood; the context stage learns that such voxels are rarely what the cell says.
"""
from __future__ import annotations

import torch

from volgen.modules.prior import BACKGROUND, HalfPrecisionBuffers


def _bin(values: torch.Tensor, bins: int) -> torch.Tensor:
    """The bin of each intensity in [-1, 1] among `bins` equal bins (values outside go to the end bins)."""
    return ((values + 1) / 2 * bins).long().clamp(0, bins - 1)


def _neighbour_sum(volumes: torch.Tensor) -> torch.Tensor:
    """The sum over each voxel's 26 neighbours of (B, D, H, W), zero outside: a separable 3^3 box sum (the context
    fit ran 3x faster overall than with conv3d on a CPU) less the voxel itself."""
    total = volumes
    for axis in (1, 2, 3):
        padded = torch.nn.functional.pad(total, [0, 0] * (3 - axis) + [1, 1])
        size = total.shape[axis]
        total = padded.narrow(axis, 0, size) + padded.narrow(axis, 1, size) + padded.narrow(axis, 2, size)
    return total - volumes


class TablePrior(HalfPrecisionBuffers, torch.nn.Module):
    half_buffers = ("table", "context")  # float16 keeps 11 significant bits, more than a cell's mean carries

    def __init__(self, n_conditions: int, n_targets: int, bins: int = 24, context_bins: int = 48):
        super().__init__()
        self.n_conditions, self.bins, self.context_bins = n_conditions, bins, context_bins
        self.register_buffer("table", torch.zeros(n_targets, 2 ** n_conditions, bins ** (n_conditions - 1)))
        self.register_buffer("context", torch.zeros(n_targets, 2 ** n_conditions, context_bins ** 2))
        self.register_buffer("done", torch.tensor(False))
        self.register_buffer("context_done", torch.tensor(False))

    def _used(self) -> list[tuple[int, int, int]]:
        """(target, subset, cells) of every table a lookup can reach: a subset never holds the target's own bit
        (`forward` clears it), and one with k sources uses only the first bins^k cells of its row."""
        return [(t, s, self.bins ** len(self._sources(s, t))) for t in range(self.table.shape[0])
                for s in range(1, self.table.shape[1]) if self._sources(s, t) and not s >> t & 1]

    def _save_to_state_dict(self, destination, prefix, keep_vars):
        # Saved as the cells a lookup can reach, one after another: most of the dense tables can never be read. The
        # rest of the dense buffers is zero or a copy, rebuilt on loading.
        super()._save_to_state_dict(destination, prefix, keep_vars)
        used = self._used()
        table, context = destination.pop(prefix + "table"), destination.pop(prefix + "context")
        destination[prefix + "table_cells"] = torch.cat([table[t, s, :n] for t, s, n in used])
        destination[prefix + "context_cells"] = torch.cat([context[t, s] for t, s, _ in used])

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        if prefix + "table_cells" in state_dict:             # the packed form: back to the dense tables
            cells, context = state_dict.pop(prefix + "table_cells"), state_dict.pop(prefix + "context_cells")
            table = cells.new_zeros(self.table.shape)
            dense_context = context.new_zeros(self.context.shape)
            start, width = 0, self.context.shape[2]
            for k, (t, s, n) in enumerate(self._used()):
                # the fit stores the same row under the subset with and without the target's bit: so does this
                table[t, s, :n] = table[t, s | 1 << t, :n] = cells[start:start + n]
                dense_context[t, s] = dense_context[t, s | 1 << t] = context[k * width:(k + 1) * width]
                start += n
            state_dict[prefix + "table"], state_dict[prefix + "context"] = table, dense_context
        # a module saved before the context stage existed loads, and estimates exactly as it did, without one
        if prefix + "table" in state_dict and prefix + "context" not in state_dict:
            state_dict[prefix + "context"] = torch.zeros_like(self.context)
            state_dict[prefix + "context_done"] = torch.tensor(False)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @property
    def fitted(self) -> bool:
        return bool(self.done)

    def _sources(self, subset: int, target: int) -> list[int]:
        return [i for i in range(self.n_conditions) if subset >> i & 1 and i != target]

    def _cells(self, values: torch.Tensor) -> torch.Tensor:
        """Flat cell index of (K, N) intensities in [-1, 1] (K <= C - 1 contrasts)."""
        index = _bin(values, self.bins)
        powers = self.bins ** torch.arange(len(values), device=values.device)
        return (index * powers[:, None]).sum(0)

    def _context_cells(self, estimate: torch.Tensor, head: torch.Tensor) -> torch.Tensor:
        """Context-table cell of every voxel of first-stage estimates (B, D, H, W) inside heads (B, D, H, W)."""
        n = self.context_bins
        inside = head.to(estimate.dtype)
        around = _neighbour_sum(estimate * inside) / _neighbour_sum(inside).clamp_min(1)
        return _bin(estimate, n) * n + _bin(around, n)

    def _first_stage(self, image: torch.Tensor, subset: int, target: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The conditional-mean table's estimate (D, H, W) from one case's conditions (C, D, H, W), and the head
        (the voxels where a source contrast is above the background)."""
        sources = self._sources(subset, target)
        cells = self._cells(image[sources].reshape(len(sources), -1).float())
        estimate = self.table[target, subset].to(image.dtype)[cells].view(image.shape[1:])
        return estimate, (image[sources] > BACKGROUND + 1e-3).any(0)

    @torch.no_grad()
    def fit(self, volumes, ridge: float = 1e-3) -> None:
        """Fill every table from volumes (C, D, H, W) in [-1, 1], each holding all C contrasts, on the voxels inside
        the head (any contrast above the background), then the context tables from the first stage's estimates."""
        self._fit_first_stage(volumes, ridge)
        self._fit_context(volumes)
        self.done.fill_(True)

    def _fit_first_stage(self, volumes, ridge: float) -> None:
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

    def _fit_context(self, volumes) -> None:
        n = self.context_bins
        # a subset with the target's own bit set has the same sources as the one without: fit once, store in both
        pairs = [(t, s) for t, s, _ in self._used()]
        sums = torch.zeros(len(pairs), n * n, dtype=torch.float64)
        counts = torch.zeros_like(sums)
        for images in volumes:
            images = images.float()
            estimates, heads = zip(*(self._first_stage(images, s, t) for t, s in pairs))
            cells = self._context_cells(torch.stack(estimates), torch.stack(heads))
            for k, (t, _) in enumerate(pairs):
                inside = heads[k]
                reached = cells[k][inside]
                sums[k] += torch.bincount(reached, weights=images[t][inside].double(), minlength=n * n)
                counts[k] += torch.bincount(reached, minlength=n * n).double()
        # a cell no voxel reached keeps the first stage's estimate: the centre of its estimate bin
        centres = ((torch.arange(n * n) // n + 0.5) / n * 2 - 1).double()
        for k, (t, s) in enumerate(pairs):
            self.context[t, s] = self.context[t, s | 1 << t] = torch.where(
                counts[k] > 0, sums[k] / counts[k].clamp_min(1), centres).float()
        self.context_done.fill_(True)

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
            estimate, head = self._first_stage(image, subset, t)
            if self.context_done:
                cells = self._context_cells(estimate[None], head[None])[0]
                estimate = self.context[t, subset].to(image.dtype)[cells]
            out.append(torch.where(head, estimate, torch.full_like(estimate, BACKGROUND))[None])
        return torch.stack(out)
