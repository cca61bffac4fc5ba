"""Structure relaxation with ASE's optimisers, for any calculator.

* :func:`relax_atoms` — the plain ASE path for any calculator: FIRE on a
  FrechetCellFilter (positions and cell together), stop at max force ≤ ``fmax`` eV/Å
  (the filter's generalised forces include the virial term) or after ``steps`` steps.
* :func:`relax_in_flight` — the batched engine (``geodite bench discovery --engine batched``):
  many structures, one model call per step for all structures in flight, a fixed budget of
  atoms refilled as structures converge. Each structure is stepped by ASE's own optimiser on
  a FrechetCellFilter that computes ASE's values faster (:class:`_FrechetCellFilter`), so the
  physics is :func:`relax_atoms`'s: in float64 the same steps and energies to 1e-12 eV
  (tests/test_relax_batched.py); on the shipped model in float32 see docs/batched-engine.md.
* :func:`relax_structures` — a list of structures with one ASE calculator: ``engine="ase"``
  (:func:`relax_atoms` in a loop) or ``"batched"`` (:func:`relax_in_flight`).

What a relaxation runs (optimiser, cell filter, ``fmax``, ``steps``) is one :class:`RelaxSettings`. The engine
takes a calculator (or an ``evaluate`` function), never a model name: callers build it
(:meth:`geodite.registry.ModelHandle.load`). torch-sim's batched relaxation is a separate backend that callers
choose, :func:`geodite.torchsim.relax_structures_torchsim` (it builds on this module, not the reverse). The
relaxation throughput of the backends side by side: ``benchmarks/relax_engines.py``.
"""

from __future__ import annotations

import inspect
import math
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
from ase import filters, optimize
from ase.filters import FrechetCellFilter
from ase.optimize.optimize import Optimizer
from ase.stress import full_3x3_to_voigt_6_stress, voigt_6_to_full_3x3_stress
from scipy.linalg import expm_frechet

from geodite.calculator import Prediction, predict
from geodite.graph import StructureError
from geodite.threads import limit_blas_threads

#: the engines of :func:`relax_structures` (``geodite bench discovery --engine``): same physics
ENGINES = ("batched", "ase")


@dataclass(frozen=True)
class RelaxSettings:
    """What a relaxation runs: the ASE ``optimizer`` (a class of :mod:`ase.optimize`) on the ASE
    ``cell_filter`` (a class of :mod:`ase.filters`; None: positions only) until the largest generalised
    force is ≤ ``fmax`` (eV/Å; checked before the first step too) or after ``steps`` steps."""

    fmax: float = 0.05  # eV/Å
    steps: int = 500
    optimizer: str = "FIRE"
    cell_filter: str | None = "FrechetCellFilter"

    def __post_init__(self) -> None:
        """Refuse settings under which nothing meaningful would run (ValueError, before any structure)."""
        if not (math.isfinite(self.fmax) and self.fmax > 0):
            raise ValueError(f"fmax must be a finite number > 0 (eV/Å), not {self.fmax}")
        if self.steps < 1:
            raise ValueError(f"steps must be at least 1, not {self.steps}")
        optimizer_class(self.optimizer)


def optimizer_names() -> list[str]:
    """The ASE optimizers a relaxation accepts by name (the :class:`ase.optimize.optimize.Optimizer` classes
    :mod:`ase.optimize` exports: FIRE, BFGS, LBFGS, ...)."""
    return sorted(name for name, value in vars(optimize).items()
                  if inspect.isclass(value) and issubclass(value, Optimizer))


def optimizer_class(name: str) -> type[Optimizer]:
    """The ASE optimizer class called ``name``; ValueError naming the choices when there is none."""
    if name not in optimizer_names():
        raise ValueError(f"unknown ASE optimizer {name!r}; choose from {', '.join(optimizer_names())}")
    return getattr(optimize, name)


@dataclass
class RelaxResult:
    atoms: Any  # relaxed ase.Atoms (calculator detached)
    energy: float  # eV, total, at the final geometry
    n_steps: int
    converged: bool
    fmax_final: float  # eV/Å, max generalised force of the filter at the end
    wall_s: float


def max_force(forces: np.ndarray) -> float:
    """Largest row norm of generalised forces [n, 3] (eV/Å), ASE's convergence measure; 0 for none."""
    return float(np.sqrt((forces**2).sum(axis=1)).max()) if len(forces) else 0.0


def _make_optimizer(name: str, obj, logfile=None):
    return optimizer_class(name)(obj, logfile=logfile)


def _filtered(atoms, cell_filter: str | None, fast: bool = False):
    """``atoms`` under the ASE ``cell_filter`` (none: the atoms themselves); ``fast``: FrechetCellFilter's
    values from :class:`_FrechetCellFilter`."""
    if not cell_filter:
        return atoms
    if fast and cell_filter == "FrechetCellFilter":
        return _FrechetCellFilter(atoms)
    return getattr(filters, cell_filter)(atoms)


def relax_atoms(
    atoms, calculator, settings: RelaxSettings = RelaxSettings(), logfile: str | None = None
) -> RelaxResult:
    """Relax ``atoms`` (a copy) with ``calculator`` and ASE's own loop; see module docstring."""
    t0 = time.perf_counter()
    atoms = atoms.copy()
    atoms.calc = calculator
    obj = _filtered(atoms, settings.cell_filter)
    opt = _make_optimizer(settings.optimizer, obj, logfile=logfile)
    converged = bool(opt.run(fmax=settings.fmax, steps=settings.steps))
    fmax_final = max_force(obj.get_forces())
    energy = float(atoms.get_potential_energy())
    n_steps = int(opt.nsteps)
    atoms.calc = None
    return RelaxResult(atoms, energy, n_steps, converged, fmax_final, time.perf_counter() - t0)


#: Atoms in flight of the batched engine per device kind (``--max-atoms`` of ``bench discovery``): the structures
#: relaxing at once, whose model calls of one step go to the Evaluator together. CPU: the model's cost is per atom
#: beyond a few hundred atoms, so a bigger batch buys nothing but memory; a GPU needs thousands of atoms per call to
#: be busy (one model call takes at most the Evaluator's atoms per call, geodite.calculator.ATOMS_PER_CALL by
#: default: more in flight means more calls a step).
ATOMS_IN_FLIGHT = {"cpu": 512, "cuda": 8192}


def default_atoms_in_flight(device: str) -> int:
    """The batched engine's default atoms in flight for a device name ("cpu", "cuda", "cuda:1", …)."""
    return ATOMS_IN_FLIGHT.get(str(device).split(":")[0], ATOMS_IN_FLIGHT["cpu"])


class _FrechetCellFilter(FrechetCellFilter):
    """ASE's FrechetCellFilter (default options: all six strain components, no pressure) with the same values
    computed faster, for the batched engine. The cell variable (the log of the deformation gradient, scaled)
    is kept from ``set_positions``: ASE recomputes it with scipy's ``logm`` of the cell twice a step, the same
    value to round-off at ~4 ms a call, the main cost of a small structure's step. The log-space cell force is
    one adjoint Fréchet derivative, ``L_exp(Xᵀ, G)``, instead of ASE's nine directional ones
    (``⟨L_exp(X, E_mn), G⟩ = ⟨E_mn, L_exp(Xᵀ, G)⟩``)."""

    def __init__(self, atoms):
        super().__init__(atoms)
        self._cell_x = super().get_positions()[len(atoms) :]  # ASE's own value at the start

    def _deform(self) -> np.ndarray:
        return np.linalg.solve(self.orig_cell, self.atoms.get_cell()).T

    def get_positions(self) -> np.ndarray:
        positions = np.linalg.solve(self._deform(), self.atoms.get_positions().T).T
        return np.concatenate([positions, self._cell_x])

    def set_positions(self, new, **kwargs) -> None:
        super().set_positions(new, **kwargs)
        self._cell_x = np.array(new[len(self.atoms) :], dtype=float)

    def get_forces(self, **kwargs) -> np.ndarray:
        volume = self.atoms.get_volume()
        virial = -volume * voigt_6_to_full_3x3_stress(self.atoms.get_stress(**kwargs))
        deform = self._deform()
        log_deform = self._cell_x / self.exp_cell_factor - np.log(float(len(self.atoms))) * np.eye(3)
        log_force = expm_frechet(log_deform.T, virial @ np.linalg.inv(deform.T), compute_expm=False)
        self.stress = full_3x3_to_voigt_6_stress(-virial / volume)
        return np.concatenate([self.atoms.get_forces(**kwargs) @ deform, log_force / self.exp_cell_factor])


class _Evaluated:
    """The batched model call's results for a structure's current geometry, as its ASE calculator. The loop sets
    new results after every step (the optimiser moves atoms only between model calls), so unlike ASE's
    SinglePointCalculator it does not compare the geometry on every read."""

    def __init__(self, energy: float, forces: np.ndarray, stress: np.ndarray | None):
        self.results = {"energy": energy, "free_energy": energy, "forces": forces, "stress": stress}

    def get_property(self, name: str, atoms=None, allow_calculation: bool = True):
        return self.results[name]

    def get_potential_energy(self, atoms=None, force_consistent: bool = False) -> float:
        return self.results["energy"]

    def get_forces(self, atoms=None) -> np.ndarray:
        return self.results["forces"].copy()

    def get_stress(self, atoms=None) -> np.ndarray:
        if self.results["stress"] is None:
            raise NotImplementedError("no stress for a structure that is not periodic in 3D")
        return self.results["stress"].copy()


class _OnceAGradient:
    """An ASE optimizable (a cell filter's or plain atoms') whose gradient is computed once per geometry.

    The batched loop checks convergence and then steps on the same gradient; ASE's own loop computes the
    filter's gradient again for each (for FrechetCellFilter a matrix log and nine Fréchet derivatives).
    Values are the wrapped optimizable's, so the steps are ASE's."""

    def __init__(self, inner):
        self.inner = inner
        self.gradient = None

    def __ase_optimizable__(self):
        return self

    def ndofs(self) -> int:
        return self.inner.ndofs()

    def get_x(self) -> np.ndarray:
        return self.inner.get_x()

    def set_x(self, x: np.ndarray) -> None:
        self.gradient = None
        self.inner.set_x(x)

    def get_gradient(self) -> np.ndarray:
        if self.gradient is None:
            self.gradient = self.inner.get_gradient()
        return self.gradient

    def get_value(self) -> float:
        return self.inner.get_value()

    def iterimages(self):
        return self.inner.iterimages()

    def converged(self, gradient: np.ndarray, fmax: float) -> bool:
        return self.inner.converged(gradient, fmax)

    def gradient_norm(self, gradient: np.ndarray) -> float:
        return self.inner.gradient_norm(gradient)


@dataclass
class _InFlight:
    """One structure in a batched relaxation: its atoms, the ASE filter and optimiser that step it."""

    key: Any
    atoms: Any
    filtered: Any
    optimizer: Any
    cost_s: float = 0.0  # its share of the model calls (by atoms) plus its own optimiser steps


def _start_relaxation(key, atoms, settings: RelaxSettings) -> _InFlight:
    atoms = atoms.copy()
    atoms.calc = None
    filtered = _filtered(atoms, settings.cell_filter, fast=True)
    opt = _make_optimizer(settings.optimizer, _OnceAGradient(filtered.__ase_optimizable__()))
    opt.fmax = settings.fmax  # what Optimizer.run sets before its first convergence check
    return _InFlight(key, atoms, filtered, opt)


def _finish(flight: _InFlight, converged: bool, gradient: np.ndarray) -> RelaxResult:
    """The RelaxResult of a finished structure, as :func:`relax_atoms` builds it."""
    fmax_final = max_force(gradient.reshape(-1, 3))
    energy = float(flight.atoms.get_potential_energy())
    flight.atoms.calc = None
    return RelaxResult(flight.atoms, energy, int(flight.optimizer.nsteps), converged, fmax_final, flight.cost_s)


def relax_in_flight(
    structures: Iterable[tuple[Any, Any]],
    evaluate: Callable[[list], list[Prediction]],
    settings: RelaxSettings = RelaxSettings(),
    atoms_in_flight: int = ATOMS_IN_FLIGHT["cpu"],
) -> Iterator[tuple[Any, RelaxResult | str]]:
    """Relax many structures with one model call per step for all of them; yield ``(key, result)`` as each
    finishes (in finishing order), ``result`` a :class:`RelaxResult` or, for a structure the model cannot
    evaluate, the error message (str).

    ``structures``: an iterable of ``(key, ase.Atoms)``, consumed lazily. ``evaluate``: a function from a
    list of structures to one :class:`~geodite.calculator.Prediction` each (energy eV, forces eV/Å, stress
    eV/Å³), e.g. :meth:`geodite.tasks.contract.WorkerContext.evaluate` or ``Evaluator.evaluate``.

    The physics is :func:`relax_atoms`'s, by construction: each structure has its own ASE cell filter
    (FrechetCellFilter: the symmetrised log-space cell force) and ASE optimizer (FIRE), stepped with
    ASE's own code; only the model call is shared. Each step, every structure in flight is evaluated in
    one call, checked with ASE's criterion (max generalised force < ``settings.fmax``, before the first step
    too) and leaves when converged or after ``settings.steps`` steps. A fixed budget of ``atoms_in_flight`` atoms
    stays in flight: a finished structure's place is refilled from ``structures`` at once (a structure larger
    than the budget runs alone). ``wall_s`` of a result is its cost: its share (by atoms) of every model call
    it was part of plus its own optimiser steps.
    """
    source = iter(structures)
    flight: list[_InFlight] = []
    waiting = None  # the next structure, when it did not fit the budget
    exhausted = False
    while True:
        load = sum(len(f.atoms) for f in flight)
        while not exhausted:
            if waiting is None:
                waiting = next(source, None)
                if waiting is None:
                    exhausted = True
                    break
            key, atoms = waiting
            if flight and load + len(atoms) > atoms_in_flight:
                break
            flight.append(_start_relaxation(key, atoms, settings))
            load += len(atoms)
            waiting = None
        if not flight:
            return
        t0 = time.perf_counter()
        predictions = evaluate([f.atoms for f in flight])
        call_s = time.perf_counter() - t0
        still = []
        for f, prediction in zip(flight, predictions, strict=True):
            begin = time.perf_counter()
            f.cost_s += call_s * len(f.atoms) / load
            if not prediction.ok:
                yield f.key, prediction.error
                continue
            stress = None if prediction.stress is None else full_3x3_to_voigt_6_stress(prediction.stress)
            f.atoms.calc = _Evaluated(prediction.energy, prediction.forces, stress)
            opt = f.optimizer
            gradient = opt.optimizable.get_gradient()
            converged = bool(opt.gradient_converged(gradient))
            if converged or opt.nsteps >= settings.steps:
                f.cost_s += time.perf_counter() - begin
                yield f.key, _finish(f, converged, gradient)
                continue
            opt.step()
            opt.nsteps += 1
            f.cost_s += time.perf_counter() - begin
            still.append(f)
        flight = still


def relax_structures(
    atoms_list: Sequence,
    calculator,
    settings: RelaxSettings = RelaxSettings(),
    engine: str = "ase",
    atoms_in_flight: int | None = None,
) -> list[RelaxResult]:
    """Relax each structure of ``atoms_list`` with the ASE ``calculator`` under ``settings``; one RelaxResult per
    structure, in order.

    ``engine="ase"``: ASE's own loop, one structure after the other (:func:`relax_atoms`). ``engine="batched"``:
    the same ASE optimiser and filter per structure with one model call per step for all structures in flight
    (:func:`relax_in_flight`; ``atoms_in_flight`` atoms, default :func:`default_atoms_in_flight` of the device of
    a Geodite calculator's Evaluator, else the CPU's); a structure the model cannot evaluate raises
    StructureError (``index`` = its position).
    """
    if engine not in ENGINES:
        raise ValueError(f"unknown relaxation engine {engine!r} (use {' or '.join(map(repr, ENGINES))}; torch-sim: "
                         "geodite.torchsim.relax_structures_torchsim)")
    with limit_blas_threads(1):  # 3×3 linear algebra in the optimiser: BLAS threads only contend
        if engine == "ase":
            return [relax_atoms(a, calculator, settings) for a in atoms_list]
        evaluator = getattr(calculator, "evaluator", None)
        budget = atoms_in_flight or default_atoms_in_flight(evaluator.device.type if evaluator is not None else "cpu")
        results: list = [None] * len(atoms_list)
        for index, result in relax_in_flight(enumerate(atoms_list), partial(predict, calculator), settings, budget):
            if isinstance(result, str):
                raise StructureError(result, index=index)
            results[index] = result
        return results
