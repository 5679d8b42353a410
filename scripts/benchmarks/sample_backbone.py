"""Unconditional samples of a backbone, one per contrast, as the montage its card shows (does it draw a brain?).

    python scripts/benchmarks/sample_backbone.py volgen-latent-brain-2mm [--steps 25] [--out PNG] [--reference phantoms/val]
A backbone alone knows nothing of a case, so each row is one random draw of that contrast on the 2 mm grid; the
sampler is the backbone's default (DDIM for a VP schedule, Euler for a flow). With --reference, each sample's head
(voxels above the background) is scored by its Dice with where the reference cases' heads usually are (in at least
half of them): a number for "does it draw a whole brain where a brain sits", beside the picture. It also prints how
far the backbone's x0 prediction from pure noise (t = T-1, one network call) is from the reference cases' mean image
inside that head (RMSE): an x0-network trained with MSE predicts the training population's mean there, so a large
distance says it has not learned where the anatomy sits. The reference cases' own RMSE to their mean is the scale.
"""
from __future__ import annotations

import argparse

import numpy as np
import torch

from volgen import hub
from volgen.io.montage import save_montage
from volgen.io.volume import Volume
from volgen.metrics import dice
from volgen.tasks import generate
from volgen.training.config import DataConfig
from volgen.training.data import load_cases

SHAPE = (96, 112, 96)             # the 2 mm grid every phantom fits
HEAD_LEVEL = -0.75                # on [-1, 1] the background is exactly -1; the head lies well above this


def reference(root: str, contrasts) -> tuple[np.ndarray, torch.Tensor]:
    """The usual head, (D, H, W) bool: the voxels inside the head in at least half of the cases under `root`, and the
    cases' mean image (C, D, H, W). Prints the cases' own mean Dice with that head (what a sample that draws a real
    head scores) and their own RMSE to the mean image inside it, per contrast."""
    cases = load_cases(DataConfig(root=root, contrasts=list(contrasts)), multiple=16)
    heads = torch.stack([(case.images > HEAD_LEVEL).any(0) for case in cases])
    inside = (heads.float().mean(0) >= 0.5).numpy()
    if tuple(inside.shape) != SHAPE:
        raise SystemExit(f"{root}: cases on a {tuple(inside.shape)} grid, not the 2 mm {SHAPE} one")
    images = torch.stack([case.images for case in cases])
    mean = images.mean(0)
    spread = ", ".join(f"{c} {_rmse(images[:, i], mean[i], inside):.3f}" for i, c in enumerate(contrasts))
    print(f"{root}: its {len(cases)} cases' own head Dice with their usual head "
          f"{sum(dice(h.numpy(), inside) for h in heads) / len(heads):.3f}; their RMSE to their mean image: {spread}")
    return inside, mean


def _rmse(images: torch.Tensor, mean: torch.Tensor, inside: np.ndarray) -> float:
    """Root mean square of images - mean over the voxels `inside` (images: (..., D, H, W), pooled over the rest)."""
    mask = torch.from_numpy(inside)
    return float((images - mean)[..., mask].pow(2).mean().sqrt())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("backbone", help="a registered name or a model folder")
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", help="PNG path (default: beside the shipped model, <name>-samples.png)")
    parser.add_argument("--reference", help="a case folder (e.g. phantoms/val): print each sample's head Dice")
    args = parser.parse_args()
    backbone = hub.from_pretrained(args.backbone, expected_type="backbone").eval()
    head, mean = reference(args.reference, backbone.config.contrasts) if args.reference else (None, None)
    out = args.out or hub.PRETRAINED_DIR / args.backbone / f"{args.backbone}-samples.png"
    schedule = backbone.denoiser.schedule
    noisiest = schedule.timesteps(schedule.num_train_timesteps)[:1]       # one network call from pure noise
    rows = {}
    for contrast in backbone.config.contrasts:
        est = generate(backbone, (1, *SHAPE), contrast=contrast, steps=args.steps, seed=args.seed,
                       estimate="sample", progress=True)
        sample = est.image[0, 0].numpy()
        rows[f"{contrast} sample"] = Volume(((sample + 1) / 2).clip(0, 1).astype(np.float32),
                                            np.diag([2.0, 2.0, 2.0, 1.0]))
        if head is not None:
            from_noise = generate(backbone, (1, *SHAPE), contrast=contrast, steps=noisiest, seed=args.seed).image[0, 0]
            index = backbone.config.contrasts.index(contrast)
            print(f"{contrast}: head Dice with {args.reference}'s usual head {dice(sample > HEAD_LEVEL, head):.3f}; "
                  f"x0 from pure noise vs their mean image: RMSE {_rmse(from_noise, mean[index], head):.3f}")
    save_montage(rows, out, overwrite=True, title=f"{args.backbone}: unconditional samples, {args.steps} steps")
    print(f"wrote {out}")


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    main()
