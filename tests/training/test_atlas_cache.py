"""Training's cache of the registered inpainting prior: each case registered once per contrast, without the widest
training hole, read back on resume, and handed to the prior so that no step registers again."""
import numpy as np
import torch

from volgen.modules import registration, template_prior
from volgen.modules.template_prior import TemplateFillPrior
from volgen.ops import dilate
from volgen.taskspec import task
from volgen.training.atlas_cache import CACHE_FILE, attach_registered_atlases
from volgen.training.config import load_config
from volgen.training.data import CaseArrays
from volgen.training.loop import train

from tests.modules.test_registration import SIZE, _hole, _pattern, _shifted, _twins
from tests.training.test_loop import _config, trained_backbone  # noqa: F401 (a fixture)


def _cases(n=2):
    twins, _ = _twins(n)
    seg = torch.zeros(SIZE, SIZE, SIZE, dtype=torch.uint8)
    seg[10:13, 10:14, 11:13] = 2
    return [CaseArrays(f"case-{i}", images=twin.clone(), healthy=twin, seg=seg) for i, twin in enumerate(twins)]


def _fitted_prior():
    prior = TemplateFillPrior(4, registered=True)
    prior.fit(_twins(3)[0])
    return prior


def test_each_case_is_registered_once_per_contrast_without_its_widest_hole_and_read_back(tmp_path, monkeypatch):
    prior, cases = _fitted_prior(), _cases()
    seen = []
    real = prior.register_atlas
    monkeypatch.setattr(prior, "register_atlas", lambda image, weight, c: seen.append((weight, c)) or
                        real(image, weight, c))
    attach_registered_atlases(prior, cases, tmp_path, progress=False)
    hole = dilate((cases[0].seg > 0).float()[None, None], task("inpainting").max_margin)[0, 0]
    assert [c for _, c in seen] == [0, 1, 2, 3] * len(cases)
    assert all(torch.equal(weight, 1 - hole) for weight, _ in seen)   # unseen: every voxel the widest hole hides
    assert all(case.atlas.shape == (4, SIZE, SIZE, SIZE) and case.atlas.dtype == torch.float16 for case in cases)
    assert (tmp_path / CACHE_FILE).is_file()

    def refuse(*args):
        raise AssertionError("a resumed run registered again")

    monkeypatch.setattr(prior, "register_atlas", refuse)
    again = _cases()
    attach_registered_atlases(prior, again, tmp_path, progress=False)
    assert all(torch.equal(a.atlas, b.atlas) for a, b in zip(cases, again))


def test_the_prior_uses_a_given_registration_and_registers_an_item_marked_nan(monkeypatch):
    prior = _fitted_prior()
    truth = torch.from_numpy(0.1 + 0.5 * _shifted(_pattern(2), (1.0, 1.0, -0.5)))[None, None].repeat(2, 1, 1, 1, 1)
    mask = torch.from_numpy(_hole().astype(np.float32))[None, None].repeat(2, 1, 1, 1, 1)
    truth[1] = truth[1] * 0.9                                        # two different items: no dedupe
    conditions = torch.cat([truth * (1 - mask) - mask, mask, torch.zeros_like(mask)], dim=1)
    given = torch.from_numpy(_pattern(5))[None, None].repeat(2, 1, 1, 1, 1)
    given[1] = float("nan")
    calls = []
    monkeypatch.setattr(prior, "register_atlas", lambda image, weight, c: calls.append(c) or given[0, 0])
    with_cache = prior(conditions, None, torch.tensor([1, 2]), warped=given)
    assert calls == [2]                                              # only the NaN item was registered
    calls.clear()
    live = prior(conditions, None, torch.tensor([1, 2]))             # every item registered, to the same warp
    assert calls == [1, 2] and torch.equal(with_cache, live)


def test_the_inpainting_example_hands_the_cached_atlas_to_the_prior_except_for_blob_holes():
    cases = _cases(2)
    images = torch.stack([c.images for c in cases])
    atlas = torch.randn(2, 4, SIZE, SIZE, SIZE).half()
    batch = {"images": images, "healthy": images.clone(), "seg": torch.stack([c.seg for c in cases])[:, None],
             "atlas": atlas}
    k = torch.tensor([3, 1])
    spec = task("inpainting")

    class Data:
        inpainting_blobs = 0.0

    _, cond = spec.example(images, k, batch, Data, torch.Generator().manual_seed(0))
    assert torch.equal(cond["prior_options"]["warped"], atlas[[0, 1], [3, 1]][:, None].float())
    Data.inpainting_blobs = 1.0                                      # every healthy fill gets a blob hole instead
    _, cond = spec.example(images, k, batch, Data, torch.Generator().manual_seed(0))
    blob = cond["conditions"][:, 2].flatten(1).amax(1) < 0.5         # not an insertion: a blob hole
    warped = cond["prior_options"]["warped"]
    assert blob.any() and torch.isnan(warped[blob]).all() and torch.isfinite(warped[~blob]).all()


def test_an_inpainting_run_with_the_registered_prior_registers_before_its_steps_only(
        tmp_path, phantom_dir, trained_backbone, monkeypatch):  # noqa: F811 (the fixture)
    real = registration.register
    quick = lambda *args, **kwargs: real(*args, **{**kwargs, "levels": ((4, 3),)})   # noqa: E731 (a few steps)
    monkeypatch.setattr(registration, "register", quick)             # the atlas (groupwise template)
    calls = []
    monkeypatch.setattr(template_prior, "register", lambda *a, **k: calls.append(1) or quick(*a, **k))
    model = {"condition_path": "codec", "prior": "template_fill", "prior_registered": True, "prior_components": 0,
             "mid_attention": False, "channels": [8, 16], "head_channels": 8, "num_head_channels": 8,
             "norm_num_groups": 8}
    def run(steps, **options):
        train(load_config(_config(tmp_path, phantom_dir.parent, kind="module", module="vcm", task="inpainting",
                                  backbone=str(trained_backbone), model=model,
                                  train={"steps": steps, "checkpoint_every": 2})), progress=False, **options)

    run(2)
    assert len(calls) == 4                                           # one case, four contrasts, before the steps
    assert (tmp_path / "run" / CACHE_FILE).is_file()
    (tmp_path / "run" / CACHE_FILE).unlink()
    run(4, resume=True)                 # the atlas comes with the checkpoint, then the case is registered again
    assert len(calls) == 8 and (tmp_path / "run" / CACHE_FILE).is_file()
