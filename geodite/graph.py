"""AtomGraph: one or many structures as a single graph, with neighbour lists from vesin.

Edges are directed j → i for every neighbour j of i within the cutoff, periodic images included
(an atom's own images too, so cells smaller than twice the cutoff are handled). Integer cell shifts
S are stored so that edge vectors r_j − r_i + S·cell can be rebuilt differentiably under strain.
Lengths in Å.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
import vesin
from ase import Atoms
from torch import Tensor


class StructureError(ValueError):
    """A structure the model cannot evaluate (bad element, NaN positions, overlapping atoms, …).

    ``index`` is the position of the offending structure in a batch, when known.
    """

    def __init__(self, message: str, index: int | None = None):
        super().__init__(message)
        self.index = index


#: atoms closer than this (Å) are treated as sitting on top of each other
#: the floating-point precisions the package runs in, by name (the one map from names to torch dtypes)
DTYPES = {"float32": torch.float32, "float64": torch.float64}
MIN_DISTANCE = 1e-3


@dataclass
class AtomGraph:
    """A batch of structures. N atoms, B structures, E edges.

    z [N] atomic numbers, positions [N, 3] Å, cell [B, 3, 3] Å (rows are lattice vectors, zeros when not
    periodic), pbc [B, 3], batch [N] structure index per atom, edge_index [2, E] = (sender j, receiver i),
    shifts [E, 3] integer cell shifts (as floats) of the sender image.
    """

    z: Tensor
    positions: Tensor
    cell: Tensor
    pbc: Tensor
    batch: Tensor
    edge_index: Tensor
    shifts: Tensor

    @property
    def num_graphs(self) -> int:
        return self.cell.shape[0]  # no int(): stays symbolic when traced for export

    @property
    def num_atoms(self) -> Tensor:
        """[B] atoms per structure."""
        return torch.bincount(self.batch, minlength=self.num_graphs)

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> "AtomGraph":
        """Move to a device; ``dtype`` applies to the floating-point fields only."""
        def move(t: Tensor) -> Tensor:
            return t.to(device=device, dtype=dtype) if t.is_floating_point() else t.to(device=device)

        return AtomGraph(**{name: move(getattr(self, name)) for name in self.__dataclass_fields__})


def element_ranges(flags: Sequence[bool]) -> str:
    """The elements flagged by Z as runs, e.g. "H–Bi, Ac–Pu (Z 1–83, 89–94)"."""
    from ase.data import chemical_symbols

    runs: list[tuple[int, int]] = []
    for z, flagged in enumerate(flags):
        if flagged and runs and runs[-1][1] == z - 1:
            runs[-1] = (runs[-1][0], z)
        elif flagged:
            runs.append((z, z))
    if not runs:
        return "no element"

    def span(first: str, last: str) -> str:
        return first if first == last else f"{first}–{last}"

    names = ", ".join(span(chemical_symbols[a], chemical_symbols[b]) for a, b in runs)
    return f"{names} (Z {', '.join(span(str(a), str(b)) for a, b in runs)})"


def check_structure(atoms: Atoms, max_z: int = 100, supported: Sequence[bool] | None = None) -> None:
    """Raise StructureError with a clear message if ``atoms`` cannot be evaluated.

    The model covers 0 < Z < ``max_z`` (its embedding table); ``supported`` optionally narrows that, by Z, to
    the elements it has isolated-atom energies for.
    """
    if len(atoms) == 0:
        raise StructureError("empty structure (no atoms)")
    covered = [0 < z < max_z and (supported is None or bool(supported[z])) for z in range(max_z)]
    bad = sorted({int(z) for z in atoms.numbers if not (0 <= z < max_z and covered[z])})
    if bad:
        from ase.data import chemical_symbols

        names = ", ".join(f"{chemical_symbols[z]} (Z {z})" if 0 < z < len(chemical_symbols) else f"Z {z}"
                          for z in bad)
        raise StructureError(f"unsupported element(s) {names}: the model covers {element_ranges(covered)}")
    positions = atoms.positions
    if not np.isfinite(positions).all():
        raise StructureError("non-finite (NaN or inf) atomic positions")
    if atoms.pbc.any():
        cell = atoms.cell.array
        if not np.isfinite(cell).all():
            raise StructureError("non-finite cell")
        periodic_rows = cell[atoms.pbc]
        if np.linalg.matrix_rank(periodic_rows, tol=1e-6) < len(periodic_rows) or (
            atoms.pbc.all() and abs(np.linalg.det(cell)) < 1e-6
        ):
            raise StructureError("singular cell along a periodic direction")


def neighbour_list(atoms: Atoms, cutoff: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(i, j, S) with |r_j − r_i + S·cell| < cutoff, full list, i ≠ j unless S ≠ 0.

    Raises StructureError if two atoms sit on top of each other (distance < 1e-3 Å).
    """
    periodic = [bool(p) for p in atoms.pbc]
    box = atoms.cell.array if any(periodic) else np.zeros((3, 3))
    calculator = vesin.NeighborList(cutoff=float(cutoff), full_list=True)
    i, j, shifts, distances = calculator.compute(
        points=np.ascontiguousarray(atoms.positions, dtype=np.float64),
        box=np.ascontiguousarray(box, dtype=np.float64),
        periodic=periodic if any(periodic) else False,
        quantities="ijSd",
    )
    if len(distances) and distances.min() < MIN_DISTANCE:
        k = int(np.argmin(distances))
        raise StructureError(f"atoms {i[k]} and {j[k]} overlap (distance {distances[k]:.2e} Å)")
    keep = distances < cutoff
    return i[keep].astype(np.int64), j[keep].astype(np.int64), shifts[keep].astype(np.int64)


def build_graph(
    structures: Sequence[Atoms],
    cutoff: float,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str = "cpu",
    neighbours: "Sequence[NeighbourCache | None] | None" = None,
) -> AtomGraph:
    """Batch structures into one AtomGraph. Call ``check_structure`` first for clear errors.

    ``neighbours`` (one per structure, or None): a structure's NeighbourCache (a structure evaluated
    repeatedly) replaces its fresh neighbour list.
    """
    z, positions, cells, pbcs, batch, senders, receivers, shifts = [], [], [], [], [], [], [], []
    offset = 0
    for index, atoms in enumerate(structures):
        try:
            cache = neighbours[index] if neighbours is not None else None
            i, j, s = cache(atoms) if cache is not None else neighbour_list(atoms, cutoff)
        except StructureError as error:
            raise StructureError(str(error), index=index) from None
        receivers.append(i + offset)
        senders.append(j + offset)
        shifts.append(s)
        z.append(atoms.numbers)
        positions.append(atoms.positions)
        cells.append(atoms.cell.array if atoms.pbc.any() else np.zeros((3, 3)))
        pbcs.append(atoms.pbc)
        batch.append(np.full(len(atoms), index))
        offset += len(atoms)
    edge_index = np.stack([np.concatenate(senders), np.concatenate(receivers)])
    return AtomGraph(
        z=torch.as_tensor(np.concatenate(z), dtype=torch.long, device=device),
        positions=torch.as_tensor(np.concatenate(positions), dtype=dtype, device=device),
        cell=torch.as_tensor(np.stack(cells), dtype=dtype, device=device),
        pbc=torch.as_tensor(np.stack(pbcs), dtype=torch.bool, device=device),
        batch=torch.as_tensor(np.concatenate(batch), dtype=torch.long, device=device),
        edge_index=torch.as_tensor(edge_index, dtype=torch.long, device=device),
        shifts=torch.as_tensor(np.concatenate(shifts), dtype=dtype, device=device),
    )


class NeighbourCache:
    """Verlet-skin reuse of a neighbour list between calls (MD, relaxations).

    The list is built for cutoff + skin and rebuilt only when an atom has moved more than skin/2 since
    the last build, or the cell, periodicity or atoms changed; in between, the cached pairs are filtered
    to |r_ij| < cutoff, so the edges (and so the energy) are exactly those of a fresh list.
    """

    def __init__(self, cutoff: float, skin: float):
        self.cutoff = cutoff
        self.skin = skin
        self._key: tuple | None = None
        self._positions: np.ndarray | None = None
        self._pairs: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        self.builds = 0

    def _needs_rebuild(self, atoms: Atoms) -> bool:
        key = (tuple(atoms.numbers), atoms.cell.array.tobytes(), tuple(atoms.pbc))
        if key != self._key or self._positions is None:
            self._key = key
            return True
        moved = np.linalg.norm(atoms.positions - self._positions, axis=1).max(initial=0.0)
        return moved > self.skin / 2

    def __call__(self, atoms: Atoms) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if self._needs_rebuild(atoms):
            self._pairs = neighbour_list(atoms, self.cutoff + self.skin)
            self._positions = atoms.positions.copy()
            self.builds += 1
        i, j, shifts = self._pairs
        vectors = atoms.positions[j] - atoms.positions[i] + shifts @ atoms.cell.array
        distances = np.linalg.norm(vectors, axis=1)
        if len(distances) and distances.min() < MIN_DISTANCE:
            k = int(np.argmin(distances))
            raise StructureError(f"atoms {i[k]} and {j[k]} overlap (distance {distances[k]:.2e} Å)")
        keep = distances < self.cutoff
        return i[keep], j[keep], shifts[keep]
