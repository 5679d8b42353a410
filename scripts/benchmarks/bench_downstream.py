"""Does volgen help a segmenter? BraSyn's protocol on held-out phantoms.

A tumour segmenter (scripts/benchmarks/segmenter.py: SegResNet, sigmoid outputs for WT, TC and ET, Dice loss) is
trained on complete training phantoms. On each held-out phantom, for each single missing contrast, it segments the case
with the missing contrast being:
- the real one;
- volgen's posterior mean, and one volgen sample (the shipped synthesis module, CPU defaults; the sample finishes the
  5-step sampler), from the other three with their bias fields divided out, as the job divides them out;
- the per-voxel linear regression from the other three as given (fitted on the training phantoms);
- the per-voxel conditional-mean table (the shipped module's own prior, alone, on the job's conditions);
- absent (all zeros after normalisation);
- with `--without-runs t1c=RUN,...`: absent, segmented by a segmenter trained without that contrast (segmenter.py
  --without, same steps): what the other three contrasts carry of each region, which a synthesis from them can pass
  on to the full segmenter but not add to.
It reports Dice per region (mean and sd over the cases), BraSyn's SSIM of each synthesised contrast against the real
one (whole volume on [0, 1]), writes bench_out/downstream.json, prints the table, and draws one case with each arm's
segmentation over the image the segmenter saw for the missing contrast (bench_out/downstream-<contrast>.png).

    python scripts/benchmarks/segmenter.py --train phantoms/train --run runs/segmenter --steps 3000
    python scripts/benchmarks/bench_downstream.py --segmenter runs/segmenter --heldout phantoms/heldout
    [--without-runs t1c=runs/segmenter-without-t1c,t2f=runs/segmenter-without-t2f]
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import segmenter as seg
from bench_harness import DEVICE, CONTRASTS, LinearRegression, brain_of, synthesis, synthesis_inputs
from volgen.io.montage import HEADER, save_montage
from volgen.io.volume import Volume
from volgen.metrics import dice, ssim
from volgen.tasks import generate
from volgen.tasks.models import load_model

ARMS = ("real", "volgen mean", "volgen sample", "regression", "table", "absent")
TRAINED_WITHOUT = "trained without"
SAMPLE_STEPS = 5


def volgen_sample(model, case, target: str, seed: int, inputs: dict) -> torch.Tensor:
    """One finished sample of `target` from the other three (the 5-step sampler to its end)."""
    est = generate(model, (1, *case.images.shape[1:]), contrast=target, samples=1, seed=seed, estimate="sample",
                   steps=model.backbone.denoiser.schedule.timesteps(SAMPLE_STEPS), **inputs)
    return est.image[0, 0].cpu()


def table_estimate(model, target: str, inputs: dict) -> torch.Tensor:
    """The module's per-voxel conditional-mean table alone (its prior, before any network)."""
    labels = model.backbone.class_labels(target)
    with torch.no_grad():
        return model.prior(inputs["conditions"], inputs["present"], labels)[0, 0].float()


def replacements(model, regressions, case, target: str, seed: int) -> dict[str, torch.Tensor | None]:
    k = CONTRASTS.index(target)
    brain = torch.from_numpy(brain_of(case))
    inputs = synthesis_inputs(model, case, target)     # the conditions' bias fields, fitted once for every arm
    mean = synthesis(model, case, target, samples=2, seed=seed, inputs=inputs)[0].image[0, 0].cpu()
    regression = torch.from_numpy(regressions[target].predict(case.images.numpy()).astype(np.float32))
    out = {"real": case.images[k], "volgen mean": mean,
           "volgen sample": volgen_sample(model, case, target, seed, inputs), "regression": regression,
           "table": table_estimate(model, target, inputs), "absent": None}
    # every estimate is background outside the brain, as the real contrasts are (the segmenter normalises inside it)
    return {arm: (None if v is None else torch.where(brain, v, case.images[k])) for arm, v in out.items()}


def segment(net, images: torch.Tensor, brain: torch.Tensor, present) -> np.ndarray:
    """(3, D, H, W) bool: WT, TC, ET."""
    x = seg.normalise(images, brain, present)[None]
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        return (net(x)[0].float() > 0).numpy()


def brats_labels(regions: np.ndarray) -> np.ndarray:
    """BraTS labels from (WT, TC, ET) masks: ET 3, the rest of TC 1, the rest of WT 2."""
    wt, tc, et = regions
    return np.where(et, 3, np.where(tc, 1, np.where(wt, 2, 0))).astype(np.int16)


def montage(path: Path, case, target: str, shown: dict, segmentations: dict) -> None:
    """One row per arm: the image the segmenter saw for the missing contrast, with that arm's segmentation; the
    truth's labels on the real image last."""
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    centre = tuple(int(v) for v in np.round(np.argwhere(case.seg.numpy() > 0).mean(0)))   # every row: one place
    rows = []
    for arm, image in [*shown.items(), ("truth labels", shown["real"])]:
        labels = case.seg.numpy() if arm == "truth labels" else brats_labels(segmentations[arm])
        picture = path.with_name(f".{path.stem}-{len(rows)}.png")
        save_montage({f"{target} ({arm})": Volume((image.numpy() + 1) / 2, affine)}, picture, centre=centre,
                     labels=Volume(labels.astype(np.int16), affine), overwrite=True)
        rows.append(picture)
    images = [Image.open(p) for p in rows]
    # each montage is a title, an image row and an overlay row: keep the overlay row
    crops = [im.crop((0, HEADER + (im.height - HEADER) // 2, im.width, im.height)) for im in images]
    sheet = Image.new("RGB", (max(c.width for c in crops), sum(c.height for c in crops)), "black")
    y = 0
    for c in crops:
        sheet.paste(c, (0, y))
        y += c.height
    sheet.save(path)
    for p in rows:
        p.unlink()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--segmenter", default="runs/segmenter",
                        help="a segmenter.py run, or several comma-separated: their ensemble (probabilities averaged)")
    parser.add_argument("--heldout", default="phantoms/heldout")
    parser.add_argument("--train", default="phantoms/train", help="what the regression baseline is fitted on")
    parser.add_argument("--cases", type=int, default=20)
    parser.add_argument("--targets", default=",".join(CONTRASTS))
    parser.add_argument("--model", help="the synthesis module (name or folder; default: the shipped one)")
    parser.add_argument("--out", default="bench_out/downstream.json")
    parser.add_argument("--without-runs", default="", help="CONTRAST=RUN,...: segmenters trained without a contrast "
                                                           "(segmenter.py --without), scored with it absent")
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    net = seg.load(args.segmenter)
    trained_without = {c: Path(r) for c, r in (item.split("=", 1) for item in args.without_runs.split(",") if item)}
    model = load_model("synthesis", args.model, device=DEVICE)
    train = seg.prepared(args.train, max_cases=16)
    regressions = {t: LinearRegression([i for i, c in enumerate(CONTRASTS) if c != t], CONTRASTS.index(t)).fit(
        [c["case"].images.numpy() for c in train], [brain_of(c["case"]) for c in train]) for t in CONTRASTS}
    cases = seg.prepared(args.heldout, max_cases=args.cases)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    runs = args.segmenter.split(",")
    described = [json.loads((Path(run) / "segmenter.json").read_text()) | {"run": run} for run in runs]
    results = {"segmenter": described[0] if len(runs) == 1 else {"ensemble": described}, "cases": len(cases),
               "model": args.model or "shipped",
               "heldout": args.heldout, "dice": {}, "ssim": {}, "per_case": {},
               "trained_without": {c: json.loads((r / "segmenter.json").read_text()) for c, r in
                                   trained_without.items()}}
    began = time.perf_counter()
    for target in args.targets.split(","):
        k = CONTRASTS.index(target)
        dices = {arm: [] for arm in ARMS + ((TRAINED_WITHOUT,) if target in trained_without else ())}
        without_net = seg.load(trained_without[target]) if target in trained_without else None
        ssims = {arm: [] for arm in ARMS if arm not in ("real", "absent")}
        for index, item in enumerate(cases):
            case = item["case"]
            truth = seg.regions(case.seg[None])[:, 0].numpy() > 0
            shown, segmentations = {}, {}
            for arm, image in replacements(model, regressions, case, target, seed=index).items():
                images = case.images.clone()
                present = [True] * len(CONTRASTS)
                if image is None:
                    present[k] = False
                else:
                    images[k] = image
                regions = segment(net, images, case.brain, present)
                dices[arm].append([dice(regions[r], truth[r]) for r in range(len(seg.REGIONS))])
                if arm in ssims:
                    ssims[arm].append(ssim((image.numpy() + 1) / 2, (case.images[k].numpy() + 1) / 2,
                                           data_range=1.0))
                shown[arm] = images[k] if image is not None else torch.full_like(images[k], -1.0)
                segmentations[arm] = regions
            if without_net is not None:
                present = [c != target for c in CONTRASTS]
                regions = segment(without_net, case.images, case.brain, present)
                dices[TRAINED_WITHOUT].append([dice(regions[r], truth[r]) for r in range(len(seg.REGIONS))])
            if index == 0:
                montage(out.with_name(f"downstream-{target}.png"), case, target, shown, segmentations)
            print(f"{target} {case.name}: " + ", ".join(f"{a} {np.mean(d[-1]):.3f}" for a, d in dices.items()),
                  flush=True)
        results["dice"][target] = {arm: {r: [float(np.mean([d[i] for d in v])), float(np.std([d[i] for d in v]))]
                                         for i, r in enumerate(seg.REGIONS)} for arm, v in dices.items()}
        results["ssim"][target] = {arm: float(np.mean(v)) for arm, v in ssims.items()}
        # per case (WT, TC, ET): a ratio of means hides a case the segmenter fails even on the real images
        per_case = {arm: [[round(float(x), 4) for x in d] for d in v] for arm, v in dices.items()}
        results["per_case"][target] = {"cases": [item["name"] for item in cases], **per_case}
    results["seconds"] = round(time.perf_counter() - began, 1)
    out.write_text(json.dumps(results, indent=1))
    print_table(results)
    print(f"wrote {out}")


def print_table(results: dict) -> None:
    print(f"\nDice (mean over {results['cases']} held-out phantoms) with the missing contrast replaced by each arm")
    print(f"{'missing':8} {'arm':15} " + " ".join(f"{r:>6}" for r in seg.REGIONS) + "   SSIM")
    for target, arms in results["dice"].items():
        for arm, regions in arms.items():
            s = results["ssim"][target].get(arm)
            print(f"{target:8} {arm:15} " + " ".join(f"{regions[r][0]:6.3f}" for r in seg.REGIONS) +
                  (f"  {s:.3f}" if s is not None else ""))
        for arm in ("volgen mean", TRAINED_WITHOUT):
            if arm in arms:
                print(f"{target:8} {arm + ' / real':22} " + " ".join(
                    f"{r} {arms[arm][r][0] / max(arms['real'][r][0], 1e-9):.3f}x" for r in seg.REGIONS))


if __name__ == "__main__":
    main()
