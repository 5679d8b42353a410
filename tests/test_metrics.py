import numpy as np
import pytest
import torch
from skimage.metrics import normalized_root_mse, peak_signal_noise_ratio, structural_similarity

from tests.helpers import bench_harness
from volgen import metrics


@pytest.fixture
def pair():
    rng = np.random.default_rng(3)
    ref = rng.random((20, 18, 22))
    return ref + 0.05 * rng.standard_normal(ref.shape), ref


def test_against_scikit_image(pair):
    pred, ref = pair
    rng = float(np.ptp(ref))
    assert metrics.psnr(pred, ref) == pytest.approx(peak_signal_noise_ratio(ref, pred, data_range=rng), rel=1e-12)
    assert metrics.ssim(pred, ref, data_range=1.0) == pytest.approx(
        structural_similarity(ref, pred, data_range=1.0, gaussian_weights=True, sigma=1.5,
                              use_sample_covariance=False), rel=1e-10)
    for norm in ("euclidean", "min-max", "mean"):
        assert metrics.nrmse(pred, ref, normalization=norm) == pytest.approx(
            normalized_root_mse(ref, pred, normalization=norm), rel=1e-12)


def test_masked_values_by_hand():
    ref = np.zeros((4, 4, 4))
    pred = np.zeros((4, 4, 4))
    pred[0, 0, :2] = [2.0, -1.0]          # errors 2 and 1 inside the mask, 0 elsewhere
    pred[3, 3, 3] = 10.0                  # outside the mask: ignored
    ref[1, 1, 1] = 4.0                    # data range 4
    mask = np.zeros_like(ref, bool)
    mask[0, 0, :] = True
    assert metrics.mae(pred, ref, mask) == pytest.approx(3 / 4)
    assert metrics.mse(pred, ref, mask) == pytest.approx(5 / 4)
    assert metrics.psnr(pred, ref, mask) == pytest.approx(10 * np.log10(16 / (5 / 4)))
    assert metrics.psnr(ref, ref) == float("inf")


def test_ssim_is_one_for_identical_and_drops_with_noise(pair):
    pred, ref = pair
    assert metrics.ssim(ref, ref) == pytest.approx(1.0)
    mask = ref > 0.5
    assert metrics.ssim(pred, ref, mask) < 1.0
    table = metrics.image_metrics(pred, ref, {"bright": mask})
    assert table["bright"]["ssim"] == pytest.approx(metrics.ssim(pred, ref, mask))
    assert table["all"]["psnr"] == pytest.approx(metrics.psnr(pred, ref))


def test_dice_by_hand():
    a = np.zeros((5, 5, 5), int)
    b = np.zeros((5, 5, 5), int)
    a[0, 0, :4] = 1    # 4 voxels
    b[0, 0, 2:] = 1    # 3 voxels, 2 shared
    assert metrics.dice(a, b) == pytest.approx(2 * 2 / 7)
    assert metrics.dice(np.zeros(3), np.zeros(3)) == 1.0
    labels = a + 2 * (b > 0) * (a == 0)
    assert metrics.dice_per_label(labels, labels, (1, 2, 3)) == {1: 1.0, 2: 1.0, 3: 1.0}


def test_local_rms_leaves_the_voxel_itself_out():
    # sigma 1, truncated at 4 sigma: the 1D weights exp(-x^2 / 2), x = -4..4, normalised; the 3D kernel is their product
    k = np.exp(-np.arange(-4, 5) ** 2 / 2.0)
    k0, k1 = k[4] / k.sum(), k[5] / k.sum()
    spike = np.zeros((11, 11, 11))
    spike[5, 5, 5] = 2.0
    out = bench_harness.local_rms_without_centre(spike)
    assert out[5, 5, 5] == pytest.approx(0.0, abs=1e-12)                  # only the voxel's own error is there
    assert out[6, 5, 5] == pytest.approx(np.sqrt(2.0 * k1 * k0 ** 2 / (1 - k0 ** 3)), rel=1e-6)
    assert np.allclose(bench_harness.local_rms_without_centre(np.full((8, 8, 8), 0.09)), 0.3)


def test_the_downstream_bench_reads_brats_regions_and_writes_them_back():
    """WT = labels 1-3, TC = 1 and 3, ET = 3 (BraTS), and the segmenter's regions give the labels back."""
    import torch

    from tests.helpers import load_script

    seg, bench = load_script("segmenter"), load_script("bench_downstream")
    labels = torch.tensor([[[0, 1, 2, 3]]])
    regions = seg.regions(labels)
    assert regions[:, 0, 0].tolist() == [[0, 1, 1, 1], [0, 1, 0, 1], [0, 0, 0, 1]]
    assert np.array_equal(bench.brats_labels(regions.numpy() > 0), labels.numpy())
    images = torch.tensor([[[[1.0, 3.0, 5.0, 100.0]]]] * 2)
    brain = torch.tensor([[[True, True, True, False]]])
    normalised = seg.normalise(images, brain, present=[True, False])
    assert torch.allclose(normalised[0, 0, 0, :3], torch.tensor([-1.0, 0.0, 1.0])) and normalised[0, 0, 0, 3] == 0
    assert normalised[1].abs().max() == 0                  # an absent contrast is zeros after normalisation
    # a case without a brain mask file: the head is what differs from the background, even with one darker voxel
    head = torch.zeros(2, 4, 4, 4)
    head[:, 1:3, 1:3, 1:3] = 5.0
    head[1, 0, 0, 0] = -0.5
    expected = head[0] > 0
    expected[0, 0, 0] = True
    assert torch.equal(seg.head(head), expected)


def test_several_segmenter_runs_load_as_one_ensemble_of_their_averaged_probabilities(tmp_path):
    """segmenter.load("A,B"): the logit of the mean of the two segmenters' sigmoid probabilities, so thresholding it
    at 0 asks whether their average probability is over one half; one run loads as that segmenter alone."""
    from safetensors.torch import save_file

    from tests.helpers import load_script

    seg = load_script("segmenter")
    nets = []
    for k in range(2):
        torch.manual_seed(k)
        net = seg.build().eval()
        (tmp_path / f"run{k}").mkdir()
        save_file(net.state_dict(), str(tmp_path / f"run{k}" / "segmenter.safetensors"))
        nets.append(net)
    x = torch.randn(1, 4, 16, 16, 16, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        mean = (torch.sigmoid(nets[0](x)) + torch.sigmoid(nets[1](x))) / 2
        single = seg.load(tmp_path / "run0")(x)
        both = seg.load(f"{tmp_path / 'run0'},{tmp_path / 'run1'}")(x)
    assert torch.allclose(single, nets[0](x))
    assert torch.allclose(torch.sigmoid(both), mean, atol=1e-5)
    assert not torch.equal(both > 0, single > 0)            # the second segmenter changes some voxel's call


def test_the_robustness_arm_fills_one_contrast_of_a_crop_from_its_stand_ins():
    """crop_batch with a pool: at drop 1 each crop has exactly one contrast from the pool (the same window); a case
    without a pool draws the very crops it drew before pools existed."""
    import torch

    from tests.helpers import load_script

    seg = load_script("segmenter")
    shape = (4, seg.CROP, seg.CROP, seg.CROP)
    image = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    target = torch.zeros(3, *shape[1:])
    target[:, 30:34, 30:34, 30:34] = 1
    case = {"image": image, "target": target, "brain": torch.ones(shape[1:], dtype=torch.bool)}
    pooled = {**case, "pool": torch.full((4, 2, *shape[1:]), 7.0)}
    x, _ = seg.crop_batch([pooled], 6, torch.Generator().manual_seed(1), drop=1.0)
    filled = (x == 7.0).flatten(2).all(-1)                                  # (batch, contrasts)
    assert filled.sum(1).tolist() == [1] * 6
    kept = x[~filled.unsqueeze(-1).unsqueeze(-1).unsqueeze(-1).expand_as(x)].view(6, 3, -1)
    assert not (kept == 7.0).any()
    plain, _ = seg.crop_batch([case], 6, torch.Generator().manual_seed(1))
    again, _ = seg.crop_batch([case], 6, torch.Generator().manual_seed(1), drop=1.0)
    assert torch.equal(plain, again)


def test_made_cases_can_give_only_the_tumour_centred_crops():
    """extra_crops "tumour": a made case gives tumour-centred crops only (each holds its tumour) and about half of
    the crops still come from the real cases; "any" at fraction 1 takes every crop from the made ones."""
    import torch

    from tests.helpers import load_script

    seg = load_script("segmenter")
    shape = (4, 2 * seg.CROP, seg.CROP, seg.CROP)
    target = torch.zeros(3, *shape[1:])
    target[:, 100:104, 30:34, 30:34] = 1                   # a tumour that a brain-centred crop mostly misses
    brain = torch.ones(shape[1:], dtype=torch.bool)
    real = {"image": torch.zeros(shape), "target": target, "brain": brain}
    made = {"image": torch.ones(shape), "target": target, "brain": brain}
    x, y = seg.crop_batch([real], 64, torch.Generator().manual_seed(2), extra=[made], extra_fraction=1.0,
                          extra_crops="tumour")
    from_made = x.flatten(1).amax(1) == 1
    assert 16 < int(from_made.sum()) < 48
    assert bool(y[from_made].flatten(1).amax(1).min() == 1)                 # every made crop holds the tumour
    assert bool(y[~from_made].flatten(1).amax(1).min() == 0)                # some real crops hold none
    x, _ = seg.crop_batch([real], 16, torch.Generator().manual_seed(2), extra=[made], extra_fraction=1.0)
    assert bool((x == 1).all())


def test_a_made_case_on_its_source_scale_gives_its_untouched_tissue_the_source_z(tmp_path):
    """segmenter.on_source_scale: a made case whose second tumour moved its preprocessing's scale (here by a line)
    and its brain's mean and sd gets, outside the tumour, the z its source gives those voxels; z-scored on its own it
    does not. A made case naming no training case is refused, naming its record."""
    import json

    import torch

    from tests.helpers import load_script
    from volgen.training.data import CaseArrays

    seg = load_script("segmenter")
    shape = (16, 16, 16)
    gen = torch.Generator().manual_seed(3)
    brain = torch.zeros(shape, dtype=torch.bool)
    brain[2:14, 2:14, 2:14] = True
    source_images = torch.where(brain, torch.rand((4, *shape), generator=gen) * 0.5, -1.0)
    labels = torch.zeros(shape, dtype=torch.int64)
    labels[3:5, 3:5, 3:5] = 2
    made_labels = labels.clone()
    made_labels[8:13, 8:13, 8:13] = 2
    made_images = source_images * 0.8 + 0.05                 # the second tumour moved the case's scale
    made_images[:, 8:13, 8:13, 8:13] = 0.9                   # and it is bright
    made_images = torch.where(brain, made_images, -1.0)

    def item(name, images, seg_labels):
        case = CaseArrays(name, images, seg=seg_labels, brain=brain)
        return {"name": name, "image": seg.normalise(images, brain), "brain": brain, "case": case}

    source, made = item("case-a", source_images, labels), item("made-000", made_images, made_labels)
    (tmp_path / "made-000").mkdir()
    (tmp_path / "made-000" / "made-000.json").write_text(json.dumps({"case": "case-a"}))
    scaled = seg.on_source_scale([made], [source], tmp_path)[0]
    untouched = brain & (made_labels == 0)
    assert torch.allclose(scaled["image"][:, untouched], source["image"][:, untouched], atol=1e-4)
    assert (made["image"][:, untouched] - source["image"][:, untouched]).abs().mean() > 0.05
    assert bool((scaled["image"][:, ~brain] == 0).all())
    (tmp_path / "made-000" / "made-000.json").write_text(json.dumps({"case": "case-b"}))
    with pytest.raises(SystemExit, match="made-000.json: no source case"):
        seg.on_source_scale([made], [source], tmp_path)


def test_the_mixed_arm_takes_the_first_half_of_each_kind_of_made_case(tmp_path):
    """bench_few_labels' mixed arm: one folder of links, the first count / 2 into cases then as many healthy ones,
    read back by find_cases in that order; a second call leaves the links as they are."""
    from tests.helpers import load_script
    from volgen.io.contrasts import find_cases

    bench = load_script("bench_few_labels")
    halves = []
    for kind in ("into", "healthy"):
        for i in range(3):
            case = tmp_path / kind / f"made-{i:03d}"
            case.mkdir(parents=True)
            (case / f"{kind}-{i}-t1n.nii.gz").write_bytes(b"")
        halves.append(tmp_path / kind)
    for _ in range(2):
        folder = bench.mixed_cases(tmp_path / "mixed", halves, 4)
    linked = [case.paths["t1n"].name for case in find_cases(folder)]
    assert linked == ["into-0-t1n.nii.gz", "into-1-t1n.nii.gz", "healthy-0-t1n.nii.gz", "healthy-1-t1n.nii.gz"]


def test_the_ideal_few_label_arm_links_real_cases_the_run_does_not_train_on(tmp_path):
    """bench_few_labels' ideal arm: links to the first `count` labelled training cases not among the run's own,
    in order; a case without a seg is passed over."""
    from tests.helpers import load_script
    from volgen.io.contrasts import find_cases

    bench = load_script("bench_few_labels")
    for i in range(6):
        case = tmp_path / "train" / f"case-{i}"
        case.mkdir(parents=True)
        for kind in ("t1n", "seg") if i != 3 else ("t1n",):
            (case / f"case-{i}-{kind}.nii.gz").write_bytes(b"")
    for _ in range(2):
        folder = bench.ideal_cases(tmp_path / "train", tmp_path / "ideal", ["case-0", "case-2"], 3)
    assert [case.paths["seg"].parent.resolve().name for case in find_cases(folder)] == ["case-1", "case-4", "case-5"]


def test_the_lesion_benchs_ideal_row_pools_real_tumours_in_the_benchs_own_unit(phantom_dir, tmp_path):
    """The ideal sampler's pool of a case is that case's real tumour intensities over its twin's 99.5th percentile
    in the head, checked by hand with nibabel; drawn from the bench's own cases it scores a W1 of 0; its sets of
    cases cover them all, the last ending at the last case."""
    import nibabel as nib

    from tests.helpers import load_script

    bench = load_script("bench_lesion")
    (pool,) = bench.real_tumour_pools(phantom_dir.parent, tmp_path)
    read = lambda kind: np.asarray(nib.load(phantom_dir / f"{phantom_dir.name}-{kind}.nii.gz").dataobj)  # noqa: E731
    seg = read("seg")
    assert set(pool) == {f"{c}_{p}_w1" for c in ("t1n", "t1c", "t2w", "t2f") for p, label in bench.PARTS.items()
                         if np.count_nonzero(seg == label) >= 10}
    assert "t2f_enhancing_w1" in pool
    healthy = read("t2f-healthy").astype(np.float32)
    unit = np.percentile(healthy[healthy > healthy.min()], 99.5)
    expected = read("t2f").astype(np.float32)[seg == 3] / unit
    np.testing.assert_allclose(np.concatenate(pool["t2f_enhancing_w1"]), expected, rtol=1e-6)
    real = {k: np.concatenate(v) for k, v in pool.items()}
    (ratios,) = bench.ideal_ratios([pool], 20, real, {k: 1.0 for k in real})
    assert ratios == {k: 0.0 for k in real}
    assert bench.windows(48, 20) == [slice(0, 20), slice(20, 40), slice(28, 48)]
    assert bench.windows(40, 20) == [slice(0, 20), slice(20, 40)]
    assert bench.windows(12, 20) == [slice(0, 12)]


def test_sharpness_by_hand():
    """A ramp twice as steep has twice the gradient (per mm, whatever the spacing); a ramp has no high-pass part
    away from the edges, so its high-pass PSNR against a flat image is infinite there; noise added is found."""
    x = np.broadcast_to(np.arange(16.0)[:, None, None], (16, 16, 16)) / 16
    inner = np.zeros(x.shape, bool)
    inner[6:10, 6:10, 6:10] = True                          # beyond the blur's reach (4 sigma) of the edges
    for spacing in (1.0, 2.0):
        s = metrics.sharpness(2 * x, x, inner, spacing_mm=spacing)
        assert s["gradient_ratio"] == pytest.approx(2.0, rel=1e-12)
        assert metrics.sharpness(x, 2 * x, inner, spacing_mm=spacing)["highpass_psnr"] > 100
    noisy = x + 0.01 * np.random.default_rng(0).standard_normal(x.shape)
    assert metrics.sharpness(noisy, x, inner)["highpass_psnr"] < 45


def test_a_stopped_segmenter_run_resumes_from_its_checkpoint(phantom_dir, tmp_path, monkeypatch):
    """A run stopped at step 2 and asked for 3 loads its weights and optimizer (weights_only) and draws one batch
    more, not three."""
    from tests.helpers import load_script

    seg = load_script("segmenter")
    argv = ["--train", str(phantom_dir.parent), "--run", str(tmp_path / "run"), "--checkpoint-every", "1",
            "--batch", "1", "--no-bf16"]
    seg.train(seg.arguments(argv + ["--steps", "2"]))
    drawn = []
    crop_batch = seg.crop_batch
    monkeypatch.setattr(seg, "crop_batch", lambda *a, **k: drawn.append(1) or crop_batch(*a, **k))
    seg.train(seg.arguments(argv + ["--steps", "3"]))
    assert len(drawn) == 1
    assert (tmp_path / "run" / "checkpoints" / "step-000003.safetensors").is_file()


def test_a_segmenter_trained_without_a_contrast_never_sees_it(phantom_dir, tmp_path, monkeypatch):
    """--without t1c: every crop's t1c channel is all zeros (as normalise leaves an absent contrast), the others are
    the case's own, and the run records what it was trained without."""
    import json

    from tests.helpers import load_script

    seg = load_script("segmenter")
    crops = []
    crop_batch = seg.crop_batch
    monkeypatch.setattr(seg, "crop_batch", lambda *a, **k: crops.append(crop_batch(*a, **k)) or crops[-1])
    run = tmp_path / "run"
    seg.train(seg.arguments(["--train", str(phantom_dir.parent), "--run", str(run), "--steps", "2", "--batch", "1",
                             "--no-bf16", "--without", "t1c"]))
    images = torch.cat([x for x, _ in crops])
    assert images[:, 1].abs().max() == 0
    assert all(images[:, c].abs().max() > 0.5 for c in (0, 2, 3))
    assert json.loads((run / "segmenter.json").read_text())["without"] == "t1c"


def test_the_few_label_summary_pairs_each_arms_runs_with_plain_seed_by_seed():
    """bench_few_labels' gain per seed is the arm's mean Dice minus plain's of the same seed (a seed without both runs
    is left out), and its standard error is the paired gains' sd (ddof 1) over the square root of their count."""
    from tests.helpers import load_script

    bench = load_script("bench_few_labels")
    dice = {("plain", 0): 0.870, ("plain", 1): 0.823, ("plain", 2): 0.890,
            ("into", 0): 0.914, ("into", 1): 0.796, ("into", 2): 0.946, ("into", 3): 0.9}
    runs = {f"n8-seed{seed}-{arm}": {"n": 8, "seed": seed, "arm": arm, "WT": v, "TC": v, "ET": v, "mean": v}
            for (arm, seed), v in dice.items()}
    row = bench.summary(runs)["8"]
    gains = [0.914 - 0.870, 0.796 - 0.823, 0.946 - 0.890]
    assert list(row["gain_into_per_seed"]) == ["0", "1", "2"]
    np.testing.assert_allclose(list(row["gain_into_per_seed"].values()), gains)
    mean_gain = (0.914 + 0.796 + 0.946 + 0.9) / 4 - (0.870 + 0.823 + 0.890) / 3
    assert abs(row["gain_into"] - mean_gain) < 1e-12
    spread = (sum((g - sum(gains) / 3) ** 2 for g in gains) / 2) ** 0.5
    assert abs(row["gain_into_se"] - spread / 3 ** 0.5) < 1e-12
    assert "gain" not in row                                    # no volgen arm was run
