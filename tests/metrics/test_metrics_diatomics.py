"""Tests for geodite.metrics.diatomics and diatomics_pbe on hand-computed curves and the real MBD PBE reference."""

import gzip
import json
from pathlib import Path

import numpy as np
import pytest

from geodite.metrics import diatomics as dia
from geodite.metrics import diatomics_pbe as pbe

DFT_FILE = Path(__file__).parents[1] / "data" / "diatomics-dft.json.gz"

D_E, A, R_E = 3.0, 1.5, 2.0  # Morse well depth (eV), width (1/Å), bond length (Å)


def morse(r, d_e=D_E, a=A, r_e=R_E):
    """Morse energy (eV, → 0 at infinity) and bond force −dE/dr (eV/Å)."""
    x = np.exp(-a * (np.asarray(r) - r_e))
    return d_e * (1 - x) ** 2 - d_e, -2 * d_e * a * x * (1 - x)


def morse_wall(t, d_e=D_E, a=A, r_e=R_E):
    """Inner distance where the Morse curve is t eV above its minimum."""
    return r_e - np.log(1 + np.sqrt(t / d_e)) / a


R = np.arange(0.5, 6.0 + 1e-9, 0.01)


# ----------------------------------------------------------- self-consistency


def test_morse_self_consistency():
    e, f = morse(R)
    assert dia.tortuosity(R, e) == pytest.approx(1.0)
    assert dia.force_flips(R, f) == 1
    assert dia.energy_diff_flips(R, e) == 1
    # the single flip at the well: steps < 1 meV near the bottom are dropped, so the jump
    # is the first kept step on either side of the minimum (a few meV for a smooth well)
    steps = np.diff(e)
    before = steps[: np.argmin(e)][np.abs(steps[: np.argmin(e)]) >= 1e-3][-1]
    after = steps[np.argmin(e) :][np.abs(steps[np.argmin(e) :]) >= 1e-3][0]
    assert before < 0 < after
    assert dia.energy_jump(R, e) == pytest.approx(abs(before) + abs(after))
    assert dia.energy_jump(R, e) < 1e-2
    assert dia.conservation_deviation(R, e, f) < 1e-4 * np.abs(f).max()  # finite-difference error only
    assert dia.conservation_deviation(R, e, 2 * f) > 1.0
    assert dia.spearman_repulsive_energy(R, e) == pytest.approx(-1.0)
    assert dia.spearman_repulsive_force(R, e, f) == pytest.approx(-1.0)
    assert dia.max_abs_force(R, f) == pytest.approx(np.abs(f).max())
    # the maximum sits at the first point, where np.gradient is one-sided (first order)
    assert dia.max_abs_energy_gradient(R, e) == pytest.approx(np.abs(f).max(), rel=2e-2)
    inner = R >= 1.0
    assert dia.max_abs_energy_gradient(R[inner], e[inner]) == pytest.approx(f[inner].max(), rel=2e-2)
    # force: repulsive at short range and monotone → variation = F(r_min) − min F + (F(r_max) − min F)
    assert dia.force_total_variation(R, f) == pytest.approx(f[0] - f.min() + f[-1] - f.min())


def test_unsorted_input_is_sorted():
    e, f = morse(R)
    perm = np.random.default_rng(0).permutation(len(R))
    assert dia.tortuosity(R[perm], e[perm]) == pytest.approx(1.0)
    assert dia.conservation_deviation(R[perm], e[perm], f[perm]) == pytest.approx(
        dia.conservation_deviation(R, e, f)
    )


def test_known_sign_flips():
    r = np.linspace(0.5, 4.5, 401)
    assert dia.force_flips(r, np.sin(np.pi * r)) == 4  # zeros at r = 1, 2, 3, 4
    assert dia.energy_diff_flips(r, np.cos(np.pi * r)) == 4  # extrema at r = 1, 2, 3, 4
    # |F| < 1e-2 eV/Å counts as zero: the tiny wiggle is ignored
    r7 = np.arange(7.0)
    f7 = np.array([1.0, 0.5, 0.005, -0.005, 0.004, 0.5, 1.0])
    assert dia.force_flips(r7, f7) == 0
    assert dia.force_flips(r7, f7, threshold=0.0) == 2
    # |ΔE| < 1e-3 eV is dropped: a 0.5 meV bump on a descending line is no flip
    e7 = np.array([6.0, 5.0, 4.0, 4.0005, 3.0, 2.0, 1.0])
    assert dia.energy_diff_flips(r7, e7) == 0
    assert dia.energy_jump(r7, e7) == 0.0


def test_step_discontinuity_jumps():
    r = np.arange(9.0)
    e = np.array([8.0, 7.0, 6.0, 5.0, 4.0, 6.0, 5.0, 4.0, 3.0])  # +2 eV step inside a −1 eV/Å slope
    # diffs: −1 −1 −1 −1 +2 −1 −1 −1 → flips around the +2 step: (1 + 2) + (2 + 1)
    assert dia.energy_diff_flips(r, e) == 2
    assert dia.energy_jump(r, e) == pytest.approx(6.0)
    # Σ|ΔE| = 4 + 2 + 3 = 9; E_min = E(r_max) = 3, E(r_min) = 8 → 9 / (0 + 5)
    assert dia.tortuosity(r, e) == pytest.approx(9 / 5)
    f = np.array([5.0, 4.0, 3.0, 2.0, 1.0, 4.0, 3.0, 2.0, 1.0])  # force step of +3 eV/Å
    assert dia.force_jump(r, f) == pytest.approx((1 + 3) + (3 + 1))
    assert dia.force_total_variation(r, f) == pytest.approx(4 + 3 + 3)
    assert dia.force_jump(r, np.linspace(5, -1, 9)) == 0.0  # monotone force: no jump


def test_tortuosity_repulsive_only_and_constant():
    r = np.linspace(0.5, 5, 50)
    assert dia.tortuosity(r, np.exp(-r)) == pytest.approx(1.0)
    assert np.isnan(dia.tortuosity(r, np.zeros_like(r)))


def test_is_bad_reference_curve_needs_both():
    r = np.arange(9.0)
    one_big_step = np.array([8.0, 7.0, 6.0, 5.0, 4.0, 6.0, 5.0, 4.0, 3.0])  # jump 6, 2 flips
    assert not dia.is_bad_reference_curve(r, one_big_step)
    zigzag_small = 3 + 0.01 * (-1.0) ** np.arange(9)  # 7 flips, jump 0.28 eV
    assert not dia.is_bad_reference_curve(r, zigzag_small)
    zigzag_big = 3 + 0.5 * (-1.0) ** np.arange(9)  # 7 flips, jump 14 eV
    assert dia.is_bad_reference_curve(r, zigzag_big)


# ----------------------------------------------------------- PBE-relative


def test_harmonic_wavenumber_units():
    # 1 eV/Å² with μ = 1 amu is 521.47 cm⁻¹ (√(eV/Å²/amu) in cm⁻¹)
    assert pbe.harmonic_wavenumber(1.0, 1.0) == pytest.approx(521.47, abs=0.01)
    assert pbe.reduced_mass("H") == pytest.approx(1.008 / 2, abs=1e-3)
    assert pbe.reduced_mass("H", "Cl") == pytest.approx(1.008 * 35.45 / 36.458, abs=1e-3)
    assert np.isnan(pbe.harmonic_wavenumber(-1.0, 1.0))


def test_morse_well_fit_matches_analytic():
    e, _ = morse(R)
    r_eq, k = pbe.quadratic_well_fit(R, e)
    assert r_eq == pytest.approx(R_E, abs=1e-3)
    assert k == pytest.approx(2 * A**2 * D_E, rel=1e-2)  # k = 2a²D_e = 13.5 eV/Å²
    e_far = D_E * (1 - np.exp(-A * (R[-1] - R_E))) ** 2 - D_E  # Morse not quite 0 at 6 Å
    assert pbe.well_depth(R, e) == pytest.approx(e_far + D_E, abs=1e-6)
    nu = pbe.harmonic_wavenumber(k, pbe.reduced_mass("O"))
    nu_exact = pbe.harmonic_wavenumber(2 * A**2 * D_E, pbe.reduced_mass("O"))
    assert nu == pytest.approx(nu_exact, rel=1e-2)


def test_pbe_metrics_against_itself_are_zero():
    e, f = morse(R)
    r2 = np.geomspace(0.6, 6.0, 300)  # a different grid
    e2, f2 = morse(r2)
    # zero up to round-off (an energy offset of 7 eV moves the last bits; 1e-15 was seen with another numpy),
    # far below any physical difference (the shifted Morse below: 0.1 Å, 0.5 eV)
    assert pbe.bond_length_error(R, e, R, e + 7.0) == pytest.approx(0.0, abs=1e-9)  # Å
    assert pbe.well_depth_error(R, e, R, e + 7.0) == pytest.approx(0.0, abs=1e-9)  # eV
    assert pbe.vibrational_frequency_error(R, e, R, e, "O") == pytest.approx(0.0, abs=1e-6)  # cm⁻¹
    assert pbe.repulsive_wall_distance_error(R, e, R, e) == pytest.approx(0.0, abs=1e-9)  # Å
    assert pbe.pbe_energy_mae(R, e, R, e - 3.0) == pytest.approx(0.0, abs=1e-12)  # offset removed
    assert pbe.pbe_energy_mae(R, e, r2, e2) < 5e-3  # only interpolation error
    assert pbe.pbe_force_mae(R, f, r2, f2) < 2e-2
    assert pbe.bond_length_error(R, e, r2, e2) < 2e-3


def test_pbe_metrics_shifted_morse():
    e_ref, f_ref = morse(R)
    e_pred, _ = morse(R, d_e=D_E + 0.5, r_e=R_E + 0.1)
    assert pbe.bond_length_error(R, e_ref, R, e_pred) == pytest.approx(0.1, abs=2e-3)
    depth_ref = D_E * (1 - np.exp(-A * (R[-1] - R_E))) ** 2
    depth_pred = (D_E + 0.5) * (1 - np.exp(-A * (R[-1] - R_E - 0.1))) ** 2
    assert pbe.well_depth_error(R, e_ref, R, e_pred) == pytest.approx(depth_pred - depth_ref, abs=1e-6)
    k_ref, k_pred = 2 * A**2 * D_E, 2 * A**2 * (D_E + 0.5)
    mu = pbe.reduced_mass("O")
    expected = pbe.harmonic_wavenumber(k_pred, mu) - pbe.harmonic_wavenumber(k_ref, mu)
    assert pbe.vibrational_frequency_error(R, e_ref, R, e_pred, "O") == pytest.approx(expected, rel=2e-2)
    assert pbe.pbe_force_mae(R, f_ref, R, f_ref + 0.3) == pytest.approx(0.3)


def test_repulsive_wall_radius_analytic():
    e, _ = morse(R)
    for t in pbe.WALL_THRESHOLDS_EV:
        assert pbe.repulsive_wall_radius(R, e, t) == pytest.approx(morse_wall(t), abs=1e-3)
    assert np.isnan(pbe.repulsive_wall_radius(R, e, 1e4))  # never reached
    shifted, _ = morse(R, r_e=R_E + 0.05)
    assert pbe.repulsive_wall_distance_error(R, e, R, shifted) == pytest.approx(0.05, abs=1e-3)


def test_repulsive_wall_missing_prediction_costs_reference_radius():
    e_ref, _ = morse(R)
    r_short = R[R >= 1.0]  # the prediction stops at 1 Å: E_min + 36.4 eV, misses 50 and 100 eV
    e_pred, _ = morse(r_short)
    errors = [0.0, 0.0, 0.0, 0.0, morse_wall(50), morse_wall(100)]
    assert pbe.repulsive_wall_distance_error(R, e_ref, r_short, e_pred) == pytest.approx(
        np.mean(errors), abs=1e-3
    )


def test_unbound_reference_gives_nan():
    r = np.linspace(0.5, 5, 60)
    e_rep = np.exp(-2 * r)  # purely repulsive, no well
    e_pred, _ = morse(r)
    assert np.isnan(pbe.bond_length_error(r, e_rep, r, e_pred))
    assert np.isnan(pbe.well_depth_error(r, e_rep, r, e_pred))
    assert np.isnan(pbe.vibrational_frequency_error(r, e_rep, r, e_pred, "He"))


def test_force_mae_cartesian_is_mbd_component_mean():
    e, f = morse(R)
    cart = np.zeros((len(R), 2, 3))
    cart[:, 0, 0], cart[:, 1, 0] = -f, f
    np.testing.assert_allclose(dia.bond_force_from_cartesian(cart), f)
    shifted = cart.copy()
    shifted[:, 0, 0] -= 0.3
    shifted[:, 1, 0] += 0.3
    assert pbe.pbe_force_mae(R, cart, R, shifted) == pytest.approx(0.3 * 2 / 6)


def test_invalid_curves_raise():
    with pytest.raises(ValueError, match="NaN"):
        dia.tortuosity([1.0, 2.0], [0.0, np.nan])
    with pytest.raises(ValueError, match="duplicate"):
        dia.tortuosity([1.0, 1.0, 2.0], [0.0, 1.0, 2.0])
    with pytest.raises(ValueError):
        dia.conservation_deviation([1.0, 2.0], [0.0, 1.0], [0.0])


# ----------------------------------------------------------- real PBE reference


@pytest.fixture(scope="module")
def pbe_curves() -> dict:
    with gzip.open(DFT_FILE, "rt") as file:
        return json.load(file)["PBE"]


def test_bad_pbe_references_are_mbd_lanthanides(pbe_curves):
    """MBD's find_low_quality_dft_refs docstring: on the current PBE reference it flags
    exactly Pr, Pm, Sm, Tb, Dy, Ho, Er, Tm (evaluated on the element window)."""
    bad = set()
    for formula, curve in pbe_curves.items():
        r, e = np.array(curve["distances"]), np.array(curve["energies"])
        lo, hi = dia.evaluation_window(formula, r.max())
        mask = (r >= lo) & (r <= hi)
        if mask.sum() >= 5 and dia.is_bad_reference_curve(r[mask], e[mask]):
            bad.add(formula.split("-")[0])
    assert bad == {"Pr", "Pm", "Sm", "Tb", "Dy", "Ho", "Er", "Tm"}


def test_pbe_h2_bond_force_is_minus_gradient(pbe_curves):
    curve = pbe_curves["H-H"]
    r, e = np.array(curve["distances"]), np.array(curve["energies"])
    f = dia.bond_force_from_cartesian(curve["forces"])
    assert f[0] > 0  # repulsive at the shortest distance
    assert np.corrcoef(f, -np.gradient(e, r))[0, 1] > 0.99
    assert dia.force_flips(r, f) == 1
    assert 1.0 <= dia.tortuosity(r, e) < 1.001  # a 0.1 meV-scale wiggle in the real curve
