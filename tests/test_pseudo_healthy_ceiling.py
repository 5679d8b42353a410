"""The pseudo-healthy ceiling bench's two estimators, against independent references: the Rician mean against a
Monte Carlo draw, and the texture posterior against a field it can see."""
import numpy as np

from tests.helpers import load_script
from volgen.phantom.anatomy import bspline_basis

ceiling = load_script("bench_pseudo_healthy_ceiling")


def test_the_rician_mean_matches_a_monte_carlo_draw_from_dark_to_bright():
    rng = np.random.default_rng(0)
    signal, sigma = np.array([0.0, 0.5, 2.0, 10.0]), 1.0
    noise = rng.standard_normal((2, 400_000, 1))
    drawn = np.sqrt((signal + sigma * noise[0]) ** 2 + (sigma * noise[1]) ** 2).mean(0)
    np.testing.assert_allclose(ceiling.rician_mean(signal, sigma), drawn, rtol=3e-3)
    assert abs(ceiling.rician_mean(np.array([0.0]), sigma)[0] - np.sqrt(np.pi / 2)) < 1e-9   # Rayleigh's mean


def test_the_texture_posterior_recovers_a_lattice_field_around_a_hole_and_continues_it_inside():
    """A field drawn exactly as the phantom draws its texture, seen through a 3% gain with little noise, everywhere
    but a cube: the fit is close where it sees and, inside the cube, closer to the truth than the prior mean (0)."""
    shape, amplitude, sigma = (24, 24, 24), 0.03, 0.5
    basis = [b.astype(np.float64) for b in bspline_basis(shape, 8.0, 2.0)]
    rng = np.random.default_rng(1)
    knots = rng.standard_normal([b.shape[1] for b in basis])
    field = np.einsum("ai,bj,ck,ijk->abc", *basis, knots)
    anatomy = np.full(shape, 1000.0)
    hole = np.zeros(shape, bool)
    hole[9:15, 9:15, 9:15] = True
    observed = anatomy * (1 + amplitude * np.tanh(field)) + sigma * rng.standard_normal(shape)
    fitted = ceiling.texture_posterior(anatomy, observed, ~hole, basis, amplitude, sigma)
    seen = ~hole
    assert np.abs(fitted[seen] - field[seen]).max() < 0.1 * np.abs(field).max()
    assert np.sqrt(((fitted[hole] - field[hole]) ** 2).mean()) < 0.5 * np.sqrt((field[hole] ** 2).mean())
