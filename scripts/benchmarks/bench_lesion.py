"""Labelled tumour insertion, end to end through the job a user runs, on phantom cases it never trained on.

Each case's healthy twin is written as a case folder of its own; `volgen.api.run_lesion_insertion` draws the case's
own tumour labels into all four contrasts, and the result is compared with the case's real tumour images (same
anatomy, bias and noise). Rows, in the same run:
- the healthy twin (nothing inserted: the reference the W1 target is relative to);
- the label table: the lesion module's prior alone (each compartment's intensity from a line per contrast, fitted on
  the training cases), the baseline that learns nothing;
- volgen's posterior mean and one volgen sample (the job's defaults otherwise).
Measures, intensities divided by the healthy twin's 99.5th percentile in the head:
- per contrast and compartment (necrotic core, oedema, enhancing), the 1-Wasserstein distance of the intensities
  to the real tumours', over all cases pooled, and its ratio to the healthy twin's (target: one sample at most 0.5x
  everywhere); beside it the same per case, paired with its own tumour;
- PSNR inside the labels and their one-voxel border (the voxels the job may change; intensities up to 1.5x), and in
  the healthy border alone (the tissue within one model voxel of the labels, which the job rewrites so the tumour
  blends in: on a 1 mm case, where it should keep the scan's detail);
- the enhancing rim's contrast on t1c: mean(enhancing) - mean(necrotic core), as a fraction of the real one's;
- seconds per case for the job (read to write, four contrasts).
With `--ideal DIR` (`make bench-lesion`: the training phantoms, as many as --limit) the pooled W1 also has the
row of an ideal sampler: the real tumours of DIR's cases, the true distribution drawn as often as the bench draws it.
Where a compartment's level differs from case to case by more than it differs from healthy tissue (the necrotic core
on t2f), the pooled W1 does not fall to 0 even for that sampler: its row is the measure's floor at this many cases (the
median over consecutive sets of --limit of DIR's cases; the floor line gives their range).
Writes a JSON and a montage of the first case (t1c and t2f: twin, real, table, mean, sample).

    python scripts/benchmarks/bench_lesion.py [--cases phantoms/heldout] [--limit 20] [--model FOLDER] [--ideal DIR]
"""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import torch
from scipy.ndimage import binary_dilation
from scipy.stats import wasserstein_distance

from volgen import hub
from volgen.api import run_lesion_insertion
from volgen.io.contrasts import MRI_CONTRASTS, find_cases
from volgen.io.montage import save_montage
from volgen.io.nifti import read_volume
from volgen.io.preprocess import GridSpec, preprocess
from volgen.metrics import psnr
from volgen.phantom.case import write_twin_case
from volgen.ops import compartments, label_zones
from volgen.tasks.job import model_spacing
from volgen.tasks.lesion import changed_region
from volgen.tasks.models import backbone_of

PARTS = {"necrotic": 1, "oedema": 2, "enhancing": 3}
IDEAL = "real, other cases"            # the ideal sampler's row: the median over sets of other cases


def table_fill(model, folder: Path, seg: np.ndarray) -> dict[str, np.ndarray]:
    """The module's prior alone, through the job's own grid and intensity scale, pasted into the same voxels."""
    spec = GridSpec(spacing=(model_spacing(model),) * 3, multiple=backbone_of(model).image_multiple)
    out, first = {}, None
    for k, contrast in enumerate(model.backbone.config.contrasts):
        volume = read_volume(folder / f"{folder.name}-{contrast}.nii.gz")
        pre = preprocess(volume, spec, grid=first.grid if first else None, contrast=contrast, out_range=(-1.0, 1.0))
        first = first or pre
        labels = torch.from_numpy(pre.grid.forward(seg, order=0, fill=0).astype(np.int64))[None, None]
        conditions = torch.cat([torch.from_numpy(pre.array)[None, None], compartments(labels)], dim=1)
        with torch.no_grad():
            prior = model.prior(conditions, None, torch.tensor([k]))[0, 0].numpy()
        _, region = label_zones(compartments(labels))
        inside = pre.grid.inverse(region[0, 0].numpy().astype(np.float32), order=1, fill=0.0) > 1e-3
        inside |= seg > 0
        fill = volume.array.astype(np.float32).copy()
        fill[inside] = pre.restore(prior).array[inside]
        out[contrast] = fill
    return out


def scale_of(twin: np.ndarray) -> float:
    """Each case's intensity unit: its healthy image's 99.5th percentile in the head (the same for every arm)."""
    return float(np.percentile(twin[twin > twin.min()], 99.5))


def scores(arm: dict, real: dict, twin: dict, seg: np.ndarray, region: np.ndarray, border: np.ndarray,
           pools: dict) -> dict:
    """Per-case measures; each compartment's intensities are also added to `pools` (the W1 to real tumours over
    all cases: the phantom draws each case's tumour tissue apart from its healthy tissue, so a case's own tumour
    level cannot be known from its healthy images, and a paired W1 has a floor that a pooled one has not)."""
    out = {}
    for contrast in MRI_CONTRASTS:
        s = scale_of(twin[contrast])
        x, y = arm[contrast] / s, real[contrast] / s
        shown, truth = np.clip(x, 0, 1.5) / 1.5, np.clip(y, 0, 1.5) / 1.5
        out[f"{contrast}_psnr"] = psnr(shown, truth, region, data_range=1.0)
        out[f"{contrast}_border_psnr"] = psnr(shown, truth, border, data_range=1.0)
        for part, label in PARTS.items():
            where = seg == label
            if where.sum() >= 10:
                out[f"{contrast}_{part}_w1"] = wasserstein_distance(x[where], y[where])
                pools.setdefault(f"{contrast}_{part}_w1", []).append(x[where])
    core, rim = seg == 1, seg == 3
    if core.sum() >= 10 and rim.sum() >= 10:
        contrast_of = lambda v: v[rim].mean() - v[core].mean()             # noqa: E731
        out["t1c_rim_contrast"] = contrast_of(arm["t1c"]) / contrast_of(real["t1c"])
    return out


def real_tumour_pools(root: Path, tmp: Path) -> list[dict[str, list]]:
    """Per case of `root`, each compartment's real tumour intensities in its own twin's unit (an ideal sampler's
    draws: other cases of the same distribution)."""
    pools = []
    for case in find_cases(root):
        folder = write_twin_case(case.paths["seg"].parent, tmp / f"ideal-{case.name}")
        seg = read_volume(case.paths["seg"], allow_constant=True).array.astype(np.int16)
        real = {c: read_volume(case.paths[c]).array.astype(np.float32) for c in MRI_CONTRASTS}
        twin = {c: read_volume(folder / f"{folder.name}-{c}.nii.gz").array.astype(np.float32) for c in MRI_CONTRASTS}
        pools.append({})
        scores(real, real, twin, seg, seg > 0, seg > 0, pools[-1])
    return pools


def windows(count: int, size: int) -> list[slice]:
    """Consecutive sets of `size` of `count` cases, the last one ending at the last case (48 and 20: 0-19, 20-39,
    28-47); one set of all of them where there are fewer."""
    if count <= size:
        return [slice(0, count)]
    starts = list(range(0, count - size + 1, size))
    return [slice(a, a + size) for a in starts + ([count - size] if starts[-1] + size < count else [])]


def ideal_ratios(case_pools: list[dict], size: int, real_pool: dict, twin_w1: dict) -> list[dict[str, float]]:
    """The ideal sampler's pooled W1 / twin's, per contrast and compartment, for each set of `size` cases."""
    out = []
    for window in windows(len(case_pools), size):
        merged: dict[str, list] = {}
        for pool in case_pools[window]:
            for k, v in pool.items():
                merged.setdefault(k, []).extend(v)
        out.append({k: wasserstein_distance(np.concatenate(v), real_pool[k]) / twin_w1[k] for k, v in merged.items()
                    if k in real_pool})
    return out


def _table(title: str, ratios: dict) -> None:
    print(f"{title:<22}" + "".join(f"{c + ' ' + p[:4]:>11}" for c in MRI_CONTRASTS for p in PARTS))
    for arm, values in ratios.items():
        print(f"{arm:<22}" + "".join(f"{values.get(f'{c}_{p}_w1', float('nan')):>11.2f}" for c in MRI_CONTRASTS
                                     for p in PARTS))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", default="phantoms/heldout", type=Path)
    parser.add_argument("--limit", type=int, default=20)
    parser.add_argument("--model", default="volgen-vcm-lesion-2mm")
    parser.add_argument("--out", default="bench_out", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ideal", type=Path, help="phantom cases whose real tumours give the ideal sampler's row "
                                                   "(the pooled W1's floor); none by default")
    args = parser.parse_args()
    model = hub.from_pretrained(args.model)
    cases = find_cases(args.cases)[:args.limit]
    per_arm: dict[str, list[dict]] = {}
    pools: dict[str, dict[str, list]] = {}
    seconds = []
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        for index, case in enumerate(cases):
            folder = write_twin_case(case.paths["seg"].parent, Path(tmp) / f"{case.name}-twin")
            seg_volume = read_volume(case.paths["seg"], allow_constant=True)
            seg = seg_volume.array.astype(np.int16)
            real = {c: read_volume(case.paths[c]).array.astype(np.float32) for c in MRI_CONTRASTS}
            twin = {c: read_volume(folder / f"{folder.name}-{c}.nii.gz").array.astype(np.float32)
                    for c in MRI_CONTRASTS}
            arms = {"healthy twin": twin, "label table (prior)": table_fill(model, folder, seg)}
            for estimate in ("mean", "sample"):
                result = run_lesion_insertion(folder, case.paths["seg"], model=args.model, estimate=estimate,
                                              seed=args.seed + index, progress=False)
                arms[f"volgen {estimate}"] = {c: result.outputs[c].array.astype(np.float32) for c in MRI_CONTRASTS}
                if estimate == "mean":
                    seconds.append(sum(result.info["seconds"].values()))
            region = binary_dilation(seg > 0, np.ones((3, 3, 3)))       # the voxels the job may change (2 mm)
            # the healthy tissue the job rewrites round the labels (one model voxel deep, on any grid)
            border = changed_region(seg, seg_volume.affine, model_spacing(model)) & (seg == 0)
            for arm, images in arms.items():
                per_arm.setdefault(arm, []).append(scores(images, real, twin, seg, region, border,
                                                          pools.setdefault(arm, {})))
            scores(real, real, twin, seg, region, border, pools.setdefault("real", {}))
            if index == 0:
                rows = {}
                for contrast in ("t1c", "t2f"):
                    rows[f"{contrast} real tumour"] = real[contrast]
                    for arm, images in arms.items():
                        rows[f"{contrast} {arm}"] = images[contrast]
                path = args.out / "lesion-insertion.png"
                save_montage({k: seg_volume.with_array(v) for k, v in rows.items()}, path,
                             labels=seg_volume, overwrite=True, title=f"{case.name}: its own labels drawn into its "
                                                                    f"healthy twin")
            print(f"{case.name}: done ({seconds[-1]:.1f} s for the mean)", flush=True)
        ideal_pools = real_tumour_pools(args.ideal, Path(tmp)) if args.ideal is not None else []
    summary = {arm: {k: float(np.mean([r[k] for r in rows_ if k in r])) for k in sorted({k for r in rows_ for k in r})}
               for arm, rows_ in per_arm.items()}
    twin = summary["healthy twin"]
    paired = {arm: {k: values[k] / twin[k] for k in values if k.endswith("_w1")} for arm, values in summary.items()}
    real_pool = {k: np.concatenate(v) for k, v in pools.pop("real").items()}
    pooled_w1 = {arm: {k: wasserstein_distance(np.concatenate(v), real_pool[k]) for k, v in pool.items()}
                 for arm, pool in pools.items()}
    pooled = {arm: {k: v / pooled_w1["healthy twin"][k] for k, v in values.items()}
              for arm, values in pooled_w1.items()}
    ideal = ideal_ratios(ideal_pools, len(cases), real_pool, pooled_w1["healthy twin"]) if ideal_pools else []
    if ideal:
        pooled[IDEAL] = {k: float(np.median([r[k] for r in ideal if k in r])) for k in sorted({k for r in ideal
                                                                                              for k in r})}
    result = {"cases": str(args.cases), "n": len(cases), "model": args.model, "ideal": str(args.ideal or ""),
              "seconds_per_case": float(np.mean(seconds)), "mean": summary, "w1_ratio_to_twin_paired": paired,
              "w1_pooled": pooled_w1, "w1_ratio_to_twin_pooled": pooled, "ideal_sets": ideal}
    (args.out / "lesion-insertion.json").write_text(json.dumps(result, indent=1))
    print(f"\n{len(cases)} cases of {args.cases}, model {args.model}; job {np.mean(seconds):.1f} s per case (mean)")
    _table("W1 / twin, pooled", pooled)
    _table("W1 / twin, per case", paired)
    print(f"{'PSNR in the region':<22}" + "".join(f"{c:>9}" for c in MRI_CONTRASTS) + "  t1c rim contrast")
    for arm, values in summary.items():
        print(f"{arm:<22}" + "".join(f"{values[f'{c}_psnr']:>9.2f}" for c in MRI_CONTRASTS) +
              f"  {values.get('t1c_rim_contrast', float('nan')):.2f}")
    print(f"{'PSNR, healthy border':<22}" + "".join(f"{c:>9}" for c in MRI_CONTRASTS))
    for arm, values in summary.items():
        print(f"{arm:<22}" + "".join(f"{values[f'{c}_border_psnr']:>9.2f}" for c in MRI_CONTRASTS))
    sample = pooled["volgen sample"]
    worst = max(sample, key=sample.get)
    print(f"target: one sample's W1 to the real tumours at most 0.5x the twin's, every contrast and compartment "
          f"(pooled): worst {sample[worst]:.2f}, {worst[:-3]} ({'met' if sample[worst] <= 0.5 else 'MISSED'}); "
          f"per case: worst {max(paired['volgen sample'].values()):.2f}")
    if ideal:
        spread = {k: [r[k] for r in ideal if k in r] for k in pooled[IDEAL]}
        floor = {k: v for k, v in spread.items() if max(v) > 0.5}
        print(f"the measure's floor: the real tumours of {len(ideal)} sets of {len(cases)} cases of {args.ideal} "
              f"score over 0.5x the twin's on " + (", ".join(
                  f"{k[:-3]} (median {np.median(v):.2f}, {min(v):.2f} to {max(v):.2f}; volgen sample {sample[k]:.2f})"
                  for k, v in floor.items()) or "nothing"))
    print(f"target: 4 contrasts in at most 20 s per case: {np.mean(seconds):.1f} s "
          f"({'met' if np.mean(seconds) <= 20 else 'MISSED'})")


if __name__ == "__main__":
    main()
