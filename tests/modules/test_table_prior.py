"""The conditional-mean table prior against a numpy histogram of the same voxels, its subsets and its background."""
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
    present = torch.tensor([[0.0, 1.0, 1.0, 1.0]])
    out = prior(vols[0][None], present, torch.tensor([0]))
    v = vols[0].reshape(4, -1).numpy()
    cell = np.clip(((v[1:] + 1) / 2 * 6).astype(int), 0, 5)
    want = means[cell[0] + 6 * cell[1] + 36 * cell[2]].reshape(vols[0].shape[1:])
    head = (vols[0] > -1 + 1e-3).any(0).numpy()
    np.testing.assert_allclose(out[0, 0].numpy()[head], want[head], rtol=1e-5, atol=1e-5)
    assert (out[0, 0].numpy()[~head] == -1).all()


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
    assert state["table"].dtype == torch.float16
    loaded = TablePrior(4, 4, bins=6)
    loaded.load_state_dict(state)
    assert loaded.table.dtype == torch.float32 and loaded.fitted
    assert torch.equal(loaded.table, prior.table.half().float())
    # float16 keeps 11 significant bits: rounding moves no cell by more than 2^-11 of its value (empty cells hold
    # the regression's extrapolation, which may lie outside [-1, 1])
    assert ((loaded.table - prior.table).abs() <= prior.table.abs() * 2 ** -11 + 2 ** -24).all()   # + subnormals
