"""A random glioma-like lesion with BraTS labels: 1 necrotic core, 2 oedema, 3 enhancing tumour."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from volgen.phantom.anatomy import smooth_field

NECROTIC, OEDEMA, ENHANCING = 1, 2, 3


@dataclass(frozen=True)
class TumourSpec:
    radius_mm: tuple[float, float] = (8.0, 22.0)          # outer radius of the enhancing shell
    necrosis_fraction: tuple[float, float] = (0.3, 0.7)   # necrotic core radius / enhancing radius
    p_necrosis: float = 0.8                               # some tumours have no necrotic core
    oedema_reach: tuple[float, float] = (1.4, 2.3)        # oedema radius / enhancing radius (further in WM)
    irregularity: float = 0.25                            # relative radial roughness


def supratentorial(shape, affine) -> np.ndarray:
    """Voxels above the tentorium in MNI space (gliomas in adults are mostly there): above z = 0 mm, or above
    z = -30 mm in front of y = -40 mm (the temporal lobes)."""
    idx = np.indices(shape, dtype=np.float32).reshape(3, -1)
    world = (np.asarray(affine)[:3, :3] @ idx + np.asarray(affine)[:3, 3:4]).reshape((3,) + tuple(shape))
    return (world[2] > 0) | ((world[2] > -30) & (world[1] > -40))


@dataclass(frozen=True)
class TumourSites:
    """Where a tumour's centre may go in one brain, computed once for many draws (the distance transform is most of
    a draw's time): each voxel's depth in the brain and whether it is supratentorial parenchyma (voxels); with
    `clearance`, each voxel's distance to a tumour already there, which the new tumour's oedema must keep off."""
    depth: np.ndarray
    parenchyma: np.ndarray
    clearance: np.ndarray | None = None


def tumour_sites(brain: np.ndarray, gm: np.ndarray, wm: np.ndarray, affine: np.ndarray) -> TumourSites:
    return TumourSites(ndimage.distance_transform_edt(brain > 0.5),
                       (gm + wm > 0.8) & supratentorial(brain.shape, affine))


def random_tumour(brain: np.ndarray, gm: np.ndarray, wm: np.ndarray, affine: np.ndarray, rng: np.random.Generator,
                  spec: TumourSpec = TumourSpec(), sites: TumourSites | None = None) -> tuple[np.ndarray, dict]:
    """Labels (uint8) and a description; the lesion sits in supratentorial parenchyma, away from the brain's edge,
    as one connected region (with `sites.clearance`, its centre beyond its oedema's nominal reach, the largest
    oedema_reach times its radius plus 2 voxels, from the tumour there, where the brain has such places)."""
    sites = sites if sites is not None else tumour_sites(brain, gm, wm, affine)
    spacing = float(np.linalg.norm(np.asarray(affine)[:3, 0]))
    radius = rng.uniform(*spec.radius_mm) / spacing                      # voxels
    axes = radius * rng.uniform(0.8, 1.2, 3)                             # ellipsoid semi-axes
    depth = sites.depth
    allowed = (depth > radius * 1.2) & sites.parenchyma
    if sites.clearance is not None and allowed.any():
        far = sites.clearance > radius * spec.oedema_reach[1] + 2
        # a tumour too large to be that far anywhere goes to the farthest tenth of the places (it may then not fit,
        # and the caller draws again: a smaller one may)
        allowed &= far if np.any(allowed & far) else sites.clearance >= np.percentile(sites.clearance[allowed], 90)
    candidates = np.argwhere(allowed)
    if len(candidates) == 0:
        candidates = np.argwhere(depth >= depth.max() * 0.8)
    centre = candidates[rng.integers(len(candidates))].astype(np.float64)
    # Normalised radial distance with a smooth random roughness: d < 1 is the enhancing tumour's outer edge.
    lo = np.maximum(np.floor(centre - 3 * axes).astype(int), 0)
    hi = np.minimum(np.ceil(centre + 3 * axes).astype(int) + 1, brain.shape)
    box = tuple(slice(a, b) for a, b in zip(lo, hi))
    idx = np.indices(tuple(hi - lo), dtype=np.float32) + lo[:, None, None, None]
    d = np.sqrt(sum(((idx[i] - centre[i]) / axes[i]) ** 2 for i in range(3)))
    rough = smooth_field(d.shape, rng, control_mm=radius * spacing * 0.8, spacing=spacing)[0]
    d = d * (1.0 + spec.irregularity * np.tanh(rough))
    necrosis = rng.uniform(*spec.necrosis_fraction) if rng.random() < spec.p_necrosis else 0.0
    reach = rng.uniform(*spec.oedema_reach)
    inside = brain[box] > 0.5
    wm_box = wm[box] / np.maximum(brain[box], 1e-6)
    parenchyma = (gm[box] + wm[box]) / np.maximum(brain[box], 1e-6) > 0.5   # oedema is swollen tissue, not CSF
    labels = np.zeros(brain.shape, np.uint8)
    sub = labels[box]
    # Vasogenic oedema follows white matter: its reach scales with the local WM fraction.
    sub[(d < 1.0 + (reach - 1.0) * (0.35 + 0.65 * wm_box)) & inside & parenchyma] = OEDEMA
    sub[(d < 1.0) & inside] = ENHANCING
    sub[(d < necrosis) & inside] = NECROTIC
    # Roughness can leave islands of oedema: keep the component that holds the tumour.
    parts, _ = ndimage.label(sub > 0)
    core = parts[tuple(np.round(centre).astype(int) - lo)]
    if core:
        sub[parts != core] = 0
    info = {"centre_voxel": [int(round(c)) for c in centre], "radius_mm": float(radius * spacing),
            "necrosis_fraction": float(necrosis), "oedema_reach": float(reach),
            "volumes_ml": {name: float(np.count_nonzero(labels == v) * spacing ** 3 / 1000)
                           for name, v in (("necrotic", 1), ("oedema", 2), ("enhancing", 3))}}
    return labels, info
