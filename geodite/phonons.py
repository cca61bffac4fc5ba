"""Lattice thermal conductivity with phono3py, one small step per function.

The steps of a κ calculation (the shape of Matbench Discovery's ``phonons/thermal_conductivity.py``),
each taking and returning arrays or the ``Phono3py`` object; none of them knows the model or the runner:

0. :func:`relax_with_symmetry`: the unit cell relaxed by an ASE calculator with its space group fixed.
1. :func:`init_phono3py`: relaxed unit cell → ``Phono3py`` with the FC2 and FC3 supercells, the q-mesh
   and the finite displacements (Å).
2. :func:`fc2_displacements`: the displaced FC2 supercells as ASE ``Atoms`` (``None`` for a displacement
   phono3py skips). The caller computes their forces (eV/Å) in one batch.
3. :func:`fc2_and_frequencies`: those forces → symmetrised FC2 (eV/Å²) and the phonon frequencies on the
   q-mesh (THz); :func:`has_imaginary_modes` is Matbench Discovery's stability check on them.
4. :func:`fc3_displacements`, :func:`produce_fc3`: the same for the FC3 set → symmetrised FC3 (eV/Å³).
5. :func:`wigner_conductivity`: Wigner (particle + coherence, SMM19) κ in the RTA at each temperature (K),
   W/(m·K), with the per-mode total κ of :func:`mode_kappa_total`.

phono3py is pinned at 4.10 (pyproject ``phonons`` extra): ``symmetrize_fc2``/``symmetrize_fc3`` are
separate calls, the Wigner transport is ``transport_type="SMM19"`` and its result carries
``kappa_intra`` and ``mode_kappa_matrix``.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from ase import Atoms

from geodite.metrics.phonons import kappa_scalar

if TYPE_CHECKING:
    from phono3py import Phono3py

IMAGINARY_ACOUSTIC_THRESHOLD = -0.01  # THz, MBD's check_imaginary_freqs


@dataclass(frozen=True)
class WignerKappa:
    """Wigner RTA conductivity of one material at one temperature.

    Attributes:
        temperature: K.
        kappa: total (particle + coherence) κ, Voigt (xx, yy, zz, yz, xz, xy), W/(m·K).
        kappa_p: particle (intra-band) κ, Voigt, W/(m·K).
        mode_kappa: total κ per (irreducible q-point, band), trace/3, W/(m·K) times the q-point weight,
            shape (n_q, n_bands): κ = Σ mode_kappa / Σ weights.
        weights: irreducible q-point weights, shape (n_q,).
    """

    temperature: float
    kappa: np.ndarray
    kappa_p: np.ndarray
    mode_kappa: np.ndarray
    weights: np.ndarray


def spacegroup_number(atoms: Atoms, symprec: float = 1e-5) -> int | None:
    """spglib's space-group number of ``atoms`` at ``symprec`` (Å); None when spglib finds none. A relaxation
    that changes it has broken the symmetry (MBD then skips the material's FC3)."""
    import spglib

    cell = (np.asarray(atoms.cell), atoms.get_scaled_positions(), atoms.numbers)
    ds = spglib.get_symmetry_dataset(cell, symprec=symprec)
    return None if ds is None else int(ds.number)


def relax_with_symmetry(
    atoms: Atoms, calculator, *, fmax: float = 1e-4, steps: int = 300, optimizer: str = "FIRE", symprec: float = 0.01
) -> tuple[Atoms, dict]:
    """Relax positions and cell lengths keeping the space group, as MBD before its phonon calculation.

    ASE ``optimizer`` on ``FrechetCellFilter(mask=[1, 1, 1, 0, 0, 0])`` (cell tilt masked) with
    ``FixSymmetry(symprec)``.

    Args:
        atoms: the start structure (not changed).
        calculator: an ASE calculator (energy eV, forces eV/Å, stress eV/Å³).
        fmax: convergence on the filter's generalised forces, eV/Å.
        steps: at most this many optimizer steps.
        optimizer: an ``ase.optimize`` class name.
        symprec: FixSymmetry tolerance, Å.

    Returns:
        The relaxed copy (no calculator, no constraint) and ``relax_steps``, ``relax_converged``,
        ``relax_fmax`` (largest generalised force, eV/Å), ``relax_max_stress`` (largest |stress|, eV/Å³).
    """
    from ase import optimize
    from ase.constraints import FixSymmetry
    from ase.filters import FrechetCellFilter

    atoms = atoms.copy()
    atoms.calc = calculator
    atoms.set_constraint(FixSymmetry(atoms, symprec=symprec))
    filtered = FrechetCellFilter(atoms, mask=[True, True, True, False, False, False])
    opt = getattr(optimize, optimizer)(filtered, logfile=None)
    converged = bool(opt.run(fmax=fmax, steps=steps))
    forces = filtered.get_forces()
    stress = atoms.get_stress()
    info = {
        "relax_steps": int(opt.nsteps),
        "relax_converged": converged,
        "relax_fmax": float(np.sqrt((forces**2).sum(axis=1)).max()),
        "relax_max_stress": float(np.abs(stress).max()),
    }
    atoms.calc = None
    atoms.set_constraint()
    return atoms, info


def init_phono3py(
    atoms: Atoms,
    *,
    fc2_supercell: Sequence[Sequence[int]],
    fc3_supercell: Sequence[Sequence[int]],
    q_mesh: Sequence[int],
    displacement: float = 0.03,
    symprec: float = 1e-5,
) -> Phono3py:
    """A ``Phono3py`` of the unit cell ``atoms`` with its displacements generated.

    Args:
        atoms: the relaxed unit cell (positions and cell in Å).
        fc2_supercell, fc3_supercell: 3×3 integer supercell matrices of the FC2 and FC3 sets.
        q_mesh: q-point mesh (3 integers) of the phonon and conductivity calculations.
        displacement: finite displacement, Å (phono3py's default and Matbench Discovery's, 0.03).
        symprec: symmetry tolerance, Å; the primitive cell is found with ``primitive_matrix="auto"``.
    """
    from phono3py import Phono3py
    from phonopy.structure.atoms import PhonopyAtoms

    unit = PhonopyAtoms(symbols=list(atoms.symbols), cell=np.asarray(atoms.cell), positions=atoms.positions)
    with warnings.catch_warnings():  # phonopy ≥ 3 warns that "auto" finds a non-identity primitive: intended
        warnings.simplefilter("ignore", UserWarning)
        ph3 = Phono3py(
            unit,
            supercell_matrix=fc3_supercell,
            phonon_supercell_matrix=fc2_supercell,
            primitive_matrix="auto",
            symprec=symprec,
            log_level=0,
        )
    ph3.mesh_numbers = q_mesh
    ph3.generate_displacements(distance=displacement)
    return ph3


def _as_ase(supercells: Sequence) -> list[Atoms | None]:
    """phonopy supercells as periodic ASE ``Atoms``; ``None`` stays ``None``."""
    return [
        None if sc is None else Atoms(sc.symbols, cell=sc.cell, positions=sc.positions, pbc=True)
        for sc in supercells
    ]


def fc2_displacements(ph3: Phono3py) -> list[Atoms | None]:
    """The displaced FC2 supercells (``None``: a displacement phono3py skips, its forces count as zero)."""
    return _as_ase(ph3.phonon_supercells_with_displacements)


def fc3_displacements(ph3: Phono3py) -> list[Atoms | None]:
    """The displaced FC3 supercells (``None``: a displacement phono3py skips, its forces count as zero)."""
    return _as_ase(ph3.supercells_with_displacements)


def force_set(forces: Sequence[np.ndarray | None], n_atoms: int) -> np.ndarray:
    """Forces of a displacement set as phono3py takes them: shape (n_displacements, n_atoms, 3), eV/Å,
    zeros for the ``None`` entries (skipped displacements)."""
    out = np.zeros((len(forces), n_atoms, 3))
    for i, f in enumerate(forces):
        if f is not None:
            out[i] = f
    return out


def fc2_and_frequencies(ph3: Phono3py, forces: Sequence[np.ndarray | None]) -> np.ndarray:
    """Symmetrised FC2 (eV/Å², kept in ``ph3``) from the forces on :func:`fc2_displacements`, and the
    phonon frequencies on the q-mesh.

    Args:
        ph3: from :func:`init_phono3py`.
        forces: one (n_atoms, 3) array (eV/Å) per FC2 displacement, in order; ``None`` where skipped.

    Returns:
        Frequencies in THz, shape (n_q, n_bands), the Γ point first (imaginary modes are negative).
    """
    ph3.phonon_forces = force_set(forces, len(ph3.phonon_supercell))
    ph3.produce_fc2()
    ph3.symmetrize_fc2()
    ph3.init_phph_interaction(symmetrize_fc3q=False)
    ph3.run_phonon_solver()
    frequencies, _, _ = ph3.get_phonon_data()
    return frequencies


def produce_fc3(ph3: Phono3py, forces: Sequence[np.ndarray | None]) -> None:
    """Symmetrised FC3 (eV/Å³, kept in ``ph3``; index permutation and translational invariance) from the
    forces (eV/Å) on :func:`fc3_displacements`, one array per displacement, ``None`` where skipped."""
    ph3.forces = force_set(forces, len(ph3.supercell))
    ph3.produce_fc3()
    ph3.symmetrize_fc3()


def has_imaginary_modes(frequencies: np.ndarray, threshold: float = IMAGINARY_ACOUSTIC_THRESHOLD) -> bool:
    """MBD's imaginary-mode check on phonon frequencies (THz), shape (n_q, n_bands), q = 0 first.

    True if all are NaN, any optical mode at Γ is negative, any acoustic mode at Γ is below
    ``threshold`` (−0.01 THz), or any mode away from Γ is negative.
    """
    freqs = np.asarray(frequencies, dtype=float)
    if freqs.size == 0 or np.all(np.isnan(freqs)):
        return True
    if np.any(freqs[0, 3:] < 0) or np.any(freqs[0, :3] < threshold):
        return True
    return bool(np.any(freqs[1:] < 0))


def frequency_quantiles(frequencies: np.ndarray, n_levels: int = 17) -> np.ndarray:
    """Quantiles (THz) of a phonon spectrum at ``n_levels`` equally spaced levels 0…1, every mode of the
    (n_q, n_bands) array weighted alike (a full q-mesh), by the inverted CDF: Q(u) is the smallest frequency
    whose share of modes at or below it reaches u. The summary Matbench Discovery publishes per material
    and model (``freq_pairs`` of ``kappa-103-analysis``, 17 levels, rounded to 0.01 THz)."""
    freqs = np.sort(np.asarray(frequencies, dtype=float).ravel())
    freqs = freqs[np.isfinite(freqs)]
    if freqs.size == 0:
        raise ValueError("no finite frequencies")
    cdf = np.arange(1, freqs.size + 1) / freqs.size
    idx = np.searchsorted(cdf, np.linspace(0.0, 1.0, n_levels), side="left")
    return freqs[np.minimum(idx, freqs.size - 1)]


def mode_kappa_total(mode_kappa_matrix: np.ndarray, heat_capacity: np.ndarray) -> np.ndarray:
    """Total (particle + coherence) κ per mode from phono3py's Wigner band-pair matrix.

    κ_j = κ_P,j + Σ_{j'≠j} 2 C_j / (C_j + C_j') κ_C,jj'   (MBD's ``calc_mode_kappa_tot``; 0/0 → 0)

    phono3py 4 keeps κ_P,j on the diagonal j = j' of the matrix, where the share 2C_j/(2C_j) is 1, so one
    weighted sum over j' gives both terms.

    Args:
        mode_kappa_matrix: κ per (q-point, band j, band j'), Voigt, shape (n_q, n_bands, n_bands, 6),
            W/(m·K) times the q-point weight.
        heat_capacity: mode heat capacities C_j (any unit, only ratios enter), shape (n_q, n_bands).

    Returns:
        κ per (q-point, band), Voigt, shape (n_q, n_bands, 6), W/(m·K) times the q-point weight.
    """
    cv = np.asarray(heat_capacity, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        share = 2 * cv[:, :, None] / (cv[:, :, None] + cv[:, None, :])
    share[np.isnan(share)] = 0.0
    idx = np.arange(mode_kappa_matrix.shape[1])
    share[:, idx, idx] = 1.0
    return (np.asarray(mode_kappa_matrix) * share[..., None]).sum(axis=2)


def wigner_conductivity(
    ph3: Phono3py, temperatures: Sequence[float], *, is_isotope: bool = True, boundary_mfp: float = 1e6
) -> list[WignerKappa]:
    """Wigner (particle + coherence, SMM19) conductivity in the RTA from FC2 and FC3 in ``ph3``.

    Args:
        ph3: with FC2 (:func:`fc2_and_frequencies`) and FC3 (:func:`produce_fc3`).
        temperatures: K.
        is_isotope: include isotope scattering (natural abundances).
        boundary_mfp: boundary mean free path, µm (1e6: effectively none, as MBD).

    Returns:
        One :class:`WignerKappa` per temperature, in order.
    """
    ph3.init_phph_interaction(symmetrize_fc3q=False)
    ph3.run_thermal_conductivity(
        temperatures=list(temperatures), is_isotope=is_isotope, boundary_mfp=boundary_mfp, transport_type="SMM19"
    )
    cond = ph3.thermal_conductivity
    weights = np.asarray(cond.grid_weights, dtype=float)
    cv = np.asarray(cond.mode_heat_capacities)  # (T, q, band)
    out = []
    for i, temperature in enumerate(temperatures):
        matrix = np.asarray(cond.mode_kappa_matrix)[0, i]  # first smearing σ: (q, band, band, 6)
        out.append(
            WignerKappa(
                temperature=float(temperature),
                kappa=np.asarray(cond.kappa)[0, i],
                kappa_p=np.asarray(cond.kappa_intra)[0, i],
                mode_kappa=np.asarray(kappa_scalar(mode_kappa_total(matrix, cv[i]))),
                weights=weights,
            )
        )
    return out
