"""Unconditional samples of a backbone, one per contrast, as the montage its card shows (does it draw a brain?).

    python scripts/sample_backbone.py volgen-latent-brain-2mm [--steps 25] [--out PNG]
A backbone alone knows nothing of a case, so each row is one random draw of that contrast on the 2 mm grid; the
sampler is the backbone's default (DDIM for a VP schedule, Euler for a flow).
"""
from __future__ import annotations

import argparse

import numpy as np
import torch

from volgen import hub
from volgen.io.montage import save_montage
from volgen.io.volume import Volume
from volgen.tasks import generate

SHAPE = (96, 112, 96)             # the 2 mm grid every phantom fits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("backbone", help="a registered name or a model folder")
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", help="PNG path (default: beside the shipped model, <name>-samples.png)")
    args = parser.parse_args()
    backbone = hub.from_pretrained(args.backbone, expected_type="backbone").eval()
    out = args.out or hub.PRETRAINED_DIR / args.backbone / f"{args.backbone}-samples.png"
    rows = {}
    for contrast in backbone.config.contrasts:
        est = generate(backbone, (1, *SHAPE), contrast=contrast, steps=args.steps, seed=args.seed,
                       estimate="sample", progress=True)
        image = ((est.image[0, 0].numpy() + 1) / 2).clip(0, 1).astype(np.float32)
        rows[f"{contrast} sample"] = Volume(image, np.diag([2.0, 2.0, 2.0, 1.0]))
    save_montage(rows, out, overwrite=True, title=f"{args.backbone}: unconditional samples, {args.steps} steps")
    print(f"wrote {out}")


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    main()
