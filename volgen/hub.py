"""Save and load volgen models: a folder with `config.json` + `model.safetensors`, the weights' sha256 recorded.

config.json = {"format": "volgen-model", "version": 1, "model_type": ..., "config": {...}, "sha256": ...,
"dtype": ..., "metadata": {...}}. Loading checks the hash (and, for a registered name, the registry's hash too),
builds the model from its config and loads the weights strictly. Nothing is pickled.

Registered models live in `volgen/pretrained/<name>/` with their card (`README.md`, and its pictures), listed in
`volgen/pretrained/registry.json` ({name: {"sha256", "model_type", "description"}}); users can register their own
folders with `register`.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import NamedTuple

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from volgen import int8_weights
from volgen.backbones.backbone import Backbone
from volgen.codecs import HaarCodec, IdentityCodec, KLAutoencoderCodec, PatchAutoencoderCodec
from volgen.errors import InputError
from volgen.io.atomic import atomic_folder
from volgen.modules.base import Conditioner
from volgen.modules.concat import ConcatConditioner
from volgen.modules.controlnet import ControlNetConditioner
from volgen.modules.vcm import VCM

FORMAT, VERSION = "volgen-model", 1
CONFIG_FILE, WEIGHTS_FILE, CARD_FILE = "config.json", "model.safetensors", "README.md"
PRETRAINED_DIR = Path(__file__).parent / "pretrained"
REGISTRY_FILE = PRETRAINED_DIR / "registry.json"

# model_type -> the class a saved model of that type is rebuilt with
MODEL_TYPES = {cls.model_type: cls for cls in (Backbone, IdentityCodec, HaarCodec, KLAutoencoderCodec,
                                               PatchAutoencoderCodec, VCM, ControlNetConditioner, ConcatConditioner)}
_USER_REGISTRY: dict[str, dict] = {}


def register(name: str, folder, *, sha256: str | None = None, card: str | None = None, description: str = ""):
    """Register a model folder under a name for this process (the shipped ones are in registry.json)."""
    _USER_REGISTRY[name] = {"folder": str(Path(folder)), "sha256": sha256, "card": card, "description": description}


def registry() -> dict[str, dict]:
    """Every registered model: name -> {"folder", "sha256", "card", "description"}."""
    entries = {}
    if REGISTRY_FILE.exists():
        for name, entry in json.loads(REGISTRY_FILE.read_text()).items():
            card = PRETRAINED_DIR / name / CARD_FILE
            entries[name] = {**entry, "folder": str(PRETRAINED_DIR / name), "card": str(card) if card.is_file() else None}
    entries.update(_USER_REGISTRY)
    return entries


def sha256_of(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save_pretrained(model: torch.nn.Module, folder, *, dtype: torch.dtype | None = None, metadata: dict | None = None,
                    overwrite: bool = False, int8: bool = False) -> str:
    """Write `model` to `folder` (atomically); floating parameters are cast to `dtype` if given (buffers such as a
    latent scale factor keep their precision), and with `int8` the large tensors are packed as int8 rows
    (volgen.int8_weights: the shipping form). Returns the sha256."""
    if model.model_type not in MODEL_TYPES:
        raise ValueError(f"model type '{model.model_type}' is not registered with volgen.hub")
    state = model.hub_state_dict() if hasattr(model, "hub_state_dict") else model.state_dict()
    buffers = {name for name, _ in model.named_buffers()}
    tensors = {}
    for key, value in state.items():
        value = value.detach().to("cpu").clone().contiguous()   # clone: safetensors refuses shared storage
        cast = dtype is not None and value.is_floating_point() and key not in buffers
        tensors[key] = value.to(dtype) if cast else value
    dtype_name = _weights_dtype({k: v for k, v in tensors.items() if k not in buffers})
    if int8:
        tensors = int8_weights.pack(tensors)
    with atomic_folder(folder, overwrite=overwrite) as tmp:
        save_file(tensors, str(tmp / WEIGHTS_FILE))
        digest = sha256_of(tmp / WEIGHTS_FILE)
        config = {"format": FORMAT, "version": VERSION, "model_type": model.model_type,
                  "config": model.config_dict(), "sha256": digest,
                  "dtype": dtype_name, "metadata": metadata or {}}
        if int8:
            config["packing"] = "int8"
        (tmp / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")
    model.hub_source = {"name": str(folder), "sha256": digest}    # what modules trained on it will name
    return digest


def _weights_dtype(tensors: dict) -> str | None:
    floating = {str(v.dtype).replace("torch.", "") for v in tensors.values() if v.is_floating_point()}
    return ",".join(sorted(floating)) or None


def read_config(folder) -> dict:
    """config.json of a model folder, checked for the fields volgen needs."""
    path = Path(folder) / CONFIG_FILE
    if not path.is_file():
        raise InputError(path, "missing: not a volgen model folder")
    try:
        config = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(path, f"malformed JSON ({exc})") from None
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise InputError(path, f"not a volgen model config (no \"format\": \"{FORMAT}\")")
    if config.get("version") != VERSION:
        raise InputError(path, f"model format version {config.get('version')} is not supported (this volgen reads "
                               f"version {VERSION})")
    for key in ("model_type", "config", "sha256"):
        if key not in config:
            raise InputError(path, f"malformed: no '{key}'")
    if config["model_type"] not in MODEL_TYPES:
        raise InputError(path, f"unknown model type '{config['model_type']}' ({', '.join(sorted(MODEL_TYPES))})")
    return config


def resolve(name_or_folder) -> tuple[Path, str | None]:
    """(folder, expected sha256 or None) for a registered name or a folder path."""
    entries = registry()
    if str(name_or_folder) in entries:
        entry = entries[str(name_or_folder)]
        return Path(entry["folder"]), entry.get("sha256")
    folder = Path(name_or_folder)
    if not folder.is_dir():
        known = ", ".join(sorted(entries)) or "none registered"
        raise InputError(folder, f"no such model folder or registered model name (known: {known})")
    return folder, None


class Saved(NamedTuple):
    folder: Path
    config: dict
    state: dict
    sha256: str


def saved_state(name_or_folder, *, expected_type: str | None = None) -> Saved:
    """The model saved in a folder or under a name, verified but not built: what fine-tuning a changed architecture
    copies from, and what from_pretrained builds."""
    folder, registered_sha = resolve(name_or_folder)
    config = read_config(folder)
    weights = folder / WEIGHTS_FILE
    if not weights.is_file():
        raise InputError(weights, "missing: the model folder has no weights")
    digest = sha256_of(weights)
    for expected, source in ((config["sha256"], "config.json"), (registered_sha, "the registry")):
        if expected is not None and digest != expected:
            raise InputError(weights, f"sha256 {digest[:12]}... does not match {source} ({expected[:12]}...): "
                                      "the file is corrupt or was modified")
    if expected_type is not None and config["model_type"] != expected_type:
        raise InputError(folder / CONFIG_FILE, f"is a '{config['model_type']}', expected a '{expected_type}'")
    try:
        state = int8_weights.unpack(load_file(str(weights)))
    except (SafetensorError, OSError) as exc:
        raise InputError(weights, f"unreadable safetensors file ({exc})") from None
    return Saved(folder, config, state, digest)


def from_pretrained(name_or_folder, *, device=None, dtype: torch.dtype | None = torch.float32,
                    expected_type: str | None = None) -> torch.nn.Module:
    """The model saved in a folder or registered under a name, verified, in eval mode."""
    folder, config, state, digest = saved_state(name_or_folder, expected_type=expected_type)
    weights = folder / WEIGHTS_FILE
    cls = MODEL_TYPES[config["model_type"]]
    try:
        # a module is rebuilt on the backbone its config names (checked against the sha256 it was trained on)
        model = cls.from_config(config["config"], backbone=load_backbone_for(config["config"])) \
            if issubclass(cls, Conditioner) else cls.from_config(config["config"])
    except (ValueError, TypeError, KeyError) as exc:
        raise InputError(folder / CONFIG_FILE, f"invalid model config ({exc})") from None
    expected_keys = model.state_dict()
    state = {k: v.to(expected_keys[k].dtype) if k in expected_keys else v for k, v in state.items()}
    try:
        if hasattr(model, "hub_load_state_dict"):
            model.hub_load_state_dict(state)
        else:
            model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise InputError(weights, f"weights do not fit the config ({str(exc).splitlines()[0]})") from None
    if dtype is not None:
        model = model.to(dtype=dtype)
    model.hub_source = {"name": str(name_or_folder), "sha256": digest}
    model.hub_metadata = config.get("metadata") or {}
    return model.to(device=device).eval()


def load_backbone_for(config: dict):
    """The backbone a saved module names, checked against the sha256 recorded when the module was saved."""
    reference = config.get("backbone")
    if not isinstance(reference, dict) or "name" not in reference:
        raise ValueError("no 'backbone' reference (name and sha256)")
    backbone = from_pretrained(reference["name"], expected_type="backbone")
    if reference.get("sha256") and backbone.hub_source["sha256"] != reference["sha256"]:
        raise InputError(reference["name"], "is not the backbone this module was trained on (sha256 differs)")
    return backbone


def list_models() -> list[dict]:
    """Registered models with name, sha256, card and description, for `volgen models`."""
    return [{"name": name, **entry} for name, entry in sorted(registry().items())]
