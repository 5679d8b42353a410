"""Refit a lesion-insertion module's label prior (the per-compartment lines and the spread of a case's levels around
them) on its training cases, and save the result; the network is untouched. How the shipped volgen-vcm-lesion-2mm
gained its level spread after training (the lines come out as they were: same cases, same fit).

    python scripts/tools/release/refit_label_prior.py volgen-vcm-lesion-2mm OUT_FOLDER [--train phantoms/train]
    python scripts/tools/release/ship_model.py OUT_FOLDER volgen-vcm-lesion-2mm --description "..."
"""
from __future__ import annotations

import argparse

import torch

from volgen import hub
from volgen.modules.label_prior import LabelTablePrior
from volgen.training.config import DataConfig
from volgen.training.data import load_cases


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="a lesion-insertion VCM (folder or registered name)")
    parser.add_argument("out")
    parser.add_argument("--train", default="phantoms/train", help="the cases it trained on, with healthy twins")
    args = parser.parse_args()
    vcm = hub.from_pretrained(args.model, expected_type="vcm")
    if not isinstance(vcm.prior, LabelTablePrior):
        raise SystemExit(f"{args.model}: not a lesion-insertion VCM (its prior is not a label table)")
    before = vcm.prior.line.float().clone()
    cases = load_cases(DataConfig(root=args.train), vcm.backbone.image_multiple, with_healthy=True)
    vcm.prior.fit_cases(cases)
    moved = float((vcm.prior.line.float() - before).abs().max())
    spread = (vcm.prior.level_factor @ vcm.prior.level_factor.T).diagonal().sqrt()
    print(f"{len(cases)} cases; lines moved by at most {moved:.2e}; level sd per (contrast, zone) "
          f"{spread.min():.3f}-{spread.max():.3f} on the model's [-1, 1] scale")
    saved = hub.read_config(hub.resolve(args.model)[0])
    metadata = dict(saved.get("metadata", {}))
    metadata["prior"] = f"label table and level spread refitted on {len(cases)} cases of {args.train} after training"
    hub.save_pretrained(vcm, args.out, dtype=getattr(torch, saved["dtype"]), metadata=metadata, overwrite=True)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
