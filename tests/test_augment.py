"""volgen.augment inside real MONAI and TorchIO pipelines with two data-loader workers, with tiny models."""
import numpy as np
import pytest
import torch

from tests.helpers import write_brats_case
from volgen.augment import (ContrastDropout, InsertLesion, PseudoHealthy, RandomContrastDropout,
                            RandomSuperResolution, SynthesizeMissing)

KEYS = ("t1n", "t1c", "t2w", "t2f")


@pytest.fixture(scope="module")
def cases(tmp_path_factory):
    root = tmp_path_factory.mktemp("aug")
    return [write_brats_case(root, f"c{i}", shape=(32, 32, 24), seed=10 * i) for i in range(4)]


def _records(case):
    return {**{k: str(case / f"{case.name}-{k}.nii.gz") for k in KEYS}, "seg": str(case / f"{case.name}-seg.nii.gz")}


def _monai_loader(cases, transforms, num_workers):
    from monai.data import DataLoader, Dataset
    from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged

    pipeline = Compose([LoadImaged(keys=[*KEYS, "seg"]), EnsureChannelFirstd(keys=[*KEYS, "seg"]), *transforms])
    return DataLoader(Dataset([_records(c) for c in cases], transform=pipeline), batch_size=2,
                      num_workers=num_workers)


def _monai_batches(cases, transforms, num_workers):
    return list(_monai_loader(cases, transforms, num_workers))


def _readme_epochs(cases, model, seed, epochs=2):
    """The README's MONAI loop (dropout, then synthesis; two workers) for `epochs` epochs after set_determinism."""
    from monai.utils import set_determinism

    set_determinism(seed)
    try:
        loader = _monai_loader(cases, [RandomContrastDropout(KEYS, prob=0.5),
                                       SynthesizeMissing(KEYS, model=model, steps=2)], num_workers=2)
        return [list(loader) for _ in range(epochs)]
    finally:
        set_determinism(None)


def _stacked(epoch, key):
    return torch.cat([b[key].as_tensor() if hasattr(b[key], "as_tensor") else b[key] for b in epoch])


def test_augmentation_is_fresh_every_epoch_and_reproducible_under_set_determinism(cases, tiny_models):
    model = str(tiny_models["synthesis"])
    first, second = _readme_epochs(cases, model, seed=5)
    again = _readme_epochs(cases, model, seed=5)
    dropped = [_stacked(e, "dropped") for e in (first, second)]
    assert not torch.equal(*dropped)                                      # other contrasts hidden in epoch 2
    # a contrast synthesised in both epochs is another draw, not the same bytes
    both = (dropped[0] > 0) & (dropped[1] > 0)
    assert both.any()
    case, j = map(int, both.nonzero()[0])
    images = [_stacked(e, KEYS[j])[case] for e in (first, second)]
    assert not torch.equal(*images)
    for epoch, rerun in zip((first, second), again):                      # the same seeds give the same run
        for key in (*KEYS, "dropped", "synthesized"):
            assert torch.equal(_stacked(epoch, key), _stacked(rerun, key))


def test_fresh_epochs_in_a_plain_torch_loader_with_torchio(cases, tiny_models):
    tio = pytest.importorskip("torchio")
    subjects = [tio.Subject(**{k: tio.ScalarImage(p) for k, p in _records(c).items() if k != "seg"})
                for c in cases]

    def epochs(seed):
        torch.manual_seed(seed)
        pipeline = tio.Compose([RandomContrastDropout(KEYS, prob=0.5, mode="zero")])
        loader = torch.utils.data.DataLoader(tio.SubjectsDataset(subjects, transform=pipeline), batch_size=4,
                                             num_workers=2)
        return [next(iter(loader))["dropped"] for _ in range(3)]

    runs = epochs(1)
    assert not (torch.equal(runs[0], runs[1]) and torch.equal(runs[1], runs[2]))
    assert all(torch.equal(a, b) for a, b in zip(runs, epochs(1)))


def test_same_each_epoch_is_the_deterministic_form_whatever_the_workers(cases, tiny_models):
    transforms = [RandomContrastDropout(KEYS, prob=0.5, seed=3, same_each_epoch=True),
                  SynthesizeMissing(KEYS, model=str(tiny_models["synthesis"]), steps=2, seed=3,
                                    same_each_epoch=True)]
    two = _monai_batches(cases, transforms, num_workers=2)
    zero = _monai_batches(cases, transforms, num_workers=0)
    flags = torch.cat([b["synthesized"] for b in two])
    assert flags.shape == (4, 4) and flags.sum() > 0
    assert torch.equal(flags, torch.cat([b["dropped"] for b in two]))     # every dropped contrast was refilled
    for a, b in zip(two, zero):                                           # same result whatever the workers
        for key in KEYS:
            assert a[key].shape == (2, 1, 32, 32, 24)
            assert torch.equal(a[key].as_tensor(), b[key].as_tensor())
    for batch in two:                                                     # synthetic volumes are in [0, 1]
        for i in range(2):
            for j, key in enumerate(KEYS):
                if batch["synthesized"][i, j]:
                    assert 0 <= batch[key][i].min() and batch[key][i].max() <= 1
                    assert np.allclose(batch[key][i].affine, batch["t1n"][i].affine)


def test_inpainting_and_super_resolution_transforms_in_a_monai_loader(cases, tiny_models):
    transforms = [PseudoHealthy(("t2f",), mask_key="seg", model=str(tiny_models["inpainting"]), steps=2),
                  InsertLesion(("t1n",), mask_key="seg", model=str(tiny_models["inpainting"]), steps=2),
                  RandomSuperResolution(("t2w",), factor=4, prob=1.0, model=str(tiny_models["super_resolution"]),
                                        steps=2)]
    batches = _monai_batches(cases, transforms, num_workers=2)
    plain = _monai_batches(cases, [], num_workers=0)
    for batch, ref in zip(batches, plain):
        inside = ref["seg"] > 0
        for key in ("t2f", "t1n"):
            assert torch.equal(batch[key][~inside], ref[key][~inside].float())      # outside the mask: untouched
            assert not torch.equal(batch[key][inside], ref[key][inside].float())
        assert batch["healthy_inpainted"].tolist() == [1.0, 1.0] and batch["super_resolved"].tolist() == [1.0, 1.0]
        sr, orig = batch["t2w"].double(), ref["t2w"].double()
        blocks = lambda x: x.reshape(*x.shape[:-1], 6, 4).mean(-1)            # noqa: E731
        assert torch.allclose(blocks(sr), blocks(orig), atol=1e-3)            # the thick slices are reproduced
        assert not torch.allclose(sr, orig)


def test_synthesis_in_a_torchio_pipeline(cases, tiny_models):
    tio = pytest.importorskip("torchio")
    subjects = [tio.Subject(**{k: tio.ScalarImage(p) for k, p in _records(c).items() if k in ("t1n", "t2w")})
                for c in cases]
    pipeline = tio.Compose([SynthesizeMissing(("t1n", "t2w", "t2f"), model=str(tiny_models["synthesis"]), steps=2),
                            tio.RescaleIntensity(out_min_max=(0, 1))])
    loader = torch.utils.data.DataLoader(tio.SubjectsDataset(subjects, transform=pipeline), batch_size=2,
                                         num_workers=2)
    batches = list(loader)
    assert batches[0]["t2f"]["data"].shape == (2, 1, 32, 32, 24)
    assert torch.equal(torch.cat([b["synthesized"] for b in batches]),
                       torch.tensor([[0.0, 0.0, 1.0]] * 4))
    assert np.allclose(batches[0]["t2f"]["affine"], batches[0]["t1n"]["affine"])


def test_plain_callables_on_arrays():
    rng = np.random.default_rng(0)
    sample = {k: rng.random((1, 16, 16, 16)).astype(np.float32) for k in KEYS}
    dropout = RandomContrastDropout(KEYS, prob=1.0, min_keep=2, mode="zero", seed=1)
    out = dropout(dict(sample))
    assert out["dropped"].sum() == 2
    for j, key in enumerate(KEYS):
        assert isinstance(out[key], np.ndarray) and out[key].shape == (1, 16, 16, 16)
        assert (out[key].max() == 0) == bool(out["dropped"][j])
    calls = {tuple(dropout(dict(sample))["dropped"].tolist()) for _ in range(12)}
    assert len(calls) > 1                                                 # each call draws afresh
    fixed = ContrastDropout(KEYS, drop=("t1c", "t2f"))(dict(sample))
    assert fixed["dropped"].tolist() == [0.0, 1.0, 0.0, 1.0] and "t1c" not in fixed and "t1n" in fixed


def test_transforms_draw_one_sample_and_can_return_the_uncertainty(cases, tiny_models):
    from monai.transforms import EnsureChannelFirstd, LoadImaged

    records = _records(cases[0])
    loaded = EnsureChannelFirstd(keys=list(records))(LoadImaged(keys=list(records))(records))
    settings = dict(model=str(tiny_models["synthesis"]), steps=2, seed=3, same_each_epoch=True)
    one = SynthesizeMissing(KEYS, **settings)({k: v for k, v in loaded.items() if k != "t1c"})
    many = SynthesizeMissing(KEYS, samples=3, **settings)({k: v for k, v in loaded.items() if k != "t1c"})
    assert "t1c_uncertainty" not in one and many["t1c_uncertainty"].shape == many["t1c"].shape
    assert float(many["t1c_uncertainty"].min()) >= 0 and float(many["t1c_uncertainty"].max()) > 0
    # one draw either way (not the mean): the first of the batch is the single run's sample
    assert np.allclose(np.asarray(one["t1c"]), np.asarray(many["t1c"]), atol=1e-4)


def test_labelled_lesion_insertion_in_a_monai_loader_draws_afresh_and_updates_the_labels(cases, tiny_models):
    from monai.utils import set_determinism

    set_determinism(2)
    try:
        loader = _monai_loader(cases, [InsertLesion(KEYS, label_key="seg", model=str(tiny_models["lesion"]),
                                                    steps=2)], num_workers=2)
        epochs = [list(loader) for _ in range(2)]
    finally:
        set_determinism(None)
    plain = _monai_batches(cases, [], num_workers=0)
    for batch, ref in zip(epochs[0], plain):
        assert batch["lesion_inpainted"].tolist() == [1.0, 1.0]
        new, old = batch["seg"].as_tensor(), ref["seg"].as_tensor()
        assert torch.all(new[old > 0] == old[old > 0])                       # the case's own tumour stays
        tumour = new != old
        assert tumour.any() and set(new[tumour].unique().tolist()) <= {1.0, 2.0, 3.0}
        near = torch.nn.functional.max_pool3d(tumour.float(), 3, stride=1, padding=1) > 0
        for key in KEYS:                                                       # every contrast, only there
            assert torch.equal(batch[key][~near], ref[key][~near].float()), key
            assert not torch.equal(batch[key][tumour], ref[key][tumour].float()), key
    assert not torch.equal(_stacked(epochs[0], "seg"), _stacked(epochs[1], "seg"))   # another tumour next epoch


def test_labelled_lesion_insertion_can_push_the_tissue_aside(cases, tiny_models):
    """mass_effect_mm reaches the job: the same tumour (labels given by a key) changes voxels beyond its border only
    when the tissue is pushed."""
    from monai.transforms import EnsureChannelFirstd, LoadImaged

    records = _records(cases[1])
    sample = EnsureChannelFirstd(keys=[*KEYS, "seg"])(LoadImaged(keys=[*KEYS, "seg"])(records))
    new = torch.zeros_like(sample["seg"].as_tensor())
    new[0, 20:26, 20:26, 12:18] = 2
    new[0, 22:24, 22:24, 14:16] = 3
    sample["new"] = new
    out = {mm: InsertLesion(KEYS, label_key="seg", labels="new", model=str(tiny_models["lesion"]), steps=2,
                            mass_effect_mm=mm)({k: v.clone() if hasattr(v, "clone") else v for k, v in sample.items()})
           for mm in (0.0, (2.0, 3.0))}
    near = torch.nn.functional.max_pool3d((new > 0).float(), 3, stride=1, padding=1) > 0
    assert torch.equal(out[0.0]["t1n"][~near], sample["t1n"][~near].float())
    assert not torch.equal(out[(2.0, 3.0)]["t1n"][~near], sample["t1n"][~near].float())
    assert torch.equal(out[0.0]["seg"], out[(2.0, 3.0)]["seg"])


def test_labelled_lesion_insertion_can_z_score_with_the_statistics_from_before_it(cases, tiny_models):
    """z_score=True: every contrast z-scored over its nonzero voxels as MONAI's NormalizeIntensityd(nonzero=True)
    would z-score the case before the insertion, so the voxels the tumour left alone keep their source's z (MONAI's
    normaliser run after the insertion moves them); with nothing inserted it is that normaliser exactly."""
    from monai.transforms import EnsureChannelFirstd, LoadImaged, NormalizeIntensityd

    records = _records(cases[2])
    sample = EnsureChannelFirstd(keys=[*KEYS, "seg"])(LoadImaged(keys=[*KEYS, "seg"])(records))
    new = torch.zeros_like(sample["seg"].as_tensor())
    new[0, 8:20, 8:20, 6:16] = 2                                           # a large oedema: the brain's sd moves
    new[0, 11:17, 11:17, 8:14] = 3
    sample["new"] = new
    normalise = NormalizeIntensityd(keys=list(KEYS), nonzero=True, channel_wise=True)

    def copy(d):
        return {k: v.clone() if hasattr(v, "clone") else v for k, v in d.items()}

    settings = dict(label_key="seg", labels="new", model=str(tiny_models["lesion"]), steps=2, seed=1)
    scored = InsertLesion(KEYS, z_score=True, **settings)(copy(sample))
    raw = InsertLesion(KEYS, **settings)(copy(sample))
    before, after = normalise(copy(sample)), normalise(copy(raw))
    near = torch.nn.functional.max_pool3d((new > 0).float(), 3, stride=1, padding=1) > 0
    moved = 0.0
    for key in KEYS:
        assert torch.allclose(scored[key][~near], before[key][~near], atol=1e-5), key
        assert torch.allclose(scored[key][near], (raw[key][near] - sample[key][sample[key] != 0].mean())
                              / sample[key][sample[key] != 0].std(unbiased=False), atol=1e-4), key
        moved = max(moved, float((after[key][~near] - before[key][~near]).abs().max()))
    assert moved > 1e-3                                     # z-scored after the insertion, untouched tissue moves
    untouched = InsertLesion(KEYS, z_score=True, prob=0.0, **settings)(copy(sample))
    for key in KEYS:
        assert torch.allclose(untouched[key], before[key], atol=1e-5), key
    assert untouched["lesion_inpainted"] == 0.0
