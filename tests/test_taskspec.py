"""One home per task: a new task is a TaskSpec plus a run config, and what a module trains on is laid out as the jobs
give it at inference."""
import pytest
import numpy as np
import torch
import yaml

from volgen import hub
from volgen.ops import KnownVoxels, ThickSlices, dilate
from volgen.tasks import generate
from volgen.taskspec import TASKS, TaskSpec, pick, register
from volgen.training.config import DataConfig, load_config
from volgen.training.loop import train


class Denoising(TaskSpec):
    """A toy task: the image from a noisy copy of itself."""

    name, priors, output = "toy_denoising", ("none",), "denoised"

    def conditions(self, contrasts):
        return ("noisy",)

    def example(self, images, k, batch, data, gen):
        target = pick(images, k)
        return target, {"conditions": target + 0.1 * torch.randn(target.shape, generator=gen)}

    def inputs(self, *, noisy):
        return {"conditions": noisy}


@pytest.fixture
def toy_task():
    spec = register(Denoising())
    yield spec
    TASKS.pop(spec.name)


def test_a_new_task_is_a_spec_and_a_run_config(toy_task, tmp_path, phantom_dir, tiny_models):
    config = {"kind": "module", "task": "toy_denoising", "module": "vcm", "backbone": str(tiny_models["backbone"]),
              "model": {"channels": [8, 16], "encoder_channels": [8], "features": 8, "head_channels": 8,
                        "num_head_channels": 8, "norm_num_groups": 8},
              "data": {"root": str(phantom_dir.parent), "crop": [16, 16, 16]},
              "train": {"steps": 2, "batch_size": 1, "checkpoint_every": 2},
              "output": {"dir": str(tmp_path / "run")}}
    (tmp_path / "toy.yaml").write_text(yaml.safe_dump(config))
    run = train(load_config(tmp_path / "toy.yaml"), progress=False)
    module = hub.from_pretrained(run / "model")
    assert module.conditions == ("noisy",) and module.hub_metadata["task"] == "toy_denoising"
    noisy = torch.rand(1, 1, 16, 16, 16) * 2 - 1
    out = generate(module, (1, 16, 16, 16), contrast="t2f", steps=2, **toy_task.inputs(noisy=noisy))
    assert out.image.shape == (1, 1, 16, 16, 16) and torch.isfinite(out.image).all()
    with pytest.raises(Exception, match="model.prior: 'table' does not fit task toy_denoising"):
        load_config(tmp_path / "toy.yaml", ["model.prior=table"])


def test_training_examples_are_laid_out_as_the_jobs_give_the_conditions():
    gen = torch.Generator().manual_seed(0)
    images = torch.rand(2, 4, 8, 8, 8, generator=gen) * 2 - 1
    healthy = images - 0.2
    seg = torch.zeros(2, 1, 8, 8, 8, dtype=torch.long)
    seg[:, :, 2:5, 2:5, 2:5] = 1
    data = DataConfig(sr_factor=4, sr_axis=2)
    k = torch.tensor([1, 3])
    # super-resolution: the condition is the thick slices repeated; the job's projection keeps exactly those
    target, cond = TASKS["super_resolution"].example(images, k, {}, data, gen)
    job = TASKS["super_resolution"].inputs(lowres=cond["conditions"][:1], factor=4, dim=4)
    assert torch.equal(job["conditions"], cond["conditions"][:1]) and isinstance(job["projection"], ThickSlices)
    assert torch.allclose(job["projection"](target[:1]).reshape(1, 1, 8, 8, 2, 4).mean(-1),
                          cond["conditions"][:1, :, :, :, ::4], atol=1e-6)
    # inpainting: a fill of the healthy twin (insert = 0) is conditioned as the job conditions a fill
    for _ in range(20):                                     # draw until item 0 is a fill
        target, cond = TASKS["inpainting"].example(images, k, {"healthy": healthy, "seg": seg}, data, gen)
        if cond["conditions"][0, 2].max() == 0:
            break
    assert cond["conditions"][0, 2].max() == 0, "no fill drawn"
    mask = cond["conditions"][:1, 1:2]
    lesion_image = pick(images, k)[:1]
    job = TASKS["inpainting"].inputs(image=lesion_image, mask=mask, insert=False)
    assert torch.equal(job["conditions"], cond["conditions"][:1]) and isinstance(job["projection"], KnownVoxels)
    assert job["mean_of"] == "draws" and torch.equal(target[:1], pick(healthy, k)[:1])
    radius = (round(float(mask.sum()) ** (1 / 3)) - 3) // 2          # the 3^3 lesion grown to a (3 + 2r)^3 cube
    assert torch.equal(mask, dilate((seg[:1] > 0).float(), radius))
    # synthesis: the job's present flags and conditions follow the module's contrast order
    job = TASKS["synthesis"].inputs(volumes={"t2f": images[0, 3], "t1n": images[0, 0]},
                                    contrasts=("t1n", "t1c", "t2w", "t2f"), shape=(8, 8, 8))
    assert job["present"].tolist() == [[1.0, 0.0, 0.0, 1.0]] and torch.equal(job["conditions"][0, 3], images[0, 3])
    # its mean is refined by the present conditions alone: a linear combination of them comes back as it was
    linear = (0.7 * images[0, 3] - 0.4 * images[0, 0] + 0.1)[None, None]
    assert [g.shape for g in job["refine"].guides] == [(8, 8, 8)] * 2
    torch.testing.assert_close(job["refine"](linear), linear, atol=0.02, rtol=0)
    assert not torch.allclose(job["refine"](pick(images, k)[:1]), pick(images, k)[:1], atol=0.02)


def test_inpainting_blob_holes_lie_in_the_healthy_head_and_fill_the_twin_with_itself():
    gen = torch.Generator().manual_seed(0)
    healthy = torch.full((4, 4, 24, 24, 24), -1.0)
    healthy[:, :, 4:20, 4:20, 4:20] = torch.rand(4, 4, 16, 16, 16, generator=gen)       # the head: a 16^3 cube
    images = healthy + 0.3
    seg = torch.zeros(4, 1, 24, 24, 24, dtype=torch.long)
    seg[:, :, 10:13, 10:13, 10:13] = 2
    k = torch.tensor([0, 1, 2, 3])
    target, cond = TASKS["inpainting"].example(images, k, {"healthy": healthy, "seg": seg},
                                               DataConfig(inpainting_blobs=1.0), gen)
    fills = cond["conditions"][:, 2].flatten(1).amax(1) == 0
    assert fills.any()
    for b in range(4):
        mask = cond["conditions"][b, 1] > 0
        if fills[b]:         # a blob: not the tumour, inside the head; the input outside it is the healthy twin
            assert mask.any() and not torch.equal(mask, (seg[b, 0] > 0))
            assert (healthy[b, k[b]][mask] > -1).all()
            assert torch.equal(cond["conditions"][b, 0][~mask], healthy[b, k[b]][~mask])
            assert torch.equal(target[b, 0], healthy[b, k[b]])
        else:                # a lesion grown into the twin keeps the tumour's mask
            assert mask[11, 11, 11] and torch.equal(target[b, 0], images[b, k[b]])


def test_the_region_an_inpainting_example_weighs_is_its_hole():
    gen = torch.Generator().manual_seed(1)
    healthy = torch.full((4, 4, 24, 24, 24), -1.0)
    healthy[:, :, 4:20, 4:20, 4:20] = torch.rand(4, 4, 16, 16, 16, generator=gen)
    images = healthy + 0.3
    seg = torch.zeros(4, 1, 24, 24, 24, dtype=torch.long)
    seg[:, :, 10:13, 10:13, 10:13] = 2
    k = torch.tensor([0, 1, 2, 3])
    for blobs in (0.0, 1.0):
        _, cond = TASKS["inpainting"].example(images, k, {"healthy": healthy, "seg": seg},
                                              DataConfig(inpainting_blobs=blobs), gen)
        region = TASKS["inpainting"].region(cond)
        assert region.shape == (4, 1, 24, 24, 24) and region.dtype == torch.bool
        assert 27 <= region.sum(dim=(1, 2, 3, 4)).min() and region.float().mean() < 0.2
        assert (cond["conditions"][:, :1][region] == -1).all()        # what the module cannot see, it makes
        if blobs == 0:
            assert region[seg > 0].all()
    assert TASKS["inpainting"].has_region and not TASKS["synthesis"].has_region


def test_random_blobs_are_one_connected_bumpy_ball_inside_the_head():
    from scipy import ndimage

    from volgen.ops import random_blobs

    head = torch.zeros(3, 1, 40, 40, 40, dtype=torch.bool)
    head[:, :, 5:35, 5:35, 5:35] = True
    blobs = random_blobs(head, torch.Generator().manual_seed(1), radius=(4.0, 8.0))
    for b in range(3):
        blob = blobs[b, 0].numpy() > 0
        assert blob.any() and not (blob & ~head[b, 0].numpy()).any()
        assert ndimage.label(blob)[1] == 1
        assert 4 / 3 * np.pi * (4 * 0.8) ** 3 * 0.5 < blob.sum() < 4 / 3 * np.pi * (8 * 1.2) ** 3
