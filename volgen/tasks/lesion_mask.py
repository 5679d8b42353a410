"""A plausible tumour label map for a case that has none: `volgen lesion-mask CASE -o LABELS`.

The tumour is drawn from the distribution the shipped lesion module was trained on: the phantom generator's
glioma (volgen/phantom/tumour.py: an irregular ellipsoid with a necrotic core, an enhancing shell and oedema that
reaches further into white matter; size, compartments and place as in `TumourSpec`). The generator needs the case's
brain and its grey and white matter. They are estimated from the case itself: the brain is the foreground (BraTS
cases are skull-stripped), and grey and white matter are the brain's intensity classes on the first of t1n, t1c, t2w,
t2f it has (k-means with three classes; white matter is the brightest on T1, the darkest on T2). A tumour the case
already has is avoided: the new labels do not touch it.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np
from scipy import ndimage

from volgen.errors import InputError
from volgen.phantom.tumour import TumourSpec, random_tumour, tumour_sites
from volgen.tasks.job import volume_path
from volgen.tasks.lesion import foreground, read_case_and_labels

ATTEMPTS = 20


def tissue_classes(image: np.ndarray, brain: np.ndarray, white_brightest: bool) -> tuple[np.ndarray, np.ndarray]:
    """(grey, white) matter maps in [0, 1] of one contrast inside the brain: three intensity classes by k-means,
    lightly smoothed (the generator reads them as tissue fractions)."""
    values = image[brain].astype(np.float64)
    centres = np.percentile(values, [15, 50, 85])
    for _ in range(30):
        nearest = np.abs(values[:, None] - centres[None]).argmin(1)
        updated = np.array([values[nearest == k].mean() if np.any(nearest == k) else centres[k] for k in range(3)])
        if np.allclose(updated, centres):
            break
        centres = updated
    order = np.argsort(centres) if white_brightest else np.argsort(centres)[::-1]     # csf, grey, white
    classes = np.zeros(image.shape, np.int8) - 1
    classes[brain] = np.argsort(order)[nearest]
    grey, white = (ndimage.gaussian_filter((classes == k).astype(np.float32), 0.7) for k in (1, 2))
    return grey, white


def draw_labels(case, *, seed: int = 0, radius_mm: float | None = None,
                spec: TumourSpec = TumourSpec()) -> tuple[object, np.ndarray, dict]:
    """(the reference Volume, labels (int16, its grid), the tumour's description) for a case (folder, Case or
    {contrast: path or Volume}); `radius_mm` fixes the enhancing tumour's radius (within the trained range), which
    the seed otherwise draws."""
    if radius_mm is not None:
        low, high = spec.radius_mm
        if not low <= radius_mm <= high:
            raise InputError(None, f"--radius-mm {radius_mm:g}: the lesion module was trained on tumours of radius "
                                   f"{low:g} to {high:g} mm")
        spec = replace(spec, radius_mm=(radius_mm, radius_mm))
    name, volumes, own = read_case_and_labels(case)
    contrast, reference = next(iter(volumes.items()))
    image = reference.array.astype(np.float32)
    brain = foreground(volumes)
    if brain.sum() < 1000:
        raise InputError(volume_path(reference), f"the case's foreground has {int(brain.sum())} voxels: too small "
                                                 f"to place a tumour in")
    grey, white = tissue_classes(image, brain, white_brightest=contrast in ("t1n", "t1c"))
    existing = own > 0 if own is not None else np.zeros(brain.shape, bool)
    rng = np.random.default_rng(seed)
    brain_fraction = brain.astype(np.float32)
    sites = tumour_sites(brain_fraction, grey, white, reference.affine)
    for attempt in range(2 * ATTEMPTS):
        if attempt == ATTEMPTS and existing.any():
            # The first draws go where the module's training tumours went; where the case's own tumour is so large
            # that they all touch it, the rest keep their centre clear of it (beside a training phantom's tumour of
            # 36,000 voxels, 14% of its brain, 2 of 40 free draws fitted).
            sites = replace(sites, clearance=ndimage.distance_transform_edt(~existing))
        labels, info = random_tumour(brain_fraction, grey, white, reference.affine, rng, spec, sites)
        labels[~brain] = 0
        if labels.any() and not np.any(ndimage.binary_dilation(labels > 0, iterations=2) & existing):
            info["contrast_for_tissue"] = contrast
            return reference, labels.astype(np.int16), {"case": name, **info}
    raise InputError(name, f"no tumour fitted beside the case's own in {2 * ATTEMPTS} draws; try another --seed")
