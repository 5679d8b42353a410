"""`volgen train`: a run config (a file or a packaged config's name) with key=value overrides, trained, resumed or
exported. Runs as one process or under `accelerate launch -m volgen train ...` / torchrun on several."""
from __future__ import annotations

import argparse
import os
from pathlib import Path


def add_parser(sub) -> None:
    p = sub.add_parser(
        "train", formatter_class=argparse.RawDescriptionHelpFormatter,
        help="train an autoencoder, a backbone or a conditioning module from a run config",
        description="Train from a YAML run config or the name of a packaged one (`volgen train --list`). "
                    "key=value overrides change any field; an interrupted run continues with --resume; "
                    "the EMA weights are written to <output.dir>/model, loadable with --model.",
        epilog="examples:\n"
               "  volgen train --list\n"
               "  volgen train vcm_synthesis data.root=my_brats/ output.dir=runs/my-vcm train.steps=3000\n"
               "  volgen train vcm_synthesis data.root=my_brats/ init_from=volgen-vcm-synthesis-2mm   # fine-tune\n"
               "  volgen train runs/my-vcm/run-config.json --resume     # a run's own saved config\n"
               "  accelerate launch --multi_gpu --num_processes 2 -m volgen train vcm_synthesis data.root=my_brats/")
    p.add_argument("config", nargs="?", help="a YAML run config, or a packaged config's name (see --list)")
    p.add_argument("overrides", nargs="*", help="section.key=value, e.g. train.steps=500 data.root=cases/")
    p.add_argument("--list", action="store_true", help="list the packaged configs and exit")
    p.add_argument("--resume", action="store_true", help="continue from the newest checkpoint of the run, with the "
                                                         "run's own saved config (output.dir/run-config.json) as the "
                                                         "base and the overrides on top")
    p.add_argument("--export", action="store_true",
                   help="write <run>/model from the newest checkpoint's EMA weights, without training")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(run=run)


def run(args) -> int:
    from volgen.errors import InputError
    from volgen.training.config import PACKAGED_DIR, load_config, packaged_configs, resume_config

    if args.list:
        configs = packaged_configs()
        width = max(map(len, configs))
        for name, line in configs.items():
            print(f"{name:<{width}}  {line}")
        print(f"({PACKAGED_DIR})")
        return 0
    if not args.config:
        raise InputError(None, "volgen train needs a CONFIG (a YAML file or a packaged name; `volgen train --list`)")
    from volgen.training.loop import export_checkpoint, train

    # a resumed run starts from its own saved config (data, model, recipe); the command line's overrides go on top
    config = (resume_config if args.resume else load_config)(args.config, args.overrides)
    if args.export:
        run_dir = export_checkpoint(config)
    else:
        run_dir = train(config, resume=args.resume, progress=not args.no_progress)
    if os.environ.get("RANK", "0") == "0":            # one line from a multi-process run, not one per process
        print(f"model written to {Path(run_dir) / 'model'}")
    return 0
