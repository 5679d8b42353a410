"""The 1 mm detail refiner (volgen/modules/detail_refiner.py) and where the synthesis job applies it
(volgen/tasks/detail.py `refine_fine`): after the detail transfer, for the targets its config names, only with the
module it was trained on."""
import numpy as np
import pytest
import torch

from tests.helpers import write_brats_case
from tests.tasks.test_detail import _tiny_synthesis_module
from volgen import hub
from volgen.io.preprocess import background_level
from volgen.modules.detail_refiner import DetailRefiner, from_cells, to_cells
from volgen.tasks import models
from volgen.tasks.detail import refine_fine, refiner_inputs
from volgen.tasks.synthesis import synthesize


def _random_refiner(targets=("t1c",), seed=0) -> DetailRefiner:
    torch.manual_seed(seed)
    refiner = DetailRefiner(channels=8, blocks=1, coarse_blocks=1, targets=targets)
    for layer in (refiner.out, *[b.second for b in refiner.modules() if hasattr(b, "second")]):
        torch.nn.init.normal_(layer.weight, std=0.05)
    return refiner.eval()


def test_cells_hold_each_2cube_block_as_channels_and_come_back_exactly():
    x = torch.arange(2 * 3 * 4 * 6 * 8, dtype=torch.float32).reshape(2, 3, 4, 6, 8)
    cells = to_cells(x)
    assert cells.shape == (2, 24, 2, 3, 4)
    np.testing.assert_array_equal(cells[1, 8:16, 1, 2, 3].numpy(), x[1, 1, 2:4, 4:6, 6:8].reshape(-1).numpy())
    np.testing.assert_array_equal(from_cells(cells).numpy(), x.numpy())


def test_an_untrained_refiner_returns_the_estimate_and_a_saved_one_comes_back_with_its_targets(tmp_path):
    inputs = torch.rand(1, 5, 8, 12, 16)
    which = torch.eye(4)[[1]]
    np.testing.assert_array_equal(DetailRefiner()(inputs, which).detach().numpy(), inputs[:, :1].numpy())
    refiner = _random_refiner(targets=("t1c", "t2f"))
    with torch.no_grad():
        refined = refiner(inputs, which)
    assert refined.shape == (1, 1, 8, 12, 16) and not torch.allclose(refined, inputs[:, :1])
    hub.save_pretrained(refiner, tmp_path / "refiner", metadata={"synthesis_module_sha256": "abc"})
    loaded = hub.from_pretrained(tmp_path / "refiner", expected_type="detail_refiner")
    assert loaded.targets == ("t1c", "t2f") and loaded.hub_metadata["synthesis_module_sha256"] == "abc"
    with torch.no_grad():
        np.testing.assert_array_equal(loaded(inputs, which).numpy(), refined.numpy())


def test_refine_fine_works_in_the_heads_box_padded_to_cells_and_in_float32_under_autocast():
    rng = np.random.default_rng(0)
    estimate = rng.uniform(0, 1, (21, 23, 19)).astype(np.float32)
    conditions = {c: rng.uniform(0, 1, estimate.shape).astype(np.float32) for c in ("t1n", "t2w")}
    head = np.zeros(estimate.shape, bool)
    head[3:18, 2:21, 4:15] = True                                   # a box of 15 x 19 x 11: not multiples of 4
    refiner = _random_refiner()
    out = refine_fine(refiner, estimate, conditions, "t1c", head)
    assert out.dtype == np.float32 and out.shape == estimate.shape
    outside = ~np.zeros(estimate.shape, bool)
    outside[3:18, 2:21, 4:15] = False
    np.testing.assert_array_equal(out[outside], estimate[outside])
    box = (slice(3, 18), slice(2, 21), slice(4, 15))
    inputs = refiner_inputs(estimate[box], {c: v[box] for c, v in conditions.items()}, "t1c")
    assert np.array_equal(inputs[2], np.zeros_like(estimate[box])) and np.array_equal(inputs[1], conditions["t1n"][box])
    padded = torch.nn.functional.pad(torch.from_numpy(inputs)[None], (0, 1, 0, 1, 0, 1))     # to 16 x 20 x 12
    with torch.no_grad():
        want = refiner(padded, torch.eye(4)[[1]])[0, 0, :15, :19, :11].numpy()
    np.testing.assert_allclose(out[box], want, atol=1e-6)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under = refine_fine(refiner, estimate, conditions, "t1c", head)
    assert under.dtype == np.float32
    np.testing.assert_array_equal(under, out)                  # "fp32" is float32 under anyone's autocast
    bf16 = refine_fine(refiner, estimate, conditions, "t1c", head, precision="bf16")
    assert bf16.dtype == np.float32 and not np.array_equal(bf16, out)
    np.testing.assert_allclose(bf16, out, atol=0.02 * np.abs(out - estimate).max())


@pytest.fixture
def registered_refiner(tmp_path, monkeypatch):
    """Registers a refiner under the shipped name for one test (fresh model cache): (folder of the tiny synthesis
    module, a function that saves and registers a refiner for given targets and module sha256)."""
    monkeypatch.setattr(hub, "_USER_REGISTRY", {})
    monkeypatch.setattr(models, "_CACHE", {})

    def register(targets, sha256):
        folder = tmp_path / f"refiner-{'-'.join(targets)}-{sha256[:6]}"
        hub.save_pretrained(_random_refiner(targets), folder, metadata={"synthesis_module_sha256": sha256},
                            overwrite=True)
        models._CACHE.clear()
        hub.register(models.DETAIL_REFINER, folder)
    return register


def test_the_job_refines_a_1mm_mean_of_the_targets_chosen_with_the_module_it_was_trained_on(tmp_path, tiny_models,
                                                                                           registered_refiner):
    module = _tiny_synthesis_module(tmp_path, tiny_models)
    sha = hub.from_pretrained(module).hub_source["sha256"]
    folder = write_brats_case(tmp_path, "fine", shape=(40, 44, 36), affine=np.diag([1.0, 1.0, 1.0, 1.0]))
    cases = {c: folder / f"fine-{c}.nii.gz" for c in ("t1n", "t2w", "t2f")}
    settings = dict(target="t1c", model=module, steps=2, progress=False)
    unrefined = synthesize(cases, refine=False, **settings)
    assert unrefined.info["detail_refined"] == []
    registered_refiner(("t1c",), sha)
    refined = synthesize(cases, **settings)
    assert refined.info["detail_refined"] == ["t1c"]
    fine, plain = refined.outputs["t1c"], unrefined.outputs["t1c"]
    assert fine.shape == (40, 44, 36) and fine.array.dtype == np.float32
    np.testing.assert_array_equal(fine.affine, plain.affine)
    assert not np.array_equal(fine.array, plain.array)
    head = np.any([v.array > background_level(v.array) for v in refined.inputs.values()], axis=0)
    assert 0 < head.sum() < head.size
    np.testing.assert_array_equal(fine.array[~head], 0)                       # still 0 outside the head
    for targets, trained_on in ((("t2f",), sha), (("t1c",), "0" * 64)):      # another target; another module
        registered_refiner(targets, trained_on)
        other = synthesize(cases, **settings)
        assert other.info["detail_refined"] == []
        np.testing.assert_array_equal(other.outputs["t1c"].array, plain.array)
    registered_refiner(("t1c",), sha)
    sample = synthesize(cases, estimate="sample", **settings)
    assert sample.info["detail_refined"] == []                 # trained on posterior means: a sample is left as drawn


def test_a_grid_the_refiner_did_not_learn_gets_the_fit_alone(tmp_path, tiny_models, registered_refiner):
    """1.4 mm is finer than 0.75x the model's 2 mm (the detail transfer runs) but not the 1 mm grid the refiner
    learned (2^3 voxels to a model cell), so it is left out; 0.9 mm is within its tolerance."""
    module = _tiny_synthesis_module(tmp_path, tiny_models)
    registered_refiner(("t1c",), hub.from_pretrained(module).hub_source["sha256"])
    for spacing, refined in ((1.4, []), (0.9, ["t1c"])):
        folder = write_brats_case(tmp_path, f"g{spacing}", shape=(30, 32, 28), affine=np.diag([spacing] * 3 + [1.0]))
        cases = {c: folder / f"g{spacing}-{c}.nii.gz" for c in ("t1n", "t2w", "t2f")}
        result = synthesize(cases, target="t1c", model=module, steps=2, progress=False)
        assert result.info["detail_transfer"] is True and result.info["detail_refined"] == refined, spacing
