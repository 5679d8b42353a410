"""Missing-contrast robustness: does a segmenter trained with volgen filling dropped contrasts cope better when a
contrast is missing at test time than one trained on complete cases?

Two arms, each trained by scripts/benchmarks/segmenter.py on the same training phantoms, steps, crops, flips and
seeds:
- plain: every contrast real;
- robust: `RandomContrastDropout` + `SynthesizeMissing`: in a share --drop of the crops one contrast is dropped and
  filled by volgen's synthesis from the other three (one sample, as the transform writes it).
Synthesis is the slow part on a CPU (seconds per case), so the transforms draw --pool samples per training case and
contrast once (`ContrastDropout` + `SynthesizeMissing`, seeds 0..pool-1), kept in the run folder, and a dropped crop
takes one of them: a pool rather than a fresh draw per crop, which would cost a synthesis per crop.

Each segmenter is scored on the held-out phantoms with every contrast real, and with each --targets contrast missing,
given to it (a) as volgen's posterior mean (the pipeline a user runs: synthesise, then segment) and (b) absent (all
zeros after normalisation). Dice for WT, TC, ET and their mean; mean and sd over the seeds. Everything is kept under
--runs, so the bench resumes.

    python scripts/benchmarks/bench_robustness.py [--seeds 0,1,2] [--steps 500] [--cases 16] [--pool 2]
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

import segmenter as seg
from bench_downstream import segment
from bench_harness import CONTRASTS, brain_of, synthesis
from volgen.augment import ContrastDropout, SynthesizeMissing
from volgen.metrics import dice
from volgen.tasks.models import load_model

ARMS = ("plain", "robust")


def stand_ins(cases: list[dict], samples: int, path: Path) -> Path:
    """{case name: (contrasts, samples, D, H, W)} volgen's syntheses of each contrast from the other three, normalised
    as the segmenter sees them (kept at `path`)."""
    if path.is_file():
        return path
    pool = {}
    for item in tqdm(cases, desc="synthesising stand-ins", mininterval=30):
        case, per_contrast = item["case"], []
        for k, contrast in enumerate(CONTRASTS):
            drawn = []
            for s in range(samples):
                sample = {c: case.images[i].clone() for i, c in enumerate(CONTRASTS)}
                sample = ContrastDropout(CONTRASTS, drop=(contrast,), mode="zero")(sample)
                sample = SynthesizeMissing(CONTRASTS, seed=s, same_each_epoch=True)(sample)
                images = case.images.clone()
                images[k] = torch.where(item["brain"], sample[contrast].float(), case.images[k])
                drawn.append(seg.normalise(images, item["brain"])[k])
            per_contrast.append(torch.stack(drawn))
        pool[item["name"]] = torch.stack(per_contrast)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(pool, path)
    return path


def train_run(run: Path, args, seed: int, pool: Path | None) -> None:
    info = run / "segmenter.json"
    if info.is_file() and json.loads(info.read_text())["steps"] == args.steps:
        return
    argv = ["--train", str(args.train), "--run", str(run), "--steps", str(args.steps), "--seed", str(seed),
            "--subset", str(args.train_cases), "--subset-seed", "0", "--checkpoint-every", "100"]
    if pool is not None:
        argv += ["--pool", str(pool), "--drop", str(args.drop)]
    began = time.perf_counter()
    seg.train(seg.arguments(argv))
    print(f"trained {run.name} in {(time.perf_counter() - began) / 60:.1f} min", flush=True)


def heldout_inputs(cases: list[dict], targets: list[str], model, path: Path) -> dict:
    """{target: [volgen's posterior mean of that contrast per held-out case]} (kept at `path`)."""
    if path.is_file():
        return torch.load(path, weights_only=True)
    means = {}
    for target in targets:
        means[target] = []
        for index, item in enumerate(tqdm(cases, desc=f"synthesising held-out {target}", mininterval=30)):
            case = item["case"]
            mean = synthesis(model, case, target, samples=2, seed=index)[0].image[0, 0].cpu()
            means[target].append(torch.where(torch.from_numpy(brain_of(case)), mean,
                                              case.images[CONTRASTS.index(target)]))
    torch.save(means, path)
    return means


def scores(run: Path, cases: list[dict], means: dict) -> dict:
    """{"all real" | "<target> volgen" | "<target> absent": {WT, TC, ET, mean}} (cached in the run folder)."""
    cached = run / "robustness-dice.json"
    if cached.is_file():
        return json.loads(cached.read_text())
    net = seg.load(run)
    conditions = {"all real": (None, None)}
    for target in means:
        conditions[f"{target} volgen"] = (target, "volgen")
        conditions[f"{target} absent"] = (target, "absent")
    out = {}
    for name, (target, how) in conditions.items():
        per_case = []
        for index, item in enumerate(cases):
            case = item["case"]
            images, present = case.images.clone(), [True] * len(CONTRASTS)
            if target is not None:
                k = CONTRASTS.index(target)
                if how == "absent":
                    present[k] = False
                else:
                    images[k] = means[target][index]
            regions = segment(net, images, item["brain"], present)
            truth = item["target"].numpy() > 0
            per_case.append([dice(regions[r], truth[r]) for r in range(len(seg.REGIONS))])
        result = {r: float(np.mean([d[i] for d in per_case])) for i, r in enumerate(seg.REGIONS)}
        result["mean"] = float(np.mean([result[r] for r in seg.REGIONS]))
        out[name] = result
    cached.write_text(json.dumps(out, indent=1))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", default="phantoms/train", type=Path)
    parser.add_argument("--train-cases", type=int, default=16, help="training phantoms used by both arms")
    parser.add_argument("--heldout", default="phantoms/heldout", type=Path)
    parser.add_argument("--cases", type=int, default=20, help="held-out cases scored")
    parser.add_argument("--targets", default="t1c,t2f", help="contrasts missing at test time")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--pool", type=int, default=2, help="volgen samples per training case and contrast")
    parser.add_argument("--drop", type=float, default=0.5, help="share of the robust arm's crops with a contrast "
                                                                "filled by volgen")
    parser.add_argument("--runs", default="runs/robustness", type=Path)
    parser.add_argument("--out", default="bench_out/robustness.json", type=Path)
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    training = seg.subset(seg.prepared(args.train), args.train_cases, 0)       # the cases segmenter.py trains on
    pool = stand_ins(training, args.pool, args.runs / f"stand-ins-{args.train_cases}x{args.pool}.pt")
    heldout = seg.prepared(args.heldout, max_cases=args.cases)
    targets = args.targets.split(",")
    means = heldout_inputs(heldout, targets, load_model("synthesis", None),
                           args.runs / f"heldout-means-{args.cases}-{'-'.join(targets)}.pt")
    results = {"steps": args.steps, "train_cases": args.train_cases, "pool": args.pool, "drop": args.drop,
               "heldout": str(args.heldout), "cases": len(heldout), "runs": {}}
    for seed in (int(v) for v in args.seeds.split(",")):
        for arm in ARMS:
            run = args.runs / f"seed{seed}-{arm}"
            with torch.enable_grad():
                train_run(run, args, seed, pool if arm == "robust" else None)
            results["runs"][run.name] = {"seed": seed, "arm": arm, **scores(run, heldout, means)}
            print(f"{run.name}: " + ", ".join(f"{k} {v['mean']:.3f}" for k, v in results["runs"][run.name].items()
                                              if isinstance(v, dict)), flush=True)
    results["summary"] = summary(results["runs"])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1))
    print_table(results)
    print(f"wrote {args.out}")


def summary(runs: dict) -> dict:
    """{test condition: {arm: {region: [mean, sd] over the seeds}}}."""
    conditions = [k for k, v in next(iter(runs.values())).items() if isinstance(v, dict)]
    return {name: {arm: {r: [float(np.mean(v)), float(np.std(v))] for r, v in
                         ((r, [run[name][r] for run in runs.values() if run["arm"] == arm])
                          for r in (*seg.REGIONS, "mean")) if v}
                   for arm in ARMS} for name in conditions}


def print_table(results: dict) -> None:
    print(f"\nDice on {results['cases']} held-out phantoms (mean +- sd over seeds), {results['steps']} steps, "
          f"{results['train_cases']} training phantoms")
    print(f"{'test':16} {'arm':7} " + " ".join(f"{r:>13}" for r in (*seg.REGIONS, "mean")))
    for name, row in results["summary"].items():
        for arm in ARMS:
            if row.get(arm):
                print(f"{name:16} {arm:7} " + " ".join(f"{row[arm][k][0]:6.3f}+-{row[arm][k][1]:.3f}"
                                                       for k in (*seg.REGIONS, "mean")))


if __name__ == "__main__":
    main()
