"""Training run configs: YAML + `key=value` overrides, checked field by field before any training starts.

A config error is one line naming the config file and the key (an unknown key, a wrong type, a missing data
folder, no cases), raised as InputError, so `volgen train` exits non-zero without starting.
"""
from __future__ import annotations

import re
import types
import typing
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path

import yaml

from volgen.errors import InputError
from volgen.taskspec import task
from volgen.training.schedule import SCHEDULES

KINDS = ("autoencoder", "backbone", "module")
LOSS_SPACES = ("latent", "image")


@dataclass
class DataConfig:
    root: str = ""
    contrasts: list[str] = field(default_factory=lambda: ["t1n", "t1c", "t2w", "t2f"])
    spacing: float = 2.0
    crop: list[int] = field(default_factory=lambda: [32, 32, 32])   # random crops on the model grid
    flip: bool = True
    # Which model-grid axes a flip may mirror. Left-right only: on the RAS grid a brain is never upside down or back to
    # front, and mirroring those axes taught the backbones an 8-orientation mixture whose mean is an ellipsoid.
    flip_axes: list[int] = field(default_factory=lambda: [0])
    contrast_dropout: float = 0.5        # synthesis: chance each source contrast is hidden (one always stays)
    sr_factor: int = 4                    # super-resolution: thick-slice factor
    sr_axis: int = 2                      # along this model-grid axis (RAS: 2 = inferior-superior)
    inpainting_blobs: float = 0.0         # inpainting: share of healthy fills with a random blob as the hole
    # synthesis: each case's contrasts divided by their bias fields at loading (io/bias_field.py), as the job divides
    # a user's conditions: a module trained on uncorrected cases learns a per-voxel map that the job never feeds it.
    # The healthy twins are not corrected (inpainting and lesion runs leave this off)
    bias_correction: bool = False
    max_cases: int | None = None
    cache: bool = True


@dataclass
class TrainLoopConfig:
    steps: int = 1000
    batch_size: int = 2
    lr: float = 1e-3
    lr_schedule: str = "constant"        # constant | cosine (from lr down to 0 over `steps`)
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    gradient_checkpointing: bool = False
    mixed_precision: str = "auto"        # auto (bf16 on GPU, none on CPU) | no | bf16 | fp16
    seed: int = 0
    checkpoint_every: int = 200
    log_every: int = 10
    kl_weight: float = 1e-6               # autoencoder: weight of the KL term
    sampler_steps: int = 0                # diffusion: train only the timesteps an N-step sampler visits (0: all)
    # with sampler_steps: relative weights of those timesteps, noisiest first (empty: uniform). The jobs read their
    # posterior mean at the first step (the 10-step sampler's 900 on a GPU, the 5-step's 800 on the CPU), so weighting
    # those trains the estimate users get more often than the steps that only refine samples
    timestep_weights: list[float] = field(default_factory=list)
    # diffusion: where the loss is measured. "latent": the network's target in the codec's space. "image": the x0
    # prediction decoded, against the image, which is what PSNR measures: a latent whose channels carry the image
    # unequally (the patch autoencoder's unit-variance PCA channels: the first carries 93% of the variance)
    # otherwise spends the network on the channels that matter least
    loss_space: str = "latent"
    # a module's data-fitted prior is refitted on this run's cases; false keeps the one init_from copied (fine-tuning
    # on the same kind of data: the synthesis table takes minutes to fit)
    refit_prior: bool = True
    # diffusion: the loss on a lesion's voxels (the case's seg > 0) counts this many times a healthy voxel's. A tumour
    # is 1-3% of a brain, so at 1 nearly all of the loss is healthy tissue (tried on t1c's faint enhancing tumour at
    # 10: the tumour gained, the brain lost, the enhancing level did not move; see issue 38's session-34 note)
    lesion_weight: float = 1.0
    # module: the loss on the voxels the task makes rather than keeps (inpainting: the hole, a few percent of the
    # volume; every voxel outside it is given and copied) counts this many times the others'
    region_weight: float = 1.0


@dataclass
class OutputConfig:
    dir: str = "runs/run"
    save_dtype: str = "float16"           # dtype of the exported model weights
    name: str = ""                        # registry name to export under (empty: the run folder's name)


@dataclass
class TrainConfig:
    kind: str = "backbone"
    task: str = "synthesis"               # module runs: which conditions to build
    backbone: str = ""                    # module runs: registered name or folder of the frozen backbone
    module: str = "vcm"                   # module runs: vcm | controlnet | concat
    model: dict = field(default_factory=dict)   # the model's own config (BackboneConfig, AutoencoderConfig, ...)
    init_from: str = ""                   # start from a saved model's weights (name or folder): fine-tuning
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainLoopConfig = field(default_factory=TrainLoopConfig)
    output: OutputConfig = field(default_factory=OutputConfig)


def _type_name(tp) -> str:
    return getattr(tp, "__name__", str(tp)).replace("typing.", "")


def _coerce(value, tp, where: str):
    """`value` as type `tp` (ints are accepted as floats); anything else is a ValueError naming `where`."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(tp)
        if value is None and type(None) in options:
            return None
        for option in options:
            if option is type(None):
                continue
            try:
                return _coerce(value, option, where)
            except ValueError:
                pass
        raise ValueError(f"{where}: expected {' or '.join(_type_name(o) for o in options)}, got {value!r}")
    if origin is list:
        (item,) = typing.get_args(tp)
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"{where}: expected a list, got {value!r}")
        return [_coerce(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ValueError(f"{where}: expected a mapping, got {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ValueError(f"{where}: expected true or false, got {value!r}")
        return value
    if tp is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if tp is float and isinstance(value, str):      # YAML reads 3e-4 (no dot) as a string
        try:
            return float(value)
        except ValueError:
            pass
    if tp in (int, str) and isinstance(value, tp) and not isinstance(value, bool):
        return value
    raise ValueError(f"{where}: expected {_type_name(tp)}, got {value!r}")


def _build(cls, data, where: str):
    if not isinstance(data, dict):
        raise ValueError(f"{where or 'config'}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in fields(cls)}
    for key in data:
        if key not in known:
            raise ValueError(f"unknown key '{where + '.' if where else ''}{key}' (known: {', '.join(sorted(known))})")
    values = {}
    for key, value in data.items():
        tp, name = hints[key], f"{where + '.' if where else ''}{key}"
        values[key] = _build(tp, value, name) if is_dataclass(tp) else _coerce(value, tp, name)
    return cls(**values)


def _set_dotted(data: dict, dotted: str, value) -> None:
    keys = dotted.split(".")
    node = data
    for key in keys[:-1]:
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            raise ValueError(f"override {dotted}: '{key}' is not a section")
    node[keys[-1]] = value


PACKAGED_DIR = Path(__file__).resolve().parent.parent / "configs"


def packaged_configs() -> dict[str, str]:
    """The run configs shipped in the package: name -> the first phrase of its comment header."""
    configs = {}
    for path in sorted(PACKAGED_DIR.glob("*.yaml")):
        header = []
        for line in path.read_text().splitlines():
            if not line.startswith("#"):
                break
            header.append(line.lstrip("# ").strip())
        configs[path.stem] = re.split(r"[:.] |\($", " ".join(header) + " ", maxsplit=1)[0].strip()
    return configs


def config_path(name_or_path) -> Path:
    """A config file: an existing path, else the packaged config of that name (with or without .yaml)."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    packaged = PACKAGED_DIR / f"{path.name.removesuffix('.yaml')}.yaml"
    if path.parent == Path(".") and packaged.is_file():
        return packaged
    raise InputError(path, f"config file not found, and no packaged config has that name "
                           f"(packaged: {', '.join(packaged_configs())}; `volgen train --list`)")


RUN_CONFIG = "run-config.json"       # a run's full config, written in its output folder when it starts


def resume_config(name_or_path, overrides: list[str] = ()) -> TrainConfig:
    """The config to resume with: the run's own saved `run-config.json` (in the output.dir that the overrides or
    the named config give), with the command line's overrides on top; the named config itself where the run saved
    none."""
    path = config_path(name_or_path)
    if path.name == RUN_CONFIG:
        return load_config(path, overrides)
    run_dir = None
    for item in overrides:
        key, _, value = item.partition("=")
        if key.strip() == "output.dir":
            run_dir = str(yaml.safe_load(value))
    if run_dir is None:
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise InputError(path, f"not valid YAML ({str(exc).splitlines()[0]})") from None
        run_dir = str((data.get("output") or {}).get("dir") or OutputConfig().dir)
    saved = Path(run_dir) / RUN_CONFIG
    return load_config(saved if saved.is_file() else path, overrides)


def load_config(path, overrides: list[str] = ()) -> TrainConfig:
    """The run config from a YAML file or a packaged config's name, with `section.key=value` overrides (values
    parsed as YAML)."""
    path = config_path(path)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise InputError(path, f"not valid YAML ({str(exc).splitlines()[0]})") from None
    try:
        for item in overrides:
            if "=" not in item:
                raise ValueError(f"override '{item}' is not key=value")
            key, value = item.split("=", 1)
            _set_dotted(data, key.strip(), yaml.safe_load(value))
        config = _build(TrainConfig, data, "")
        check(config)
    except ValueError as exc:
        raise InputError(path, str(exc)) from None
    return config


def check(config: TrainConfig) -> None:
    """Semantic checks that need no data: choices, ranges, and the data folder's existence."""
    if config.kind not in KINDS:
        raise ValueError(f"kind: '{config.kind}' is not one of {', '.join(KINDS)}")
    if config.kind == "module":
        spec = task(config.task)                     # an unknown task is refused with the known ones
        prior = dict(config.model).get("prior", "none")
        if config.module == "vcm" and prior not in spec.priors:
            raise ValueError(f"model.prior: '{prior}' does not fit task {spec.name} ({', '.join(spec.priors)})")
        if not config.backbone:
            raise ValueError("backbone: a module run needs the frozen backbone (registered name or folder)")
    if config.train.mixed_precision not in ("auto", "no", "bf16", "fp16"):
        raise ValueError(f"train.mixed_precision: '{config.train.mixed_precision}' (auto, no, bf16, fp16)")
    if config.train.lr_schedule not in SCHEDULES:
        raise ValueError(f"train.lr_schedule: '{config.train.lr_schedule}' ({', '.join(SCHEDULES)})")
    if config.train.loss_space not in LOSS_SPACES:
        raise ValueError(f"train.loss_space: '{config.train.loss_space}' ({', '.join(LOSS_SPACES)})")
    weights, steps = config.train.timestep_weights, config.train.sampler_steps
    if weights and not steps:
        raise ValueError("train.timestep_weights: weights the train.sampler_steps timesteps; set that too")
    if weights and (len(weights) != steps or min(weights) < 0 or sum(weights) <= 0):
        raise ValueError(f"train.timestep_weights: expected {steps} non-negative weights (one per train.sampler_steps "
                         f"timestep) with a positive sum, got {weights}")
    if config.train.lesion_weight < 1:
        raise ValueError(f"train.lesion_weight: must be at least 1 (1: no weighting), got {config.train.lesion_weight}")
    if config.train.region_weight < 1:
        raise ValueError(f"train.region_weight: must be at least 1 (1: no weighting), got {config.train.region_weight}")
    if config.train.region_weight != 1 and not (config.kind == "module" and task(config.task).has_region):
        raise ValueError("train.region_weight: only a module whose task makes a region of its input (inpainting's "
                         "hole) has one to weigh")
    for key in ("steps", "batch_size", "checkpoint_every", "log_every"):
        if getattr(config.train, key) < 1:
            raise ValueError(f"train.{key}: must be at least 1")
    if not 0 <= config.train.ema_decay < 1:
        raise ValueError("train.ema_decay: must be in [0, 1)")
    if len(config.data.crop) != 3 or min(config.data.crop) < 1:
        raise ValueError(f"data.crop: expected three positive sizes, got {config.data.crop}")
    if not config.data.root:
        raise ValueError("data.root: the folder of training cases is required")
    root = Path(config.data.root)
    if not root.is_dir():
        raise ValueError(f"data.root: folder {root} not found")
