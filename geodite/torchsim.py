"""Geodite as a torch-sim model (``torch-sim-atomistic==0.3.0``, ``import torch_sim``).

:class:`GeoditeTorchSimModel` evaluates a batched ``SimState`` through the same code path as
:class:`geodite.calculator.Evaluator`: each system becomes an ``ase.Atoms``, checked with
``Evaluator.check`` and batched by :func:`geodite.graph.build_graph` (vesin neighbour lists per
system), then one ``Geodite.forward`` for the whole batch.

:func:`relax_structures_torchsim` relaxes many structures with torch-sim's batched FIRE + Frechet cell
filter; on some materials it ends in other minima than
ASE's FIRE (docs/batched-engine.md), so the benchmarks relax with :mod:`geodite.relax`'s batched engine,
which steps ASE's own optimiser. Callers choose this backend by calling it (``benchmarks/relax_engines.py``);
it builds on :mod:`geodite.relax` (settings, results), which never imports it.

Conventions (torch-sim 0.3.0):

* ``state.cell`` [B, 3, 3] holds the lattice vectors as *columns*; ``state.row_vector_cell``
  (= ``cell.mT``) is the ASE / AtomGraph layout (rows). The model reads the row layout.
* ``state.pbc`` is one bool for the whole batch; ``state.system_idx`` [N] maps atoms to systems.
* Units eV, Å; stress [B, 3, 3] in eV/Å³ with ASE's sign (positive = tensile, σ = (1/V) ∂E/∂ε),
  which is what torch-sim's cell filters expect (virial = −V·(σ + P)).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
import torch
import torch_sim as ts
from ase import Atoms
from torch_sim.autobatching import InFlightAutoBatcher, calculate_memory_scaler, estimate_max_memory_scaler
from torch_sim.models.interface import ModelInterface
from torch_sim.state import SimState

from geodite.calculator import ATOMS_PER_CALL, Evaluator, EvaluatorModel, GeoditeCalculator, describe
from geodite.graph import DTYPES, StructureError, build_graph
from geodite.relax import RelaxResult, RelaxSettings


def _dtype_name(dtype: str | torch.dtype) -> str:
    if isinstance(dtype, str):
        return dtype
    for name, value in DTYPES.items():
        if value == dtype:
            return name
    raise ValueError(f"unsupported dtype {dtype}")


def state_to_atoms(state: SimState) -> list[Atoms]:
    """One ``ase.Atoms`` per system (positions, row-vector cell, numbers, pbc; float64 numpy)."""
    positions = state.positions.detach().to("cpu", torch.float64).numpy()
    cells = state.row_vector_cell.detach().to("cpu", torch.float64).numpy()
    numbers = state.atomic_numbers.detach().cpu().numpy()
    system_idx = state.system_idx.detach().cpu().numpy()
    pbc = state.pbc.cpu() if torch.is_tensor(state.pbc) else state.pbc
    pbc = np.broadcast_to(np.asarray(pbc, bool), (3,))
    bounds = np.searchsorted(system_idx, np.arange(state.n_systems + 1))
    if not np.all(np.diff(system_idx) >= 0):
        raise ValueError("state.system_idx must be sorted (atoms of a system contiguous)")
    return [
        Atoms(numbers=numbers[a:b], positions=positions[a:b], cell=cells[k], pbc=pbc)
        for k, (a, b) in enumerate(zip(bounds[:-1], bounds[1:]))
    ]


class GeoditeTorchSimModel(ModelInterface):
    """torch-sim ``ModelInterface`` for a Geodite model.

    ``model``: a Geodite (any :class:`~geodite.calculator.EvaluatorModel`), or an :class:`Evaluator` (used as
    is, with its device and dtype). The caller's Geodite is never modified (the Evaluator copies it when it
    has to change device or dtype).
    """

    def __init__(
        self,
        model: EvaluatorModel | Evaluator,
        device: str | torch.device = "cpu",
        dtype: str | torch.dtype = "float64",
        compute_stress: bool = True,
        compute_forces: bool = True,
    ):
        super().__init__()
        if isinstance(model, Evaluator):
            self.evaluator = model
        else:
            self.evaluator = Evaluator(model, device=str(device), dtype=_dtype_name(dtype))
        self.model = self.evaluator.model  # registered as a submodule
        self._device = self.evaluator.device
        self._dtype = self.evaluator.dtype
        self._compute_stress = compute_stress
        self._compute_forces = compute_forces
        self._memory_scales_with = "n_atoms_x_density"  # radial cutoff: edges ∝ N · density

    @property
    def cutoff(self) -> float:
        return self.evaluator.cutoff

    def forward(self, state: SimState | dict, **kwargs) -> dict[str, torch.Tensor]:
        """Energy [B] eV, forces [N, 3] eV/Å, stress [B, 3, 3] eV/Å³ (ASE sign), detached.

        Raises StructureError (with ``index`` = the system) for a system the model cannot evaluate.
        """
        if isinstance(state, dict):
            state = SimState(**{"masses": torch.ones_like(state["positions"][:, 0]), **state})
        structures = state_to_atoms(state)
        for index, atoms in enumerate(structures):
            try:
                self.evaluator.check(atoms)
            except StructureError as error:
                raise StructureError(f"{describe(atoms, index)}: {error}", index=index) from None
        graph = build_graph(structures, self.cutoff, self._dtype, self._device)
        with torch.enable_grad():  # forces and stress are autograd derivatives
            out = self.model(graph, compute_stress=self._compute_stress)
        results = {"energy": out["energy"].detach()}
        if self._compute_forces:
            results["forces"] = out["forces"].detach()
        if self._compute_stress:
            results["stress"] = out["stress"].detach()
        return results


def _torchsim_model(obj, device: str, dtype: str) -> GeoditeTorchSimModel:
    """A GeoditeTorchSimModel for a Geodite (or a package's model), an Evaluator or a GeoditeCalculator (its
    Evaluator); NotImplementedError for any other model (another ASE calculator, a name)."""
    if isinstance(obj, GeoditeTorchSimModel):
        return obj
    if isinstance(obj, GeoditeCalculator):
        obj = obj.evaluator
    if not isinstance(obj, (torch.nn.Module, Evaluator)):
        raise NotImplementedError(
            f"the torch-sim backend runs Geodite models only, not {type(obj).__name__} (geodite.relax relaxes with "
            "any calculator)"
        )
    return GeoditeTorchSimModel(obj, device=device, dtype=dtype)


def _generalised_fmax(state: SimState) -> torch.Tensor:
    """Per system: max row norm of the FrechetCellFilter's generalised forces, as ASE's check.

    Atom rows are forces · F (F the deformation gradient w.r.t. the start cell), as ASE's
    UnitCell/FrechetCellFilter and torch-sim's step; cell rows are the log-space cell forces
    (already divided by the cell factor, the number of atoms, as ASE's ``exp_cell_factor``).
    """
    deform = state.deform_grad()
    atom_forces = torch.bmm(state.forces.unsqueeze(1), deform[state.system_idx]).squeeze(1)
    atom_max = torch.zeros(state.n_systems, dtype=atom_forces.dtype, device=atom_forces.device)
    atom_max = atom_max.scatter_reduce(0, state.system_idx, atom_forces.norm(dim=1), reduce="amax")
    cell_max = state.cell_forces.norm(dim=2).amax(dim=1)
    return torch.maximum(atom_max, cell_max)


def relax_structures_torchsim(
    atoms_list: Sequence[Atoms],
    model,
    settings: RelaxSettings = RelaxSettings(),
    device: str = "cpu",
    dtype: str = "float32",
    atoms_in_flight: int | None = None,
) -> list[RelaxResult]:
    """Batched relaxation with torch-sim: FIRE (ASE flavour) + Frechet cell filter, in flight.

    Many structures share each forward pass; each is checked after every step with ASE's
    criterion (max generalised force < ``settings.fmax``, checked before the first step too) and leaves
    the batch when converged or after ``settings.steps`` steps, its place taken by the next structure
    (torch-sim's ``InFlightAutoBatcher``). At most ``atoms_in_flight`` atoms relax at once, all in one model
    call a step (default on CPU: one Evaluator call's, :data:`~geodite.calculator.ATOMS_PER_CALL`); on a GPU
    with ``atoms_in_flight=None`` torch-sim estimates it from memory (N × density).
    ``model``: a Geodite (``device``/``dtype`` apply to it), an Evaluator, a GeoditeCalculator or a
    :class:`GeoditeTorchSimModel`. ``wall_s`` of each result is the total
    wall time divided by the number of structures (a batched run has no per-structure time).

    All structures must be fully periodic (torch-sim 0.3.0 has one ``pbc`` for a batch) and
    unconstrained. Caveat of torch-sim 0.3.0's step: in the step after a structure joins the
    batch, the others skip FIRE's dt/α update (its first-step branch is batch-wide); results
    still match ASE (tests/test_relax.py).
    A structure the model cannot evaluate raises StructureError (``index`` = its position).
    """
    if settings.optimizer != "FIRE" or settings.cell_filter != "FrechetCellFilter":
        raise NotImplementedError(f"the torch-sim backend runs FIRE + FrechetCellFilter only, not "
                                  f"{settings.optimizer} + {settings.cell_filter}")
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
    if atoms_in_flight is None and ts_model.device.type != "cpu":
        scales_with = ts_model.memory_scales_with
        metrics = [calculate_memory_scaler(s, scales_with) for s in singles]
        capacity = 0.9 * estimate_max_memory_scaler(ts_model, singles, metrics)
    else:
        scales_with = "n_atoms"
        metrics = [len(a) for a in atoms_list]
        capacity = atoms_in_flight or ATOMS_PER_CALL
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
        converged = fmax_now < settings.fmax
        out_of_steps = [n_steps[i] >= settings.steps for i in current]
        done = converged | torch.tensor(out_of_steps, device=converged.device)
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
