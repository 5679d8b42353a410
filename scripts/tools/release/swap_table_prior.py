"""Replace a trained synthesis VCM's prior by the per-voxel conditional-mean table and its context stage, fitted on the
training cases, and save the result (how the shipped volgen-vcm-synthesis-2mm was made from its training run, and
how a module fitted before the context stage existed gains one).

    python scripts/tools/release/swap_table_prior.py runs/vcm-synthesis/model OUT_FOLDER [--train phantoms/train]
    python scripts/tools/release/swap_table_prior.py runs/vcm-synthesis-latent/model OUT_FOLDER --prior-from OTHER_MODULE
(--prior-from copies the fitted table of another module fitted on the same cases: the table depends only on the
cases' voxels, not on the backbone, so this skips the minutes of fitting.)
--train takes several corpora at any spacing, comma-separated (the loader resamples each case to the model grid, as
the job resamples a user's); --bias-correction fits on cases with their bias fields divided out, as the job hands
the module a user's conditions. The shipped table is `--train phantoms/train-144 --bias-correction` (session 53,
17 min on 2 cores); session 51's `--train phantoms/train-144,phantoms/train-1mm --bias-correction` was better on
validation and worse on fresh 1 mm phantoms (docs/architecture.md, bias fields).
Measure the result with scripts/benchmarks/bench_quality.py --vcm OUT_FOLDER before shipping it.
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
    parser.add_argument("--train", default="phantoms/train", help="training corpora, comma-separated")
    parser.add_argument("--bias-correction", action="store_true",
                        help="fit on the cases with their bias fields divided out (data.bias_correction)")
    parser.add_argument("--bins", type=int, default=24)
    parser.add_argument("--prior-from", help="a synthesis VCM whose fitted table to copy instead of fitting one")
    args = parser.parse_args()
    vcm = hub.from_pretrained(args.model, expected_type="vcm")
    if vcm.prior is None or vcm.config.prior not in ("regression", "table"):
        raise SystemExit(f"{args.model}: not a synthesis VCM with a per-voxel prior")
    metadata = dict(hub.read_config(hub.resolve(args.model)[0]).get("metadata", {}))
    if args.prior_from:
        donor = hub.from_pretrained(args.prior_from, expected_type="vcm")
        if not isinstance(donor.prior, TablePrior) or not donor.prior.context_done:
            raise SystemExit(f"{args.prior_from}: has no fitted table with a context stage to copy")
        table = donor.prior
        source = hub.read_config(hub.resolve(args.prior_from)[0]).get("metadata", {}).get("prior", "")
        metadata["prior"] = f"copied from {args.prior_from}: {source}"
    else:
        cases = [case for root in args.train.split(",") for case in load_cases(
            DataConfig(root=root, bias_correction=args.bias_correction), vcm.backbone.image_multiple)]
        table = TablePrior(vcm.prior.n_conditions, vcm.backbone.network.config.num_class_embeds, args.bins)
        table.fit([case.images for case in cases])
        corrected = "bias-corrected " if args.bias_correction else ""
        metadata["prior"] = (f"table ({args.bins} bins) and its context stage, fitted on {len(cases)} {corrected}cases "
                             f"of {args.train} after training; swapped in for the prior it was trained with")
    vcm.prior, vcm.config.prior = table, "table"
    hub.save_pretrained(vcm, args.out, dtype=torch.float16, metadata=metadata, overwrite=True, int8=True)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
