"""The conditional-mean table prior against a numpy histogram of the same voxels, its subsets and its background; its
context stage against a numpy neighbourhood mean, and on data where an isolated bright estimate is usually wrong."""
import numpy as np
import pytest
import torch

from volgen.modules.table_prior import TablePrior


def _volumes(n=3, shape=(8, 10, 12), seed=0):
    g = torch.Generator().manual_seed(seed)
    vols = []
    for _ in range(n):
        x = torch.rand(4, *shape, generator=g) * 1.8 - 0.9
        x[0] = torch.tanh(2 * x[1]) - 0.3 * x[2] ** 2 + 0.1 * x[3]      # t1n: a nonlinear map of the others
        x[:, 0] = -1.0                                                   # a background slab
        vols.append(x)
    return vols


def test_full_subset_is_the_numpy_conditional_mean():
    vols = _volumes()
    prior = TablePrior(4, 4, bins=6)
    prior.fit(vols)
    # numpy's reference: bin t2w, t1c, t2f (sources of target 0, least significant first) and average t1n
    flat = np.concatenate([v.reshape(4, -1).numpy() for v in vols], axis=1).astype(np.float64)
    flat = flat[:, (flat > -1 + 1e-3).any(0)]
    idx = np.clip(((flat[1:] + 1) / 2 * 6).astype(int), 0, 5)
    key = idx[0] + 6 * idx[1] + 36 * idx[2]
    counts = np.bincount(key, minlength=216)
    means = np.bincount(key, weights=flat[0], minlength=216) / np.maximum(counts, 1)
    table = prior.table[0, 0b1110, :216].double().numpy()
    np.testing.assert_allclose(table[counts > 0], means[counts > 0], rtol=1e-5, atol=1e-6)
    first, head = prior._first_stage(vols[0], 0b1110, 0)
    v = vols[0].reshape(4, -1).numpy()
    cell = np.clip(((v[1:] + 1) / 2 * 6).astype(int), 0, 5)
    want = means[cell[0] + 6 * cell[1] + 36 * cell[2]].reshape(vols[0].shape[1:])
    np.testing.assert_allclose(first.numpy()[head.numpy()], want[head.numpy()], rtol=1e-5, atol=1e-5)
    out = prior(vols[0][None], torch.tensor([[0.0, 1.0, 1.0, 1.0]]), torch.tensor([0]))
    assert (out[0, 0].numpy()[~head.numpy()] == -1).all()


def _neighbour_mean(values, head):
    """numpy: the mean of `values` over each voxel's 26 neighbours inside `head` (0 where there are none)."""
    v, h = np.pad(values * head, 1), np.pad(head.astype(float), 1)
    total, count = np.zeros_like(values), np.zeros_like(values)
    d, r, c = values.shape
    for i in range(3):
        for j in range(3):
            for k in range(3):
                if (i, j, k) != (1, 1, 1):
                    total += v[i:i + d, j:j + r, k:k + c]
                    count += h[i:i + d, j:j + r, k:k + c]
    return total / np.maximum(count, 1)


def test_the_context_stage_is_the_numpy_mean_given_the_estimate_and_its_neighbours():
    vols = _volumes()
    prior = TablePrior(4, 4, bins=6, context_bins=5)
    prior.fit(vols)

    def cells(volume):
        first, head = (a.numpy() for a in prior._first_stage(volume, 0b1110, 0))
        index = [np.clip(((a + 1) / 2 * 5).astype(int), 0, 4) for a in (first, _neighbour_mean(first, head))]
        return index[0] * 5 + index[1], head

    key, truth = [], []
    for v in vols:
        c, head = cells(v)
        key.append(c[head])
        truth.append(v[0].numpy()[head].astype(np.float64))
    key, truth = np.concatenate(key), np.concatenate(truth)
    means = np.bincount(key, weights=truth, minlength=25) / np.maximum(np.bincount(key, minlength=25), 1)
    c, head = cells(vols[1])
    out = prior(vols[1][None], torch.tensor([[0.0, 1.0, 1.0, 1.0]]), torch.tensor([0]))[0, 0].numpy()
    np.testing.assert_allclose(out[head], means[c[head]], rtol=1e-5, atol=1e-5)


def _speckled(seed, shape=(24, 24, 24)):
    """t1n is 1 inside a few 4^3 blocks ("enhancing") and -0.5 elsewhere; t1c reads -0.2 +- noise in the blocks and
    -0.5 +- noise elsewhere, so a noisy normal voxel can land in a cell of mostly block voxels."""
    g = torch.Generator().manual_seed(seed)
    target = torch.full(shape, -0.5)
    for _ in range(12):
        x, y, z = torch.randint(0, shape[0] - 4, (3,), generator=g).tolist()
        target[x:x + 4, y:y + 4, z:z + 4] = 1.0
    source = torch.where(target > 0, -0.2, -0.5) + 0.12 * torch.randn(shape, generator=g)
    other = torch.full(shape, 0.1)
    return torch.stack([target, source, other, other])


def test_the_context_stage_corrects_isolated_speckles_on_unseen_data():
    prior = TablePrior(4, 4, bins=24)
    prior.fit([_speckled(s) for s in range(6)])
    test = _speckled(99)
    first, _ = prior._first_stage(test, 0b1110, 0)
    out = prior(test[None], torch.tensor([[0.0, 1.0, 1.0, 1.0]]), torch.tensor([0]))[0, 0]
    error_first, error_out = (first - test[0]).pow(2).mean(), (out - test[0]).pow(2).mean()
    assert error_out < 0.6 * error_first


def test_a_subset_uses_only_the_present_contrasts_and_empty_cells_fall_back_to_regression():
    vols = _volumes()
    prior = TablePrior(4, 4, bins=6)
    prior.fit(vols)
    x = vols[0][None].clone()
    present = torch.tensor([[0.0, 1.0, 0.0, 0.0]])                   # t1c alone
    a = prior(x, present, torch.tensor([0]))
    x[:, 2:] = torch.rand_like(x[:, 2:])                              # absent contrasts must not matter
    assert torch.equal(prior(x, present, torch.tensor([0])), a)
    # with 20 bins, t1c (|x| <= 0.9 in the data) never reaches bin 0 (x < -0.9): it holds the regression's value
    fine = TablePrior(4, 4, bins=20)
    fine.fit(vols)
    flat = np.concatenate([v.reshape(4, -1).numpy() for v in vols], axis=1).astype(np.float64)
    flat = flat[:, (flat > -1 + 1e-3).any(0)]
    slope, intercept = np.polyfit(flat[1], flat[0], 1)
    assert float(fine.table[0, 0b0010, 0]) == pytest.approx(slope * -0.95 + intercept, abs=1e-4)


def test_the_table_saves_in_half_precision_and_loads_back_within_its_rounding():
    prior = TablePrior(4, 4, bins=6)
    prior.fit(_volumes())
    state = prior.state_dict()
    assert state["table_cells"].dtype == state["context_cells"].dtype == torch.float16
    # packed: per target, the cells of 1 subset of 3 sources, 3 of 2 and 3 of 1; each context table once
    assert state["table_cells"].numel() == 4 * (6 ** 3 + 3 * 6 ** 2 + 3 * 6) < prior.table.numel() / 10
    assert state["context_cells"].numel() == 4 * 7 * prior.context.shape[2]
    loaded = TablePrior(4, 4, bins=6)
    loaded.load_state_dict(state)
    assert loaded.table.dtype == torch.float32 and loaded.fitted
    assert torch.equal(loaded.table, prior.table.half().float())       # the whole dense table, copies and zeros too
    assert torch.equal(loaded.context, prior.context.half().float())
    # float16 keeps 11 significant bits: rounding moves no cell by more than 2^-11 of its value (empty cells hold
    # the regression's extrapolation, which may lie outside [-1, 1])
    assert ((loaded.table - prior.table).abs() <= prior.table.abs() * 2 ** -11 + 2 ** -24).all()   # + subnormals


def test_a_table_saved_before_the_context_stage_loads_and_estimates_as_before():
    vols = _volumes()
    prior = TablePrior(4, 4, bins=6)
    prior.fit(vols)
    old = {"table": prior.table.half(), "done": prior.done}              # the dense form, no context stage
    loaded = TablePrior(4, 4, bins=6)
    loaded.load_state_dict(old, strict=True)
    assert not loaded.context_done
    first, head = prior._first_stage(vols[0], 0b1110, 0)
    out = loaded(vols[0][None], torch.tensor([[0.0, 1.0, 1.0, 1.0]]), torch.tensor([0]))[0, 0]
    assert torch.equal(out[head], first.half().float()[head])
