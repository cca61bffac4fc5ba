"""The per-layer feature exchange of ``pair_style geodite``, in Python: domains, ghost rows and the protocol.

A domain (one MPI rank's share of a structure) holds its owned atoms first, then ghost rows: copies of atoms
owned elsewhere, or periodic images of its own, within one cutoff of an owned atom. Its edges all have an owned
receiver. The model runs as its stages (``geodite.model.stages``); after each stage the owners' node features
go to their ghost rows (forward communication), and in the backward pass, stage by stage in reverse, the
ghost rows' feature gradients are added to their owners (reverse communication). Each stage also returns the
tensors its vector–Jacobian product needs, which the domain keeps until that product has run. The edge-vector
gradients ∂E/∂r_e then give forces, global and per-atom virials exactly as the single graph does
(``geodite.export.ExportableGeodite``). ``run_domains`` runs any list of domains in lock step, exchanging
between them as LAMMPS's communication does between ranks; pair_geodite.cpp is the C++ of the same protocol.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from ase import Atoms
from ase.neighborlist import neighbor_list
from torch import Tensor

from geodite.model.ops import scatter_sum

#: stage(vectors, z, edge_index, h, X, t) -> (energy, h, X, t, *saved): the stage (geodite.model.stages) and the
#: tensors its vector–Jacobian product needs (``saved``, any number, per row or edge of the domain)
StageFn = Callable[..., Sequence[Tensor]]
#: stage_vjp(vectors, z, edge_index, local, h, X, t, grad_h, grad_X, grad_t, *saved) -> (grad_vectors, grad_h,
#: grad_X, grad_t): the gradients of Σ local·energy + ⟨grad_h, h_out⟩ + ⟨grad_X, X_out⟩ + ⟨grad_t, t_out⟩ with
#: respect to vectors, h, X, t, given the stage's inputs and its ``saved`` tensors (no forward pass again)
StageVjpFn = Callable[..., Sequence[Tensor]]


@dataclass
class Domain:
    """One rank's rows: ``owner`` [N] the structure's index of each row (owned rows first, ``num_owned`` of them),
    ``z`` [N], edges ``edge_index`` [2, E] (sender, receiver; receivers owned) and ``vectors`` [E, 3] Å."""

    owner: Tensor
    num_owned: int
    z: Tensor
    edge_index: Tensor
    vectors: Tensor

    @property
    def local(self) -> Tensor:
        """1.0 on owned rows, 0.0 on ghost rows: [N]."""
        local = self.vectors.new_zeros(self.owner.shape[0])
        local[: self.num_owned] = 1.0
        return local


def split_domains(atoms: Atoms, cutoff: float, parts: int, dtype: torch.dtype = torch.float64) -> list[Domain]:
    """``atoms`` (periodic or not) cut into ``parts`` slabs along the first fractional coordinate (non-periodic:
    along x), each a Domain with ghost rows for every periodic image or other slab's atom within ``cutoff`` Å
    of an owned atom. One part: every atom owned, ghost rows only for periodic images."""
    receivers, senders, shifts = neighbor_list("ijS", atoms, cutoff)
    positions, cell = atoms.get_positions(), np.asarray(atoms.get_cell())
    if atoms.pbc.all():
        coordinate = atoms.get_scaled_positions(wrap=True)[:, 0]
    else:
        x = positions[:, 0]
        coordinate = (x - x.min()) / max(x.max() - x.min(), 1e-12) * (1 - 1e-9)
    part_of = np.minimum((coordinate * parts).astype(int), parts - 1)
    domains = []
    for part in range(parts):
        owned = np.flatnonzero(part_of == part)
        rows = {(int(atom), (0, 0, 0)): row for row, atom in enumerate(owned)}
        row_owner, row_shift = list(owned), [np.zeros(3)] * len(owned)
        edge_rows = []
        for e in np.flatnonzero(part_of[receivers] == part):
            key = (int(senders[e]), tuple(int(s) for s in shifts[e]))
            if key not in rows:
                rows[key] = len(row_owner)
                row_owner.append(key[0])
                row_shift.append(np.asarray(key[1], dtype=float))
            edge_rows.append((rows[key], rows[(int(receivers[e]), (0, 0, 0))]))
        row_positions = positions[row_owner] + np.asarray(row_shift).reshape(-1, 3) @ cell
        edge_index = np.ascontiguousarray(np.asarray(edge_rows, dtype=np.int64).reshape(-1, 2).T)  # compiled stages read contiguous inputs
        vectors = row_positions[edge_index[0]] - row_positions[edge_index[1]]
        domains.append(Domain(torch.as_tensor(np.asarray(row_owner, dtype=np.int64)), len(owned),
                              torch.as_tensor(atoms.numbers[row_owner], dtype=torch.long),
                              torch.as_tensor(edge_index), torch.as_tensor(vectors, dtype=dtype)))
    return domains


def forward_exchange(domains: Sequence[Domain], rows: Sequence[Tensor], num_atoms: int) -> list[Tensor]:
    """Every domain's ``rows`` [N, ...] with each ghost row replaced by its owner's row (forward communication)."""
    table = rows[0].new_zeros((num_atoms, *rows[0].shape[1:]))
    for domain, values in zip(domains, rows):
        table[domain.owner[: domain.num_owned]] = values[: domain.num_owned]
    return [table[domain.owner] for domain in domains]


def reverse_exchange(domains: Sequence[Domain], rows: Sequence[Tensor], num_atoms: int) -> list[Tensor]:
    """Every domain's ``rows`` with the ghost rows of all domains added to their owners' rows and ghost rows
    zeroed (reverse communication)."""
    table = rows[0].new_zeros((num_atoms, *rows[0].shape[1:]))
    for domain, values in zip(domains, rows):
        table.index_add_(0, domain.owner, values)
    out = []
    for domain, values in zip(domains, rows):
        summed = torch.zeros_like(values)
        summed[: domain.num_owned] = table[domain.owner[: domain.num_owned]]
        out.append(summed)
    return out


@dataclass
class DomainResult:
    """Per structure atom: energies [n] eV, forces [n, 3] eV/Å, virials [n, 3, 3] eV (W = Σ r ⊗ F, LAMMPS's
    sign); ``energy`` the total eV."""

    energy: Tensor
    atomic_energies: Tensor
    forces: Tensor
    atomic_virials: Tensor


def run_domains(stages: Sequence[StageFn], vjps: Sequence[StageVjpFn], domains: Sequence[Domain], num_atoms: int,
                num_channels: int, num_steerable: int = 8) -> DomainResult:
    """The exchange protocol over ``domains`` of one structure of ``num_atoms`` atoms (module docstring). A domain
    without owned atoms has no edges and nothing to compute; it takes part in the exchanges with zero rows."""
    dtype = domains[0].vectors.dtype
    h = [d.vectors.new_zeros((d.owner.shape[0], num_channels)) for d in domains]
    X = [d.vectors.new_zeros((d.owner.shape[0], num_steerable, num_channels)) for d in domains]
    t = [d.vectors.new_zeros((d.vectors.shape[0], num_channels)) for d in domains]
    energies = [d.vectors.new_zeros(d.owner.shape[0]) for d in domains]
    inputs, saved = [], []  # per stage: each domain's (h, X, t) inputs and its saved tensors
    with torch.no_grad():
        for stage in stages:
            inputs.append((h, X, t))
            outputs = [stage(d.vectors, d.z, d.edge_index, h[n], X[n], t[n]) if d.num_owned
                       else (energies[n], h[n], X[n], t[n]) for n, d in enumerate(domains)]
            energies = [e + out[0] for e, out in zip(energies, outputs)]
            h = forward_exchange(domains, [out[1] for out in outputs], num_atoms)
            X = forward_exchange(domains, [out[2] for out in outputs], num_atoms)
            t = [out[3] for out in outputs]
            saved.append([tuple(out[4:]) for out in outputs])
        grad_h, grad_X, grad_t = [torch.zeros_like(x) for x in h], [torch.zeros_like(x) for x in X], \
            [torch.zeros_like(x) for x in t]
        grad_vectors = [torch.zeros_like(d.vectors) for d in domains]
        for vjp, (h, X, t), kept in zip(reversed(vjps), reversed(inputs), reversed(saved)):
            grads = [vjp(d.vectors, d.z, d.edge_index, d.local, h[n], X[n], t[n], grad_h[n], grad_X[n], grad_t[n],
                         *kept[n]) if d.num_owned else (d.vectors, h[n], X[n], t[n]) for n, d in enumerate(domains)]
            grad_vectors = [g + out[0] for g, out in zip(grad_vectors, grads)]
            grad_h = reverse_exchange(domains, [out[1] for out in grads], num_atoms)
            grad_X = reverse_exchange(domains, [out[2] for out in grads], num_atoms)
            grad_t = [out[3] for out in grads]
    atomic = torch.zeros(num_atoms, dtype=dtype)
    forces = torch.zeros((num_atoms, 3), dtype=dtype)
    virials = torch.zeros((num_atoms, 3, 3), dtype=dtype)
    for domain, energy, gradient in zip(domains, energies, grad_vectors):
        atomic.index_add_(0, domain.owner[: domain.num_owned], energy[: domain.num_owned])
        row_forces, row_virials = edge_forces_and_virials(domain.vectors, gradient, domain.edge_index,
                                                          domain.owner.shape[0])
        forces.index_add_(0, domain.owner, row_forces)
        virials.index_add_(0, domain.owner, row_virials)
    return DomainResult(atomic.sum(), atomic, forces, virials)


def edge_forces_and_virials(vectors: Tensor, gradients: Tensor, edge_index: Tensor,
                            num_rows: int) -> tuple[Tensor, Tensor]:
    """Forces [N, 3] eV/Å and virials W [N, 3, 3] eV (half of each edge's −r ⊗ ∂E/∂r to each end) of the edge
    vectors ``vectors`` [E, 3] Å (receiver to sender) and energy gradients ``gradients`` [E, 3] eV/Å."""
    sender, receiver = edge_index
    forces = scatter_sum(gradients, receiver, num_rows) - scatter_sum(gradients, sender, num_rows)
    edge_virials = -vectors.unsqueeze(-1) * gradients.unsqueeze(-2)
    virials = 0.5 * (scatter_sum(edge_virials, sender, num_rows) + scatter_sum(edge_virials, receiver, num_rows))
    return forces, virials
