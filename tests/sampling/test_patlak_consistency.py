"""The Patlak proximal step against a two-voxel example solved by hand, its limits, and the projection's layout."""
import torch

from volgen.kernels.patlak import patlak_proximal_eager
from volgen.sampling.patlak import PatlakProjection, prior_uncertainty
from volgen.sampling.schedules import NoiseSchedule

GRAM = torch.tensor([[4.0, 1.0], [1.0, 2.0]], dtype=torch.float64)
G = (4.0, 1.0, 2.0)
C = torch.tensor([[3.0, 5.0], [1.0, 2.0]], dtype=torch.float64)       # (2 statistics, 2 voxels)
S2 = torch.tensor([1.0, 2.0], dtype=torch.float64)
KI0, V0 = torch.tensor([1.0, 0.0], dtype=torch.float64), torch.tensor([0.0, 1.0], dtype=torch.float64)
DATA = (C[0] / S2, C[1] / S2, *(g / S2 for g in G))      # information r = c / s2, precision H = G / s2 per voxel


def test_two_voxels_by_hand():
    """P = diag(1, 4). Voxel 1: [[5, 1], [1, 6]] theta = [4, 1] -> (23/29, 1/29).
    Voxel 2: H = G / 2, [[3, .5], [.5, 5]] theta = [2.5, 5] -> (10/14.75, 13.75/14.75)."""
    ki, v = patlak_proximal_eager(KI0, V0, *DATA, 1.0, 1 / 0.5 ** 2)
    torch.testing.assert_close(ki, torch.tensor([23 / 29, 10 / 14.75], dtype=torch.float64))
    torch.testing.assert_close(v, torch.tensor([1 / 29, 13.75 / 14.75], dtype=torch.float64))


def test_an_unsure_prior_gives_least_squares_and_a_sure_one_gives_the_prior():
    ki, v = patlak_proximal_eager(KI0, V0, *DATA, 1e-16, 1e-16)
    ls = torch.linalg.solve(GRAM, C)
    torch.testing.assert_close(ki, ls[0]), torch.testing.assert_close(v, ls[1])
    ki, v = patlak_proximal_eager(KI0, V0, *DATA, 1e16, 1e16)
    torch.testing.assert_close(ki, KI0), torch.testing.assert_close(v, V0)


def test_the_prior_is_trusted_more_as_the_noise_falls():
    schedule = NoiseSchedule.linear()
    taus = [prior_uncertainty(schedule, t, 1.0) for t in (900, 500, 100, 0)]
    assert all(a > b for a, b in zip(taus, taus[1:])) and taus[0] < 1.0 and taus[-1] < 0.02


def test_the_floor_keeps_the_prior_from_being_trusted_beyond_its_own_error():
    schedule = NoiseSchedule.linear()
    bare = prior_uncertainty(schedule, 0, 1.0)
    assert abs(prior_uncertainty(schedule, 0, 1.0, floor=0.1) - (bare ** 2 + 0.01) ** 0.5) < 1e-12
    assert prior_uncertainty(schedule, 900, 1.0, floor=0.1) > prior_uncertainty(schedule, 900, 1.0)


def test_the_projection_pairs_ki_and_v_and_keeps_the_background():
    shape = (1, 2, 2, 1)
    region = torch.tensor([True, False, True, True]).view(shape)
    c = torch.stack([torch.full(shape, 2.0), torch.full(shape, 1.0)])
    gram = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    project = PatlakProjection(c, torch.ones(shape), gram, (0.1, 2.0), region, NoiseSchedule.linear(), doubt=1e6)
    image = torch.zeros(4, *shape)                                # two samples of (Ki, V)
    out = project(image, 500)                                     # data dominate: Ki = 1, V = 1 (LS)
    torch.testing.assert_close(out[0::2][region.expand(2, *shape)], torch.full((6,), 2 * 1 / 0.1 - 1))
    torch.testing.assert_close(out[1::2][region.expand(2, *shape)], torch.full((6,), 2 * 1 / 2.0 - 1))
    assert torch.all(out[:, ~region] == -1)
    assert torch.equal(project(image, None)[:, region], image[:, region])   # the end: nothing but the background


def test_a_voxel_with_its_own_gram_matrix_gets_its_own_fit():
    """Two voxels with their own frame times: Gram matrices [[4, 1], [1, 2]] and [[1, 0], [0, 9]]; with a prior that
    is not trusted the step returns each voxel's own least-squares solution, G_i^-1 c_i."""
    grams = torch.stack([GRAM, torch.tensor([[1.0, 0.0], [0.0, 9.0]], dtype=torch.float64)], -1)   # (2, 2, voxels)
    region = torch.ones(2, dtype=torch.bool)
    project = PatlakProjection(C, torch.ones(2, dtype=torch.float64), grams, (2.0, 2.0), region,
                               NoiseSchedule.linear(), doubt=1e8)
    out = project(torch.zeros(2, 2, dtype=torch.float64), 500)
    want = torch.stack([torch.linalg.solve(GRAM, C[:, 0]), torch.tensor([5.0, 2.0 / 9.0], dtype=torch.float64)], 1)
    torch.testing.assert_close((out + 1) / 2 * 2.0, want.float().to(out.dtype), rtol=1e-5, atol=1e-6)
