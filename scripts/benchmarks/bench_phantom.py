"""Timings of the foundation: phantom generation (target: one 2 mm case in under 5 s) and NIfTI IO round trips.

    python scripts/benchmarks/bench_phantom.py [--cases 3] [--out bench_out]
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np

from volgen.io import GridSpec, preprocess, read_volume, write_volume
from volgen.phantom import PhantomSpec, generate_case, write_case
from volgen.phantom.atlas import load_atlas


def _timed(fn, *args, **kwargs):
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start


def bench_phantoms(n: int, out: Path) -> list[tuple[str, float]]:
    rows = []
    for spacing in (2, 1):
        load_atlas.cache_clear()
        _, t_atlas = _timed(load_atlas, spacing)
        gen, write = [], []
        for i in range(n if spacing == 2 else 1):
            case, t = _timed(generate_case, 0, i, PhantomSpec(spacing=spacing))
            gen.append(t)
            write.append(_timed(write_case, case, out / f"{spacing}mm", overwrite=True)[1])
        rows += [(f"atlas load, {spacing} mm (once per process)", t_atlas),
                 (f"generate one {spacing} mm case (median of {len(gen)})", statistics.median(gen)),
                 (f"write one {spacing} mm case incl. PET and montage", statistics.median(write)),
                 (f"total per {spacing} mm case (generate + write)", statistics.median(gen) + statistics.median(write))]
    return rows


def bench_io(folder: Path) -> list[tuple[str, float]]:
    rows = []
    rng = np.random.default_rng(0)
    lps = np.diag([-1.0, -1.0, 1.0, 1.0])
    for label, shape, dtype, affine in (("BraTS 240x240x155 int16 LPS", (240, 240, 155), np.int16, lps),
                                        ("2 mm 96x112x96 float32 RAS", (96, 112, 96), np.float32, np.diag([2., 2, 2, 1]))):
        data = (rng.random(shape) * 1000).astype(dtype)
        src = folder / f"src-{dtype.__name__}.nii.gz"
        nib.save(nib.Nifti1Image(data, affine), str(src))
        vol, t_read = _timed(read_volume, src)
        _, t_write = _timed(write_volume, vol, folder / f"out-{dtype.__name__}.nii.gz", overwrite=True)
        pre, t_pre = _timed(preprocess, vol, GridSpec(spacing=(2.0, 2.0, 2.0)))
        _, t_inv = _timed(pre.restore, pre.array)
        rows += [(f"read {label}", t_read), (f"write {label}", t_write),
                 (f"preprocess to 2 mm model grid: {label}", t_pre), (f"restore to source grid: {label}", t_inv)]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        rows = bench_phantoms(args.cases, tmp) + bench_io(tmp)
    print(f"{'what':<58}{'seconds':>9}")
    for what, seconds in rows:
        print(f"{what:<58}{seconds:>9.2f}")
    per_case = dict(rows)["total per 2 mm case (generate + write)"]
    print(f"\ntarget: one 2 mm case in under 5 s -> {per_case:.2f} s ({'met' if per_case < 5 else 'MISSED'}; "
          f"{per_case / 5:.2f}x of the budget; first case in a process adds the atlas load)")


if __name__ == "__main__":
    main()
