"""Geodite cut between its message-passing steps, for domains that exchange node features (LAMMPS).

A domain owns some atoms and holds ghost copies of the others within one cutoff; its edges all have an owned
receiver. Every step that sums over neighbours (node embedding, each layer's messages and densities) is then
exact for owned atoms only, so the model is cut after each such step: L + 2 stages for L layers, and between
two stages the owners' node features (h [N, F], X [N, 8, F]) are copied to their ghost rows. Everything else is
local: the per-atom maps (norm, projections, coupling, readout) run on ghost rows as well, and the edge scalars
t [E, F] of an edge depend on its own two atoms' features only, so they stay with the domain's edges.

Every stage has one signature (vectors [E, 3] Å from receiver to sender; edge_index [2, E] = sender, receiver):

    stage(vectors, z, edge_index, h, X, t) -> (energy [N] eV, h [N, F], X [N, 8, F], t [E, F])

``energy`` is the stage's part of each atom's energy (valid for atoms with all their edges, the owned ones);
the total is Σ_stages Σ_owned energy. Stage 0: e0 + σ_E·ZBL + μ_E and the node embedding (its h, X, t inputs
are unused, X = 0 and t = 0 out); stage k = 1..L: the edge update and coupling of layer k − 2 with its readout
(k ≥ 2), or the edge embedding (k = 1), then layer k − 1's messages; stage L + 1: the last coupling and readout.
Stage k's h, X inputs are stage k − 1's outputs with the ghost rows replaced by their owners' rows, its t input
is stage k − 1's t. With every atom owned and periodic images as edge shifts (one periodic structure), no rows
are replaced and the stages compose to ``Geodite.atomic_energies``.

``StageJoint`` is a stage followed by its vector–Jacobian product in one function, which an export traces and
splits into a forward function that also returns what the product needs and the product taking those tensors
(``geodite.export.split_joint``), so that the backward pass does not compute the stage's forward pass again.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from geodite.model.geodite import Geodite
from geodite.model.harmonics import NUM_STEERABLE, spherical_harmonics_l12


class Stage(nn.Module):
    """Stage ``index`` of ``model`` (module docstring), reading the per-layer vacuum features ``vacuum``
    [max_z, L, F] (``Geodite.vacuum_features``)."""

    def __init__(self, model: Geodite, vacuum: Tensor, index: int):
        super().__init__()
        if not 0 <= index <= model.config.num_layers + 1:
            raise ValueError(f"stage {index} of a {model.config.num_layers}-layer model")
        self.model = model
        self.register_buffer("vacuum", vacuum)
        self.index = index

    def forward(self, vectors: Tensor, z: Tensor, edge_index: Tensor, h: Tensor, X: Tensor,
                t: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        model, k, layers = self.model, self.index, self.model.config.num_layers
        if k <= layers:
            r = vectors.norm(dim=-1)
            phi = model.radial(z, r, edge_index)  # [E, n_rbf]
        if k == 0:
            energy = (model.e0[z] + model.zbl(z, r, edge_index) * model.energy_scale + model.energy_shift)
            h = model.node_embedding(z, edge_index, phi)
            return energy, h, h.new_zeros((h.shape[0], NUM_STEERABLE, h.shape[1])), t.new_zeros(t.shape)
        Y = spherical_harmonics_l12(vectors / r.unsqueeze(-1)) if k <= layers else None
        if k == 1:
            t = model.edge_embedding(h, edge_index, phi)
            energy = h.new_zeros(h.shape[0])
        else:
            previous = k - 2
            update = model.interactions[previous].edge_update
            if update is not None:
                t = update(X, t, Y, edge_index)
            h, X = model.couplings[previous](h, X)
            energy = (model.readouts[previous](h - self.vacuum[z, previous]).squeeze(-1) * model.energy_scale)
        if k <= layers:
            h, X = model.interactions[k - 1].message_passing(h, X, t, Y, phi, edge_index)
        return energy, h, X, t


def stages(model: Geodite, vacuum: Tensor) -> list[Stage]:
    """The L + 2 stages of ``model`` in order."""
    return [Stage(model, vacuum, index) for index in range(model.config.num_layers + 2)]


class StageJoint(nn.Module):
    """A stage and its vector–Jacobian product in one function, for tracing (module docstring):

        (vectors, z, edge_index, local, h, X, t, grad_h, grad_X, grad_t)
            -> (energy, h, X, t, grad_vectors, grad_h, grad_X, grad_t)

    the stage's outputs, then the gradients with respect to its inputs vectors, h, X, t of
    Σ local·energy + ⟨grad_h, h_out⟩ + ⟨grad_X, X_out⟩ + ⟨grad_t, t_out⟩ (zeros where an input is unused)."""

    def __init__(self, stage: Stage):
        super().__init__()
        self.stage = stage

    def forward(self, vectors: Tensor, z: Tensor, edge_index: Tensor, local: Tensor, h: Tensor, X: Tensor, t: Tensor,
                grad_h: Tensor, grad_X: Tensor, grad_t: Tensor) -> tuple[Tensor, ...]:
        inputs = [x.detach().requires_grad_(True) for x in (vectors, h, X, t)]
        with torch.enable_grad():
            outputs = self.stage(inputs[0], z, edge_index, *inputs[1:])
        pairs = [(out, grad) for out, grad in zip(outputs, (local, grad_h, grad_X, grad_t)) if out.requires_grad]
        grads = torch.autograd.grad([out for out, _ in pairs], inputs, [grad for _, grad in pairs],
                                    allow_unused=True, materialize_grads=True)
        return (*(out.detach() for out in outputs), *grads)
