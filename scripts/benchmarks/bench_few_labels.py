"""Few labels: does a segmenter trained on N labelled cases get better when volgen-made labelled cases join them?

For N in --n (default 4, 8, 16) and each of --seeds, the segmenter of scripts/benchmarks/segmenter.py is trained twice
on the same N training phantoms (drawn by the seed), at the same steps and with the same augmentation (random crops,
left-right flips):
- plain: the N cases alone;
- volgen: the N cases, with half of the crops from volgen-made cases instead: healthy brains (the training phantoms'
  healthy twins, unlabelled scans a user has plenty of) with a tumour drawn in by `volgen lesion-mask` and inserted
  into all four contrasts by `volgen inpaint CASE --mask LABELS --mode lesion` (one sample each), its labels as the
  case's seg. The lesion module is volgen's shipped one: trained on phantoms, none of them held out here.
- into (with `--arms ...,into`): the same, but the made cases are the run's own N labelled cases with a second
  tumour inserted beside theirs (the labels: both tumours), for a user with no unlabelled scans. Each is z-scored
  with the statistics of the case it was made from (`--made-scale source`, the default since session 62, chosen on
  validation phantoms by a rule written first; runs end in -srcscale): z-scored on its own, its second tumour lowers
  its untouched tissue's z on T2 and FLAIR against the real cases'.
- mixed (with `--arms ...,mixed`): half of the made cases of each kind (the first --made / 2 into cases, then as
  many healthy ones): into cases alone cost the whole tumour at N = 16, healthy brains with a tumour show the
  segmenter more tissue to leave alone.
- ideal (with `--arms ...,ideal`): in place of made cases, --made other real labelled training phantoms (those not
  among the run's N, in order): perfect made cases, the most any made case could give under this protocol.
`--made K` and `--made-share S` change how many made cases there are and the share of crops they give (24 and a
half by default). With `--made-crops tumour` the made cases give only tumour-centred crops (half of them), and every
brain-centred crop, the healthy tissue the segmenter must leave alone, comes from the real cases.
Each segmenter is scored on the held-out phantoms with every contrast real: Dice for WT, TC, ET and their mean. The
table gives mean and sd over the seeds per arm and N, and each arm's gain over plain seed by seed with its standard
error: one run's mean Dice moves with its seed by as much as the gain (held out, N = 8: into seeds' sd 0.058), so
compare arms over many seeds (about ten to resolve 0.05) and choose nothing on one run. Runs, made cases and scores
are kept under --runs, so the bench resumes where it stopped (a run resumes from its last checkpoint) and seeds can
be added across sessions.

    python scripts/benchmarks/bench_few_labels.py [--n 4,8,16] [--seeds 0,1,2] [--steps 1000] [--made 24]
"""
from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import segmenter as seg
from volgen.api import lesion_mask, run_lesion_insertion
from volgen.io.contrasts import find_cases
from volgen.metrics import dice
from volgen.phantom.case import write_twin_case

ARMS = ("plain", "volgen", "into", "mixed", "ideal")
GAIN_KEYS = {"volgen": "gain", "into": "gain_into", "mixed": "gain_mixed", "ideal": "gain_ideal"}


def make_cases(train_root: Path, folder: Path, count: int, model: str, into: list[str] | None = None,
               mass_effect: float = 0.0) -> Path:
    """`count` volgen-made labelled cases in `folder` (kept: made once, reused): tumours inserted into the training
    phantoms' healthy twins, or with `into` (case names) into those labelled cases beside their own tumour. With
    `mass_effect` each pushes the tissue around it aside by a size drawn uniformly in [0, mass_effect] mm."""
    folder.mkdir(parents=True, exist_ok=True)
    sources = [c for c in find_cases(train_root) if into is None or c.name in into]
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(count):
            out = folder / f"made-{i:03d}"
            if (out / f"made-{i:03d}.json").is_file():
                continue
            source = sources[i % len(sources)]
            case = source.paths["t1n"].parent
            if into is None:
                case = write_twin_case(case, Path(tmp) / f"twin-{i:03d}")
            labels = Path(tmp) / f"labels-{i:03d}.nii.gz"
            lesion_mask(case, out=labels, seed=1000 + i)
            shutil.rmtree(out, ignore_errors=True)
            push = float(np.random.default_rng([i, 17]).uniform(0, mass_effect)) if mass_effect else 0.0
            run_lesion_insertion(case, labels, out=out, model=model, estimate="sample", samples=1, seed=i,
                                 progress=False, mass_effect_mm=push)
            print(f"made {out.name} ({'a second tumour in' if into else 'healthy twin of'} {source.name})", flush=True)
    return folder


def mixed_cases(folder: Path, halves: list[Path], count: int) -> Path:
    """`folder` of links: the first count / 2 cases of each of `halves` (made-000.. in that order), so a run reads
    the mixture through one --extra folder."""
    folder.mkdir(parents=True, exist_ok=True)
    sources = [case for half in halves for case in sorted(half.glob("made-*"))[:count // len(halves)]]
    for i, source in enumerate(sources):
        link = folder / f"made-{i:03d}"
        if not link.exists():
            link.symlink_to(source.resolve(), target_is_directory=True)
    return folder


def ideal_cases(train_root: Path, folder: Path, taken: list[str], count: int) -> Path:
    """`folder` of links to `count` labelled training phantoms not in `taken` (in order): real cases where the made
    ones would be."""
    folder.mkdir(parents=True, exist_ok=True)
    others = [c for c in find_cases(train_root) if c.name not in taken and "seg" in c.paths][:count]
    for i, case in enumerate(others):
        link = folder / f"made-{i:03d}"
        if not link.exists():
            link.symlink_to(case.paths["seg"].parent.resolve(), target_is_directory=True)
    return folder


def heldout_dice(run: Path, heldout: list[dict], scored_on: str = "heldout") -> dict:
    """Dice per region on the held-out cases, every contrast real (cached in the run folder per scored folder:
    validation phantoms choose the schedule, held-out ones give the figures)."""
    cached = run / ("heldout-dice.json" if scored_on == "heldout" else f"dice-{scored_on}.json")
    if cached.is_file():
        return json.loads(cached.read_text())
    net = seg.load(run)
    scores = []
    for item in heldout:
        x = item["image"][None]
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            regions = (net(x)[0].float() > 0).numpy()
        truth = item["target"].numpy() > 0
        scores.append([dice(regions[r], truth[r]) for r in range(len(seg.REGIONS))])
    result = {r: float(np.mean([s[i] for s in scores])) for i, r in enumerate(seg.REGIONS)}
    result["mean"] = float(np.mean([result[r] for r in seg.REGIONS]))
    cached.write_text(json.dumps(result, indent=1))
    return result


def train_run(run: Path, args, n: int, seed: int, extra: Path | None, scale: str = "own") -> None:
    info = run / "segmenter.json"
    if info.is_file() and json.loads(info.read_text())["steps"] == args.steps:
        return
    argv = ["--train", str(args.train), "--run", str(run), "--steps", str(args.steps), "--subset", str(n),
            "--subset-seed", str(seed), "--seed", str(seed), "--checkpoint-every", "100"]
    if extra is not None:
        # the first --made of the folder's cases: a folder made for a larger count is shared with smaller ones
        argv += ["--extra", str(extra), "--extra-cases", str(args.made), "--extra-crops", args.made_crops,
                 "--extra-fraction", str(args.made_share), "--extra-scale", scale]
    began = time.perf_counter()
    seg.train(seg.arguments(argv))
    print(f"trained {run.name} in {(time.perf_counter() - began) / 60:.1f} min", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", default="phantoms/train", type=Path)
    parser.add_argument("--heldout", default="phantoms/heldout", type=Path)
    parser.add_argument("--cases", type=int, default=20, help="held-out cases scored")
    parser.add_argument("--n", default="4,8,16")
    parser.add_argument("--seeds", default="0,1,2")
    # 1000: chosen on validation phantoms (N = 8, seed 1): at 500 the arms with made cases sometimes had not converged
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--made", type=int, default=24, help="volgen-made cases (runs with another count end in "
                                                             "-madeK)")
    parser.add_argument("--model", default="volgen-vcm-lesion-2mm", help="the lesion module")
    parser.add_argument("--arms", default="plain,into,volgen", help="plain, volgen (tumours in healthy brains), into "
                                                               "(a second tumour in the run's own labelled cases), "
                                                               "mixed (half of each), ideal (other real cases)")
    parser.add_argument("--mass-effect", type=float, default=0.0,
                        help="made tumours push the tissue aside by up to this many mm (drawn per case; runs and "
                             "made folders end in -massMM)")
    parser.add_argument("--made-share", type=float, default=0.5,
                        help="share of the crops from made cases (runs with another share end in -shareS)")
    parser.add_argument("--made-crops", choices=("any", "tumour"), default="any",
                        help="which crops may come from made cases: any, or only the tumour-centred half (runs "
                             "with made cases then end in -tumourcrops)")
    parser.add_argument("--made-scale", choices=("own", "source"), default="source",
                        help="z-score each into case as the labelled case it was made from (runs end in "
                             "-srcscale) or on its own (segmenter.py --extra-scale; before session 62)")
    parser.add_argument("--runs", type=Path, help="where runs and made cases are kept (default "
                                                  "runs/few-labels-STEPS-grain: made cases are cached, so the "
                                                  "lesion job's noise grain, session 30, needed a new folder)")
    parser.add_argument("--out", default="bench_out/few-labels.json", type=Path)
    args = parser.parse_args()
    arms = args.arms.split(",")
    args.runs = args.runs or Path(f"runs/few-labels-{args.steps}-grain")
    pushed = f"-mass{args.mass_effect:g}" if args.mass_effect else ""
    made = make_cases(args.train, args.runs / f"made{pushed}", args.made, args.model, mass_effect=args.mass_effect) \
        if "volgen" in arms or "mixed" in arms else None
    heldout = seg.prepared(args.heldout, max_cases=args.cases)
    results = {"steps": args.steps, "made_cases": args.made, "made_share": args.made_share,
               "mass_effect_mm": args.mass_effect,
               "made_crops": args.made_crops, "made_scale": args.made_scale, "model": args.model,
               "heldout": str(args.heldout), "cases": len(heldout), "runs": {}}
    # runs with made cases name what differs from the defaults; the made cases are shared (made-000.. are the same)
    # (but -srcscale, named though it is now the default: the into runs before it, on their own scale, keep their names)
    suffix = "-tumourcrops" if args.made_crops == "tumour" else ""
    suffix += f"-made{args.made}" if args.made != parser.get_default("made") else ""
    suffix += f"-share{args.made_share:g}" if args.made_share != parser.get_default("made_share") else ""
    suffix += pushed
    # the training cases' names in the segmenter's order, read once: the arms built from a run's own N draw them
    train_names = [c["name"] for c in seg.prepared(args.train)] if {"into", "mixed", "ideal"} & set(arms) else []
    for n in (int(v) for v in args.n.split(",")):
        for seed in (int(v) for v in args.seeds.split(",")):
            names = seg.subset(train_names, n, seed)
            for arm in arms:
                run = args.runs / f"n{n}-seed{seed}-{arm}{suffix if arm != 'plain' else ''}"
                if arm == "into" and args.made_scale == "source":
                    run = run.with_name(run.name + "-srcscale")
                extra = {"plain": None, "volgen": made}.get(arm)
                if arm in ("into", "mixed"):    # made once per N and seed, whichever crops they give
                    extra = make_cases(args.train, args.runs / f"n{n}-seed{seed}-into" / f"made{pushed}",
                                       args.made, args.model, into=names, mass_effect=args.mass_effect)
                if arm == "mixed":
                    extra = mixed_cases(run.with_name(run.name + "-made"), [extra, made], args.made)
                if arm == "ideal":
                    extra = ideal_cases(args.train, run.with_name(run.name + "-cases"), names, args.made)
                train_run(run, args, n, seed, extra, args.made_scale if arm == "into" else "own")
                results["runs"][run.name] = {"n": n, "seed": seed, "arm": arm,
                                             **heldout_dice(run, heldout, args.heldout.name)}
                print(f"{run.name}: " + ", ".join(f"{k} {v:.3f}" for k, v in results["runs"][run.name].items()
                                                  if isinstance(v, float)), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    results["summary"] = summary(results["runs"])
    args.out.write_text(json.dumps(results, indent=1))
    print_table(results)
    print(f"wrote {args.out}")


def summary(runs: dict) -> dict:
    out = {}
    for n in sorted({r["n"] for r in runs.values()}):
        row = {}
        for arm in ARMS:
            values = {k: [r[k] for r in runs.values() if r["n"] == n and r["arm"] == arm] for k in
                      (*seg.REGIONS, "mean")}
            row[arm] = {k: [float(np.mean(v)), float(np.std(v))] for k, v in values.items() if v}
        for arm, key in GAIN_KEYS.items():
            if row["plain"] and row[arm]:
                row[key] = row[arm]["mean"][0] - row["plain"]["mean"][0]
                paired = paired_gains(runs, n, arm)
                row[key + "_per_seed"] = paired
                if len(paired) > 1:
                    row[key + "_se"] = float(np.std(list(paired.values()), ddof=1) / np.sqrt(len(paired)))
        out[str(n)] = row
    return out


def paired_gains(runs: dict, n: int, arm: str) -> dict:
    """{seed: the arm's mean Dice minus plain's} over the seeds that have both runs. One run's mean Dice moves by as
    much as the gain with its seed, and by 0.09 with a tenth of a per cent change in its made cases (session 61): the
    seeds' paired gains give the gain's standard error."""
    def by_seed(name):
        return {r["seed"]: r["mean"] for r in runs.values() if r["n"] == n and r["arm"] == name}
    plain, other = by_seed("plain"), by_seed(arm)
    return {str(seed): other[seed] - plain[seed] for seed in sorted(set(plain) & set(other))}


def print_table(results: dict) -> None:
    print(f"\nDice on {results['cases']} held-out phantoms (mean +- sd over seeds), {results['steps']} steps each")
    print(f"{'N':>3} {'arm':7} " + " ".join(f"{r:>13}" for r in (*seg.REGIONS, "mean")))
    for n, row in results["summary"].items():
        for arm in ARMS:
            if row.get(arm):
                print(f"{n:>3} {arm:7} " + " ".join(f"{row[arm][k][0]:6.3f}+-{row[arm][k][1]:.3f}"
                                                    for k in (*seg.REGIONS, "mean")))
        for arm, key in GAIN_KEYS.items():
            if key in row:
                sd = max(row["plain"]["mean"][1], row[arm]["mean"][1])
                seeds = " ".join(f"{v:+.3f}" for v in row.get(key + "_per_seed", {}).values())
                error = f", standard error {row[key + '_se']:.3f}" if key + "_se" in row else ""
                print(f"    {arm} - plain (mean Dice): {row[key]:+.3f} (seeds' sd {sd:.3f}; per seed {seeds}{error})")
    eight, sixteen = results["summary"].get("8", {}), results["summary"].get("16", {})
    for arm, key in GAIN_KEYS.items():
        if key in eight:
            sd = max(eight["plain"]["mean"][1], eight[arm]["mean"][1])
            met = eight[key] >= 0.05 and eight[key] > sd
            print(f"target N=8 ({arm}): gain >= 0.05 and > one sd ({sd:.3f}): {eight[key]:+.3f} "
                  f"({'met' if met else 'MISSED'})")
        if key in sixteen:
            print(f"target N=16 ({arm}): no loss: {sixteen[key]:+.3f} ({'met' if sixteen[key] >= 0 else 'MISSED'})")


if __name__ == "__main__":
    main()
