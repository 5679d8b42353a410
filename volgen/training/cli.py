"""Command line of scripts/train_*.py: --config, --resume, key=value overrides; config errors are one line."""
from __future__ import annotations

import argparse
import os
import sys

from volgen.errors import VolgenError


def main(kinds: tuple[str, ...], argv=None) -> int:
    parser = argparse.ArgumentParser(description=f"volgen training ({', '.join(kinds)})",
                                     epilog="example: accelerate launch scripts/train_vcm.py --config "
                                            "configs/vcm_synthesis.yaml train.steps=2000")
    parser.add_argument("--config", required=True, help="YAML run config (see configs/)")
    parser.add_argument("--resume", action="store_true", help="continue from the newest checkpoint of the run")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--export", action="store_true",
                        help="write <run>/model from the newest checkpoint's EMA weights, without training")
    parser.add_argument("overrides", nargs="*", help="section.key=value, e.g. train.steps=500 data.root=cases/")
    args = parser.parse_args(argv)
    from volgen.training.config import load_config
    from volgen.training.loop import export_checkpoint, train
    try:
        config = load_config(args.config, args.overrides)
        if config.kind not in kinds:
            print(f"volgen: {args.config}: kind '{config.kind}' is trained by another script (this one trains "
                  f"{', '.join(kinds)})", file=sys.stderr)
            sys.exit(1)
        if args.export:
            run_dir = export_checkpoint(config)
        else:
            run_dir = train(config, resume=args.resume, progress=not args.no_progress)
    except VolgenError as exc:
        print(f"volgen: {exc}", file=sys.stderr)
        sys.exit(1)
    if os.environ.get("RANK", "0") == "0":            # one line from a multi-process run, not one per process
        print(f"model written to {run_dir / 'model'}")
    return 0
