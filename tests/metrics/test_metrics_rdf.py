"""Tests for geodite.metrics.rdf."""

import numpy as np
import pytest

from geodite.metrics.rdf import (
    diffusion_coefficient,
    half_min_width,
    max_rdf_radius,
    mean_squared_displacement,
    radial_distribution,
    rdf_error,
    rdf_overlap,
    unwrap_positions,
)

SKEWED = np.array([[10.0, 0, 0], [10.0, 10.0, 0], [0, 0, 10.0]])  # same lattice as a 10 Å cube


def simple_cubic(a: float = 2.0, n: int = 5) -> tuple[np.ndarray, np.ndarray]:
    grid = np.arange(n) * a
    pos = np.stack(np.meshgrid(grid, grid, grid, indexing="ij"), axis=-1).reshape(-1, 3)
    return pos, np.eye(3) * a * n


def shells(r_max: float, n_bins: int) -> np.ndarray:
    edges = np.linspace(0, r_max, n_bins + 1)
    return 4 / 3 * np.pi * np.diff(edges**3)


HEXAGONAL = np.array([[9.0, 0, 0], [-4.5, 9.0 * np.sqrt(3) / 2, 0], [0, 0, 10.0]])


def test_max_rdf_radius_is_half_the_shortest_lattice_vector():
    """MBD's min_image_radius: half the shortest lattice vector, not half the shortest plane spacing."""
    assert max_rdf_radius(np.eye(3) * 10) == pytest.approx(5.0)
    assert max_rdf_radius(np.diag([8.0, 10.0, 12.0])) == pytest.approx(4.0)
    assert max_rdf_radius(SKEWED) == pytest.approx(5.0)  # the 10 Å cube's lattice
    assert half_min_width(SKEWED) == pytest.approx(5 / np.sqrt(2))  # plane spacing 10/√2
    assert max_rdf_radius(HEXAGONAL) == pytest.approx(4.5)  # the example: not 3.897
    assert half_min_width(HEXAGONAL) == pytest.approx(9 * np.sqrt(3) / 4)
    assert max_rdf_radius([[10.0, 0, 0], [30.0, 1.0, 0], [0, 0, 10.0]]) == pytest.approx(0.5)  # reduced: (0, 1, 0)


def test_simple_cubic_first_peak_and_coordination():
    pos, cell = simple_cubic()
    n_bins, r_max = 97, 5.0
    r, g = radial_distribution(pos, cell, ["X"] * len(pos), r_max=r_max, n_bins=n_bins)
    assert r[np.argmax(g)] == pytest.approx(2.0, abs=r_max / n_bins)
    rho = (len(pos) - 1) / np.linalg.det(cell)  # ρ' = (N_B − δ_AB)/V matches the N(N − 1) normalisation
    running = np.cumsum(rho * g * shells(r_max, n_bins))  # ∫ 4πr²ρ g dr per atom
    assert running[r < 1.9][-1] == pytest.approx(0.0)
    assert running[r < 2.5][-1] == pytest.approx(6.0)  # first shell at a
    assert running[r < 3.0][-1] == pytest.approx(18.0)  # + 12 at a√2
    assert running[r < 3.6][-1] == pytest.approx(26.0)  # + 8 at a√3


def test_triclinic_cell_gives_same_rdf():
    pos, cell = simple_cubic()
    symbols = ["X"] * len(pos)
    r_max = max_rdf_radius(SKEWED)
    r1, g1 = radial_distribution(pos, cell, symbols, r_max=r_max, n_bins=61)  # no shell distance on a bin edge
    r2, g2 = radial_distribution(pos, SKEWED, symbols, n_bins=61)
    np.testing.assert_allclose(r1, r2)
    np.testing.assert_allclose(g1, g2)
    assert r2[-1] > half_min_width(SKEWED)  # beyond the plane spacing: pairs by their true minimum image
    with pytest.raises(ValueError, match="exceeds"):
        radial_distribution(pos, SKEWED, symbols, r_max=5.5)


def test_random_points_are_ideal_gas():
    rng = np.random.default_rng(42)
    n_atoms, box, n_frames = 1200, 14.0, 3
    pos = rng.uniform(0, box, size=(n_frames, n_atoms, 3))
    symbols = np.array(["Li"] * 400 + ["S"] * 800)
    r, g = radial_distribution(pos, np.eye(3) * box, symbols, n_bins=28)
    assert np.mean(g[r > 1]) == pytest.approx(1.0, abs=0.02)
    assert np.all(np.abs(g[r > 3] - 1) < 0.1)
    for pair in [("Li", "S"), ("S", "S"), ("Li", "Li")]:
        r, g_pair = radial_distribution(pos, np.eye(3) * box, symbols, pair=pair, n_bins=14)
        assert np.mean(g_pair[r > 2]) == pytest.approx(1.0, abs=0.03), pair


def test_cell_per_frame():
    pos, cell = simple_cubic()
    frames = np.stack([pos, pos * 1.1])
    cells = np.stack([cell, cell * 1.1])
    r, g = radial_distribution(frames, cells, ["X"] * len(pos), r_max=5.0, n_bins=50)
    assert g.sum() > 0
    with pytest.raises(ValueError):
        radial_distribution(frames, cells[:1], ["X"] * len(pos))


def test_mbd_normalisation_is_pairs_times_n_minus_1_over_n():
    rng = np.random.default_rng(3)
    pos = rng.random((2, 12, 3)) * 8.0
    cell = np.eye(3) * 8.0
    r, g_pairs = radial_distribution(pos, cell, ["X"] * 12, n_bins=50)
    _, g_mbd = radial_distribution(pos, cell, ["X"] * 12, n_bins=50, normalisation="mbd")
    np.testing.assert_allclose(g_mbd, g_pairs * 11 / 12, rtol=1e-12)
    with pytest.raises(ValueError, match="normalisation"):
        radial_distribution(pos, cell, ["X"] * 12, normalisation="n2")


def test_overlap_and_error():
    r = np.linspace(0, 6, 601)
    bump = np.exp(-((r - 2.5) ** 2) / 0.02)
    g_ref = 1 + bump
    assert rdf_overlap(g_ref, g_ref, r) == pytest.approx(1.0)
    assert rdf_error(g_ref, g_ref, r) == pytest.approx(0.0)
    assert rdf_overlap(g_ref, 2 * g_ref, r) == pytest.approx(2 / 3)  # 1 − ∫g / ∫3g
    assert rdf_error(g_ref, 1 + 0.5 * bump, r) == pytest.approx(50.0)
    assert rdf_error(g_ref, 1 - bump, r) == pytest.approx(100.0)  # capped at 100
    assert rdf_error(np.ones_like(r), g_ref, r) == 100.0  # ideal-gas reference (MBD)
    peak_a = np.exp(-((r - 1.5) ** 2) / 0.01)
    peak_b = np.exp(-((r - 4.5) ** 2) / 0.01)
    assert rdf_overlap(peak_a, peak_b, r) == pytest.approx(0.0, abs=1e-9)
    assert 0 <= rdf_overlap(peak_a, 0.3 * peak_a + peak_b, r) <= 1


def test_msd_constant_velocity_and_diffusion_units():
    t = np.arange(11)
    pos = np.zeros((11, 1, 3))
    pos[:, 0, 0] = t * 1.0  # 1 Å per frame
    np.testing.assert_allclose(mean_squared_displacement(pos), t.astype(float) ** 2)
    assert len(mean_squared_displacement(pos, max_lag=4)) == 5
    # MSD = 6 D t with D = 1e-4 Å²/fs = 0.1 Å²/ps = 1e-5 cm²/s
    dt_fs = 100.0
    msd = 6 * 1e-4 * np.arange(50) * dt_fs
    d = diffusion_coefficient(msd, dt_fs)
    assert d.d_a2_per_ps == pytest.approx(0.1)
    assert d.d_cm2_per_s == pytest.approx(1e-5)
    assert d.intercept_a2 == pytest.approx(0.0, abs=1e-12)


def test_random_walk_diffusion():
    rng = np.random.default_rng(0)
    sigma, dt_fs = 0.1, 2.0  # Å per component per step
    steps = rng.normal(0, sigma, size=(400, 500, 3))
    pos = np.cumsum(steps, axis=0)
    msd = mean_squared_displacement(pos, atom_mask=np.arange(500) < 250, max_lag=50)
    d = diffusion_coefficient(msd, dt_fs)
    expected = sigma**2 / (2 * dt_fs) * 1e3  # Å²/ps
    assert d.d_a2_per_ps == pytest.approx(expected, rel=0.05)


def test_unwrap_positions():
    for cell in (np.eye(3) * 2.0, SKEWED / 5):
        true = np.zeros((20, 1, 3))
        true[:, 0] = np.outer(np.arange(20), [0.3, 0.1, -0.2])
        frac = true @ np.linalg.inv(cell)
        wrapped = (frac - np.floor(frac)) @ cell
        np.testing.assert_allclose(unwrap_positions(wrapped, cell), true, atol=1e-12)
