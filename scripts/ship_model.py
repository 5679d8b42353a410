"""Ship a trained model: copy `<run>/model` into volgen/pretrained/<name>/ and register it with its sha256.

    python scripts/ship_model.py runs/backbone-wavelet/model volgen-wavelet-brain-2mm \
        --description "wavelet diffusion backbone, 4 MRI contrasts"
The weights are verified (sha256) on the way; the registry entry records the same hash. The card
(volgen/pretrained/<name>/README.md, scripts/write_model_card.py) and its pictures stay where they are.
"""
from __future__ import annotations

import argparse
import json
import shutil

from volgen import hub


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="a saved model folder (config.json + model.safetensors)")
    parser.add_argument("name", help="registry name, e.g. volgen-wavelet-brain-2mm")
    parser.add_argument("--description", default="")
    args = parser.parse_args()
    hub.from_pretrained(args.model)                           # verifies config, hash and weights
    config = hub.read_config(args.model)
    target = hub.PRETRAINED_DIR / args.name
    target.mkdir(parents=True, exist_ok=True)
    for name in (hub.CONFIG_FILE, hub.WEIGHTS_FILE):
        shutil.copy2(f"{args.model}/{name}", target / name)
    registry = json.loads(hub.REGISTRY_FILE.read_text()) if hub.REGISTRY_FILE.exists() else {}
    registry[args.name] = {"sha256": config["sha256"], "model_type": config["model_type"],
                           "description": args.description}
    hub.REGISTRY_FILE.write_text(json.dumps(dict(sorted(registry.items())), indent=2) + "\n")
    size = (target / hub.WEIGHTS_FILE).stat().st_size / 2 ** 20
    print(f"shipped {args.name}: {config['model_type']}, {size:.1f} MB, sha256 {config['sha256']}")


if __name__ == "__main__":
    main()
