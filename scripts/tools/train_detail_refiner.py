"""Train the 1 mm detail refiner (volgen/modules/detail_refiner.py) on the shipped synthesis module's 1 mm estimates.

Three steps, each resumable:

    python scripts/tools/train_detail_refiner.py data --seed 1300 --cases 20 --out runs/detail-refiner/data
    python scripts/tools/train_detail_refiner.py data --seed 300 --cases 4 --out runs/detail-refiner/val
    python scripts/tools/train_detail_refiner.py train --data runs/detail-refiner/data --run runs/detail-refiner \
        --steps 800 [--resume]
    python scripts/tools/train_detail_refiner.py validate --data runs/detail-refiner/val --run runs/detail-refiner

`data`: fresh 1 mm phantoms (seed 1300 is no other bench's or model's: the module must not have trained on them, or
the refiner learns its training-set errors), and for every contrast as the target the job's posterior mean with the
detail transfer and no refiner, at the CPU defaults, cropped to the brain, with every contrast on the output's [0, 1]
scale (`volgen.tasks.detail.unit_conditions`: what the job hands the refiner) and the brain mask; one .npz per case,
skipped if written. `train`: random 64^3 crops around brain voxels, the target drawn from --targets (t1c, t2f), MSE
in the brain against the noisy truth (its conditional mean is the noiseless one), Adam with warm-up and cosine decay;
the crop of step s is drawn from a generator seeded by s, so a resumed run repeats the uninterrupted one; a
checkpoint every --checkpoint-every steps. `validate` exports the weights with volgen.hub to <run>/model in the
shipped form (float16, int8 rows) and measures that form on validation phantoms (seed 300): PSNR in the brain of the
detail transfer and of the refined estimate, per target; the targets whose mean gain is positive go into the
exported config. Ship it with `cp -r <run>/model volgen/pretrained/volgen-detail-refiner-1mm` and its sha256 in
registry.json.
"""
from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch

from volgen import hub
from volgen.io.contrasts import MRI_CONTRASTS
from volgen.io.volume import Volume
from volgen.metrics import psnr, sharpness
from volgen.modules.detail_refiner import DetailRefiner
from volgen.phantom import PhantomSpec, generate_case
from volgen.tasks.detail import refine_fine, refiner_inputs, unit_conditions
from volgen.tasks.models import load_model
from volgen.tasks.synthesis import synthesize

SPEC = PhantomSpec(spacing=1, pet=None)
CROP, BATCH, MARGIN = 64, 4, 4


def make_data(seed: int, cases: int, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for index in range(cases):
        path = out / f"s{seed}-{index:04d}.npz"
        if path.exists():
            continue
        began = time.perf_counter()
        case = generate_case(seed, index, SPEC)
        brain = case.brain > 0
        found = np.argwhere(brain)
        box = tuple(slice(max(a - MARGIN, 0), b + MARGIN + 1) for a, b in zip(found.min(0), found.max(0)))
        volumes = {c: Volume(case.images[c].astype(np.float32), case.affine, name=f"{case.name}-{c}")
                   for c in MRI_CONTRASTS}
        unit = unit_conditions(volumes)
        arrays = {"images": np.stack([unit[c][box] for c in MRI_CONTRASTS]).astype(np.float16), "brain": brain[box]}
        for target in MRI_CONTRASTS:
            others = {c: v for c, v in volumes.items() if c != target}
            job = synthesize(others, target=target, seed=index, progress=False, refine=False)
            arrays[f"estimate_{target}"] = job.outputs[target].array[box].astype(np.float16)
        np.savez(path, **arrays)
        print(f"{path.name} {arrays['brain'].shape} {time.perf_counter() - began:.0f} s", flush=True)


def load_data(folder: Path) -> list[dict]:
    data = []
    for path in sorted(folder.glob("*.npz")):
        with np.load(path) as z:
            case = {k: z[k] for k in z.files}
        case["brain_voxels"] = np.argwhere(case["brain"])
        case["name"] = path.stem
        data.append(case)
    if not data:
        raise SystemExit(f"{folder}: no .npz cases (run the data step first)")
    return data


def crop(case: dict, target: str, rng: np.random.Generator):
    """One training crop around a random brain voxel: (inputs (5, C, C, C), target one-hot, truth, brain)."""
    shape = np.array(case["brain"].shape)
    centre = case["brain_voxels"][rng.integers(len(case["brain_voxels"]))]
    low = np.clip(centre - CROP // 2, 0, np.maximum(shape - CROP, 0))
    box = tuple(slice(a, a + CROP) for a in low)
    images = case["images"][(slice(None), *box)].astype(np.float32)
    k = MRI_CONTRASTS.index(target)
    conditions = {c: images[i] for i, c in enumerate(MRI_CONTRASTS) if c != target}
    inputs = refiner_inputs(case[f"estimate_{target}"][box].astype(np.float32), conditions, target)
    pad = [(0, 0)] + [(0, CROP - n) for n in inputs.shape[1:]]
    which = np.eye(len(MRI_CONTRASTS), dtype=np.float32)[k]
    return (np.pad(inputs, pad), which, np.pad(images[k], pad[1:]), np.pad(case["brain"][box], pad[1:]))


def batch(data: list[dict], step: int, targets: list[str]):
    rng = np.random.default_rng([step, 7])
    parts = [crop(data[rng.integers(len(data))], targets[rng.integers(len(targets))], rng) for _ in range(BATCH)]
    inputs, which, truth, brain = (torch.from_numpy(np.stack(p)) for p in zip(*parts))
    return inputs, which, truth[:, None], brain[:, None].float()


def train(args) -> None:
    torch.set_flush_denormal(True)         # the zero-initialised layers' tiny weights slowed the CPU 6x
    data = load_data(args.data)
    run = args.run
    checkpoint = run / "checkpoint.pt"
    torch.manual_seed(0)
    refiner = DetailRefiner()
    optimizer = torch.optim.Adam(refiner.parameters(), lr=args.lr)
    start = 0
    if args.resume:
        if not checkpoint.exists():
            raise SystemExit(f"{checkpoint}: --resume but no checkpoint")
        state = torch.load(checkpoint)
        refiner.load_state_dict(state["refiner"])
        optimizer.load_state_dict(state["optimizer"])
        start = state["step"]
    elif checkpoint.exists():
        raise SystemExit(f"{checkpoint}: exists; pass --resume or another --run")
    run.mkdir(parents=True, exist_ok=True)

    def rate(step):
        return args.lr * min(1.0, (step + 1) / 100) * 0.5 * (1 + math.cos(math.pi * step / args.steps))

    log = open(run / "metrics.csv", "a")
    began, ratio = time.perf_counter(), []
    for step in range(start, args.steps):
        inputs, which, truth, brain = batch(data, step, args.targets.split(","))
        for group in optimizer.param_groups:
            group["lr"] = rate(step)
        refined = refiner(inputs, which)
        weight = brain.sum().clamp(min=1)
        loss = ((refined - truth) ** 2 * brain).sum() / weight
        before = ((inputs[:, :1] - truth) ** 2 * brain).sum() / weight
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        ratio.append(loss.item() / max(before.item(), 1e-12))
        log.write(f"{step},{loss.item():.6g},{before.item():.6g}\n")
        if (step + 1) % 50 == 0:
            print(f"step {step + 1}: MSE / the estimate's {np.mean(ratio[-50:]):.3f} "
                  f"({time.perf_counter() - began:.0f} s)", flush=True)
        if (step + 1) % args.checkpoint_every == 0 or step + 1 == args.steps:
            torch.save({"refiner": refiner.state_dict(), "optimizer": optimizer.state_dict(), "step": step + 1,
                        "targets": args.targets.split(",")}, checkpoint)
            log.flush()
    log.close()


def validate(args) -> None:
    """Per target on the validation cases: the detail transfer's PSNR and the refined one's; exports the model with
    the targets whose mean gain is positive."""
    state = torch.load(args.run / "checkpoint.pt")
    trained = DetailRefiner(targets=tuple(state["targets"]))
    trained.load_state_dict(state["refiner"])
    # measured in the form it ships in (float16, large tensors as int8 rows), every trained target on
    hub.save_pretrained(trained, args.run / "model-every-target", dtype=torch.float16, int8=True, overwrite=True)
    refiner = hub.from_pretrained(args.run / "model-every-target", expected_type="detail_refiner")
    gains, rows = {c: [] for c in state["targets"]}, []
    for case in load_data(args.data):
        images = case["images"].astype(np.float32)
        brain = case["brain"]
        for target in state["targets"]:
            k = MRI_CONTRASTS.index(target)
            estimate = case[f"estimate_{target}"].astype(np.float32)
            conditions = {c: images[i] for i, c in enumerate(MRI_CONTRASTS) if c != target}
            refined = refine_fine(refiner, estimate, conditions, target, brain)
            refined = np.where(brain, refined, estimate)
            before, after = (psnr(x, images[k], brain, data_range=1.0) for x in (estimate, refined))
            ratio = [sharpness(x, images[k], brain)["gradient_ratio"] for x in (estimate, refined)]
            gains[target].append(after - before)
            rows.append({"case": case["name"], "target": target, "psnr": before, "refined_psnr": after,
                         "gradient_ratio": ratio[0], "refined_gradient_ratio": ratio[1]})
            print(f"{case['name']} {target}: {before:.2f} -> {after:.2f} dB ({after - before:+.2f}), gradient ratio "
                  f"{ratio[0]:.3f} -> {ratio[1]:.3f}", flush=True)
    chosen = [t for t in state["targets"] if np.mean(gains[t]) > 0]
    for t in state["targets"]:
        print(f"{t}: mean gain {np.mean(gains[t]):+.3f} dB over {len(gains[t])} cases"
              f"{' (refined)' if t in chosen else ' (left to the detail transfer)'}")
    (args.run / "validation.json").write_text(json.dumps({"rows": rows, "chosen": chosen}, indent=1))
    export = DetailRefiner(targets=tuple(chosen))
    export.load_state_dict(trained.state_dict())
    module = load_model("synthesis")
    metadata = {"synthesis_module": module.hub_source["name"],
                "synthesis_module_sha256": module.hub_source["sha256"],
                "trained": f"{state['step']} steps of batch {BATCH} x {CROP}^3 on {args.train_note}",
                "validation": {t: float(np.mean(g)) for t, g in gains.items()}}
    hub.save_pretrained(export, args.run / "model", dtype=torch.float16, int8=True, metadata=metadata, overwrite=True)
    print(f"exported {args.run / 'model'} (targets {', '.join(chosen) or 'none'})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    data = sub.add_parser("data")
    data.add_argument("--seed", type=int, default=1300)
    data.add_argument("--cases", type=int, default=20)
    data.add_argument("--out", type=Path, required=True)
    fit = sub.add_parser("train")
    fit.add_argument("--data", type=Path, required=True)
    fit.add_argument("--run", type=Path, required=True)
    fit.add_argument("--steps", type=int, default=1000)
    fit.add_argument("--lr", type=float, default=1e-3)
    fit.add_argument("--targets", default="t1c,t2f",
                     help="the targets it trains on (with every contrast, t1n's and t2w's near-exact estimates made "
                          "the loss no lower than the estimate's in 300 steps)")
    fit.add_argument("--checkpoint-every", type=int, default=100)
    fit.add_argument("--resume", action="store_true")
    check = sub.add_parser("validate")
    check.add_argument("--data", type=Path, required=True)
    check.add_argument("--run", type=Path, required=True)
    check.add_argument("--train-note", default="20 1 mm phantoms of seed 1300")
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    {"data": lambda: make_data(args.seed, args.cases, args.out), "train": lambda: train(args),
     "validate": lambda: validate(args)}[args.command]()


if __name__ == "__main__":
    main()
