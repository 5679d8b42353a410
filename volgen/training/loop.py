"""The training loop behind `volgen train`.

accelerate runs it on the CPU, one GPU or several (data parallel; bf16 autocast on GPU by default). Every
`checkpoint_every` steps the full state (weights, optimizer, EMA, step) goes to `<run>/checkpoints/step-N/`, and
`resume=True` continues from the newest; since each step's batch and noise come from a generator seeded by the
step, the resumed loss curve is the uninterrupted one. The loss goes to a progress bar and `<run>/metrics.csv`
(and TensorBoard when installed). At the end the EMA weights are exported with volgen.hub to `<run>/model/`.
"""
from __future__ import annotations

import csv
import json
import shutil
import time
from dataclasses import asdict
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from volgen import hub
from volgen.backbones import Backbone, BackboneConfig
from volgen.codecs import Codec, build_codec
from volgen.errors import InputError
from volgen.modules import build_conditioner
from volgen.training.atlas_cache import attach_registered_atlases
from volgen.training.checkpointing import enable_gradient_checkpointing
from volgen.training.config import RUN_CONFIG, TrainConfig
from volgen.training.data import load_cases, sample_batch, step_generator
from volgen.training.ema import EMA
from volgen.training.schedule import learning_rate
from volgen.taskspec import task
from volgen.training.examples import make_example
from volgen.training.objectives import diffusion_loss, region_weights

DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}


class TrainingStep(torch.nn.Module):
    """The model and its loss in one forward, so data-parallel wrapping sees one module."""

    def __init__(self, config: TrainConfig, model: torch.nn.Module):
        super().__init__()
        self.kind, self.model, self.kl_weight = config.kind, model, config.train.kl_weight
        self.sampler_steps, self.timestep_weights = config.train.sampler_steps, config.train.timestep_weights
        self.image_loss = config.train.loss_space == "image"
        self.lesion_weight, self.region_weight = config.train.lesion_weight, config.train.region_weight
        self.spec = task(config.task) if config.kind == "module" else None

    def weights(self, shape, cond: dict, seg: torch.Tensor | None) -> torch.Tensor | None:
        """Each compared voxel's share of the loss (grid `shape`): lesion voxels (`seg`, passed when
        train.lesion_weight is set) and the voxels the task makes (train.region_weight) count more."""
        weight = None if seg is None else region_weights(seg > 0, shape, self.lesion_weight)
        if self.region_weight != 1:
            made = region_weights(self.spec.region(cond), shape, self.region_weight)
            weight = made if weight is None else weight * made
        return weight

    def forward(self, target: torch.Tensor, cond: dict, gen: torch.Generator,
                seg: torch.Tensor | None = None) -> torch.Tensor:
        """The batch's loss, weighted by `weights`."""
        if self.kind == "autoencoder":
            return self.model.training_loss(target, gen, self.kl_weight)
        backbone = self.model if self.kind == "backbone" else self.model.backbone
        with torch.no_grad():
            z0 = backbone.codec.encode(target)
        network = None if self.kind == "backbone" else self.model
        decode = backbone.codec.decode if self.image_loss else None
        weight = self.weights((target if self.image_loss else z0).shape[2:], cond, seg)
        return diffusion_loss(backbone.denoiser, z0, cond=cond, generator=gen, network=network,
                              sampler_steps=self.sampler_steps, timestep_weights=self.timestep_weights,
                              decode=decode, image=target, weight=weight)


def build_model(config: TrainConfig) -> tuple[torch.nn.Module, list[tuple[str, torch.nn.Parameter]], int, bool]:
    """(model, its trainable named parameters, the image-size multiple, whether it takes class labels)."""
    if config.kind == "autoencoder":
        spec = dict(config.model)
        model = build_codec({"type": spec.pop("type", "kl_autoencoder"), "config": spec})
        return model, list(model.named_parameters()), model.downsampling, False
    if config.kind == "backbone":
        spec = dict(config.model)
        codec_source = spec.get("codec", {}).get("pretrained")
        codec = hub.from_pretrained(codec_source) if codec_source else None
        if codec is not None:
            spec["codec"] = {"type": codec.model_type, "config": codec.config_dict()}
        model = Backbone(BackboneConfig.from_dict(spec))
        if codec is not None:
            model.codec.load_state_dict(codec.state_dict())
        model.codec.requires_grad_(False)
        named = [(n, p) for n, p in model.named_parameters() if n.startswith("denoiser.")]
        return model, named, model.image_multiple, bool(model.config.contrasts)
    backbone = hub.from_pretrained(config.backbone, expected_type="backbone")
    module_config = {"conditions": list(task(config.task).conditions(config.data.contrasts)), **config.model}
    model = build_conditioner(config.module, backbone, module_config)
    named = [(n, p) for n, p in model.named_parameters() if not n.startswith("backbone.")]
    return model, named, backbone.image_multiple, bool(backbone.config.contrasts)


def _latest_checkpoint(run_dir: Path) -> Path | None:
    found = sorted((run_dir / "checkpoints").glob("step-*"))
    return found[-1] if found else None


def train(config: TrainConfig, *, resume: bool = False, progress: bool = True) -> Path:
    tc = config.train
    mixed = tc.mixed_precision if tc.mixed_precision != "auto" else ("bf16" if torch.cuda.is_available() else "no")
    accelerator = Accelerator(mixed_precision=mixed, cpu=not torch.cuda.is_available())
    run_dir = Path(config.output.dir)
    checkpoint = _latest_checkpoint(run_dir) if resume else None
    if resume and checkpoint is None:
        raise InputError(run_dir, "--resume: no checkpoint found in this run folder")
    if not resume and (run_dir / "checkpoints").exists():
        raise InputError(run_dir, "run folder already has checkpoints; pass --resume to continue it, or choose "
                                  "another output.dir")
    set_seed(tc.seed)                                   # the same initial weights on every process
    model, named, multiple, labelled = build_model(config)
    bad = [c for c in config.data.crop if c % multiple]
    if bad:
        raise InputError(config.data.root, f"data.crop {config.data.crop} must be multiples of {multiple} for "
                                           "this model")
    if tc.gradient_checkpointing:
        enable_gradient_checkpointing(model)
    spec = task(config.task) if config.kind == "module" else None
    cases = load_cases(config.data, multiple, with_healthy=bool(spec and spec.needs_healthy))
    unlabelled = [c.name for c in cases if c.seg is None] if tc.lesion_weight != 1 else []
    if unlabelled:
        raise InputError(config.data.root, f"train.lesion_weight needs every case's lesion labels (-seg); "
                                           f"{len(unlabelled)} have none, e.g. {unlabelled[0]}")
    if checkpoint is None and config.init_from:
        # a backbone's codec comes from its own pretrained source (frozen): init_from must not overwrite it with the
        # old backbone's codec wherever their shapes happen to agree
        keep = ("codec.",) if config.kind == "backbone" and dict(config.model).get("codec", {}).get("pretrained") \
            else ()
        _init_from(model, config.init_from, keep=keep)
    kept_prior = getattr(getattr(model, "prior", None), "fitted", False) and not tc.refit_prior
    if checkpoint is None and hasattr(model, "prepare") and not kept_prior:
        model.prepare(cases)                            # data-dependent set-up (a module's regression prior)
    step_module = TrainingStep(config, model)
    params = [p for _, p in named]
    optimizer = torch.optim.AdamW(params, lr=tc.lr, weight_decay=tc.weight_decay)
    step_module, optimizer = accelerator.prepare(step_module, optimizer)
    ema = EMA(named, tc.ema_decay)                      # after prepare: the averages live where the weights do
    start = 0
    if checkpoint is not None:
        accelerator.load_state(str(checkpoint))
        ema.load_state_dict(load_file(str(checkpoint / "ema.safetensors")))
        start = json.loads((checkpoint / "state.json").read_text())["step"]
    # The registered inpainting prior's atlas, registered to each case once rather than at every step; after a
    # resume's load, which brings the atlas. The main process registers and saves, then the others read.
    prior = getattr(model, "prior", None)
    if getattr(prior, "registered", False):
        with accelerator.main_process_first():
            attach_registered_atlases(prior, cases, run_dir, progress=progress)
    main = accelerator.is_main_process
    log = _MetricsLog(run_dir, start) if main else None
    if main:
        (run_dir / RUN_CONFIG).write_text(json.dumps(asdict(config), indent=2))
    bar = tqdm(range(start, tc.steps), initial=start, total=tc.steps, disable=not (progress and main),
               desc=f"train {config.kind}", dynamic_ncols=True)
    began = time.perf_counter()
    for step in bar:
        lr = learning_rate(tc.lr, tc.lr_schedule, step, tc.steps)
        for group in optimizer.param_groups:
            group["lr"] = lr
        gen = step_generator(tc.seed, step, accelerator.process_index)
        batch = sample_batch(cases, tc.batch_size, config.data.crop,
                             config.data.flip_axes if config.data.flip else [], gen,
                             around_lesion=bool(spec and spec.crop_around_lesion))
        target, cond = make_example(config.kind, config.task, batch, config.data, gen, labelled)
        target = target.to(accelerator.device)
        cond = _to_device(cond, accelerator.device)
        seg = batch["seg"].to(accelerator.device) if tc.lesion_weight != 1 else None
        with accelerator.autocast():
            loss = step_module(target, cond, gen, seg)
        optimizer.zero_grad(set_to_none=True)
        accelerator.backward(loss)
        if tc.grad_clip > 0:
            accelerator.clip_grad_norm_(params, tc.grad_clip)
        optimizer.step()
        ema.update(named)
        done = step + 1
        if done % tc.log_every == 0 or done == tc.steps:     # the gather syncs every process: only when logging
            loss_value = accelerator.gather(loss.detach().reshape(1)).mean().item()
            if main:
                log.write(done, loss_value, lr, time.perf_counter() - began)
                bar.set_postfix(loss=f"{loss_value:.4f}")
        if done % tc.checkpoint_every == 0 or done == tc.steps:
            _save_checkpoint(accelerator, ema, run_dir, done)
    accelerator.wait_for_everyone()
    if main:
        log.close()
        ema.copy_to(named)
        if config.kind == "autoencoder":
            _measure_scale_factor(model, cases)
        _export(config, model, run_dir, time.perf_counter() - began, start)
    accelerator.wait_for_everyone()
    return run_dir


def _to_device(cond: dict, device) -> dict:
    """The network's keyword conditions on `device`, nested dicts (the prior's options) included."""
    return {k: _to_device(v, device) if isinstance(v, dict) else v.to(device) for k, v in cond.items()}


def _init_from(model, source: str, keep: tuple[str, ...] = ()) -> None:
    """Copy a saved model's weights into `model` before training (fine-tuning, or continuing with a changed
    architecture): tensors with the same name and a shape that broadcasts to this model's are copied, the others
    keep their initialisation; what was not copied is printed. Names starting with a prefix in `keep` are left as
    they are."""
    theirs = hub.saved_state(source).state              # not built: the saved architecture may differ from ours
    own = model.hub_state_dict() if hasattr(model, "hub_state_dict") else model.state_dict()
    own = {name: tensor for name, tensor in own.items() if not name.startswith(keep)}
    copied, skipped = {}, []
    for name, tensor in own.items():
        other = theirs.get(name)
        try:
            if other is not None and 0 in tensor.shape:
                # a buffer sized by the data it is fitted on (the inpainting template, its basis), empty until
                # then: the saved one whole, which the prior's own loader resizes to
                copied[name] = other.to(tensor.dtype).clone()
            else:
                copied[name] = other.to(tensor.dtype).expand_as(tensor).clone() if other is not None else None
        except RuntimeError:
            copied[name] = None
        if copied[name] is None:
            skipped.append(name)
            del copied[name]
    if any(name.startswith("prior.") for name in skipped):      # a prior comes whole or not at all (its flags
        copied = {k: v for k, v in copied.items() if not k.startswith("prior.")}  # must not say fitted alone)
    model.load_state_dict(copied, strict=False)
    print(f"init_from {source}: {len(copied)} tensors copied" + (f", {len(skipped)} kept their initialisation "
                                                                 f"({', '.join(skipped[:4])}...)" if skipped else ""))


def export_checkpoint(config: TrainConfig) -> Path:
    """Export the newest checkpoint's EMA weights to `<run>/model` without training (a run that goes on in the
    background can ship what it has learnt so far; the metadata records the step)."""
    run_dir = Path(config.output.dir)
    checkpoint = _latest_checkpoint(run_dir)
    if checkpoint is None:
        raise InputError(run_dir, "--export: no checkpoint found in this run folder")
    model, named, _, _ = build_model(config)
    state = load_file(str(checkpoint / "model.safetensors"))
    TrainingStep(config, model).load_state_dict(state, strict=False)    # buffers (a fitted prior) come from here
    ema = EMA(named, config.train.ema_decay)
    ema.load_state_dict(load_file(str(checkpoint / "ema.safetensors")))
    ema.copy_to(named)
    step = json.loads((checkpoint / "state.json").read_text())["step"]
    seconds = float(read_metrics(run_dir)[-1]["seconds"]) if (run_dir / "metrics.csv").exists() else 0.0
    _export(config, model, run_dir, seconds, 0, steps=step)
    return run_dir


def _save_checkpoint(accelerator, ema: EMA, run_dir: Path, step: int, keep: int = 2) -> None:
    folder = run_dir / "checkpoints" / f"step-{step:07d}"
    accelerator.save_state(str(folder))
    if accelerator.is_main_process:
        save_file(ema.state_dict(), str(folder / "ema.safetensors"))
        (folder / "state.json").write_text(json.dumps({"step": step}))
        for old in sorted((run_dir / "checkpoints").glob("step-*"))[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()


@torch.no_grad()
def _measure_scale_factor(codec: Codec, cases, max_volumes: int = 16) -> None:
    """Latents of unit variance for the diffusion trained on them: 1 / std over whole training volumes."""
    volumes = [case.images[i:i + 1][None].to(next(codec.parameters()).device)
               for case in cases for i in range(case.images.shape[0])][:max_volumes]
    codec.eval().measure_scale_factor(volumes)


def _export(config: TrainConfig, model, run_dir: Path, seconds: float, start: int, steps: int | None = None) -> None:
    metadata = {"steps": steps or config.train.steps, "seconds_this_session": round(seconds, 1), "resumed_at": start,
                "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
                "kind": config.kind, "task": config.task if config.kind == "module" else None,
                "data_root": config.data.root, "spacing": config.data.spacing,
                **(task(config.task).metadata(config.data) if config.kind == "module" else {})}
    hub.save_pretrained(model.cpu(), run_dir / "model", dtype=DTYPES[config.output.save_dtype], metadata=metadata,
                        overwrite=True)


class _MetricsLog:
    """metrics.csv (kept consistent on resume: rows past the resumed step are dropped) and TensorBoard if present."""

    def __init__(self, run_dir: Path, start: int):
        run_dir.mkdir(parents=True, exist_ok=True)
        self.path = run_dir / "metrics.csv"
        rows = []
        if start and self.path.exists():
            with open(self.path) as f:
                rows = [r for r in csv.DictReader(f) if int(r["step"]) <= start]
        self.file = open(self.path, "w", newline="")
        self.writer = csv.DictWriter(self.file, fieldnames=["step", "loss", "lr", "seconds"])
        self.writer.writeheader()
        self.writer.writerows(rows)
        self.file.flush()                               # a run killed before its next log keeps its history
        self.offset = float(rows[-1]["seconds"]) if rows else 0.0     # wall time accumulates across resumes
        try:
            from torch.utils.tensorboard import SummaryWriter
            self.tensorboard = SummaryWriter(str(run_dir / "tensorboard"))
        except ImportError:
            self.tensorboard = None

    def write(self, step: int, loss: float, lr: float, seconds: float) -> None:
        self.writer.writerow({"step": step, "loss": f"{loss:.8g}", "lr": lr, "seconds": f"{self.offset + seconds:.2f}"})
        self.file.flush()
        if self.tensorboard is not None:
            self.tensorboard.add_scalar("loss", loss, step)

    def close(self) -> None:
        self.file.close()
        if self.tensorboard is not None:
            self.tensorboard.close()


def read_metrics(run_dir) -> list[dict]:
    with open(Path(run_dir) / "metrics.csv") as f:
        return [{"step": int(r["step"]), "loss": float(r["loss"]), "lr": float(r["lr"]),
                 "seconds": float(r["seconds"])}
                for r in csv.DictReader(f)]
