"""The training loop: a few real steps of every kind of run on a phantom case, resume equality, bad configs."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from volgen import hub
from volgen.errors import InputError
from volgen.training.config import load_config
from volgen.training.loop import read_metrics, train

ROOT = Path(__file__).resolve().parents[2]
TINY_NETWORK = {"in_channels": 8, "out_channels": 8, "channels": [16, 32], "attention_levels": [False, False],
                "num_res_blocks": 1, "norm_num_groups": 8, "num_class_embeds": 4}


def _config(tmp_path, data_root, name="run", **sections) -> Path:
    base = {"kind": "backbone",
            "model": {"codec": {"type": "haar", "config": {}}, "network": TINY_NETWORK, "parameterization": "x0",
                      "contrasts": ["t1n", "t1c", "t2w", "t2f"]},
            "data": {"root": str(data_root), "crop": [16, 16, 16]},
            "train": {"steps": 4, "batch_size": 2, "checkpoint_every": 2, "log_every": 1},
            "output": {"dir": str(tmp_path / name)}}
    for key, value in sections.items():
        base[key] = {**base[key], **value} if isinstance(value, dict) and key in ("data", "train", "output") \
            else value
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(base))
    return path


def _module_config(tmp_path, root, backbone, name="run", prior="regression", steps=2, checkpoint_every=2, **extra):
    """A tiny codec-path synthesis VCM on whole volumes, trained at the 10-step sampler's timesteps."""
    model = {"condition_path": "codec", "prior": prior, "prior_degree": 2, "mid_attention": False,
             "channels": [8, 16], "head_channels": 8, "num_head_channels": 8, "norm_num_groups": 8}
    train_section = {"steps": steps, "checkpoint_every": checkpoint_every, "sampler_steps": 10,
                     **extra.pop("train", {})}
    return load_config(_config(tmp_path, root, name=name, kind="module", module="vcm", task="synthesis",
                               backbone=str(backbone), model=model, data={"crop": [512, 512, 512]},
                               train=train_section, **extra))


@pytest.fixture(scope="module")
def trained_backbone(tmp_path_factory, phantom_dir):
    tmp = tmp_path_factory.mktemp("backbone")
    run = train(load_config(_config(tmp, phantom_dir.parent)), progress=False)
    return run / "model"


def test_backbone_run_exports_a_loadable_model(trained_backbone):
    backbone = hub.from_pretrained(trained_backbone, expected_type="backbone")
    assert backbone.config.contrasts == ("t1n", "t1c", "t2w", "t2f")
    losses = read_metrics(trained_backbone.parent)
    assert [r["step"] for r in losses] == [1, 2, 3, 4] and all(r["loss"] > 0 for r in losses)


def test_resumed_loss_curve_equals_the_uninterrupted_one(tmp_path, phantom_dir):
    whole = train(load_config(_config(tmp_path, phantom_dir.parent, "whole"), ["train.steps=4"]), progress=False)
    config = _config(tmp_path, phantom_dir.parent, "split")
    train(load_config(config, ["train.steps=2"]), progress=False)               # "interrupted" after step 2
    split = train(load_config(config, ["train.steps=4"]), resume=True, progress=False)
    a, b = read_metrics(whole), read_metrics(split)
    assert [r["step"] for r in a] == [r["step"] for r in b] == [1, 2, 3, 4]
    for x, y in zip(a, b):
        assert x["loss"] == pytest.approx(y["loss"], rel=1e-5, abs=1e-7)
    wa, wb = hub.from_pretrained(whole / "model").state_dict(), hub.from_pretrained(split / "model").state_dict()
    assert all(torch.allclose(wa[k], wb[k], atol=1e-6) for k in wa)


def test_a_cosine_schedule_sets_the_rate_of_every_step(tmp_path, phantom_dir):
    run = train(load_config(_config(tmp_path, phantom_dir.parent, train={"lr_schedule": "cosine", "lr": 1e-3})),
                progress=False)
    # over 4 steps the rate used in step s (logged after it, at s + 1) is 1e-3 * (1 + cos(pi s / 4)) / 2
    assert [r["lr"] for r in read_metrics(run)] == pytest.approx([1e-3, 0.85355e-3, 0.5e-3, 0.14645e-3], rel=1e-4)


@pytest.mark.parametrize("module, task", [("vcm", "synthesis"), ("vcm", "super_resolution"),
                                          ("vcm", "inpainting"), ("controlnet", "synthesis"),
                                          ("concat", "synthesis")])
def test_module_runs_train_only_the_module(tmp_path, phantom_dir, trained_backbone, module, task):
    config = _config(tmp_path, phantom_dir.parent, kind="module", module=module, task=task,
                     backbone=str(trained_backbone), model={}, train={"steps": 2, "checkpoint_every": 2})
    run = train(load_config(config), progress=False)
    conditioner = hub.from_pretrained(run / "model", expected_type=module)
    backbone = hub.from_pretrained(trained_backbone)
    frozen = backbone.state_dict()
    assert all(torch.equal(v, frozen[k]) for k, v in conditioner.backbone.state_dict().items())
    assert len(read_metrics(run)) == 2


@pytest.mark.parametrize("model, kind, latent", [
    ({"latent_channels": 3, "channels": [8, 16], "attention_levels": [False, False], "norm_num_groups": 8},
     "kl_autoencoder", (3, 8, 8, 8)),
    ({"type": "patch_autoencoder", "factor": 4, "latent_channels": 8, "width": 8, "depth": 1},
     "patch_autoencoder", (8, 4, 4, 4)),
])
def test_autoencoder_run(tmp_path, phantom_dir, model, kind, latent):
    config = _config(tmp_path, phantom_dir.parent, kind="autoencoder", model=model, train={"steps": 2})
    run = train(load_config(config), progress=False)
    codec = hub.from_pretrained(run / "model", expected_type=kind)
    assert codec.latent_shape((1, 16, 16, 16)) == latent
    assert all(r["loss"] > 0 for r in read_metrics(run))


@pytest.mark.parametrize("override, message", [
    ("train.stepz=3", "unknown key 'train.stepz'"),
    ("train.steps=many", "train.steps: expected int"),
    ("data.root=/no/such/folder", "data.root: folder /no/such/folder not found"),
    ("kind=painting", "kind: 'painting' is not one of"),
    ("train.lr_schedule=steps", "train.lr_schedule: 'steps' (constant, cosine)"),
    ("train.loss_space=pixels", "train.loss_space: 'pixels' (latent, image)"),
    ("train.timestep_weights=[1,1]", "train.timestep_weights: weights the train.sampler_steps timesteps"),
    ("train.sampler_steps=10 train.timestep_weights=[1,1]", "train.timestep_weights: expected 10 non-negative"),
    ("train.sampler_steps=2 train.timestep_weights=[1,-1]", "train.timestep_weights: expected 2 non-negative"),
    ("train.lesion_weight=0.5", "train.lesion_weight: must be at least 1"),
    ("train.region_weight=0.5", "train.region_weight: must be at least 1"),
    ("train.region_weight=4", "train.region_weight: only a module whose task makes a region"),
])
def test_bad_configs_fail_in_one_line_before_training(tmp_path, phantom_dir, override, message):
    config = _config(tmp_path, phantom_dir.parent)
    result = subprocess.run([sys.executable, "-m", "volgen", "train", str(config), *override.split()],
                            capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and str(config) in lines[0]
    assert not (tmp_path / "run").exists()


def test_a_folder_without_cases_is_refused(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no case folders found"):
        train(load_config(_config(tmp_path, tmp_path / "empty")), progress=False)
    assert not (tmp_path / "run" / "model").exists()


@pytest.mark.slow
def test_two_cpu_processes_with_accelerate_launch(tmp_path, phantom_dir):
    """`--cpu --num_processes 2` silently runs one process; `--multi_gpu` with gloo runs two on the CPU."""
    config = _config(tmp_path, phantom_dir.parent, train={"steps": 2, "checkpoint_every": 2})
    accelerate = Path(sys.executable).parent / "accelerate"
    result = subprocess.run([str(accelerate), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
                             "--mixed_precision", "no", "--dynamo_backend", "no",
                             "-m", "volgen", "train", str(config), "--no-progress"],
                            capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.count("model written to") == 1
    assert (tmp_path / "run" / "checkpoints" / "step-0000002" / "random_states_1.pkl").exists()   # a second rank


def test_a_codec_path_vcm_with_its_prior_trains_on_whole_volumes_and_exports_from_a_checkpoint(
        tmp_path, phantom_dir, trained_backbone):
    from volgen.training.loop import export_checkpoint

    config = _module_config(tmp_path, phantom_dir.parent, trained_backbone)
    run = train(config, progress=False)
    trained = hub.from_pretrained(run / "model")
    assert trained.prior.fitted and trained.encoder is None
    assert hub.read_config(run / "model")["metadata"]["steps"] == 2
    (run / "model" / "model.safetensors").unlink()
    export_checkpoint(config)                                   # the same EMA weights and prior, from step 2
    again = hub.from_pretrained(run / "model")
    a, b = trained.hub_state_dict(), again.hub_state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_whole_volume_batches_and_sampler_timesteps(phantom_dir):
    from volgen.backbones import Backbone, BackboneConfig
    from volgen.training.config import DataConfig
    from volgen.training.data import load_cases, sample_batch
    from volgen.training.objectives import noised

    cases = load_cases(DataConfig(root=str(phantom_dir.parent)), multiple=16)
    batch = sample_batch(cases, 2, [512, 512, 512], [], torch.Generator().manual_seed(0))
    assert torch.equal(batch["images"][0], cases[0].images)    # a crop larger than the volume is the volume
    backbone = Backbone(BackboneConfig(contrasts=()))
    z0 = torch.zeros(64, 8, 2, 2, 2)
    _, t, _ = noised(backbone.denoiser, z0, torch.Generator().manual_seed(0), sampler_steps=10)
    assert set(t.tolist()) <= set(backbone.denoiser.schedule.timesteps(10)) and len(set(t.tolist())) > 5


def test_timestep_weights_choose_how_often_each_visited_timestep_is_trained():
    from volgen.backbones import Backbone, BackboneConfig
    from volgen.training.objectives import noised

    denoiser = Backbone(BackboneConfig(contrasts=())).denoiser
    visited = denoiser.schedule.timesteps(10)                     # noisiest first
    z0 = torch.zeros(4000, 1, 1, 1, 1)
    only_first = [1] + [0] * 9
    _, t, _ = noised(denoiser, z0[:64], torch.Generator().manual_seed(0), 10, only_first)
    assert set(t.tolist()) == {visited[0]}
    # the two noisiest at weight 4 and eight more at weight 1: half the draws at the first two timesteps
    _, t, _ = noised(denoiser, z0, torch.Generator().manual_seed(0), 10, [4, 4] + [1] * 8)
    first_two = sum(t == visited[i] for i in range(2)).sum().item() / len(t)
    assert abs(first_two - 0.5) < 0.03
    assert set(t.tolist()) == set(visited)


def test_flips_mirror_only_the_axes_asked_for(phantom_dir):
    from volgen.training.config import DataConfig
    from volgen.training.data import load_cases, sample_batch

    config = DataConfig(root=str(phantom_dir.parent))
    cases = load_cases(config, multiple=16)
    image = cases[0].images
    seen = set()
    for seed in range(12):
        # the default: left-right only (the backbones must never see a brain upside down or back to front)
        out = sample_batch(cases[:1], 1, [512, 512, 512], config.flip_axes,
                           torch.Generator().manual_seed(seed))["images"][0]
        assert torch.equal(out, image) or torch.equal(out, image.flip(1))     # left-right (axis 0) or nothing
        seen.add(torch.equal(out, image))
    assert seen == {True, False}


def test_init_from_copies_what_fits_from_a_model_saved_before_a_tensor_was_added(tmp_path, phantom_dir,
                                                                                  trained_backbone, capsys):
    from safetensors.torch import load_file, save_file

    from volgen.training.loop import _init_from, build_model
    older = tmp_path / "older"                           # the same backbone saved without one of its tensors
    older.mkdir()
    state = load_file(str(trained_backbone / hub.WEIGHTS_FILE))
    dropped = sorted(state)[0]
    del state[dropped]
    save_file(state, str(older / hub.WEIGHTS_FILE))
    config = hub.read_config(trained_backbone)
    config["sha256"] = hub.sha256_of(older / hub.WEIGHTS_FILE)
    (older / hub.CONFIG_FILE).write_text(json.dumps(config))
    with pytest.raises(InputError, match="weights do not fit"):
        hub.from_pretrained(older)                       # strict loading refuses it ...
    model = build_model(load_config(_config(tmp_path, phantom_dir.parent)))[0]
    before = model.state_dict()[dropped].clone()
    _init_from(model, str(older))                        # ... fine-tuning copies the rest
    assert "1 kept their initialisation" in capsys.readouterr().out
    mine = model.state_dict()
    assert torch.equal(mine[dropped], before)
    assert all(torch.equal(mine[k], v.to(mine[k].dtype)) for k, v in state.items())


def test_a_resumed_log_keeps_its_history_on_disk_before_the_next_row(tmp_path):
    from volgen.training.loop import _MetricsLog
    (tmp_path / "metrics.csv").write_text("step,loss,lr,seconds\n1,0.5,0.001,1.0\n2,0.4,0.001,2.0\n3,0.3,0.001,3.0\n")
    log = _MetricsLog(tmp_path, 2)                       # resumed at step 2: row 3 is dropped, rows 1-2 are kept
    assert [r["step"] for r in read_metrics(tmp_path)] == [1, 2]   # on disk before anything new is logged
    log.file.close()


def test_init_from_a_backbone_keeps_the_pretrained_codec_of_the_new_one(tmp_path, phantom_dir):
    """A backbone retrained on a new autoencoder with init_from the old backbone: the denoiser starts from the old
    one, the codec stays the new autoencoder (the old codec's tensors have the same shapes and must not leak in)."""
    codecs = []
    for seed in (0, 1):                                  # two autoencoders of one shape, different weights
        config = _config(tmp_path, phantom_dir.parent, name=f"ae{seed}", kind="autoencoder",
                         model={"type": "patch_autoencoder", "factor": 2, "latent_channels": 8, "width": 8,
                                "depth": 1}, train={"steps": 2, "lr": 1e-2, "seed": seed})
        codecs.append(train(load_config(config), progress=False) / "model")
    network = {**TINY_NETWORK, "in_channels": 8, "out_channels": 8}
    old = train(load_config(_config(tmp_path, phantom_dir.parent, name="old", train={"steps": 2},
                                    model={"codec": {"pretrained": str(codecs[0])}, "network": network,
                                           "parameterization": "x0", "contrasts": ["t1n", "t1c", "t2w", "t2f"]})),
                progress=False) / "model"
    new = train(load_config(_config(tmp_path, phantom_dir.parent, name="new", init_from=str(old),
                                    train={"steps": 2, "lr": 0.0},
                                    model={"codec": {"pretrained": str(codecs[1])}, "network": network,
                                           "parameterization": "x0", "contrasts": ["t1n", "t1c", "t2w", "t2f"]})),
                progress=False) / "model"
    wanted, old_backbone = hub.from_pretrained(codecs[1]).state_dict(), hub.from_pretrained(old)
    got = hub.from_pretrained(new)
    assert any(not torch.equal(v, old_backbone.codec.state_dict()[k]) for k, v in wanted.items())
    assert all(torch.equal(v, wanted[k]) for k, v in got.codec.state_dict().items())
    old_denoiser = old_backbone.denoiser.state_dict()
    assert all(torch.equal(v, old_denoiser[k]) for k, v in got.denoiser.state_dict().items())   # lr 0: as copied


def test_a_module_keeps_the_prior_init_from_copied_when_told_not_to_refit(tmp_path, phantom_dir, trained_backbone):
    from volgen.phantom import generate_case, write_case

    other = tmp_path / "other"                          # a different case: a refit prior would change
    write_case(generate_case(seed=8, index=0), other)
    runs = {}
    for name, root, train_section in (("first", phantom_dir.parent, {}),
                                      ("kept", other, {"refit_prior": False}), ("refit", other, {})):
        init = {"init_from": str(runs["first"])} if runs else {}
        config = _module_config(tmp_path, root, trained_backbone, name=name, steps=1, checkpoint_every=1,
                                train=train_section, **init)
        runs[name] = train(config, progress=False) / "model"
    prior = {name: {k: v for k, v in hub.from_pretrained(path).hub_state_dict().items() if k.startswith("prior.")}
             for name, path in runs.items()}
    assert prior["first"] and all(torch.equal(prior["first"][k], prior["kept"][k]) for k in prior["first"])
    assert any(not torch.equal(prior["first"][k], prior["refit"][k]) for k in prior["first"])


def test_cases_load_in_parallel_exactly_as_one_by_one(tmp_path, phantom_dir, monkeypatch):
    import os

    from volgen.phantom import generate_case, write_case
    from volgen.training.config import DataConfig
    from volgen.training.data import load_cases

    for index in range(2):
        write_case(generate_case(seed=9, index=index), tmp_path)
    config = DataConfig(root=str(tmp_path))
    parallel = load_cases(config, multiple=16, with_healthy=True)
    monkeypatch.setattr(os, "cpu_count", lambda: 1)
    serial = load_cases(config, multiple=16, with_healthy=True)
    assert [c.name for c in parallel] == [c.name for c in serial] == sorted(c.name for c in serial)
    for a, b in zip(parallel, serial):
        assert all(torch.equal(getattr(a, key), getattr(b, key)) for key in ("images", "healthy", "seg", "brain"))


def test_bias_correction_at_loading_takes_the_phantoms_fields_out(tmp_path):
    from dataclasses import replace

    from volgen.phantom import PhantomSpec, generate_case, write_case
    from volgen.training.config import DataConfig
    from volgen.training.data import load_cases

    spec = PhantomSpec(pet=None).without_noise()             # the two cases differ by their fields alone
    flat = replace(spec, mri=replace(spec.mri, bias=0.0))     # every other draw of the case is the same
    write_case(generate_case(seed=7, index=0, spec=spec), tmp_path / "biased")
    write_case(generate_case(seed=7, index=0, spec=flat), tmp_path / "flat")

    def images(folder, correct):
        return load_cases(DataConfig(root=str(tmp_path / folder), bias_correction=correct), multiple=16)[0].images

    truth, given, corrected = images("flat", False), images("biased", False), images("biased", True)
    head = (truth > -0.9).all(0) & (given > -0.9).all(0)

    def field_sd(loaded):       # how far each contrast is from the field-free case, as a log gain's spread
        return torch.stack([torch.log((loaded[c] + 1) / (truth[c] + 1))[head].std() for c in range(len(truth))])

    left, before = field_sd(corrected), field_sd(given)
    # io/bias_field.py leaves 0.38 of a field on validation phantoms (worst 0.96); here 0.26-0.55 per contrast
    assert (left < 0.7 * before).all() and left.sum() < 0.5 * before.sum(), (left, before)
    assert (corrected[given == -1] == -1).all()        # the background stays background


def test_training_noise_is_the_step_generators_stream():
    """Training seeds a CPU generator per step (what makes a resumed run equal the uninterrupted one); the noise is
    drawn from it on its own device and only then moved to the volumes' (on a GPU, drawing there with a CPU
    generator is an error)."""
    from volgen.backbones import Backbone, BackboneConfig
    from volgen.training.objectives import noised

    denoiser = Backbone(BackboneConfig(contrasts=())).denoiser
    _, _, eps = noised(denoiser, torch.zeros(2, 8, 2, 2, 2), torch.Generator().manual_seed(0))
    gen = torch.Generator().manual_seed(0)
    denoiser.schedule.training_timesteps(2, gen)       # the same stream: timesteps first, then the noise
    assert torch.equal(eps, torch.randn(2, 8, 2, 2, 2, generator=gen))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_a_module_run_trains_and_checkpoints_on_a_gpu(tmp_path, phantom_dir, trained_backbone):
    """The two errors the first GPU run hit: noise drawn on the GPU from a CPU generator, and the EMA kept on the
    CPU while the weights moved to the GPU."""
    config = _module_config(tmp_path, phantom_dir.parent, trained_backbone, checkpoint_every=1)
    run = train(config, progress=False)
    assert read_metrics(run)[-1]["step"] == 2 and hub.from_pretrained(run / "model").prior.fitted


def test_init_from_copies_a_prior_whole_or_not_at_all(tmp_path, phantom_dir, trained_backbone):
    """A saved prior missing one of its tensors (another format, say) must not arrive as 'fitted' without its
    values: then nothing of it is copied and the run fits its own."""
    from safetensors.torch import load_file, save_file

    from volgen.training.loop import _init_from
    config = _module_config(tmp_path, phantom_dir.parent, trained_backbone, prior="table", steps=1,
                            checkpoint_every=1)
    run = train(config, progress=False) / "model"
    state = load_file(str(run / hub.WEIGHTS_FILE))
    del state["prior.table_cells"]                          # the flag "prior.done" stays, and says fitted
    assert bool(state["prior.done"])
    partial = tmp_path / "partial"
    partial.mkdir()
    save_file(state, str(partial / hub.WEIGHTS_FILE))
    saved = hub.read_config(run)
    saved["sha256"] = hub.sha256_of(partial / hub.WEIGHTS_FILE)
    (partial / hub.CONFIG_FILE).write_text(json.dumps(saved))
    from volgen.training.loop import build_model
    fresh, *_ = build_model(config)
    _init_from(fresh, str(partial))
    assert not fresh.prior.fitted
    _init_from(fresh, str(run))
    assert fresh.prior.fitted


def test_a_fine_tune_on_cases_of_mixed_fields_of_view_runs(tmp_path, phantom_dir):
    """A 1 mm LPS int16 BraTS 2021 case (120x120x78 mm here, 64x64x48 on the 2 mm model grid) beside a phantom
    (96x112x96): crops larger than the small case along an axis are padded with background, not a stack error."""
    import numpy as np

    from tests.helpers import save_nifti, smooth_volume

    root = tmp_path / "mixed"
    brats = root / "BraTS2021_00000"
    brats.mkdir(parents=True)
    lps = np.diag([-1.0, -1.0, 1.0, 1.0])
    for i, name in enumerate(("t1", "t1ce", "t2", "flair")):
        save_nifti(brats / f"BraTS2021_00000_{name}.nii.gz", smooth_volume((120, 120, 78), seed=i).astype(np.int16),
                   lps)
    (root / phantom_dir.name).symlink_to(phantom_dir)
    run = train(load_config(_config(tmp_path, root, data={"crop": [64, 64, 64]}, train={"steps": 2})),
                progress=False)
    assert [r["step"] for r in read_metrics(run)] == [1, 2]


def test_a_training_case_that_cannot_be_read_is_named_in_one_line(tmp_path, phantom_dir):
    """Cases load in worker processes: the worker's one-line error reaches the parent whole, naming the file."""
    from volgen.training.config import DataConfig
    from volgen.training.data import load_cases

    root = tmp_path / "cases"
    for name in ("a", "b"):
        (root / name).mkdir(parents=True)
        for contrast in ("t1n", "t1c", "t2w", "t2f"):
            (root / name / f"{name}-{contrast}.nii.gz").symlink_to(phantom_dir / f"{phantom_dir.name}-{contrast}.nii.gz")
    (root / "b" / "b-t2w.nii.gz").unlink()
    (root / "b" / "b-t2w.nii.gz").write_bytes(b"not a nifti")
    with pytest.raises(InputError, match=r"b-t2w\.nii\.gz: not a readable NIfTI"):
        load_cases(DataConfig(root=str(root)), multiple=16)


def test_the_readme_resume_command_resumes_from_the_runs_own_config(tmp_path, phantom_dir):
    """`volgen train <packaged> output.dir=R --resume`: the packaged config's data.root does not exist here; the run's
    saved run-config.json is the base (its data, tiny network and 2 steps), and train.steps=4 goes on top."""
    run_dir = tmp_path / "R"
    train(load_config(_config(tmp_path, phantom_dir.parent), [f"output.dir={run_dir}", "train.steps=2"]),
          progress=False)
    result = subprocess.run([sys.executable, "-m", "volgen", "train", "backbone_wavelet", f"output.dir={run_dir}",
                             "train.steps=4", "--resume", "--no-progress"], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert [r["step"] for r in read_metrics(run_dir)] == [1, 2, 3, 4]
    saved = json.loads((run_dir / "run-config.json").read_text())
    assert saved["train"]["steps"] == 4 and saved["data"]["root"] == str(phantom_dir.parent)


def test_a_training_folder_without_cases_names_no_option_train_lacks(tmp_path):
    (tmp_path / "data" / "scans").mkdir(parents=True)
    (tmp_path / "data" / "scans" / "scan.nii.gz").write_bytes(b"")
    result = subprocess.run([sys.executable, "-m", "volgen", "train", str(_config(tmp_path, tmp_path / "data"))],
                            capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 1
    error = [line for line in result.stderr.splitlines() if line.startswith("volgen: error:")]
    assert len(error) == 1 and "no case folders found" in error[0] and "--t1n" not in result.stderr


def test_train_vcm_py_is_volgen_train():
    result = subprocess.run([sys.executable, "train_vcm.py", "--list"], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0 and "vcm_synthesis" in result.stdout and "vcm_inpainting" in result.stdout


def test_a_lesion_weight_reaches_the_loss_of_a_module_run(tmp_path, phantom_dir, trained_backbone):
    # the same steps, seeds and batches: only the lesion's share of the loss differs, so the logged losses do
    plain = train(_module_config(tmp_path, phantom_dir.parent, trained_backbone, name="plain"), progress=False)
    weighted = train(_module_config(tmp_path, phantom_dir.parent, trained_backbone, name="weighted",
                                    train={"lesion_weight": 8.0}), progress=False)
    losses = [[r["loss"] for r in read_metrics(run)] for run in (plain, weighted)]
    assert len(losses[0]) == len(losses[1]) == 2
    assert all(abs(a - b) > 1e-6 * max(a, b) for a, b in zip(*losses))
    assert json.loads((weighted / "run-config.json").read_text())["train"]["lesion_weight"] == 8.0


def test_a_region_weight_reaches_the_loss_of_an_inpainting_run(tmp_path, phantom_dir, trained_backbone):
    # whole volumes, so every batch holds its hole: the same steps, seeds and batches, only the hole's share differs
    def run(name, **weights):
        config = _config(tmp_path, phantom_dir.parent, name=name, kind="module", module="vcm", task="inpainting",
                         backbone=str(trained_backbone), model={}, data={"crop": [512, 512, 512]},
                         train={"steps": 2, "checkpoint_every": 2, **weights})
        return train(load_config(config), progress=False)
    plain, weighted = run("plain"), run("weighted", region_weight=8.0)
    losses = [[r["loss"] for r in read_metrics(r)] for r in (plain, weighted)]
    assert len(losses[0]) == len(losses[1]) == 2
    assert all(abs(a - b) > 1e-6 * max(a, b) for a, b in zip(*losses))
    assert json.loads((weighted / "run-config.json").read_text())["train"]["region_weight"] == 8.0


def test_a_lesion_weight_without_labels_is_refused_in_one_line(tmp_path, phantom_dir, trained_backbone):
    import shutil

    unlabelled = tmp_path / "cases" / phantom_dir.name
    shutil.copytree(phantom_dir, unlabelled, ignore=shutil.ignore_patterns("*-seg.nii.gz"))
    config = _module_config(tmp_path, unlabelled.parent, trained_backbone, train={"lesion_weight": 4.0})
    with pytest.raises(InputError, match="train.lesion_weight needs every case's lesion labels"):
        train(config, progress=False)
    assert not (tmp_path / "run" / "model").exists()
