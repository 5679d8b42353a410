"""Quality of the shipped modules on held-out phantom cases (never seen in training), all rows in one run.

- t1c from (t1n, t2w, t2f): PSNR / SSIM inside the brain and the tumour for (a) per-voxel linear regression fitted
  on training cases, (b) ControlNet, (c) Concat and (d) VCM on the same frozen wavelet backbone.
  Targets: VCM >= (a) + 2 dB in the brain; VCM within 0.5 dB of (b) with <= 1/4 of its trainable parameters.
- 4x through-plane super-resolution of t2f: VCM (with thick-slice data consistency) against cubic interpolation.
  Target: +2 dB PSNR in the brain.
- inpainting (pseudo-healthy t2f inside the dilated lesion mask), PSNR in the mask against the healthy twin: VCM
  against the unconditioned backbone with known-voxel replacement (RePaint-style, no resampling jumps).
- latent backbone: t1c synthesis by its VCM, beside the autoencoder's reconstruction of the true t1c (the ceiling).
Images are compared on the model grid in [0, 1] (data range 1). Each run replaces the rows of the tasks it measured
in results.json and keeps the rest, so tasks can be measured in separate runs.

    python scripts/bench_quality.py [--cases 20] [--steps N] [--tasks synthesis,super_resolution,inpainting,latent]
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

from volgen import hub
from volgen.errors import VolgenError
from volgen.io.montage import save_montage
from volgen.io.volume import Volume
from volgen.metrics import psnr, ssim
from volgen.sampling.consistency import known_voxel_projection, thick_slice_projection, thick_slices
from volgen.tasks import generate
from volgen.training.config import DataConfig
from volgen.training.data import load_cases
from volgen.training.examples import dilate

CONTRASTS = ["t1n", "t1c", "t2w", "t2f"]
T1C, T2F = 1, 3
SOURCES = [0, 2, 3]


def unit(x) -> np.ndarray:
    return ((np.asarray(x, dtype=np.float64) + 1) / 2).clip(0, 1)


DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")


def load(name_or_folder):
    try:
        return hub.from_pretrained(name_or_folder, device=DEVICE)
    except VolgenError as exc:
        print(f"  (skipped: {exc})")
        return None


def trainable(model) -> int:
    return model.count_trainable() if hasattr(model, "count_trainable") else 0


def brain_of(case) -> np.ndarray:
    return case.brain.numpy() if case.brain is not None else case.images[0].numpy() > -0.99


T1C_METRICS = ("brain_psnr", "brain_ssim", "tumour_psnr", "tumour_ssim", "seconds")


def score_t1c(row: dict, pred: np.ndarray, case, seconds: float) -> None:
    """Append a t1c prediction's (in [0, 1]) PSNR/SSIM inside the brain and the tumour, and its seconds."""
    truth, brain, tumour = unit(case.images[T1C].numpy()), brain_of(case), case.seg.numpy() > 0
    row["brain_psnr"].append(psnr(pred, truth, brain, data_range=1.0))
    row["brain_ssim"].append(ssim(pred, truth, brain, data_range=1.0))
    row["tumour_psnr"].append(psnr(pred, truth, tumour, data_range=1.0))
    row["tumour_ssim"].append(ssim(pred, truth, tumour, data_range=1.0))
    row["seconds"].append(seconds)


def fit_linear_regression(train_root: str, max_cases: int) -> np.ndarray:
    cases = load_cases(DataConfig(root=train_root, contrasts=CONTRASTS, max_cases=max_cases), multiple=16)
    xs, ys = [], []
    for case in cases:
        brain = brain_of(case)
        images = case.images.numpy()
        xs.append(np.stack([images[i][brain] for i in SOURCES] + [np.ones(brain.sum())], axis=1))
        ys.append(images[T1C][brain])
    coef, *_ = np.linalg.lstsq(np.concatenate(xs), np.concatenate(ys), rcond=None)
    return coef


def synthesis_rows(cases, models: dict, coef, steps: int, seed: int, montage_path: Path | None,
                   task: str = "t1c synthesis") -> list[dict]:
    """Rows for t1c from (t1n, t2w, t2f): each model's, and per-voxel linear regression's when `coef` is given."""
    baselines = ["linear regression"] if coef is not None else []
    results = {name: {k: [] for k in T1C_METRICS} for name in [*baselines, *models]}
    present = torch.tensor([[1.0, 0.0, 1.0, 1.0]])
    for index, case in enumerate(cases):
        images = case.images.numpy()
        outputs, times = {}, {}
        if coef is not None:
            start = time.perf_counter()
            outputs["linear regression"] = np.tensordot(coef[:3], images[SOURCES], axes=1) + coef[3]
            times["linear regression"] = time.perf_counter() - start
        conditions = case.images[None].clone()
        conditions[:, T1C] = 0
        for name, model in models.items():
            start = time.perf_counter()
            out = generate(model, (1, *images.shape[1:]), contrast="t1c", conditions=conditions, present=present,
                           steps=steps, seed=seed + index)
            times[name] = time.perf_counter() - start
            outputs[name] = out[0, 0].cpu().numpy()
        for name, out in outputs.items():
            score_t1c(results[name], unit(out), case, times[name])
        if index == 0 and montage_path is not None:
            affine = np.diag([2.0, 2.0, 2.0, 1.0])
            vols = {"t1c (true)": unit(images[T1C]), **{f"t1c {k}": unit(v) for k, v in outputs.items()}}
            save_montage({k: Volume(v.astype(np.float32), affine) for k, v in vols.items()}, montage_path,
                         labels=Volume(case.seg.numpy().astype(np.int16), affine), overwrite=True,
                         title=f"{case.name}: t1c from t1n, t2w, t2f ({steps} steps)")
    return [{"task": task, "method": name, "trainable_params": trainable(models.get(name)),
             **{k: float(np.mean(v)) for k, v in r.items()}} for name, r in results.items()]


def autoencoder_row(cases, backbone, task: str) -> dict:
    """The latent backbone's ceiling: t1c encoded and decoded by its autoencoder."""
    r = {k: [] for k in T1C_METRICS}
    for case in cases:
        start = time.perf_counter()
        x = case.images[T1C][None, None].to(DEVICE)
        pred = unit(backbone.codec.decode(backbone.codec.encode(x))[0, 0].cpu().numpy())
        score_t1c(r, pred, case, time.perf_counter() - start)
    return {"task": task, "method": "autoencoder reconstruction (ceiling)", "trainable_params": 0,
            **{k: float(np.mean(v)) for k, v in r.items()}}


def super_resolution_rows(cases, model, steps: int, seed: int, factor: int = 4, axis: int = 2) -> list[dict]:
    rows = {"cubic interpolation": {"brain_psnr": [], "brain_ssim": [], "seconds": [], "consistency": []}}
    if model is not None:
        rows["VCM"] = {"brain_psnr": [], "brain_ssim": [], "seconds": [], "consistency": []}
    for index, case in enumerate(cases):
        volume = case.images[T2F][None, None]
        observed = thick_slices(volume, factor, 2 + axis)
        truth = unit(volume[0, 0])
        brain = case.brain.numpy() if case.brain is not None else truth > 0.005
        start = time.perf_counter()
        zoom = [1.0, 1.0, 1.0]
        zoom[axis] = factor
        cubic = ndimage.zoom(observed[0, 0].numpy(), zoom, order=3, mode="nearest", grid_mode=True)
        outs = {"cubic interpolation": (cubic, time.perf_counter() - start)}
        if model is not None:
            start = time.perf_counter()
            lowres = observed.repeat_interleave(factor, dim=2 + axis)
            out = generate(model, (1, *volume.shape[2:]), contrast="t2f", conditions=lowres, steps=steps,
                           projection=thick_slice_projection(observed.to(DEVICE), factor, 2 + axis), seed=seed + index)
            outs["VCM"] = (out[0, 0].cpu().numpy(), time.perf_counter() - start)
        for name, (out, seconds) in outs.items():
            r = rows[name]
            r["brain_psnr"].append(psnr(unit(out), truth, brain, data_range=1.0))
            r["brain_ssim"].append(ssim(unit(out), truth, brain, data_range=1.0))
            r["seconds"].append(seconds)
            redone = thick_slices(torch.as_tensor(out, dtype=torch.float32)[None, None], factor, 2 + axis)
            r["consistency"].append(float((redone - observed).abs().max()))
    return [{"task": f"{factor}x super-resolution (t2f)", "method": name,
             "trainable_params": trainable(model) if name == "VCM" else 0,
             **{k: float(np.max(v) if k == "consistency" else np.mean(v)) for k, v in r.items()}}
            for name, r in rows.items()]


def inpainting_rows(cases, backbone, model, steps: int, seed: int) -> list[dict]:
    methods = {"backbone + known-voxel replacement": backbone}
    if model is not None:
        methods["VCM"] = model
    rows = {name: {"mask_psnr": [], "seconds": []} for name in methods}
    for index, case in enumerate(cases):
        image, healthy = case.images[T2F][None, None], case.healthy[T2F][None, None]
        mask = dilate((case.seg > 0).float()[None, None], 1)
        masked = image * (1 - mask) - mask
        for name, method in methods.items():
            start = time.perf_counter()
            conditions = torch.cat([masked, mask, torch.zeros_like(mask)], dim=1) if name == "VCM" else None
            out = generate(method, (1, *image.shape[2:]), contrast="t2f", conditions=conditions, steps=steps,
                           projection=known_voxel_projection(image.to(DEVICE), mask.to(DEVICE)), seed=seed + index)
            rows[name]["seconds"].append(time.perf_counter() - start)
            inside = mask[0, 0].numpy() > 0
            rows[name]["mask_psnr"].append(psnr(unit(out[0, 0].cpu()), unit(healthy[0, 0]), inside, data_range=1.0))
    return [{"task": "pseudo-healthy inpainting (t2f)", "method": name,
             "trainable_params": trainable(methods[name]) if name == "VCM" else 0,
             **{k: float(np.mean(v)) for k, v in r.items()}} for name, r in rows.items()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--heldout", default="phantoms/heldout")
    parser.add_argument("--train", default="phantoms/train")
    parser.add_argument("--cases", type=int, default=20)
    parser.add_argument("--steps", type=int, default=None, help="sampling steps (default 25 on a GPU, 10 on the CPU)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--backbone", default="volgen-wavelet-brain-2mm")
    parser.add_argument("--vcm", default="volgen-vcm-synthesis-2mm")
    parser.add_argument("--controlnet", default="runs/controlnet-synthesis/model")
    parser.add_argument("--concat", default="runs/concat-synthesis/model")
    parser.add_argument("--sr", default="volgen-vcm-super-resolution-2mm")
    parser.add_argument("--inpaint", default="volgen-vcm-inpainting-2mm")
    parser.add_argument("--latent-backbone", default="volgen-latent-brain-2mm")
    parser.add_argument("--latent-vcm", default="volgen-vcm-synthesis-latent-2mm")
    parser.add_argument("--tasks", default="synthesis,super_resolution,inpainting,latent")
    parser.add_argument("--out", default="bench_out/quality")
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    args.steps = args.steps or (25 if DEVICE.type == "cuda" else 10)
    print(f"device {DEVICE}, {args.steps} sampling steps")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for folder in (args.heldout, args.train):
        if not Path(folder).is_dir():
            raise SystemExit(f"{folder}: not found; make the corpus first: volgen phantom --n 48 --seed 100 "
                             f"--no-pet --out phantoms/train; volgen phantom --n 20 --seed 200 --out phantoms/heldout")
    print("loading models")
    backbone = load(args.backbone)
    models = {"ControlNet": load(args.controlnet), "Concat": load(args.concat), "VCM": load(args.vcm)}
    models = {k: v for k, v in models.items() if v is not None}
    cases = load_cases(DataConfig(root=args.heldout, contrasts=CONTRASTS, max_cases=args.cases), multiple=16,
                       with_healthy=True)
    print(f"{len(cases)} held-out cases; fitting the linear regression on training cases")
    tasks = args.tasks.split(",")
    rows = []
    if "synthesis" in tasks:
        rows += synthesis_rows(cases, models, fit_linear_regression(args.train, 16), args.steps, args.seed,
                               out / "t1c-montage.png")
    if "super_resolution" in tasks:
        rows += super_resolution_rows(cases, load(args.sr), args.steps, args.seed)
    if "inpainting" in tasks and backbone is not None:
        rows += inpainting_rows(cases, backbone, load(args.inpaint), args.steps, args.seed)
    latent_backbone = load(args.latent_backbone) if "latent" in tasks else None
    if latent_backbone is not None:
        task = "t1c synthesis, latent backbone"
        rows.append(autoencoder_row(cases, latent_backbone, task))
        latent_vcm = load(args.latent_vcm)
        if latent_vcm is not None:
            rows += synthesis_rows(cases, {"VCM": latent_vcm}, None, args.steps, args.seed,
                                   out / "t1c-latent-montage.png", task=task)
    rows = [{**r, "cases": len(cases), "steps": args.steps} for r in rows]
    rows = merge_results(out / "results.json", rows)
    print_table(rows, args)


def merge_results(path: Path, rows: list[dict]) -> list[dict]:
    """Replace the rows of the tasks this run measured and keep the others' (each task's rows come from one run)."""
    measured = {r["task"] for r in rows}
    kept = [r for r in json.loads(path.read_text()) if r["task"] not in measured] if path.exists() else []
    merged = kept + rows
    order = ["t1c synthesis", "4x super-resolution (t2f)", "pseudo-healthy inpainting (t2f)",
             "t1c synthesis, latent backbone"]
    merged.sort(key=lambda r: order.index(r["task"]) if r["task"] in order else len(order))
    path.write_text(json.dumps(merged, indent=2))
    return merged


def print_table(rows: list[dict], args) -> None:
    keys = ["brain_psnr", "brain_ssim", "tumour_psnr", "tumour_ssim", "mask_psnr", "consistency", "seconds"]
    print(f"\n{'task':32} {'method':36} {'params':>9} " + " ".join(f"{k:>11}" for k in keys) + " cases steps")
    for r in rows:
        cells = " ".join(f"{r[k]:>11.4f}" if k in r else f"{'':>11}" for k in keys)
        print(f"{r['task']:32} {r['method']:36} {r['trainable_params']:>9} {cells} {r['cases']:>5} {r['steps']:>5}")
    by = {(r["task"], r["method"]): r for r in rows}
    vcm, lin, cn = (by.get(("t1c synthesis", m)) for m in ("VCM", "linear regression", "ControlNet"))
    if vcm and lin:
        gain = vcm["brain_psnr"] - lin["brain_psnr"]
        print(f"\nVCM - linear regression, brain PSNR: {gain:+.2f} dB (target >= +2: {'met' if gain >= 2 else 'MISSED'})")
    if vcm and cn:
        gap = cn["brain_psnr"] - vcm["brain_psnr"]
        ratio = vcm["trainable_params"] / max(cn["trainable_params"], 1)
        print(f"ControlNet - VCM, brain PSNR: {gap:+.2f} dB (target <= 0.5: {'met' if gap <= 0.5 else 'MISSED'}); "
              f"parameters {ratio:.2f}x of ControlNet's (target <= 0.25: {'met' if ratio <= 0.25 else 'MISSED'})")
    sr, cubic = by.get(("4x super-resolution (t2f)", "VCM")), by.get(("4x super-resolution (t2f)",
                                                                      "cubic interpolation"))
    if sr and cubic:
        gain = sr["brain_psnr"] - cubic["brain_psnr"]
        print(f"SR VCM - cubic, brain PSNR: {gain:+.2f} dB (target >= +2: {'met' if gain >= 2 else 'MISSED'})")
    print(f"(results in {args.out}/results.json, montage {args.out}/t1c-montage.png)")


if __name__ == "__main__":
    main()
