"""Batched evaluation of many structures (:class:`Evaluator`, Geodite only), the ASE calculator built on
the same code path, and :func:`predict`: Predictions of many structures from any ASE calculator.

The Evaluator takes a model object (:class:`EvaluatorModel`: a :class:`~geodite.model.Geodite`, or a loaded
exported package); turning a name, a checkpoint or a package into one is :func:`geodite.registry.resolve`'s
job. How many atoms one model call takes is fixed at construction (``atoms_per_call``, default
:data:`ATOMS_PER_CALL`).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Protocol, Sequence

import numpy as np
import torch
from ase import Atoms
from ase.calculators.calculator import Calculator, all_changes
from ase.stress import full_3x3_to_voigt_6_stress

from geodite.checkpoints import load_model
from geodite.custom_ops import use_operators
from geodite.graph import DTYPES, AtomGraph, NeighbourCache, StructureError, build_graph, check_structure

#: The most atoms one model call of an :class:`Evaluator` takes (consecutive structures are batched up to it; a
#: larger structure goes alone): ``--batch-atoms`` of every bench command. The model's cost is per atom beyond
#: a few hundred atoms on a CPU; a GPU needs thousands of atoms per call to be busy. Changing it moves float32
#: results at the level of summation order (docs/batched-engine.md).
ATOMS_PER_CALL = 2048


class EvaluatorModel(Protocol):
    """What an :class:`Evaluator` needs of a model (a torch module): its ``cutoff`` (Å), ``config.max_z`` (the
    size of its element table), ``supported_elements()`` (by Z, whether it covers the element) and its forward
    ``model(graph, compute_stress)`` → energy [B] eV, forces [N, 3] eV/Å, stress [B, 3, 3] eV/Å³ (ASE sign).
    :class:`~geodite.model.Geodite` and :class:`~geodite.export.ExportedGeodite` are such models."""

    cutoff: float
    config: Any

    def supported_elements(self) -> list[bool]: ...

    def __call__(self, graph: AtomGraph, compute_stress: bool = True) -> dict[str, torch.Tensor]: ...


class DeviceError(ValueError):
    """A device name torch cannot use here (unknown, or CUDA on a machine without it)."""


def torch_device(name: str) -> torch.device:
    """``name`` ("cpu", "cuda", "cuda:N") as a torch device that exists on this machine, else DeviceError."""
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise DeviceError(f"unknown device {name!r} (cpu, cuda or cuda:N)") from None
    if device.type not in ("cpu", "cuda"):
        raise DeviceError(f"unsupported device {name!r} (cpu, cuda or cuda:N)")
    if device.type == "cuda" and not torch.cuda.is_available():
        build = "built without CUDA" if torch.version.cuda is None else "no CUDA device visible"
        raise DeviceError(f"device {name!r}: CUDA is not available here (torch {torch.__version__}, {build}); "
                          "use cpu")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise DeviceError(f"device {name!r}: only {torch.cuda.device_count()} CUDA device(s) here")
    return device


def describe(atoms: Atoms, index: int | None = None) -> str:
    """A short name for error messages: its index, a name from atoms.info if any, and the formula."""
    label = next((str(atoms.info[k]) for k in ("name", "case", "material_id", "id") if k in atoms.info), "")
    where = f"structure {index}" if index is not None else "structure"
    return f"{where} ({', '.join(filter(None, [label, atoms.get_chemical_formula() or 'empty']))})"


@dataclass
class Prediction:
    """Energy (eV), forces [N, 3] (eV/Å) and stress [3, 3] (eV/Å³, ASE sign) of one structure, or its error."""

    energy: float = float("nan")
    forces: np.ndarray | None = None
    stress: np.ndarray | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


class Evaluator:
    """Energy, forces and stress for many structures at once, batched into model calls of at most
    ``atoms_per_call`` atoms (a larger structure alone).

    ``model``: an :class:`EvaluatorModel` (a Geodite, a loaded package), moved to ``device`` and ``dtype`` (a
    copy when that changes it: the caller's model is never changed). Structures that cannot be evaluated get a
    Prediction with ``error`` set; the others are unaffected.
    """

    def __init__(
        self,
        model: EvaluatorModel,
        device: str = "cpu",
        dtype: str = "float32",
        compile: bool = False,
        atoms_per_call: int = ATOMS_PER_CALL,
    ):
        if dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {sorted(DTYPES)}, not {dtype!r}")
        if isinstance(model, (str, bytes)) or not isinstance(model, torch.nn.Module):
            raise TypeError(f"an Evaluator takes a model object, not {type(model).__name__}: a name, checkpoint or "
                            "package goes through geodite.registry.resolve(name).load_model()")
        if atoms_per_call < 1:
            raise ValueError(f"atoms_per_call must be at least 1, not {atoms_per_call}")
        self.device = torch_device(device)
        self.dtype = DTYPES[dtype]
        weights = next(model.parameters(), None)  # None: a package (its weights are compiled in)
        if compile or (weights is not None and (weights.dtype != self.dtype or weights.device != self.device)):
            model = copy.deepcopy(model)  # never change the caller's model in place (nor compile its methods)
        self.model = model.to(self.device, self.dtype).eval()
        self.atoms_per_call = atoms_per_call
        self.supported = self.model.supported_elements()
        if compile:
            # Python floats (envelope exponents) must stay constants: as symbolic inputs of the backward
            # graph they fail to lower in Inductor (torch 2.13). Measured on 1 CPU thread, published size,
            # 64-atom Si: ~3 min first compile (busy machine), 317 vs 377 ms per call eager.
            torch._dynamo.config.specialize_float = True
            use_operators(self.device)  # builds/loads the kernels' library now: never inside the trace
            self.model.layer_features = torch.compile(self.model.layer_features, dynamic=True)

    @property
    def cutoff(self) -> float:
        return self.model.cutoff

    def check(self, atoms: Atoms) -> None:
        check_structure(atoms, self.model.config.max_z, self.supported)

    def evaluate(
        self, structures: Sequence[Atoms], compute_stress: bool = True,
        neighbours: Sequence[NeighbourCache | None] | None = None,
    ) -> list[Prediction]:
        """One Prediction per structure, in order. ``neighbours`` (one per structure, or None) are the neighbour
        caches of structures evaluated repeatedly (MD, relaxations): the same edges as a fresh list."""
        if neighbours is not None and len(neighbours) != len(structures):
            raise ValueError(f"{len(neighbours)} neighbour caches for {len(structures)} structures")
        results: list[Prediction | None] = [None] * len(structures)
        batch: list[int] = []
        atoms_in_call = 0
        for index, atoms in enumerate(structures):
            try:
                self.check(atoms)
            except StructureError as error:
                results[index] = Prediction(error=f"{describe(atoms, index)}: {error}")
                continue
            if batch and atoms_in_call + len(atoms) > self.atoms_per_call:
                self._run(structures, batch, results, compute_stress, neighbours)
                batch, atoms_in_call = [], 0
            batch.append(index)
            atoms_in_call += len(atoms)
        if batch:
            self._run(structures, batch, results, compute_stress, neighbours)
        return results  # type: ignore[return-value]

    def _run(self, structures, indices, results, compute_stress, neighbours=None) -> None:
        chosen = [structures[i] for i in indices]
        try:
            graph = build_graph(chosen, self.cutoff, self.dtype, self.device,
                                None if neighbours is None else [neighbours[i] for i in indices])
        except StructureError as error:  # e.g. overlapping atoms, found while building neighbours
            bad = indices[error.index]
            results[bad] = Prediction(error=f"{describe(structures[bad], bad)}: {error}")
            rest = [i for i in indices if i != bad]
            if rest:
                self._run(structures, rest, results, compute_stress, neighbours)
            return
        out = self.model(graph, compute_stress=compute_stress)
        energy = out["energy"].detach().cpu().double().numpy()
        forces = out["forces"].detach().cpu().double().numpy()
        stress = out["stress"].detach().cpu().double().numpy() if compute_stress else None
        offsets = np.cumsum([0] + [len(a) for a in chosen])
        for k, i in enumerate(indices):
            results[i] = Prediction(
                energy=float(energy[k]),
                forces=forces[offsets[k] : offsets[k + 1]],
                stress=stress[k] if stress is not None else None,
            )


def predict(
    calculator: Calculator, structures: Sequence[Atoms], compute_stress: bool = True
) -> list[Prediction]:
    """One Prediction per structure, in order, from any ASE calculator: batched through the
    :class:`Evaluator` behind a :class:`GeoditeCalculator`, else one structure at a time (the peers;
    stress only for fully periodic structures). A structure that cannot be evaluated gets its error;
    the others go on."""
    evaluator = getattr(calculator, "evaluator", None)
    if evaluator is not None:
        return evaluator.evaluate(list(structures), compute_stress)
    predictions = []
    for atoms in structures:
        work = atoms.copy()
        work.calc = calculator
        try:
            stress = work.get_stress(voigt=False) if compute_stress and work.pbc.all() else None
            predictions.append(Prediction(energy=float(work.get_potential_energy()), forces=work.get_forces(),
                                          stress=stress))
        except Exception as error:  # noqa: BLE001 - peers raise any type; one structure must not end a run
            predictions.append(Prediction(error=f"{describe(atoms)}: {type(error).__name__}: {error}"))
    return predictions


class GeoditeCalculator(Calculator):
    """ASE calculator: energy, free_energy, forces, stress (float32 by default).

    ``model`` is a Geodite checkpoint for :func:`~geodite.checkpoints.load_model` ("geodite", the shipped one;
    "geodite-mp", the published one, downloaded; a path), an :class:`EvaluatorModel` (a Geodite; a package,
    ``geodite.export.load_exported("FILE.pt2")``), or an :class:`Evaluator` (used as it is: its model, device,
    dtype and atoms per call). Any registry name: ``geodite.registry.resolve(name).load(...)``.
    ``skin`` > 0 (Å) reuses the neighbour list between calls until an atom has moved skin/2 (MD,
    relaxations); results are identical to a fresh list.
    """

    implemented_properties = ["energy", "free_energy", "forces", "stress"]

    def __init__(
        self,
        model: str | EvaluatorModel | Evaluator = "geodite",
        device: str = "cpu",
        dtype: str = "float32",
        compile: bool = False,
        skin: float = 0.0,
        atoms_per_call: int = ATOMS_PER_CALL,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if isinstance(model, Evaluator):
            self.evaluator = model
        else:
            model = load_model(model) if isinstance(model, str) else model
            self.evaluator = Evaluator(model, device=device, dtype=dtype, compile=compile,
                                       atoms_per_call=atoms_per_call)
        self.neighbours = NeighbourCache(self.evaluator.cutoff, skin) if skin > 0 else None

    def reset(self) -> None:
        """Forget the last results and the cached neighbour list (the next call builds a fresh one)."""
        super().reset()
        if getattr(self, "neighbours", None) is not None:
            self.neighbours = NeighbourCache(self.neighbours.cutoff, self.neighbours.skin)

    def predict_atoms(self, compute_stress: bool) -> Prediction:
        """The model's prediction for ``self.atoms`` (one Evaluator call; see :mod:`geodite.lockstep` for
        calculators whose calls are batched with those of other structures)."""
        return self.evaluator.evaluate([self.atoms], compute_stress, neighbours=[self.neighbours])[0]

    def calculate(self, atoms=None, properties=None, system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        compute_stress = properties is None or "stress" in properties  # MD and most relaxations skip it
        prediction = self.predict_atoms(compute_stress)
        if not prediction.ok:
            raise StructureError(prediction.error)
        self.results = {"energy": prediction.energy, "free_energy": prediction.energy, "forces": prediction.forces}
        if compute_stress:
            self.results["stress"] = full_3x3_to_voigt_6_stress(prediction.stress)
