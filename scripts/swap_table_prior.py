"""Replace a trained synthesis VCM's regression prior by the per-voxel conditional-mean table, fitted on the
training cases, and save the result (how the shipped volgen-vcm-synthesis-2mm was made from its training run).

    python scripts/swap_table_prior.py runs/vcm-synthesis/model OUT_FOLDER [--train phantoms/train]
Measure the result with scripts/bench_quality.py --vcm OUT_FOLDER before shipping it.
"""
from __future__ import annotations

import argparse

import torch

from volgen import hub
from volgen.modules.table_prior import TablePrior
from volgen.training.config import DataConfig
from volgen.training.data import load_cases


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="a synthesis VCM (folder or registered name)")
    parser.add_argument("out")
    parser.add_argument("--train", default="phantoms/train")
    parser.add_argument("--bins", type=int, default=24)
    args = parser.parse_args()
    vcm = hub.from_pretrained(args.model, expected_type="vcm")
    if vcm.prior is None or vcm.config.prior not in ("regression", "table"):
        raise SystemExit(f"{args.model}: not a synthesis VCM with a per-voxel prior")
    cases = load_cases(DataConfig(root=args.train), vcm.backbone.image_multiple)
    table = TablePrior(vcm.prior.n_conditions, vcm.backbone.network.config.num_class_embeds, args.bins)
    table.fit([case.images for case in cases])
    vcm.prior, vcm.config.prior = table, "table"
    metadata = dict(hub.read_config(hub.resolve(args.model)[0]).get("metadata", {}))
    metadata["prior"] = (f"table ({args.bins} bins, fitted on {len(cases)} cases of {args.train} after training; "
                         "swapped in for the prior it was trained with)")
    hub.save_pretrained(vcm, args.out, dtype=torch.float16, metadata=metadata, overwrite=True)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
