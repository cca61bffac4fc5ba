"""The κ calculation steps of geodite.phonons: pure formulas, and the steps on fcc Al with EMT (1-atom cell,
8-atom supercells, 5×5×5 q-mesh: a second)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("phono3py")

from ase.build import bulk  # noqa: E402
from ase.calculators.emt import EMT  # noqa: E402

from geodite import phonons  # noqa: E402


@pytest.fixture(autouse=True)
def _one_blas_thread():
    """ASE's optimiser works on 3×3 matrices: OpenBLAS threads only contend on shared cores (20× slower)."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1, user_api="blas"):
        yield


def _emt_forces(structures: list) -> list:
    out = []
    for atoms in structures:
        if atoms is None:
            out.append(None)
            continue
        atoms = atoms.copy()
        atoms.calc = EMT()
        out.append(atoms.get_forces())
    return out


@pytest.fixture(scope="module")
def al_fc2():
    """fcc Al (a = 4.0 Å) with its EMT FC2 and frequencies (THz)."""
    ph3 = phonons.init_phono3py(
        bulk("Al", "fcc", a=4.0), fc2_supercell=np.diag([2, 2, 2]), fc3_supercell=np.diag([2, 2, 2]), q_mesh=[5, 5, 5]
    )
    freqs = phonons.fc2_and_frequencies(ph3, _emt_forces(phonons.fc2_displacements(ph3)))
    return ph3, freqs


# --------------------------------------------------------------------------- pure functions


def test_imaginary_mode_check_follows_mbd():
    ok = np.array([[0.0, 0.0, -0.005, 3.0], [1.0, 1.0, 2.0, 3.0]])
    assert not phonons.has_imaginary_modes(ok)
    assert phonons.has_imaginary_modes(np.array([[0.0, 0.0, -0.02, 3.0], [1.0, 1.0, 2.0, 3.0]]))  # acoustic Γ < −0.01
    assert phonons.has_imaginary_modes(np.array([[0.0, 0.0, 0.0, -0.001], [1.0, 1.0, 2.0, 3.0]]))  # optical Γ < 0
    assert phonons.has_imaginary_modes(np.array([[0.0, 0.0, 0.0, 3.0], [1.0, -1e-4, 2.0, 3.0]]))  # off Γ < 0
    assert phonons.has_imaginary_modes(np.full((2, 4), np.nan))


def test_mode_kappa_total_formula():
    """κ_j = κ_P,j + Σ_{j'≠j} 2C_j/(C_j + C_j') κ_C,jj' (MBD) with κ_P on the matrix diagonal, 0/0 → 0; for a
    symmetric κ_C the modes sum to κ_P + κ_C over the pairs with C_j + C_j' > 0 (the shares of a pair add to 2)."""
    rng = np.random.default_rng(0)
    cv = np.array([[0.0, 0.0, 1.0, 2.0]])
    kc = rng.random((1, 4, 4, 6))
    kc = kc + kc.transpose(0, 2, 1, 3)
    kp = rng.random((1, 4, 6))
    matrix = kc.copy()
    matrix[0, np.arange(4), np.arange(4)] = kp[0]
    out = phonons.mode_kappa_total(matrix, cv)
    manual = kp.copy()
    for j in range(4):
        for k in range(4):
            if k != j and cv[0, j] + cv[0, k] > 0:
                manual[0, j] += 2 * cv[0, j] / (cv[0, j] + cv[0, k]) * kc[0, j, k]
    np.testing.assert_allclose(out, manual, rtol=1e-14)
    pairs = ((cv[0][:, None] + cv[0][None, :]) > 0) & ~np.eye(4, dtype=bool)
    np.testing.assert_allclose(out.sum(axis=(0, 1)), kp.sum(axis=(0, 1)) + kc[0][pairs].sum(axis=0), rtol=1e-14)


def test_frequency_quantiles_are_mbds_inverted_cdf():
    """17 levels of the inverted CDF, every mode weighted alike: level 0 is the lowest mode, level 1 the highest,
    level u the smallest frequency with at least a share u of the modes at or below it (numpy's
    ``inverted_cdf``); NaN modes are dropped."""
    rng = np.random.default_rng(1)
    freqs = rng.normal(5.0, 3.0, size=(40, 6))
    out = phonons.frequency_quantiles(freqs)
    np.testing.assert_array_equal(out, np.quantile(freqs.ravel(), np.linspace(0, 1, 17), method="inverted_cdf"))
    assert out[0] == freqs.min() and out[-1] == freqs.max()
    four = phonons.frequency_quantiles(np.array([[4.0, 1.0], [3.0, np.nan], [2.0, np.nan]]), n_levels=5)
    np.testing.assert_array_equal(four, [1.0, 1.0, 2.0, 3.0, 4.0])  # u = 0.25 → 1 (1 of 4 modes ≤ 1)


def test_force_set_zeros_for_skipped_displacements():
    f = np.arange(6.0).reshape(2, 3)
    out = phonons.force_set([f, None, 2 * f], n_atoms=2)
    assert out.shape == (3, 2, 3)
    np.testing.assert_array_equal(out[0], f)
    np.testing.assert_array_equal(out[1], 0.0)
    np.testing.assert_array_equal(out[2], 2 * f)


# --------------------------------------------------------------------------- steps on fcc Al (EMT)


def test_relaxation_reaches_the_minimum_and_keeps_the_symmetry():
    """The relaxed fcc cell sits at EMT's energy minimum in the lattice constant (±0.1 % costs energy), its
    angles unchanged; an off-centre atom (space group 99 at 1e-5 Å) stays off-centre under FixSymmetry."""
    start = bulk("Al", "fcc", a=4.1)
    relaxed, info = phonons.relax_with_symmetry(start, EMT(), fmax=1e-4, steps=300)
    assert info["relax_converged"] and info["relax_fmax"] < 1e-4 and start.cell.cellpar()[0] == pytest.approx(4.1 / 2**0.5)
    np.testing.assert_allclose(relaxed.cell.cellpar()[3:], 60.0)

    def energy(scale: float) -> float:
        atoms = relaxed.copy()
        atoms.set_cell(relaxed.cell * scale, scale_atoms=True)
        atoms.calc = EMT()
        return atoms.get_potential_energy()

    assert energy(1.001) > energy(1.0) < energy(0.999)

    tetragonal = bulk("Al", "fcc", a=4.0, cubic=True)
    tetragonal.positions[0] += [0.02, 0.0, 0.0]
    assert phonons.spacegroup_number(tetragonal) == 99
    relaxed, info = phonons.relax_with_symmetry(tetragonal, EMT(), fmax=1e-4, steps=300)
    assert info["relax_converged"] and phonons.spacegroup_number(relaxed) == 99


def test_fc2_frequencies_of_fcc_al(al_fc2):
    """One atom: three acoustic bands, zero at Γ (symmetrised FC2 is translation invariant), none imaginary,
    the highest in THz where Al's is (EMT 8.2 THz; DFT and experiment ≈ 9.7 THz)."""
    ph3, freqs = al_fc2
    assert freqs.shape[1] == 3 and len(phonons.fc2_displacements(ph3)) == 1
    np.testing.assert_allclose(freqs[0], 0.0, atol=1e-5)
    assert not phonons.has_imaginary_modes(freqs)
    assert 6.0 < freqs.max() < 12.0


def test_wigner_conductivity_of_fcc_al(al_fc2):
    """κ of a cubic crystal is isotropic (xx = yy = zz, no off-diagonal); the modes sum to κ (trace/3, weights
    included); the coherence term adds to the particle term (κ > κ_P); one result per temperature, in order."""
    ph3, _ = al_fc2
    phonons.produce_fc3(ph3, _emt_forces(phonons.fc3_displacements(ph3)))
    results = phonons.wigner_conductivity(ph3, [300.0, 600.0])
    assert [r.temperature for r in results] == [300.0, 600.0]
    for res in results:
        kappa = res.kappa
        np.testing.assert_allclose(kappa[:3], kappa[0], rtol=1e-10)
        assert np.all(np.abs(kappa[3:]) < 1e-10 * kappa[0])
        assert res.mode_kappa.shape == (len(res.weights), 3)
        assert res.mode_kappa.sum() / res.weights.sum() == pytest.approx(kappa[:3].mean(), rel=1e-10)
        assert 0 < res.kappa_p[0] < kappa[0]
    assert results[0].kappa[0] != results[1].kappa[0]
