"""Geodite as a torch-sim model (``torch-sim-atomistic==0.3.0``, ``import torch_sim``).

:class:`GeoditeTorchSimModel` evaluates a batched ``SimState`` through the same code path as
:class:`geodite.calculator.Evaluator`: each system becomes an ``ase.Atoms``, checked with
``Evaluator.check`` and batched by :func:`geodite.graph.build_graph` (vesin neighbour lists per
system), then one ``Geodite.forward`` for the whole batch.

Conventions (torch-sim 0.3.0):

* ``state.cell`` [B, 3, 3] holds the lattice vectors as *columns*; ``state.row_vector_cell``
  (= ``cell.mT``) is the ASE / AtomGraph layout (rows). The model reads the row layout.
* ``state.pbc`` is one bool for the whole batch; ``state.system_idx`` [N] maps atoms to systems.
* Units eV, Å; stress [B, 3, 3] in eV/Å³ with ASE's sign (positive = tensile, σ = (1/V) ∂E/∂ε),
  which is what torch-sim's cell filters expect (virial = −V·(σ + P)).
"""

from __future__ import annotations

import numpy as np
import torch
from ase import Atoms
from torch_sim.models.interface import ModelInterface
from torch_sim.state import SimState

from geodite.calculator import Evaluator, describe
from geodite.graph import DTYPES, StructureError, build_graph
from geodite.model import Geodite


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

    ``model``: a Geodite, a model name or path (:func:`geodite.checkpoints.load_model`), or an
    :class:`Evaluator` (used as is, with its device and dtype). The caller's Geodite is never
    modified (the Evaluator copies it when it has to change device or dtype).
    """

    def __init__(
        self,
        model: Geodite | str | Evaluator = "geodite",
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
