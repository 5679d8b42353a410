"""Inpainting: a population template of healthy anatomy, fitted to the case by a harmonic fill of the difference.

The prior of `FillPrior` is a harmonic (Laplace) fill: smooth, it knows nothing of the anatomy under a large mask.
This one adds what the training cases know: the mean healthy image of each contrast, T (healthy twins, 4 mm, so it
weighs 1 MB for 4 contrasts). Inside the mask it returns T + harmonic fill of (image - T): the template's structure,
shifted smoothly so that it meets the case's own voxels on the mask's boundary (Poisson image editing with the
template's gradients). Outside the mask the image is unchanged. On the 20 held-out phantoms, pseudo-healthy t2f
inside the tumour mask: harmonic fill 19.21 dB, this 20.30 dB (scripts/bench_quality.py prints it as a baseline row
of a module that has it).

The template is a position prior: it helps where the brain sits in the model grid as the training brains did (the
phantoms, or data registered to an atlas as BraTS is). On another grid size it is centred, cropped or padded with
background; where it is background the result is exactly the harmonic fill (a constant passes through the fill).

In lesion mode (the conditions' third channel set) the fill also gets the training tumours' mean profile by depth
in the mask (volgen/modules/lesion_profile.py), so that the module corrects a lesion rather than healthy tissue.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from volgen.modules.lesion_profile import LesionProfile
from volgen.modules.prior import BACKGROUND, FillPrior

TEMPLATE_STRIDE = 2          # the template is stored at half the model grid's resolution


class TemplateFillPrior(FillPrior):
    def __init__(self, n_contrasts: int, tolerance: float = 1e-5, max_iterations: int = 2000):
        super().__init__(tolerance, max_iterations)
        self.register_buffer("template", torch.zeros(n_contrasts, 0, 0, 0))
        self.register_buffer("done", torch.tensor(False))
        self.lesion = LesionProfile(n_contrasts)

    def fit_cases(self, cases) -> None:
        """VCM.prepare's way in: the template from the cases' healthy twins, the lesion profile from their images,
        twins and segmentations."""
        if any(case.healthy is None or case.seg is None for case in cases):
            raise ValueError("the template prior needs healthy twins and segmentations (load_cases(with_healthy=True))")
        self.fit([case.healthy for case in cases])
        self.lesion.fit(cases)

    @property
    def fitted(self) -> bool:
        return bool(self.done)

    @torch.no_grad()
    def fit(self, volumes) -> None:
        """The mean of healthy volumes (C, D, H, W) in [-1, 1], centred on the first one's grid, at half resolution."""
        shape = volumes[0].shape[1:]
        total = sum(_centred(v.double(), shape) for v in volumes) / len(volumes)
        template = F.avg_pool3d(total[None], TEMPLATE_STRIDE, ceil_mode=True)[0]
        self.template = template.to(self.done.device, torch.float32)
        self.done.fill_(True)

    def template_for(self, labels: torch.Tensor | None, shape, like: torch.Tensor) -> torch.Tensor:
        """(B, 1, *shape): each item's contrast template on the full grid, centred in `shape`."""
        index = torch.zeros(len(like), dtype=torch.long) if labels is None else labels.long()
        small = self.template[index.to(self.template.device)][:, None].to(like.device, like.dtype)
        full = F.interpolate(small, scale_factor=TEMPLATE_STRIDE, mode="trilinear", align_corners=False)
        return _centred(full, shape)

    def forward(self, conditions: torch.Tensor, present=None, target=None) -> torch.Tensor:
        if not self.fitted:
            raise RuntimeError("the template prior has not been fitted (VCM.prepare fits it on training cases)")
        image, rest = conditions[:, :1], conditions[:, 1:]
        template = self.template_for(target, image.shape[2:], image)
        filled = template + super().forward(torch.cat([image - template, rest], dim=1))
        if rest.shape[1] > 1:                                           # lesion mode where the flag is set
            insert = rest[:, 1:2].flatten(1).amax(1) > 0.5
            if insert.any():
                grown = filled + self.lesion(rest[:, :1], target)
                filled = torch.where(insert.view(-1, 1, 1, 1, 1), grown.clamp(BACKGROUND, 1.0), filled)
        return torch.where(rest[:, :1] > 0.5, filled, image)          # known voxels exactly as they were

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # the template's size is known only once fitted: take the saved one's shape before loading it
        saved = state_dict.get(prefix + "template")
        if saved is not None:
            self.template = torch.zeros_like(saved, device=self.template.device, dtype=self.template.dtype)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


def _centred(x: torch.Tensor, shape) -> torch.Tensor:
    """x (..., D, H, W) cropped or padded (with background) about its centre to `shape`: one F.pad, whose negative
    widths crop."""
    widths = []
    for have, size in zip(reversed(x.shape[-3:]), reversed(tuple(shape))):       # F.pad lists the last dim first
        before = (size - have) // 2 if size >= have else -((have - size) // 2)
        widths += [before, size - have - before]
    return F.pad(x, widths, value=BACKGROUND)
