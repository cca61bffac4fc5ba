"""Structure relaxation.

* :func:`relax_atoms` — the plain ASE path for any calculator: FIRE on a
  FrechetCellFilter (positions and cell together), stop at max force ≤ ``fmax`` eV/Å
  (the filter's generalised forces include the virial term) or after ``steps`` steps.
* :func:`relax_in_flight` — the batched engine (``geodite bench discovery --engine batched``):
  many structures, one model call per step for all structures in flight, a fixed budget of
  atoms refilled as structures converge. Each structure is stepped by ASE's own optimiser on
  a FrechetCellFilter that computes ASE's values faster (:class:`_FrechetCellFilter`), so the
  physics is :func:`relax_atoms`'s: in float64 the same steps and energies to 1e-12 eV
  (tests/test_relax.py); on the shipped model in float32 see docs/batched-engine.md.
* :func:`relax_structures` — a list of structures with one calculator or model:
  ``backend="ase"`` (:func:`relax_atoms` in a loop), ``"batched"`` (:func:`relax_in_flight`) or
  ``"torch-sim"`` (:func:`relax_structures_torchsim`, Geodite models only: torch-sim 0.3.0's
  batched FIRE + Frechet cell filter on :class:`geodite.torchsim.GeoditeTorchSimModel`).

torch-sim (measured 2026-11-24, 1 thread, ``python -m geodite.relax --n 200``): 2.5–3.8× the
ASE loop, but 9 of 200 offline WBM materials ended 1e-3–0.15 eV/atom apart from ASE with both
converged (reproduced in float64 and with a batch of one, so not precision or batching). ASE
3.29's FrechetCellFilter uses the exact Fréchet derivative for the log-space cell force (the
"plain virial when cos > 0.8" branch is in the deprecated ExpCellFilter), so the difference
lies in torch-sim's own FIRE/filter step (e.g. its first-step branch is batch-wide, and its
initial cell force is the unit-cell-filter one), not in a symmetrisation. The batched engine
avoids the question by running ASE's optimiser itself.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from ase.filters import FrechetCellFilter

from geodite.threads import limit_blas_threads


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
    fmax_final = max_force(obj.get_forces())
    energy = float(atoms.get_potential_energy())
    n_steps = int(opt.nsteps)
    atoms.calc = None
    return RelaxResult(atoms, energy, n_steps, converged, fmax_final, time.perf_counter() - t0)


# Atoms in flight of the batched engine per device kind. CPU: the model's cost is per atom beyond a few hundred
# atoms, so a bigger batch buys nothing but memory; a GPU needs thousands of atoms per call to be busy (one
# forward pass holds at most the Evaluator's max_atoms, 2048 by default: more in flight means more passes).
DEFAULT_MAX_ATOMS = {"cpu": 512, "cuda": 8192}


def default_max_atoms(device: str) -> int:
    """The batched engine's default atom budget for a device name ("cpu", "cuda", "cuda:1", …)."""
    return DEFAULT_MAX_ATOMS.get(str(device).split(":")[0], DEFAULT_MAX_ATOMS["cpu"])


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
        from ase.stress import full_3x3_to_voigt_6_stress, voigt_6_to_full_3x3_stress
        from scipy.linalg import expm_frechet

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


def _start_relaxation(key, atoms, fmax: float, optimizer: str, cell_filter: str | None) -> _InFlight:
    from ase import filters

    atoms = atoms.copy()
    atoms.calc = None
    if cell_filter == "FrechetCellFilter":
        filtered = _FrechetCellFilter(atoms)
    else:
        filtered = getattr(filters, cell_filter)(atoms) if cell_filter else atoms
    opt = _make_optimizer(optimizer, _OnceAGradient(filtered.__ase_optimizable__()))
    opt.fmax = fmax  # what Optimizer.run sets before its first convergence check
    return _InFlight(key, atoms, filtered, opt)


def _finish(flight: _InFlight, converged: bool, gradient: np.ndarray) -> RelaxResult:
    """The RelaxResult of a finished structure, as :func:`relax_atoms` builds it."""
    fmax_final = max_force(gradient.reshape(-1, 3))
    energy = float(flight.atoms.get_potential_energy())
    flight.atoms.calc = None
    return RelaxResult(flight.atoms, energy, int(flight.optimizer.nsteps), converged, fmax_final, flight.cost_s)


def relax_in_flight(
    structures,
    evaluate,
    fmax: float = 0.05,
    steps: int = 500,
    optimizer: str = "FIRE",
    cell_filter: str | None = "FrechetCellFilter",
    max_atoms: int = DEFAULT_MAX_ATOMS["cpu"],
):
    """Relax many structures with one model call per step for all of them; yield ``(key, result)`` as each
    finishes (in finishing order), ``result`` a :class:`RelaxResult` or, for a structure the model cannot
    evaluate, the error message (str).

    ``structures``: an iterable of ``(key, ase.Atoms)``, consumed lazily. ``evaluate``: a function from a
    list of structures to one :class:`~geodite.calculator.Prediction` each (energy eV, forces eV/Å, stress
    eV/Å³), e.g. :meth:`geodite.tasks.runner.WorkerContext.evaluate` or ``Evaluator.evaluate``.

    The physics is :func:`relax_atoms`'s, by construction: each structure has its own ASE ``cell_filter``
    (FrechetCellFilter: the symmetrised log-space cell force) and ASE ``optimizer`` (FIRE), stepped with
    ASE's own code; only the model call is shared. Each step, every structure in flight is evaluated in
    one call, checked with ASE's criterion (max generalised force < ``fmax``, before the first step too)
    and leaves when converged or after ``steps`` steps. A fixed budget of ``max_atoms`` atoms stays in
    flight: a finished structure's place is refilled from ``structures`` at once (a structure larger than
    the budget runs alone). ``wall_s`` of a result is its cost: its share (by atoms) of every model call
    it was part of plus its own optimiser steps.
    """
    from ase.stress import full_3x3_to_voigt_6_stress

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
            if flight and load + len(atoms) > max_atoms:
                break
            flight.append(_start_relaxation(key, atoms, fmax, optimizer, cell_filter))
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
            if converged or opt.nsteps >= steps:
                f.cost_s += time.perf_counter() - begin
                yield f.key, _finish(f, converged, gradient)
                continue
            opt.step()
            opt.nsteps += 1
            f.cost_s += time.perf_counter() - begin
            still.append(f)
        flight = still


def relax_structures(
    atoms_list,
    calculator_or_model,
    fmax: float = 0.05,
    steps: int = 500,
    optimizer: str = "FIRE",
    cell_filter: str | None = "FrechetCellFilter",
    backend: str = "ase",
    device: str = "cpu",
    dtype: str = "float32",
    max_batch_atoms: int | None = None,
) -> list[RelaxResult]:
    """Relax each structure of ``atoms_list``; one RelaxResult per structure, in order.

    ``calculator_or_model`` is an ASE calculator, a registry model name (see
    :mod:`geodite.registry`), a Geodite, an :class:`~geodite.calculator.Evaluator` or a
    :class:`~geodite.torchsim.GeoditeTorchSimModel` (``device``/``dtype`` apply to models given
    by name or as a Geodite; the torch-sim backend unwraps a GeoditeCalculator to its Evaluator).
    ``backend="ase"``: the per-structure ASE loop, any calculator. ``backend="batched"``: the same ASE
    optimiser and filter per structure with one model call per step for all structures in flight
    (:func:`relax_in_flight`, ``max_batch_atoms`` in flight, default :func:`default_max_atoms`; a
    structure the model cannot evaluate raises StructureError). ``backend="torch-sim"``:
    batched FIRE + Frechet cell filter for Geodite models (:func:`relax_structures_torchsim`);
    ``optimizer``/``cell_filter`` must then be FIRE/FrechetCellFilter.
    """
    if backend in ("torch-sim", "torchsim", "torch_sim"):
        if optimizer != "FIRE" or cell_filter != "FrechetCellFilter":
            raise NotImplementedError(
                f"the torch-sim backend runs FIRE + FrechetCellFilter only, not {optimizer} + {cell_filter}"
            )
        return relax_structures_torchsim(
            atoms_list, calculator_or_model, fmax, steps, device=device, dtype=dtype,
            max_batch_atoms=max_batch_atoms,
        )
    if backend not in ("ase", "batched"):
        raise ValueError(f"unknown relaxation backend {backend!r} (use 'ase', 'batched' or 'torch-sim')")
    calc = _ase_calculator(calculator_or_model, device, dtype)
    from geodite.tasks.runner import WorkerContext

    with limit_blas_threads(1):  # 3×3 linear algebra in the optimiser: BLAS threads only contend
        if backend == "ase":
            return [relax_atoms(a, calc, fmax, steps, optimizer, cell_filter) for a in atoms_list]
        evaluate = WorkerContext(model="", spec=None, calculator=calc).evaluate
        results: list = [None] * len(atoms_list)
        budget = max_batch_atoms or default_max_atoms(device)
        for index, result in relax_in_flight(enumerate(atoms_list), evaluate, fmax, steps, optimizer, cell_filter,
                                             budget):
            if isinstance(result, str):
                from geodite.graph import StructureError

                raise StructureError(result, index=index)
            results[index] = result
        return results


def _ase_calculator(obj, device: str, dtype: str):
    """An ASE calculator for a registry name, a Geodite, an Evaluator or a GeoditeTorchSimModel."""
    if isinstance(obj, str):
        from geodite.registry import get_calculator

        return get_calculator(obj, device=device, dtype=dtype)
    if not is_geodite(obj) or hasattr(obj, "calculate"):
        return obj  # an ASE calculator (GeoditeCalculator included)
    from geodite.calculator import Evaluator, GeoditeCalculator
    from geodite.graph import DTYPES

    evaluator = obj if isinstance(obj, Evaluator) else getattr(obj, "evaluator", None)
    if evaluator is None:  # a Geodite
        return GeoditeCalculator(obj, device=device, dtype=dtype)
    name = next(k for k, v in DTYPES.items() if v == evaluator.dtype)
    return GeoditeCalculator(evaluator.model, device=str(evaluator.device), dtype=name)


def is_geodite(calculator_or_model) -> bool:
    """Whether the torch-sim backend can run this calculator or model (a Geodite one)."""
    from geodite.calculator import Evaluator, GeoditeCalculator
    from geodite.model import Geodite

    if isinstance(calculator_or_model, (Geodite, Evaluator, GeoditeCalculator)):
        return True
    try:
        from geodite.torchsim import GeoditeTorchSimModel
    except ImportError:
        return False
    return isinstance(calculator_or_model, GeoditeTorchSimModel)


def _torchsim_model(calculator_or_model, device: str, dtype: str):
    from geodite.calculator import GeoditeCalculator
    from geodite.torchsim import GeoditeTorchSimModel

    obj = calculator_or_model
    if isinstance(obj, GeoditeTorchSimModel):
        return obj
    if isinstance(obj, str):
        from geodite.registry import get_calculator

        obj = get_calculator(obj, device=device, dtype=dtype)
    if isinstance(obj, GeoditeCalculator):
        obj = obj.evaluator
    if not is_geodite(obj):
        raise NotImplementedError(
            f"the torch-sim backend runs Geodite models only, not {type(obj).__name__} (use backend='ase')"
        )
    return GeoditeTorchSimModel(obj, device=device, dtype=dtype)


def _generalised_fmax(state) -> "torch.Tensor":  # noqa: F821
    """Per system: max row norm of the FrechetCellFilter's generalised forces, as ASE's check.

    Atom rows are forces · F (F the deformation gradient w.r.t. the start cell), as ASE's
    UnitCell/FrechetCellFilter and torch-sim's step; cell rows are the log-space cell forces
    (already divided by the cell factor, the number of atoms, as ASE's ``exp_cell_factor``).
    """
    import torch

    deform = state.deform_grad()
    atom_forces = torch.bmm(state.forces.unsqueeze(1), deform[state.system_idx]).squeeze(1)
    atom_max = torch.zeros(state.n_systems, dtype=atom_forces.dtype, device=atom_forces.device)
    atom_max = atom_max.scatter_reduce(0, state.system_idx, atom_forces.norm(dim=1), reduce="amax")
    cell_max = state.cell_forces.norm(dim=2).amax(dim=1)
    return torch.maximum(atom_max, cell_max)


def relax_structures_torchsim(
    atoms_list,
    model,
    fmax: float = 0.05,
    steps: int = 500,
    device: str = "cpu",
    dtype: str = "float32",
    max_batch_atoms: int | None = None,
) -> list[RelaxResult]:
    """Batched relaxation with torch-sim: FIRE (ASE flavour) + Frechet cell filter, in flight.

    Many structures share each forward pass; each is checked after every step with ASE's
    criterion (max generalised force < ``fmax``, checked before the first step too) and leaves
    the batch when converged or after ``steps`` steps, its place taken by the next structure
    (torch-sim's ``InFlightAutoBatcher``). Batch size: at most ``max_batch_atoms`` atoms
    (default 2048 on CPU, the Evaluator's batch); on a GPU with ``max_batch_atoms=None``
    torch-sim estimates it from memory (N × density). ``wall_s`` of each result is the total
    wall time divided by the number of structures (a batched run has no per-structure time).

    All structures must be fully periodic (torch-sim 0.3.0 has one ``pbc`` for a batch) and
    unconstrained. Caveat of torch-sim 0.3.0's step: in the step after a structure joins the
    batch, the others skip FIRE's dt/α update (its first-step branch is batch-wide); results
    still match ASE (tests/test_relax.py).
    A structure the model cannot evaluate raises StructureError (``index`` = its position).
    """
    import torch
    import torch_sim as ts
    from torch_sim.autobatching import InFlightAutoBatcher
    from torch_sim.autobatching import calculate_memory_scaler, estimate_max_memory_scaler

    from geodite.graph import StructureError

    t0 = time.perf_counter()
    atoms_list = list(atoms_list)
    if not atoms_list:
        return []
    for index, atoms in enumerate(atoms_list):
        if not atoms.pbc.all():
            raise ValueError(f"structure {index}: the torch-sim backend relaxes fully periodic structures")
        if atoms.constraints:
            raise NotImplementedError(f"structure {index}: constraints need the 'ase' backend")
    ts_model = _torchsim_model(model, device, dtype)
    for index, atoms in enumerate(atoms_list):
        try:
            ts_model.evaluator.check(atoms)
        except StructureError as error:
            raise StructureError(str(error), index=index) from None
    init_fn, step_fn = ts.frechet_cell_fire(model=ts_model)  # ASE FIRE defaults: dt 0.1→1, maxstep 0.2 Å

    singles = [ts.io.atoms_to_state([a], ts_model.device, ts_model.dtype) for a in atoms_list]
    if max_batch_atoms is None and ts_model.device.type != "cpu":
        scales_with = ts_model.memory_scales_with
        metrics = [calculate_memory_scaler(s, scales_with) for s in singles]
        capacity = 0.9 * estimate_max_memory_scaler(ts_model, singles, metrics)
    else:
        scales_with = "n_atoms"
        metrics = [len(a) for a in atoms_list]
        capacity = max_batch_atoms or 2048
    capacity = max(capacity, max(metrics))  # a structure larger than a batch runs alone

    # Initial energies/forces/stress (one forward per chunk of ≤ capacity), then one state each.
    initial, chunk, load = [], [], 0.0
    for state, metric in zip(singles, metrics):
        if chunk and load + metric > capacity:
            initial.extend(init_fn(ts.concatenate_states(chunk)).split())
            chunk, load = [], 0.0
        chunk.append(state)
        load += metric
    initial.extend(init_fn(ts.concatenate_states(chunk)).split())

    batcher = InFlightAutoBatcher(
        ts_model, memory_scales_with=scales_with, max_memory_scaler=capacity * (1 + 1e-9), return_indices=True
    )
    batcher.load_states(initial)
    n_steps = [0] * len(atoms_list)
    results: list[RelaxResult | None] = [None] * len(atoms_list)

    state, _, current = batcher.next_batch(None, None)
    while state is not None:
        current = list(current)
        fmax_now = _generalised_fmax(state)
        converged = fmax_now < fmax
        done = converged | torch.tensor([n_steps[i] >= steps for i in current], device=converged.device)
        if done.any():
            energies = state.energy.detach().cpu().double().numpy()
            positions = state.positions.detach().cpu().double().numpy()
            cells = state.row_vector_cell.detach().cpu().double().numpy()
            system_idx = state.system_idx.cpu().numpy()
            for k in torch.nonzero(done).flatten().tolist():
                i = current[k]
                relaxed = atoms_list[i].copy()
                relaxed.calc = None
                relaxed.set_cell(cells[k], scale_atoms=False)
                relaxed.positions = positions[system_idx == k]
                results[i] = RelaxResult(
                    relaxed, float(energies[k]), n_steps[i], bool(converged[k]), float(fmax_now[k]), 0.0
                )
            state, _, current = batcher.next_batch(state, done)
            continue  # newly loaded structures are checked before their first step
        state = step_fn(state)
        for i in current:
            n_steps[i] += 1
    wall = time.perf_counter() - t0
    for res in results:
        res.wall_s = wall / len(atoms_list)
    return results  # type: ignore[return-value]


def throughput(
    n: int = 40,
    model: str = "geodite",
    backends: tuple[str, ...] = ("ase", "torch-sim"),
    device: str = "cpu",
    dtype: str = "float32",
    fmax: float = 0.05,
    steps: int = 500,
    max_batch_atoms: int | None = None,
) -> dict:
    """Structures per hour of each backend on the first ``n`` offline WBM materials, started from
    DiscoveryTask's perturbation (strain ±0.03, rattle 0.05 Å, seed 0). Also returns the mean
    steps, the converged count and the per-atom energy differences between the backends."""
    from pymatgen.core import Structure
    from pymatgen.io.ase import AseAtomsAdaptor

    from geodite.data import wbm

    records = wbm.load_offline_wbm()[:n]
    starts = [
        wbm.perturb_atoms(AseAtomsAdaptor.get_atoms(Structure.from_dict(r["structure"])),
                          wbm.item_seed(r["material_id"], 0), rattle=0.05, strain=0.03)
        for r in records
    ]
    n_atoms = np.array([len(a) for a in starts])
    out: dict = {"n": len(starts), "atoms_mean": float(n_atoms.mean()), "atoms_max": int(n_atoms.max())}
    energies, details = {}, {}
    for backend in backends:
        if backend in ("ase", "batched"):
            from geodite.registry import get_calculator

            target = get_calculator(model, device=device, dtype=dtype)
        else:
            target = _torchsim_model(model, device, dtype)
        t0 = time.perf_counter()
        res = relax_structures(
            starts, target, fmax, steps, backend=backend, device=device, dtype=dtype,
            max_batch_atoms=max_batch_atoms,
        )
        wall = time.perf_counter() - t0
        energies[backend] = np.array([r.energy for r in res]) / n_atoms
        details[backend] = res
        out[backend] = {
            "wall_s": round(wall, 1),
            "structures_per_hour": round(3600 * len(res) / wall, 1),
            "mean_steps": float(np.mean([r.n_steps for r in res])),
            "n_converged": int(sum(r.converged for r in res)),
        }
    if len(energies) == 2:
        diff = np.abs(np.subtract(*energies.values()))
        out["energy_diff_per_atom"] = {"median": float(np.median(diff)), "max": float(diff.max())}
        out["over_1e-3_eV_per_atom"] = [
            {"material_id": records[i]["material_id"], "n_atoms": int(n_atoms[i]), "diff": float(diff[i]),
             **{f"{b}_steps_converged": (details[b][i].n_steps, details[b][i].converged) for b in details}}
            for i in np.flatnonzero(diff > 1e-3)
        ]
    return out


if __name__ == "__main__":
    import argparse
    import json

    parser = argparse.ArgumentParser(description="Relaxation throughput of the ASE and torch-sim backends")
    parser.add_argument("--n", type=int, default=40)
    parser.add_argument("--model", default="geodite")
    parser.add_argument("--backends", default="ase,torch-sim")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--max-batch-atoms", type=int, default=None)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    print(json.dumps(throughput(args.n, args.model, tuple(args.backends.split(",")), args.device, args.dtype,
                                max_batch_atoms=args.max_batch_atoms), indent=1))
