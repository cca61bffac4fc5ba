"""The Geodite network: blocks assembled, energy readout, forces and stress by autograd."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
from torch import Tensor, nn

from geodite.graph import AtomGraph
from geodite.model.coupling import EquivariantCoupling
from geodite.model.embedding import EdgeEmbedding, NodeEmbedding
from geodite.model.ops import edge_vectors, scatter_sum
from geodite.model.harmonics import NUM_STEERABLE, spherical_harmonics_l12
from geodite.model.interaction import InteractionBlock
from geodite.model.priors import MPTRJ_E0, ZBLRepulsion
from geodite.model.radial import RadialEmbedding


@dataclass(frozen=True)
class GeoditeConfig:
    """Size and constants of a Geodite model. Defaults are the published configuration (~3.6 M parameters)."""

    num_channels: int = 192
    num_layers: int = 4
    num_heads: int = 8
    cutoff: float = 6.0  # Å
    num_rbf: int = 12
    max_z: int = 100
    edge_vec_dim: int | None = None  # defaults to num_channels
    edge_mlp_dim: int | None = None  # defaults to num_channels
    epsilon: float = 1e-6
    attn_dropout: float = 0.2  # active in training only
    energy_scale: float = 0.6859245200012877  # σ_E, eV
    energy_shift: float = 0.0  # μ_E, eV

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "GeoditeConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown Geodite config keys: {sorted(unknown)}")
        return cls(**values)


class Geodite(nn.Module):
    """O(3)-equivariant message passing without tensor products.

    E = Σ_i [ e0(Z_i) + σ_E · (Σ_L W_L (h_i^(L) − h_vac(Z_i)^(L)) + V_ZBL,i) + μ_E ]   (eV)
    """

    def __init__(self, config: GeoditeConfig | None = None):
        super().__init__()
        config = config or GeoditeConfig()
        self.config = config
        F_ = config.num_channels
        self.radial = RadialEmbedding(config.cutoff, config.num_rbf)
        self.node_embedding = NodeEmbedding(F_, config.num_rbf, config.max_z)
        self.edge_embedding = EdgeEmbedding(F_, config.num_rbf)
        self.interactions = nn.ModuleList(
            InteractionBlock(
                F_,
                config.num_heads,
                config.num_rbf,
                update_edges=layer < config.num_layers - 1,
                edge_vec_dim=config.edge_vec_dim or F_,
                edge_mlp_dim=config.edge_mlp_dim or F_,
                epsilon=config.epsilon,
                attn_dropout=config.attn_dropout,
            )
            for layer in range(config.num_layers)
        )
        self.couplings = nn.ModuleList(EquivariantCoupling(F_) for _ in range(config.num_layers))
        self.readouts = nn.ModuleList(nn.Linear(F_, 1, bias=False) for _ in range(config.num_layers))
        self.zbl = ZBLRepulsion()
        self.register_buffer("e0", torch.tensor(MPTRJ_E0, dtype=torch.float64))
        self.register_buffer("energy_scale", torch.tensor(config.energy_scale, dtype=torch.float64))
        self.register_buffer("energy_shift", torch.tensor(config.energy_shift, dtype=torch.float64))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Upstream's initialisation: Xavier-uniform weights for every linear map of the encoder (including
        the density weights); PyTorch defaults for the element embeddings, LayerNorms and the per-layer
        readouts. (PyTorch's default linear init is √3 smaller, and trains markedly slower.)"""
        readouts = {id(readout) for readout in self.readouts}
        for module in self.modules():
            if isinstance(module, nn.Linear) and id(module) not in readouts:
                nn.init.xavier_uniform_(module.weight)

    @property
    def cutoff(self) -> float:
        return self.config.cutoff

    def supported_elements(self) -> list[bool]:
        """By Z: whether the model has an isolated-atom energy (and an embedding row) for the element."""
        e0 = self.e0.detach().cpu().tolist()
        return [0 < z < self.config.max_z and e0[z] != 0.0 for z in range(len(e0))]

    def layer_features(self, z: Tensor, edge_index: Tensor, vectors: Tensor) -> Tensor:
        """Scalar features after each layer: [N, L, F]. ``vectors`` [E, 3] point from receiver to sender."""
        r = vectors.norm(dim=-1)
        phi = self.radial(z, r, edge_index)  # [E, n_rbf]
        Y = spherical_harmonics_l12(vectors / r.unsqueeze(-1))  # [E, 8]
        h = self.node_embedding(z, edge_index, phi)  # [N, F]
        t = self.edge_embedding(h, edge_index, phi)  # [E, F]
        X = h.new_zeros((h.shape[0], NUM_STEERABLE, h.shape[1]))  # [N, 8, F]
        per_layer = []
        for interaction, coupling in zip(self.interactions, self.couplings):
            h, X, t = interaction(h, X, t, Y, phi, edge_index)
            h, X = coupling(h, X)
            per_layer.append(h)
        return torch.stack(per_layer, dim=1)

    def vacuum_features(self) -> Tensor:
        """Per-layer scalar features of an isolated (edgeless) atom of every element: [max_z, L, F].

        An edgeless atom's features depend on its element only, so this table replaces the extra vacuum
        atoms of ``atomic_energies`` exactly (used by the exported model, which cannot run torch.unique).
        """
        z = torch.arange(self.config.max_z, device=self.e0.device)
        no_edges = torch.zeros((2, 0), dtype=torch.long, device=z.device)
        return self.layer_features(z, no_edges, self.readouts[0].weight.new_zeros((0, 3)))

    def atomic_energies(self, z: Tensor, edge_index: Tensor, vectors: Tensor, vacuum: Tensor | None = None) -> Tensor:
        """Per-atom energies [N] eV, with the vacuum embedding of each element subtracted layer by layer.

        One edgeless "vacuum" atom per element present is run through the same network, so an isolated
        atom has exactly e0(Z); ``vacuum`` (the ``vacuum_features`` table) gives the same features precomputed.
        """
        num_atoms = z.shape[0]
        if vacuum is None:
            elements, element_index = torch.unique(z, sorted=True, return_inverse=True)
            features = self.layer_features(torch.cat([z, elements]), edge_index, vectors)  # [N+U, L, F]
            environment = features[:num_atoms] - features[num_atoms:][element_index]
        else:
            environment = self.layer_features(z, edge_index, vectors) - vacuum[z]
        learned = sum(readout(environment[:, layer]).squeeze(-1) for layer, readout in enumerate(self.readouts))
        repulsion = self.zbl(z, vectors.norm(dim=-1), edge_index)
        return self.e0[z] + (learned + repulsion) * self.energy_scale + self.energy_shift

    def forward(
        self, graph: AtomGraph, compute_stress: bool = True, vacuum: Tensor | None = None, local: Tensor | None = None
    ) -> dict[str, Tensor]:
        """Energy [B] eV, forces [N, 3] eV/Å and stress [B, 3, 3] eV/Å³ (ASE sign, zero if not periodic).

        Forces = −∂E/∂r and stress = (1/V) ∂E/∂ε for a symmetric strain ε applied to positions and cell.
        In training mode the graph is kept so that losses on forces and stress can be differentiated; evaluation
        mode (inference) treats the edge layers' weights as constants and differentiates once.
        ``vacuum``: see ``atomic_energies``. ``local`` [N] (0/1, float): only these atoms' energies count;
        the others are ghost copies (LAMMPS domains) that still receive forces. ``atomic_energies`` [N] eV
        are the per-atom terms of the energy (zero for ghosts; e0, scale and shift included, so they sum to
        ``energy``), differentiable in training mode (a loss on them, :class:`geodite.train.optim.TrainingLoss`)
        and detached otherwise.
        """
        positions, cell = graph.positions, graph.cell
        strain = torch.zeros_like(cell, requires_grad=compute_stress)
        if not positions.requires_grad:
            positions = positions.detach().requires_grad_(True)
        if compute_stress:
            symmetric = 0.5 * (strain + strain.transpose(-1, -2))
            positions = positions + torch.einsum("ni,nij->nj", positions, symmetric[graph.batch])
            cell = cell + torch.matmul(cell, symmetric)
        vectors = edge_vectors(positions, cell, graph.batch, graph.edge_index, graph.shifts)
        atomic = self.atomic_energies(graph.z, graph.edge_index, vectors, vacuum)
        if local is not None:
            atomic = atomic * local
        energy = scatter_sum(atomic, graph.batch, graph.num_graphs)
        inputs = [positions, strain] if compute_stress else [positions]
        grads = torch.autograd.grad(
            energy.sum(), inputs, create_graph=self.training, retain_graph=self.training, allow_unused=True
        )
        forces = -grads[0] if grads[0] is not None else torch.zeros_like(positions)
        out = {"energy": energy, "forces": forces, "atomic_energies": atomic if self.training else atomic.detach()}
        if compute_stress:
            volume = torch.linalg.det(graph.cell).abs()
            periodic = graph.pbc.all(dim=-1) & (volume > 0)
            virial = grads[1] if grads[1] is not None else torch.zeros_like(cell)
            safe_volume = torch.where(periodic, volume, torch.ones_like(volume))
            stress = virial / safe_volume.view(-1, 1, 1)
            out["stress"] = torch.where(periodic.view(-1, 1, 1), stress, torch.zeros_like(stress))
        return out
