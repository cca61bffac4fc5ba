"""Structure relaxation.

* :func:`relax_atoms` — the plain ASE path for any calculator: FIRE on a
  FrechetCellFilter (positions and cell together), stop at max force ≤ ``fmax`` eV/Å
  (the filter's generalised forces include the virial term) or after ``steps`` steps.
* :func:`relax_structures` — many structures with one calculator or model. Today it
  loops over :func:`relax_atoms`; it is the hook for a batched path (torch-sim's batched
  FIRE + cell filter with autobatching for Geodite models, ``torch-sim-atomistic==0.3.0``),
  which callers get without changing their code once ``backend="torch-sim"`` exists.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass
class RelaxResult:
    atoms: Any  # relaxed ase.Atoms (calculator detached)
    energy: float  # eV, total, at the final geometry
    n_steps: int
    converged: bool
    fmax_final: float  # eV/Å, max generalised force of the filter at the end
    wall_s: float


def _make_optimizer(name: str, obj, logfile=None):
    from ase import optimize

    try:
        cls = getattr(optimize, name)
    except AttributeError as exc:
        raise ValueError(f"unknown ASE optimizer {name!r}") from exc
    return cls(obj, logfile=logfile)


def relax_atoms(
    atoms,
    calculator,
    fmax: float = 0.05,
    steps: int = 500,
    optimizer: str = "FIRE",
    cell_filter: str | None = "FrechetCellFilter",
    logfile: str | None = None,
) -> RelaxResult:
    """Relax ``atoms`` (a copy) with ``calculator``; see module docstring."""
    from ase import filters

    t0 = time.perf_counter()
    atoms = atoms.copy()
    atoms.calc = calculator
    obj = getattr(filters, cell_filter)(atoms) if cell_filter else atoms
    opt = _make_optimizer(optimizer, obj, logfile=logfile)
    converged = bool(opt.run(fmax=fmax, steps=steps))
    forces = obj.get_forces()
    fmax_final = float(np.sqrt((forces**2).sum(axis=1)).max()) if len(forces) else 0.0
    energy = float(atoms.get_potential_energy())
    n_steps = int(opt.nsteps)
    atoms.calc = None
    return RelaxResult(atoms, energy, n_steps, converged, fmax_final, time.perf_counter() - t0)


def relax_structures(
    atoms_list,
    calculator_or_model,
    fmax: float = 0.05,
    steps: int = 500,
    optimizer: str = "FIRE",
    cell_filter: str | None = "FrechetCellFilter",
    backend: str = "ase",
    device: str = "cpu",
) -> list[RelaxResult]:
    """Relax each structure of ``atoms_list``.

    ``calculator_or_model`` is an ASE calculator or a registry model name
    (see :mod:`geodite.registry`). ``backend="ase"`` is the per-structure ASE loop;
    ``backend="torch-sim"`` is reserved for the batched Geodite path.
    """
    if backend != "ase":
        raise NotImplementedError(f"relaxation backend {backend!r} is not implemented yet (use 'ase')")
    calc = calculator_or_model
    if isinstance(calc, str):
        from geodite.registry import get_calculator

        calc = get_calculator(calc, device=device)
    from geodite.tasks.runner import limit_blas_threads

    with limit_blas_threads(1):  # 3×3 linear algebra in the optimiser: BLAS threads only contend
        return [relax_atoms(a, calc, fmax, steps, optimizer, cell_filter) for a in atoms_list]
