"""The downstream bench's tumour segmenter: a MONAI SegResNet with sigmoid outputs for the BraTS regions (whole tumour,
tumour core, enhancing tumour), trained with a Dice loss on random crops of complete training phantoms, on the model
grid (2 mm, RAS, intensities z-normalised per contrast inside the brain: an absent contrast is then all zeros).

Training checkpoints every `--checkpoint-every` steps into its run folder and resumes from the newest checkpoint with
the same crops the uninterrupted run would have drawn (each step's generator is seeded by the step), so a long run is
chained across sessions:

    python scripts/benchmarks/segmenter.py --train phantoms/train --run runs/segmenter --steps 3000

Few labels (scripts/benchmarks/bench_few_labels.py): `--subset N --subset-seed S` trains on N of the cases, and
`--extra FOLDER` mixes made cases into the batches (`--extra-fraction` of the crops). Missing-contrast robustness
(scripts/benchmarks/bench_robustness.py): `--pool FILE` gives a share `--drop` of the crops one contrast synthesised by
volgen from the other three. `--without CONTRAST` trains with that contrast absent (all zeros) in every crop: what the
other three carry of the tumour, the downstream bench's row beside the syntheses of that contrast.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from monai.losses import DiceLoss
from monai.networks.nets import SegResNet
from safetensors.torch import load_file, save_file
from scipy import ndimage
from tqdm import tqdm

from volgen.io.contrasts import MRI_CONTRASTS
from volgen.training.config import DataConfig
from volgen.training.data import load_cases

REGIONS = ("WT", "TC", "ET")          # BraTS regions: labels {1, 2, 3}, {1, 3}, {3}
CROP = 64


def regions(seg: torch.Tensor) -> torch.Tensor:
    """(3, ...) float: whole tumour, tumour core, enhancing tumour of a BraTS label map (1 NCR, 2 ED, 3 ET)."""
    return torch.stack([seg > 0, (seg == 1) | (seg == 3), seg == 3]).float()


def normalise(images: torch.Tensor, brain: torch.Tensor, present=None, reference=None) -> torch.Tensor:
    """(C, ...) z-scored per contrast inside the brain, zero outside it; contrasts not `present` are all zeros. With
    `reference` (images, brain) of another scan on the same intensity scale, with that scan's brain mean and sd."""
    ref_images, ref_brain = reference if reference is not None else (images, brain)
    out = torch.zeros_like(images)
    for c in range(images.shape[0]):
        if present is not None and not present[c]:
            continue
        values = ref_images[c][ref_brain]
        out[c] = torch.where(brain, (images[c] - values.mean()) / values.std().clamp_min(1e-6), 0.0)
    return out


def build() -> torch.nn.Module:
    return SegResNet(spatial_dims=3, in_channels=len(MRI_CONTRASTS), out_channels=len(REGIONS), init_filters=16,
                     blocks_down=(1, 2, 2, 4), blocks_up=(1, 1, 1))


class Ensemble(torch.nn.Module):
    """Segmenters trained alike, their sigmoid probabilities averaged; returns the logit of the mean, so a caller
    thresholds it at 0 as it does one segmenter's output. One segmenter's draw moves the downstream figures by as much
    as a target's margin (README, Does it help my segmenter?): an average of draws is steadier."""

    def __init__(self, nets):
        super().__init__()
        self.nets = torch.nn.ModuleList(nets)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = torch.stack([torch.sigmoid(net(x).float()) for net in self.nets]).mean(0)
        return torch.logit(mean, eps=1e-6)


def load(run) -> torch.nn.Module:
    """A trained run folder, or several comma-separated: their ensemble."""
    nets = []
    for folder in str(run).split(","):
        net = build()
        net.load_state_dict(load_file(str(Path(folder) / "segmenter.safetensors")))
        nets.append(net.eval())
    return nets[0] if len(nets) == 1 else Ensemble(nets).eval()


def crop_batch(cases, batch: int, gen: torch.Generator, extra=(), extra_fraction: float = 0.0, drop: float = 0.0,
               extra_crops: str = "any"):
    """Random CROP^3 windows, half centred on a tumour voxel, half on a brain voxel, mirrored left-right at random;
    each from an `extra` case (made ones) with probability `extra_fraction` (with `extra_crops` "tumour": only the
    tumour-centred ones, so that the brain-centred crops, the healthy tissue a segmenter must leave alone, all come
    from the real cases). With probability `drop`, one contrast of a crop from a case with a "pool" (synthesised
    stand-ins per contrast, bench_robustness.py) is replaced by one of its stand-ins."""
    xs, ys = [], []
    for _ in range(batch):
        if extra_crops == "tumour":
            on_tumour = bool(torch.rand(1, generator=gen) < 0.5)
            source = extra if extra and on_tumour and torch.rand(1, generator=gen) < extra_fraction else cases
        else:
            source = extra if extra and torch.rand(1, generator=gen) < extra_fraction else cases
        case = source[int(torch.randint(len(source), (1,), generator=gen))]
        tumour = case["target"][0] > 0
        if extra_crops != "tumour":
            on_tumour = bool(torch.rand(1, generator=gen) < 0.5)
        where = tumour if on_tumour and tumour.any() else case["brain"]
        voxels = where.nonzero()
        centre = voxels[int(torch.randint(len(voxels), (1,), generator=gen))]
        shape = case["image"].shape[1:]
        start = [int(min(max(int(c) - CROP // 2, 0), s - CROP)) for c, s in zip(centre, shape)]
        window = tuple(slice(a, a + CROP) for a in start)
        x, y = case["image"][(slice(None), *window)], case["target"][(slice(None), *window)]
        if "pool" in case and torch.rand(1, generator=gen) < drop:
            k = int(torch.randint(len(MRI_CONTRASTS), (1,), generator=gen))
            stand_ins = case["pool"][k]
            x = x.clone()
            x[k] = stand_ins[int(torch.randint(len(stand_ins), (1,), generator=gen))][window]
        if torch.rand(1, generator=gen) < 0.5:
            x, y = x.flip(1), y.flip(1)
        xs.append(x)
        ys.append(y)
    return torch.stack(xs), torch.stack(ys)


def prepared(root, max_cases=None) -> list[dict]:
    """The labelled cases under `root` (every contrast and a seg) on the model grid, normalised."""
    cases = load_cases(DataConfig(root=str(root), contrasts=list(MRI_CONTRASTS), max_cases=max_cases), multiple=16)
    out = []
    for c in (c for c in cases if c.seg is not None):
        brain = c.brain if c.brain is not None else head(c.images)
        out.append({"name": c.name, "image": normalise(c.images, brain), "target": regions(c.seg[None])[:, 0],
                    "brain": brain, "case": c})
    return out


def on_source_scale(made: list[dict], sources: list[dict], folder: Path) -> list[dict]:
    """Made cases z-scored as the scans they were made from, not on their own. A second tumour raises the brain's
    mean and spread on T2 and FLAIR, so a made case z-scored on its own shows its untouched tissue darker than a real
    case would (FLAIR -0.06 sd on average over 24 into cases, session 62), and a segmenter trained on half made crops
    then meets real cases a little brighter than it learnt healthy tissue to be. Each made case names its source in
    its JSON (`case`); its images are mapped onto the source's model scale by a line fitted per contrast on the brain
    voxels both share (more than 3 voxels from any label the source lacks: the job changes only those within 2 mm), then
    normalised with the source's brain mean and sd."""
    by_name = {s["name"]: s for s in sources}
    out = []
    for case in made:
        record = folder / case["name"] / f"{case['name']}.json"
        source_name = json.loads(record.read_text())["case"] if record.is_file() else None
        if source_name not in by_name:
            raise SystemExit(f"{record}: no source case among the training cases ({source_name}); "
                             "--extra-scale source needs cases made from them")
        source = by_name[source_name]
        images, source_images = case["case"].images, source["case"].images
        if images.shape != source_images.shape:
            raise SystemExit(f"{folder / case['name']}: grid {tuple(images.shape[1:])} differs from its source "
                             f"{source_name}'s {tuple(source_images.shape[1:])}")
        added = (case["case"].seg > 0) & (source["case"].seg == 0)
        near = ndimage.binary_dilation(added.numpy(), iterations=3)
        shared = torch.from_numpy(~near) & case["brain"] & source["brain"]
        mapped = images.clone()
        for c in range(images.shape[0]):
            x, y = images[c][shared].double().numpy(), source_images[c][shared].double().numpy()
            slope, intercept = np.polyfit(x, y, 1)
            mapped[c] = images[c] * float(slope) + float(intercept)
        image = normalise(mapped, case["brain"], reference=(source_images, source["brain"]))
        out.append({**case, "image": image})
    return out


def head(images: torch.Tensor) -> torch.Tensor:
    """A case without a brain mask file: the voxels where any contrast differs from its background, the value most
    voxels share (not the minimum, which one dark voxel would move)."""
    background = images.flatten(1).mode(1).values
    return (images != background.view(-1, *[1] * (images.dim() - 1))).any(0)


def without(images: torch.Tensor, contrast: str) -> torch.Tensor:
    """`images` (C, ...) normalised, with `contrast` absent: all zeros, as `normalise` leaves a contrast not present."""
    out = images.clone()
    out[MRI_CONTRASTS.index(contrast)] = 0.0
    return out


def subset(cases: list, n: int | None, seed: int) -> list:
    """`n` of the cases drawn without replacement by `seed` (all of them when n is None)."""
    if not n:
        return cases
    order = np.random.default_rng(seed).permutation(len(cases))[:n]
    return [cases[i] for i in sorted(order)]


def train(args) -> None:
    run = Path(args.run)
    (run / "checkpoints").mkdir(parents=True, exist_ok=True)
    torch.manual_seed(args.seed)
    net = build()
    optimizer = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=1e-5)
    start = 0
    found = sorted((run / "checkpoints").glob("step-*.safetensors"))
    if found:
        state = load_file(str(found[-1]))
        net.load_state_dict({k[4:]: v for k, v in state.items() if k.startswith("net.")})
        # checkpoints written before session 31 hold the learning rate as a numpy scalar: allowed, they are our own
        with torch.serialization.safe_globals([np._core.multiarray.scalar, np.dtype, type(np.dtype(np.float64))]):
            optimizer.load_state_dict(torch.load(found[-1].with_suffix(".opt"), weights_only=True))
        start = int(found[-1].stem.split("-")[1])
    everything = prepared(args.train)
    cases = subset(everything, args.subset, args.subset_seed)
    if args.without:
        cases = [{**c, "image": without(c["image"], args.without)} for c in cases]
    if args.pool:
        pool = torch.load(args.pool, weights_only=True)             # {case name: (contrasts, samples, D, H, W)}
        cases = [{**c, "pool": pool[c["name"]]} if c["name"] in pool else c for c in cases]
    extra = prepared(args.extra, max_cases=args.extra_cases) if args.extra else []
    if extra and args.extra_scale == "source":
        extra = on_source_scale(extra, everything, Path(args.extra))
    loss_fn = DiceLoss(sigmoid=True, batch=True)
    log = (run / "metrics.csv").open("a")
    if start == 0:
        log.write("step,loss,seconds\n")
    began = time.perf_counter()
    net.train()
    for step in tqdm(range(start, args.steps), initial=start, total=args.steps, desc="segmenter", mininterval=30):
        gen = torch.Generator().manual_seed(args.seed * 1_000_003 + step)
        x, y = crop_batch(cases, args.batch, gen, extra, args.extra_fraction, args.drop, args.extra_crops)
        for group in optimizer.param_groups:        # cosine decay over the run
            # a float, not a numpy scalar: the .opt must load with weights_only
            group["lr"] = float(args.lr * 0.5 * (1 + np.cos(np.pi * step / args.steps)))
        optimizer.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16):
            out = net(x)
        loss = loss_fn(out.float(), y)
        loss.backward()
        optimizer.step()
        if (step + 1) % 20 == 0:
            log.write(f"{step + 1},{loss.item():.5f},{time.perf_counter() - began:.1f}\n")
            log.flush()
        if (step + 1) % args.checkpoint_every == 0 or step + 1 == args.steps:
            path = run / "checkpoints" / f"step-{step + 1:06d}.safetensors"
            save_file({f"net.{k}": v.contiguous() for k, v in net.state_dict().items()}, str(path))
            torch.save(optimizer.state_dict(), path.with_suffix(".opt"))
            for old in sorted((run / "checkpoints").glob("step-*.safetensors"))[:-2]:
                old.unlink()
                old.with_suffix(".opt").unlink(missing_ok=True)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(run / "segmenter.safetensors"))
    (run / "segmenter.json").write_text(json.dumps({"steps": args.steps, "train": str(args.train), "crop": CROP,
                                                    "batch": args.batch, "lr": args.lr, "seed": args.seed,
                                                    "cases": [c["name"] for c in cases],
                                                    "extra": str(args.extra) if args.extra else None,
                                                    "extra_cases": len(extra),
                                                    "extra_fraction": args.extra_fraction if extra else 0.0,
                                                    "extra_crops": args.extra_crops if extra else None,
                                                    "extra_scale": args.extra_scale if extra else None,
                                                    "pool": str(args.pool) if args.pool else None,
                                                    "drop": args.drop if args.pool else 0.0,
                                                    "without": args.without},
                                                   indent=1))


def arguments(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", default="phantoms/train", help="labelled training cases (four contrasts, a seg)")
    parser.add_argument("--subset", type=int, help="train on this many of them (few labels)")
    parser.add_argument("--subset-seed", type=int, default=0, help="which ones")
    parser.add_argument("--extra", type=Path, help="made cases (e.g. volgen-inserted tumours) mixed into the batches")
    parser.add_argument("--extra-cases", type=int, help="only the first K cases of --extra (default: all)")
    parser.add_argument("--extra-fraction", type=float, default=0.5, help="share of crops from --extra")
    parser.add_argument("--extra-crops", choices=("any", "tumour"), default="any",
                        help="which crops may come from --extra: any, or only the tumour-centred half")
    parser.add_argument("--extra-scale", choices=("own", "source"), default="own",
                        help="z-score each --extra case on its own, or with the statistics of the training case it "
                             "was made from (named in its JSON)")
    parser.add_argument("--pool", type=Path, help="synthesised stand-ins per case and contrast (bench_robustness.py)")
    parser.add_argument("--drop", type=float, default=0.5, help="share of crops with one contrast from --pool")
    parser.add_argument("--without", choices=MRI_CONTRASTS, help="train with this contrast absent in every crop")
    parser.add_argument("--run", default="runs/segmenter")
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--checkpoint-every", type=int, default=100)
    parser.add_argument("--no-bf16", dest="bf16", action="store_false", help="fp32 (a CPU without native bf16)")
    return parser.parse_args(argv)


def main() -> None:
    train(arguments())


if __name__ == "__main__":
    main()
