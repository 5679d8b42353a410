"""Ship a trained model: copy `<run>/model` into volgen/pretrained/<name>/ and register it with its sha256.

    python scripts/tools/release/ship_model.py runs/backbone-wavelet/model volgen-wavelet-brain-2mm \
        --description "wavelet diffusion backbone, 4 MRI contrasts"
    python scripts/tools/release/ship_model.py --all      # every shipped model again, in today's saving rules

The weights are verified (sha256) on the way and written again through volgen.hub, so today's saving rules apply
(float16 weights and float16 fitted priors, the large tensors packed as int8 rows: volgen.int8_weights); the registry
entry records the new hash. A module trained on a backbone from a run folder names the shipped backbone with the
same sha256 instead, so the shipped module loads without the run. `--all` loads every shipped model first, then
writes the backbones and then the modules, naming their backbones' new hashes. The card
(volgen/pretrained/<name>/README.md, scripts/tools/release/write_model_card.py) and its pictures stay where they are.
"""
from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

import torch

from volgen import hub


def shipped_backbone_name(model, registry: dict, source: str) -> str | None:
    """The registry name of the backbone a module was trained on (None for a backbone)."""
    backbone = getattr(model, "backbone", None)
    if backbone is None:
        return None
    shipped = [name for name, entry in registry.items() if entry["sha256"] == backbone.hub_source["sha256"]]
    if not shipped:
        raise SystemExit(f"{source}: its backbone ({backbone.hub_source['name']}) is not shipped; ship it first")
    return shipped[0]


def ship(model, saved: dict, name: str, description: str, registry: dict, backbone_name: str | None = None) -> None:
    """Write `model` (loaded from a folder whose config.json is `saved`) as the shipped `name`, in `registry`; a
    module names its backbone as shipped under `backbone_name` (with that entry's current sha256)."""
    if backbone_name is not None:
        model.backbone.hub_source = {"name": backbone_name, "sha256": registry[backbone_name]["sha256"]}
    target = hub.PRETRAINED_DIR / name
    target.mkdir(parents=True, exist_ok=True)
    dtype = saved["dtype"] if saved.get("dtype") in ("float16", "float32", "bfloat16") else None
    with tempfile.TemporaryDirectory() as tmp:     # the folder holds the card too: replace only the two files
        hub.save_pretrained(model, Path(tmp) / "model", dtype=dtype and getattr(torch, dtype),
                            metadata=saved.get("metadata"), int8=True)
        for file in (hub.CONFIG_FILE, hub.WEIGHTS_FILE):
            shutil.copy2(Path(tmp) / "model" / file, target / file)
    config = hub.read_config(target)
    registry[name] = {"sha256": config["sha256"], "model_type": config["model_type"], "description": description}
    size = (target / hub.WEIGHTS_FILE).stat().st_size / 2 ** 20
    print(f"shipped {name}: {config['model_type']}, {size:.1f} MiB, sha256 {config['sha256']}")


def write_registry(registry: dict) -> None:
    hub.REGISTRY_FILE.write_text(json.dumps(dict(sorted(registry.items())), indent=2) + "\n")


def ship_all(registry: dict) -> None:
    models = {name: hub.from_pretrained(name) for name in registry}    # all verified before anything is written
    saved = {name: hub.read_config(hub.PRETRAINED_DIR / name) for name in registry}
    backbone_of = {name: shipped_backbone_name(model, registry, name) for name, model in models.items()}
    for name in sorted(registry, key=lambda n: backbone_of[n] is not None):     # backbones first
        ship(models[name], saved[name], name, registry[name]["description"], registry, backbone_of[name])
    write_registry(registry)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", nargs="?", help="a saved model folder (config.json + model.safetensors)")
    parser.add_argument("name", nargs="?", help="registry name, e.g. volgen-wavelet-brain-2mm")
    parser.add_argument("--description", default="")
    parser.add_argument("--all", action="store_true", help="write every shipped model again")
    args = parser.parse_args()
    registry = json.loads(hub.REGISTRY_FILE.read_text()) if hub.REGISTRY_FILE.exists() else {}
    if args.all:
        ship_all(registry)
        return
    if not (args.model and args.name):
        parser.error("give a model folder and a name, or --all")
    model = hub.from_pretrained(args.model)                   # verifies config, hash and weights
    ship(model, hub.read_config(args.model), args.name, args.description, registry,
         shipped_backbone_name(model, registry, args.model))
    write_registry(registry)


if __name__ == "__main__":
    main()
