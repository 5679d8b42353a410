"""Ship a trained model: copy `<run>/model` into volgen/pretrained/<name>/ and register it with its sha256.

    python scripts/ship_model.py runs/backbone-wavelet/model volgen-wavelet-brain-2mm \
        --description "wavelet diffusion backbone, 4 MRI contrasts"
The weights are verified (sha256) on the way and written again through volgen.hub, so today's saving rules apply
(float16 weights and float16 fitted priors); the registry entry records the new hash. A module trained on a backbone
from a run folder names the shipped backbone with the same sha256 instead, so the shipped module loads without the
run. The card (volgen/pretrained/<name>/README.md, scripts/write_model_card.py) and its pictures stay where they are.
"""
from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

import torch

from volgen import hub


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="a saved model folder (config.json + model.safetensors)")
    parser.add_argument("name", help="registry name, e.g. volgen-wavelet-brain-2mm")
    parser.add_argument("--description", default="")
    args = parser.parse_args()
    model = hub.from_pretrained(args.model)                   # verifies config, hash and weights
    saved = hub.read_config(args.model)
    registry = json.loads(hub.REGISTRY_FILE.read_text()) if hub.REGISTRY_FILE.exists() else {}
    backbone = getattr(model, "backbone", None)
    if backbone is not None:
        shipped = [name for name, entry in registry.items() if entry["sha256"] == backbone.hub_source["sha256"]]
        if not shipped:
            raise SystemExit(f"{args.model}: its backbone ({backbone.hub_source['name']}) is not shipped; ship it first")
        backbone.hub_source = {**backbone.hub_source, "name": shipped[0]}
    target = hub.PRETRAINED_DIR / args.name
    target.mkdir(parents=True, exist_ok=True)
    dtype = getattr(torch, saved["dtype"]) if saved.get("dtype") in ("float16", "float32", "bfloat16") else None
    with tempfile.TemporaryDirectory() as tmp:     # the folder holds the card too: replace only the two files
        hub.save_pretrained(model, Path(tmp) / "model", dtype=dtype, metadata=saved.get("metadata"))
        for name in (hub.CONFIG_FILE, hub.WEIGHTS_FILE):
            shutil.copy2(Path(tmp) / "model" / name, target / name)
    config = hub.read_config(target)
    registry[args.name] = {"sha256": config["sha256"], "model_type": config["model_type"],
                           "description": args.description}
    hub.REGISTRY_FILE.write_text(json.dumps(dict(sorted(registry.items())), indent=2) + "\n")
    size = (target / hub.WEIGHTS_FILE).stat().st_size / 2 ** 20
    print(f"shipped {args.name}: {config['model_type']}, {size:.1f} MB, sha256 {config['sha256']}")


if __name__ == "__main__":
    main()
