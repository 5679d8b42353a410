"""Inpainting: a population template of healthy anatomy, fitted to the case by a harmonic fill of the difference.

The prior of `FillPrior` is a harmonic (Laplace) fill: smooth, it knows nothing of the anatomy under a large mask.
This one adds what the training cases know: the mean healthy image of each contrast, T (healthy twins, at 4 mm: the
anatomy a fill needs is coarse, and the buffer stays small). Inside the mask it returns T + harmonic fill of (image - T): the template's structure,
shifted smoothly so that it meets the case's own voxels on the mask's boundary (Poisson image editing with the
template's gradients). Outside the mask the image is unchanged.

The template is a position prior: it helps where the brain sits in the model grid as the training brains did (the
phantoms, or data registered to an atlas as BraTS is). On another grid size it is centred, cropped or padded with
background; where it is background the result is exactly the harmonic fill (a constant passes through the fill).

With `components` K > 0 the template is no longer one image per contrast: it is the mean plus the K leading
principal components of the training twins (4 mm), and each case gets its own combination, fitted by ridge least
squares to its known voxels in a thin shell around the mask (`shell` voxels wide). The shell is what the Poisson
step has to meet anyway; the components carry how the training brains' shapes and intensities vary, so the fitted
template follows this case's anatomy into the mask instead of the population's blur. The basis is K x 4 contrasts
at 4 mm, saved as its non-zero voxels alone.

With `registered` the template is sharp and the case's own: the training twins registered to one another
(`groupwise_template`, at the model grid's resolution) give an atlas per contrast, and for each case the atlas is
registered to the known voxels (volgen/modules/registration.py; the mask counts for nothing), mapped to the case's
intensities by a quadratic fitted on a shell around the mask, and met to the case by the same harmonic fill of the
difference. The case's gyri and ventricle walls then run into the mask wherever a smooth warp of the training anatomy
can follow them. It replaces the principal components (their shape variation is what the warp fits). On the
phantoms every brain is a smooth warp of one atlas, which is exactly what this prior can follow: expect less of it on
real brains, whose folds differ beyond a smooth warp.

In lesion mode (the conditions' third channel set) the fill also gets the training tumours' mean profile by depth
in the mask (volgen/modules/lesion_profile.py), so that the module corrects a lesion rather than healthy tissue.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from volgen.modules import fine_atlas
from volgen.modules.lesion_profile import LesionProfile
from volgen.modules.prior import BACKGROUND, FillPrior, HalfPrecisionBuffers, bounding_box, item_groups
from volgen.modules.registration import Warp, apply_warp, groupwise_template, register

TEMPLATE_STRIDE = 2          # the template is stored at half the model grid's resolution
MAP_SHELL = 4                # voxels around the mask on which the registered atlas's intensity map is fitted
# The case's warp is far less smooth than the atlas-building one (registration.register's default 0.05): a
# prior that follows the case's folds closely matters more than a warp that stays tame. Chosen on validation
# phantoms (seed 300, 8 cases x 5 mask kinds, the prior alone, session 45) among 0.05, 0.01, 0.003 and 0.001:
# margin over the exact harmonic fill +4.99, +5.73, +5.87, +5.51 dB; holes under 4,000 voxels +4.44 -> +5.24.
# Its control lattice is registration.register's 8 model voxels. A case on a finer grid than the model's is
# registered on more lattices, their warped atlases averaged (tasks/fine_fill.py: FINE_WARP_CONTROLS); on the model
# grid the same two lattices were tried on validation phantoms (seed 300, 2 mm, 8 cases x 5 masks, session 59) by a
# rule written first (no mask kind lower by more than 0.1 dB): all fills +6.01 against +5.87, but large blobs -0.12.
CASE_WARP_CONTROL = 8
CASE_WARP_SMOOTH = 0.003


class TemplateFillPrior(HalfPrecisionBuffers, FillPrior):
    half_buffers = ("basis", "atlas")    # float16: the largest buffers of a shipped module

    def __init__(self, n_contrasts: int, components: int = 0, shell: int = 2, ridge: float = 1e-3,
                 tolerance: float = 1e-5, max_iterations: int = 2000, registered: bool = False,
                 fine_detail: bool = False):
        super().__init__(tolerance, max_iterations)
        self.components, self.shell, self.ridge, self.registered = components, shell, ridge, registered
        self.register_buffer("template", torch.zeros(n_contrasts, 0, 0, 0))
        # saved only when used, so the models saved before they existed load as they were
        self.register_buffer("basis", torch.zeros(n_contrasts, components, 0, 0, 0), persistent=components > 0)
        self.register_buffer("atlas", torch.zeros(n_contrasts, 0, 0, 0), persistent=registered)
        # the atlas's detail finer than the model grid (volgen/modules/fine_atlas.py): saved where the config says
        # so (empty until scripts/fit_fine_atlas.py fits it) or once it is set
        self.register_buffer("fine", torch.zeros(n_contrasts, 0, 0, 0), persistent=fine_detail)
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
        """The mean of healthy volumes (C, D, H, W) in [-1, 1], centred on the first one's grid, at half resolution,
        and with `components` the leading principal components of each contrast about it."""
        shape = volumes[0].shape[1:]
        small = torch.stack([F.avg_pool3d(_centred(v.double(), shape)[None], TEMPLATE_STRIDE, ceil_mode=True)[0]
                             for v in volumes])                                   # (N, C, d, h, w)
        template = small.mean(0)
        self.template = template.to(self.done.device, torch.float32)
        if self.registered:
            self.fit_atlas(volumes)
        if self.components:
            if self.components > len(volumes) - 1:
                raise ValueError(f"the template prior's {self.components} components need at least "
                                 f"{self.components + 1} training cases (got {len(volumes)})")
            basis = []
            for c in range(small.shape[1]):
                _, spread, rows = torch.linalg.svd((small[:, c] - template[c]).flatten(1), full_matrices=False)
                # scaled so that a case's score on each component has unit variance over the training cases
                scaled = rows[:self.components] * (spread[:self.components, None] / len(volumes) ** 0.5)
                basis.append(scaled.reshape(self.components, *template.shape[1:]))
            self.basis = torch.stack(basis).to(self.done.device, torch.float32)
        self.done.fill_(True)

    @torch.no_grad()
    def fit_atlas(self, volumes) -> None:
        """The registered prior's atlas: the healthy volumes (C, D, H, W) registered to one another, centred on the
        first one's grid (use_atlas)."""
        shape = volumes[0].shape[1:]
        self.use_atlas(groupwise_template([_centred(v.float(), shape) for v in volumes]))

    def use_atlas(self, atlas: torch.Tensor) -> None:
        """Register `atlas` (C, D, H, W) to each case from now on, instead of the mean template and its principal
        components (which are then neither used nor saved)."""
        self.atlas = atlas.to(self.done.device, torch.float32)
        self.registered, self.components = True, 0
        self.basis = self.basis.new_zeros(len(atlas), 0, 0, 0, 0)
        self._non_persistent_buffers_set.discard("atlas")
        self._non_persistent_buffers_set.add("basis")

    def use_fine_detail(self, detail: torch.Tensor) -> None:
        """The registered atlas's detail (C, FACTOR x the atlas's shape) that a finer grid than the model's gets
        (fine_at)."""
        if not self.registered or tuple(detail.shape) != (len(self.atlas), *(fine_atlas.FACTOR * s for s in
                                                                              self.atlas.shape[1:])):
            raise ValueError(f"the fine detail {tuple(detail.shape)} does not fit the atlas {tuple(self.atlas.shape)}")
        self.fine = detail.to(self.done.device, torch.float32)
        self._non_persistent_buffers_set.discard("fine")

    @property
    def has_fine_detail(self) -> bool:
        return self.fine.numel() > 0

    def template_for(self, labels: torch.Tensor | None, shape, like: torch.Tensor) -> torch.Tensor:
        """(B, 1, *shape): each item's contrast template on the full grid, centred in `shape`."""
        small = self.template[_contrasts(labels, len(like)).to(self.template.device)][:, None]
        return _on_grid(small.to(like.device, like.dtype), shape)

    def case_offset(self, image: torch.Tensor, mask: torch.Tensor, template: torch.Tensor,
                    labels: torch.Tensor | None) -> torch.Tensor:
        """(B, 1, *shape): each item's combination of the basis, fitted by ridge least squares to image - template
        on the known voxels within `shell` voxels of its mask (zero where there is no such voxel)."""
        contrasts = _contrasts(labels, len(image)).to(self.basis.device)
        shell = (F.max_pool3d(mask.float(), 2 * self.shell + 1, 1, self.shell) > 0.5) & (mask < 0.5)
        out = torch.zeros_like(image)
        for items in item_groups(image):
            box = bounding_box(shell[items], margin=0)
            if box is None:
                continue
            small = self.basis[contrasts[items]].to(image.device, image.dtype)
            basis = _on_grid(small, image.shape[2:])                                # (b, K, *shape)
            # The normal equations weighted by the shell over its box: no indexing by the shell, which would wait
            # for the device.
            a = basis[(slice(None), slice(None), *box)].flatten(2).double()          # (b, K, voxels)
            w = shell[(items, slice(None), *box)].flatten(2).double()                # (b, 1, voxels)
            y = (image - template)[(items, slice(None), *box)].flatten(2).double()
            count = w.sum(dim=(1, 2))                                                 # (b,) shell voxels
            # ridge scaled by each item's voxel count; an item without shell voxels gets a zero offset
            penalty = torch.where(count > 0, self.ridge * count, 1.0)[:, None, None] * torch.eye(
                a.shape[1], dtype=a.dtype, device=a.device)
            coefficients = torch.linalg.solve((a * w) @ a.transpose(1, 2) + penalty,
                                              (a * w) @ y.transpose(1, 2))[..., 0] * (count > 0)[:, None]
            out[items] = torch.einsum("bk,bk...->b...", coefficients.to(image.dtype), basis)[:, None]
        return out

    def registered_atlas(self, image: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor | None,
                         warped: torch.Tensor | None = None) -> torch.Tensor:
        """(B, 1, *shape): each item's contrast atlas registered to its known voxels and mapped to its intensities
        by a quadratic fitted on the known voxels within MAP_SHELL voxels of its mask. `warped` (B, 1, *shape), where
        given and finite, is an item's atlas already registered (training's cache: volgen/training/atlas_cache.py)."""
        contrasts = _contrasts(labels, len(image)).to(self.atlas.device)
        known = mask < 0.5
        shell = map_shell(mask)
        out = torch.empty_like(image)
        for i in range(len(image)):
            # a sampling call tiles one case over its draws: register it once
            same = next((j for j in range(i) if contrasts[j] == contrasts[i] and torch.equal(image[j], image[i])
                         and torch.equal(mask[j], mask[i])), None)
            if same is not None:
                out[i] = out[same]
                continue
            if warped is not None and bool(torch.isfinite(warped[i]).all()):
                moved = warped[i, 0].float()
            else:
                moved = self.register_atlas(image[i].float(), known[i, 0].float(), int(contrasts[i]))
            out[i, 0] = intensity_map(moved, image[i, 0].float(), shell[i, 0])(moved).to(image.dtype)
        return out

    def register_atlas(self, image: torch.Tensor, weight: torch.Tensor, contrast: int) -> torch.Tensor:
        """(D, H, W): the atlas of `contrast` registered to `image` (1, D, H, W), counting its voxels by `weight`
        (D, H, W; 0 where unknown), before any intensity map."""
        return self.warped_atlas(self.case_warps(image, weight, contrast), contrast, image.shape[1:])

    def case_warps(self, image: torch.Tensor, weight: torch.Tensor, contrast: int,
                   controls=(CASE_WARP_CONTROL,)) -> tuple[Warp, ...]:
        """The warps, one per control lattice of `controls` (model voxels), that register the atlas of `contrast`,
        centred on the grid of `image` (1, D, H, W), to it."""
        atlas = _centred(self.atlas[contrast][None].to(image.device, torch.float32), image.shape[1:])
        return tuple(register(atlas, image.float(), weight.float(), control=control, smooth=CASE_WARP_SMOOTH)
                     for control in controls)

    def warped_atlas(self, warps: tuple[Warp, ...], contrast: int, shape) -> torch.Tensor:
        """(*shape): the atlas of `contrast`, centred on a grid of `shape`, through each of the case's `warps`
        (case_warps), averaged."""
        atlas = _centred(self.atlas[contrast][None, None].float(), shape)
        return torch.stack([apply_warp(atlas.to(warp.affine.device), warp)[0, 0] for warp in warps]).mean(0)

    def fine_at(self, contrast: int, warps: tuple[Warp, ...], model_index: torch.Tensor, model_shape) -> torch.Tensor:
        """The fine atlas of `contrast` (the atlas upsampled plus its fine detail) at the model-grid points
        `model_index` (..., 3) through each of the case's `warps` (case_warps) on a grid of `model_shape`, averaged
        as warped_atlas averages; before any intensity map."""
        atlas = self.atlas[contrast][None].float()
        fine = fine_atlas.upsampled(atlas)[0]
        fine = torch.where(fine > BACKGROUND + 1e-6, fine + self.fine[contrast].float(), fine)
        return torch.stack([fine_atlas.sample_fine(fine, warp, model_index, model_shape, atlas.shape[1:], BACKGROUND)
                            for warp in warps]).mean(0)

    def forward(self, conditions: torch.Tensor, present=None, target=None,
                warped: torch.Tensor | None = None) -> torch.Tensor:
        """`warped`: the registered prior's atlases already registered to the items (registered_atlas). Always in
        float32: under a sampler's bf16 autocast the registration's grid and the fill's sums lose the precision they
        need (the warp moves by a fifth of a voxel)."""
        with torch.autocast(conditions.device.type, enabled=False):
            return self._filled(conditions.float(), target, warped).to(conditions.dtype)

    def _filled(self, conditions: torch.Tensor, target, warped) -> torch.Tensor:
        if not self.fitted:
            raise RuntimeError("the template prior has not been fitted (VCM.prepare fits it on training cases)")
        image, rest = conditions[:, :1], conditions[:, 1:]
        if self.registered:
            template = self.registered_atlas(image, rest[:, :1], target, warped)
        else:
            template = self.template_for(target, image.shape[2:], image)
            if self.components:
                template = template + self.case_offset(image, rest[:, :1], template, target)
        filled = template + super().forward(torch.cat([image - template, rest], dim=1))
        if rest.shape[1] > 1:                                           # lesion mode where the flag is set
            insert = rest[:, 1:2].flatten(1).amax(1) > 0.5
            if insert.any():
                grown = filled + self.lesion(rest[:, :1], target)
                filled = torch.where(insert.view(-1, 1, 1, 1, 1), grown.clamp(BACKGROUND, 1.0), filled)
        return torch.where(rest[:, :1] > 0.5, filled, image)          # known voxels exactly as they were

    def _save_to_state_dict(self, destination, prefix, keep_vars):
        # Outside the head every training twin is background, so most of the basis is exactly zero: it is saved as
        # the voxels some component uses and their values.
        super()._save_to_state_dict(destination, prefix, keep_vars)
        basis = destination.get(prefix + "basis")
        if basis is not None:                   # unfitted too: a built model names the tensors its save will have
            support = basis.detach().flatten(0, 1).ne(0).any(0)                        # (d, h, w)
            del destination[prefix + "basis"]
            destination[prefix + "basis_support"] = support.to(torch.uint8)
            destination[prefix + "basis_values"] = basis[..., support]                 # (C, K, voxels)
        atlas = destination.pop(prefix + "atlas", None)
        if atlas is not None:                   # background outside every head: the head's voxels, a bit mask
            support = atlas.detach().ne(BACKGROUND).any(0)
            destination[prefix + "atlas_shape"] = torch.tensor(support.shape, dtype=torch.int64)
            destination[prefix + "atlas_support"] = _pack_bits(support.flatten())
            destination[prefix + "atlas_values"] = atlas[:, support]                   # (C, voxels)
        fine = destination.pop(prefix + "fine", None)
        if fine is not None and atlas is not None:    # the head's fine voxels, 4 bits each (_pack_detail)
            if fine.numel():
                scale, packed = _pack_detail(fine.detach()[:, _fine_support(support)])
            else:                                   # not fitted yet: a built model names the tensors its save will have
                scale, packed = torch.zeros(len(fine), 1), torch.zeros(0, dtype=torch.uint8)
            destination[prefix + "fine_scale"], destination[prefix + "fine_values"] = scale, packed

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        if prefix + "basis_values" in state_dict:                  # the sparse form: back to the dense basis
            support = state_dict.pop(prefix + "basis_support").bool()
            values = state_dict.pop(prefix + "basis_values")
            dense = values.new_zeros(*values.shape[:2], *support.shape)
            dense[..., support] = values
            state_dict[prefix + "basis"] = dense
        if prefix + "atlas_values" in state_dict:
            shape = state_dict.pop(prefix + "atlas_shape").tolist()
            support = _unpack_bits(state_dict.pop(prefix + "atlas_support"), shape)
            values = state_dict.pop(prefix + "atlas_values")
            dense = values.new_full((len(values), *shape), BACKGROUND)
            dense[:, support] = values
            state_dict[prefix + "atlas"] = dense
            if prefix + "fine_values" in state_dict:
                scale, packed = state_dict.pop(prefix + "fine_scale"), state_dict.pop(prefix + "fine_values")
                fine = _fine_support(support)
                dense = torch.zeros(len(values), *(fine.shape if packed.numel() else (0, 0, 0)))
                if packed.numel():
                    dense[:, fine] = _unpack_detail(scale, packed, int(fine.sum()))
                state_dict[prefix + "fine"] = dense
                self._non_persistent_buffers_set.discard("fine")
        # the template's size is known only once fitted: take the saved one's shape before loading it
        for name in ("template", "basis", "atlas", "fine"):
            saved = state_dict.get(prefix + name)
            if saved is not None:
                mine = getattr(self, name)
                setattr(self, name, torch.zeros_like(saved, device=mine.device, dtype=mine.dtype))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


_BITS = torch.tensor([128, 64, 32, 16, 8, 4, 2, 1], dtype=torch.uint8)


def _pack_bits(flags: torch.Tensor) -> torch.Tensor:
    """A flat bool tensor as uint8 bytes, eight flags each (numpy.packbits' order)."""
    padded = torch.cat([flags.cpu(), flags.new_zeros((-len(flags)) % 8).cpu()]).view(-1, 8)
    return (padded.to(torch.uint8) * _BITS).sum(1).to(torch.uint8)


def _unpack_bits(packed: torch.Tensor, shape) -> torch.Tensor:
    count = int(torch.tensor(shape).prod())
    return ((packed[:, None] & _BITS) > 0).flatten()[:count].view(*shape)


DETAIL_LEVELS = 7          # the fine detail is saved as integers -7..7 times a scale per contrast (4 bits)
DETAIL_CLIP = 0.999        # the scale: this quantile of |detail| is the top level; the rarer larger values clip


def _fine_support(support: torch.Tensor) -> torch.Tensor:
    """The atlas's head voxels (D, H, W) on the fine grid."""
    for axis in range(3):
        support = support.repeat_interleave(fine_atlas.FACTOR, dim=axis)
    return support


def _pack_detail(values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(C, V) -> (scale (C, 1) float32, uint8 bytes holding two 4-bit levels each). The detail is an estimate from
    a few dozen registered twins, far coarser than 1/14 of its range; 4 bits keep the shipped weights in budget."""
    values = values.float()
    scale = (torch.quantile(values.abs()[:, ::max(1, values.shape[1] // 100_000)], DETAIL_CLIP, dim=1,
                            keepdim=True) / DETAIL_LEVELS).clamp_min(1e-8)
    levels = (torch.round(values / scale).clamp(-DETAIL_LEVELS, DETAIL_LEVELS) + DETAIL_LEVELS).to(torch.uint8)
    flat = torch.cat([levels.flatten(), levels.new_zeros(levels.numel() % 2)]).view(-1, 2)
    return scale, flat[:, 0] * 16 + flat[:, 1]


def _unpack_detail(scale: torch.Tensor, packed: torch.Tensor, voxels: int) -> torch.Tensor:
    levels = torch.stack([packed // 16, packed % 16], 1).flatten()[:len(scale) * voxels]
    return (levels.float() - DETAIL_LEVELS).view(len(scale), voxels) * scale.float()


def map_shell(mask: torch.Tensor) -> torch.Tensor:
    """(B, 1, D, H, W) bool: the known voxels within MAP_SHELL voxels of each item's mask, where the registered atlas's
    intensity map is fitted."""
    return (F.max_pool3d(mask.float(), 2 * MAP_SHELL + 1, 1, MAP_SHELL) > 0.5) & (mask < 0.5)


def intensity_map(x: torch.Tensor, y: torch.Tensor, where: torch.Tensor):
    """The quadratic that best fits y from x on the voxels `where`, as a function (the identity with too few of
    them): a registered atlas's values to a case's intensities."""
    if int(where.sum()) < 10:
        return lambda v: v
    features = torch.stack([torch.ones_like(x[where]), x[where], x[where] ** 2], 1).double()
    c = torch.linalg.lstsq(features, y[where].double()[:, None]).solution[:, 0].tolist()
    return lambda v: c[0] + c[1] * v + c[2] * v ** 2


def _contrasts(labels: torch.Tensor | None, batch: int) -> torch.Tensor:
    """(B,) each item's contrast index (0 for a prior without labels)."""
    return torch.zeros(batch, dtype=torch.long) if labels is None else labels.long().reshape(-1)


def _on_grid(small: torch.Tensor, shape) -> torch.Tensor:
    """(B, C, d, h, w) stored at half resolution -> (B, C, *shape): trilinear upsampling, then centred in `shape`."""
    return _centred(F.interpolate(small, scale_factor=TEMPLATE_STRIDE, mode="trilinear", align_corners=False), shape)


def _centred(x: torch.Tensor, shape) -> torch.Tensor:
    """x (..., D, H, W) cropped or padded (with background) about its centre to `shape`: one F.pad, whose negative
    widths crop."""
    widths = []
    for have, size in zip(reversed(x.shape[-3:]), reversed(tuple(shape))):       # F.pad lists the last dim first
        before = fine_atlas.centring_offset(have, size)
        widths += [before, size - have - before]
    return F.pad(x, widths, value=BACKGROUND)
