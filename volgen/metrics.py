"""Image-quality and overlap metrics for 3D volumes, optionally restricted to a mask.

Conventions: the data range for PSNR and SSIM is the reference's range over the whole volume unless given, so a
masked and an unmasked figure are on the same scale. SSIM is the Gaussian-window form of Wang et al. (2004):
sigma 1.5 voxels truncated at 3.5 sigma, K1 = 0.01, K2 = 0.03, population statistics; without a mask it is averaged
over voxels at least a window radius from the border (as scikit-image does), with a mask over the mask's voxels.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage


def _pair(pred, ref, mask=None):
    pred = np.asarray(pred, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    if pred.shape != ref.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from reference shape {ref.shape}")
    if mask is not None:
        mask = np.asarray(mask).astype(bool)
        if mask.shape != ref.shape:
            raise ValueError(f"mask shape {mask.shape} differs from reference shape {ref.shape}")
        if not mask.any():
            raise ValueError("mask is empty")
    return pred, ref, mask


def _select(array, mask):
    return array if mask is None else array[mask]


def data_range_of(ref) -> float:
    ref = np.asarray(ref, dtype=np.float64)
    return float(ref.max() - ref.min())


def mse(pred, ref, mask=None) -> float:
    pred, ref, mask = _pair(pred, ref, mask)
    return float(np.mean(_select((pred - ref) ** 2, mask)))


def mae(pred, ref, mask=None) -> float:
    pred, ref, mask = _pair(pred, ref, mask)
    return float(np.mean(_select(np.abs(pred - ref), mask)))


def psnr(pred, ref, mask=None, data_range=None) -> float:
    """10 log10(range^2 / MSE) in dB; infinite for identical volumes."""
    err = mse(pred, ref, mask)
    rng = data_range_of(ref) if data_range is None else float(data_range)
    return float("inf") if err == 0 else float(10.0 * np.log10(rng ** 2 / err))


def sharpness(pred, ref, mask=None, spacing_mm: float = 1.0, highpass_sigma_mm: float = 1.0) -> dict[str, float]:
    """How sharp `pred` is beside `ref`: "gradient_ratio", the mean gradient magnitude (per mm, central differences)
    of pred over ref's, in the mask (1: as sharp; below: blurrier); "highpass_psnr", the PSNR of pred's high-pass part
    (the image minus its Gaussian blur of `highpass_sigma_mm`) against ref's, data range 1 (images on [0, 1]):
    whether the fine detail is the right detail, not only as much of it."""
    pred, ref, mask = _pair(pred, ref, mask)

    def gradient(x):
        return np.sqrt(sum(g ** 2 for g in np.gradient(x, spacing_mm)))

    def high(x):
        return x - ndimage.gaussian_filter(x, highpass_sigma_mm / spacing_mm)

    return {"gradient_ratio": float(_select(gradient(pred), mask).mean() / _select(gradient(ref), mask).mean()),
            "highpass_psnr": psnr(high(pred), high(ref), mask, data_range=1.0)}


def nrmse(pred, ref, mask=None, normalization: str = "euclidean") -> float:
    """RMSE normalised by ||ref|| / sqrt(n) ('euclidean'), the reference range ('min-max') or its mean ('mean')."""
    pred, ref, mask = _pair(pred, ref, mask)
    r = _select(ref, mask)
    rmse = np.sqrt(np.mean(_select((pred - ref) ** 2, mask)))
    if normalization == "euclidean":
        denom = np.sqrt(np.mean(r ** 2))
    elif normalization == "min-max":
        denom = r.max() - r.min()
    elif normalization == "mean":
        denom = r.mean()
    else:
        raise ValueError(f"unknown normalization '{normalization}' (euclidean, min-max, mean)")
    return float(rmse / denom)


def ssim_map(pred, ref, data_range=None, sigma: float = 1.5, k1: float = 0.01, k2: float = 0.03) -> np.ndarray:
    pred, ref, _ = _pair(pred, ref)
    rng = data_range_of(ref) if data_range is None else float(data_range)
    c1, c2 = (k1 * rng) ** 2, (k2 * rng) ** 2

    def blur(a):
        return ndimage.gaussian_filter(a, sigma=sigma, truncate=3.5, mode="reflect")

    mx, my = blur(pred), blur(ref)
    vx = blur(pred * pred) - mx * mx
    vy = blur(ref * ref) - my * my
    cxy = blur(pred * ref) - mx * my
    return ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))


def _mean_ssim(smap: np.ndarray, mask, sigma: float) -> float:
    if mask is not None:
        return float(smap[np.asarray(mask).astype(bool)].mean())
    pad = int(3.5 * sigma + 0.5)  # the window radius: border voxels see reflected data
    return float(smap[tuple(slice(pad, n - pad) for n in smap.shape)].mean())


def ssim(pred, ref, mask=None, data_range=None, sigma: float = 1.5) -> float:
    _pair(pred, ref, mask)
    return _mean_ssim(ssim_map(pred, ref, data_range, sigma), mask, sigma)


def dice(pred, ref) -> float:
    """2|A and B| / (|A| + |B|) of two binary masks; 1.0 when both are empty (nothing to find, nothing found)."""
    a = np.asarray(pred).astype(bool)
    b = np.asarray(ref).astype(bool)
    if a.shape != b.shape:
        raise ValueError(f"mask shapes differ: {a.shape} vs {b.shape}")
    total = a.sum() + b.sum()
    return 1.0 if total == 0 else float(2.0 * np.logical_and(a, b).sum() / total)


def dice_per_label(pred, ref, labels=(1, 2, 3)) -> dict[int, float]:
    pred, ref = np.asarray(pred), np.asarray(ref)
    return {int(v): dice(pred == v, ref == v) for v in labels}


def image_metrics(pred, ref, masks: dict | None = None, data_range=None) -> dict[str, dict[str, float]]:
    """{region: {psnr, ssim, mae, mse, nrmse}} for the whole volume and each named mask."""
    rng = data_range_of(ref) if data_range is None else float(data_range)
    smap = ssim_map(pred, ref, rng)
    regions = {"all": None, **(masks or {})}
    table = {}
    for name, mask in regions.items():
        table[name] = {"psnr": psnr(pred, ref, mask, rng), "ssim": _mean_ssim(smap, mask, 1.5),
                       "mae": mae(pred, ref, mask),
                       "mse": mse(pred, ref, mask), "nrmse": nrmse(pred, ref, mask)}
    return table
