"""Intensity non-uniformity (bias field) of a case's MR contrasts, estimated jointly and divided out.

Each scan is the anatomy times a smooth gain of its own coil and sequence. A per-voxel map from the conditions to a
missing contrast cannot tell a tissue from the same tissue under another gain: on phantoms whose conditions carry
such gains (up to +-20% across the head), the cerebellum's grey matter read as enhancing tumour and the synthesised
t1c lit up the whole cerebellum (two fresh 1 mm phantoms lost 1.7 and 3.1 dB to a linear regression by it). Dividing
the conditions by their estimated fields first is the usual remedy in MR analysis (N4 is the common tool); this is
the parametric kind (PABIC, Styner et al. 2000, IEEE TMI 19:153): each contrast's log field is a polynomial of degree
3 in the voxel coordinates, fitted to its log intensity less the median of the voxel's tissue class. A contrast's
classes are found by k-means over the other contrasts (corrected so far): a tissue is recognised by how it looks in
them, whose fields are independent of this one's, so a class cannot split along this contrast's own field and absorb
it (classes over all contrasts together did, on a three-tissue test case, and left 40% of a known field). Sixteen
classes follow the partial volumes of CSF, GM and WM (on 6 validation phantoms, 2 mm, the residual field's sd was
0.62 of the true field's with 6 classes, 0.43 with 12, 0.40 with 16). Each class weighs in by its robust spread in
the contrast: a pure tissue more than a partial volume the other contrasts cannot pin down (with t1n and t1c alone,
grey matter and CSF look alike; t2w tells them apart). On a fresh case whose t2w field came out off by 1.7 times the
field itself, the weighting brings that to 1.06; on the validation phantoms the residual fell from 0.40 to 0.38 of
the true field. Voxels far from their class (tumour) are left out. The fit runs on voxels about 4 mm apart: a cubic
field has no finer detail.
"""
from __future__ import annotations

import numpy as np

from volgen.io.preprocess import MEDIAN_LEVEL, IntensityScale, background_level
from volgen.io.volume import Volume

DEGREE = 3               # of the log field's polynomial
CLASSES = 16             # tissue classes of the k-means: CSF, GM, WM, their partial volumes, lesion tissues
ROUNDS = 8               # alternations of classes and fields
FIT_SPACING_MM = 4.0     # the fit's sampling of the head
ROBUST_CUT = 2.5         # voxels further than this many of their class's robust sds are left out
MIN_VOXELS = 2000        # fewer head voxels than this: no estimate (unit fields)


def _exponents(degree: int) -> list[tuple[int, int, int]]:
    return [(i, j, k) for i in range(degree + 1) for j in range(degree + 1 - i) for k in range(degree + 1 - i - j)]


def _axes(shape, step: int = 1) -> list[np.ndarray]:
    """Each axis's voxel coordinates scaled to [-1, 1] over the grid, every `step`-th voxel."""
    return [np.linspace(-1.0, 1.0, n)[::step] for n in shape]


def polynomial_field(coefficients: np.ndarray, shape, degree: int = DEGREE) -> np.ndarray:
    """exp(sum of coefficients x monomials) on a grid of `shape`, float32, built axis by axis (the full grid is
    touched once per x power, not once per monomial)."""
    x, y, z = _axes(shape)
    term = {exponents: n for n, exponents in enumerate(_exponents(degree))}
    log = np.zeros(shape, np.float32)        # a field of a few per cent: float32 holds it to 1e-7
    for i in range(degree + 1):
        plane = np.zeros((shape[1], shape[2]))
        for j in range(degree + 1 - i):
            line = sum(coefficients[term[i, j, k]] * z ** k for k in range(degree + 1 - i - j))
            plane += np.outer(y ** j, line)
        log += (x[:, None, None] ** i * plane[None]).astype(np.float32)
    return np.exp(log)


def _kmeans(features: np.ndarray, classes: int, centres: np.ndarray | None, iterations: int = 10):
    """(labels, centres) of Lloyd's k-means; without `centres`, started from voxels at evenly spaced quantiles of the
    features' sum (deterministic, and spread over the intensity range)."""
    if centres is None:
        order = np.argsort(features.sum(1))
        centres = features[order[((np.arange(classes) + 0.5) / classes * len(order)).astype(int)]]
    for _ in range(iterations):
        # squared distance less the voxel's own |f|^2, which does not change the nearest centre
        labels = ((centres ** 2).sum(1) - 2 * features @ centres.T).argmin(1)
        counts = np.bincount(labels, minlength=classes)
        sums = np.stack([np.bincount(labels, weights=f, minlength=classes) for f in features.T], 1)
        centres = np.where(counts[:, None] > 0, sums / np.maximum(counts, 1)[:, None], centres)
    return labels, centres


def _class_medians(values: np.ndarray, labels: np.ndarray, classes: int) -> np.ndarray:
    """The median of `values` within each label (0 for an empty one; upper median for an even count), by one sort."""
    order = np.lexsort((values, labels))
    counts = np.bincount(labels, minlength=classes)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    middle = np.minimum(starts + counts // 2, len(values) - 1)
    return np.where(counts > 0, values[order][middle], 0.0)


def estimate_bias_fields(images: list[np.ndarray], head: np.ndarray, spacing=(1.0, 1.0, 1.0),
                         degree: int = DEGREE) -> list[np.ndarray]:
    """Log-field polynomial coefficients, one array per image (same grid, intensities above 0 in the head), each
    with its median over the head at 0 (a field that moves the overall level is left to the intensity scaling)."""
    step = max(1, int(round(FIT_SPACING_MM / min(spacing))))
    sub = (slice(None, None, step),) * 3
    inside = head[sub]
    terms = _exponents(degree)
    if inside.sum() < MIN_VOXELS:
        return [np.zeros(len(terms)) for _ in images]
    x, y, z = np.meshgrid(*_axes(head.shape, step), indexing="ij")
    design = np.stack([x[inside] ** i * y[inside] ** j * z[inside] ** k for i, j, k in terms], 1)
    logs = np.stack([np.log(np.maximum(image[sub][inside], 1e-6)) for image in images], 1)
    coefficients = np.zeros((len(images), len(terms)))
    centres = [None] * len(images)
    for _ in range(ROUNDS):
        corrected = logs - design @ coefficients.T
        features = corrected / (corrected.std(0) + 1e-6)
        for c in range(len(images)):
            others = [k for k in range(len(images)) if k != c] or [c]
            labels, centres[c] = _kmeans(features[:, others], CLASSES, centres[c])
            wanted = logs[:, c] - _class_medians(corrected[:, c], labels, CLASSES)[labels]
            residual = wanted - design @ coefficients[c]
            # each class's robust sd: a pure tissue (tight in this contrast) weighs more than a partial volume the
            # other contrasts cannot pin down (grey matter and CSF look alike on T1, not on T2)
            spread = 1.4826 * _class_medians(np.abs(residual), labels, CLASSES)[labels] + 1e-6
            kept = np.abs(residual) < ROBUST_CUT * spread
            weight = 1.0 / spread[kept]
            rows = design[kept] * weight[:, None]         # weighted least squares by its normal equations
            coefficients[c] = np.linalg.solve(rows.T @ rows, rows.T @ (wanted[kept] * weight))
    for c in range(len(images)):        # the field's median over the head to 1: shift the constant term
        coefficients[c, 0] -= np.median(design @ coefficients[c])
    return list(coefficients)


def remove_bias(arrays: list[np.ndarray], head: np.ndarray, spacing, background: list[float]) -> list[np.ndarray]:
    """`arrays` (one case's contrasts on one grid) divided by their jointly estimated bias fields inside `head`;
    intensities are taken above each array's `background`, which stays where it was outside the head."""
    signals = [np.where(head, a - b, 0.0).astype(np.float32) for a, b in zip(arrays, background)]
    coefficients = estimate_bias_fields(signals, head, spacing)
    out = []
    for signal, coefficient, b, a in zip(signals, coefficients, background, arrays):
        field = polynomial_field(coefficient, head.shape)
        out.append(np.where(head, signal / field + b, a).astype(np.float32))
    return out


def without_bias(volumes: dict[str, Volume]) -> dict[str, Volume]:
    """One case's contrasts (on one grid, `align_grids`) with their bias fields divided out, fitted where every
    contrast is above its background."""
    backgrounds = [background_level(v.array) for v in volumes.values()]
    head = np.all([v.array > b for v, b in zip(volumes.values(), backgrounds)], axis=0)
    first = next(iter(volumes.values()))
    arrays = remove_bias([v.array for v in volumes.values()], head, first.spacing, backgrounds)
    return {c: v.with_array(a) for (c, v), a in zip(volumes.items(), arrays)}


def without_bias_on_model_grid(images: dict[str, np.ndarray], spacing) -> dict[str, np.ndarray]:
    """Model-grid contrasts (each in [-1, 1], -1 outside the head, as the training loader gives them) with their
    bias fields divided out as `without_bias` divides them out of a job's conditions, then scaled again by their head
    median as preprocess scales a contrast: what the synthesis job hands its module from the same case."""
    arrays = list(images.values())
    head = np.all([a > -1.0 for a in arrays], axis=0)
    corrected = remove_bias(arrays, head, spacing, [-1.0] * len(arrays))
    return {c: IntensityScale.fit(a, out_range=(-1.0, 1.0), median_level=MEDIAN_LEVEL.get(c)).forward(a)
            for c, a in zip(images, corrected)}
