"""Training pieces: the published Huber loss (or MSE) on normalised targets, the training loss of a batch and
the validation errors, EMA of weights (with warm-up), ZClip, LR schedules."""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass
from typing import Iterable

import torch
from torch import Tensor, nn

from geodite.data.dataset import Batch
from geodite.train import distributed


@dataclass
class Normalisation:
    """Loss normalisation constants. Energies eV/atom, forces eV/Å, stress eV/Å³ (published values: σ_F
    0.8298, stress mean 0.000606, std 0.02360; μ_E/σ_E are the model's energy_shift/energy_scale)."""

    energy_mean: float = 0.0
    energy_std: float = 0.6859245200012877
    force_std: float = 0.8298
    stress_mean: float = 0.000606
    stress_std: float = 0.02360

    def to_dict(self) -> dict:
        return asdict(self)


def huber(pred: Tensor, target: Tensor, delta: float) -> Tensor:
    """Elementwise Huber loss (no reduction)."""
    return torch.nn.functional.huber_loss(pred, target, reduction="none", delta=delta)


#: elementwise loss functions of normalised targets selectable by ``loss.function``
LOSS_FUNCTIONS = ("huber", "mse")


def elementwise_loss(pred: Tensor, target: Tensor, function: str, delta: float) -> Tensor:
    """Elementwise loss (no reduction) of normalised predictions: ``"huber"`` with threshold ``delta`` (the
    published δ 0.01 is quadratic only below 0.01 σ, i.e. an L1 loss in practice) or ``"mse"`` (½ error²,
    which Huber equals below δ)."""
    if function == "huber":
        return huber(pred, target, delta)
    if function == "mse":
        return 0.5 * (pred - target) ** 2
    raise ValueError(f"unknown loss function {function!r} (one of {', '.join(LOSS_FUNCTIONS)})")


def normalised_atomic_energies(atomic: Tensor, z: Tensor, e0: Tensor, norm: Normalisation) -> Tensor:
    """(ε_i − e0(Z_i) − μ_E)/σ_E of per-atom energies ε_i [N] eV (float64): the per-atom counterpart of the
    energy target ((E − Σ e0)/N − μ_E)/σ_E, which is its mean over a frame's atoms. ``e0`` eV by Z; μ_E, σ_E
    (``norm``) eV/atom, so a per-atom energy error is measured in units of the per-atom energy spread σ_E."""
    return (atomic.to(torch.float64) - e0.to(device=z.device, dtype=torch.float64)[z] - norm.energy_mean) \
        / norm.energy_std


@dataclass
class TrainingLoss:
    """The training loss of one rank's shard of a global batch: the elementwise loss (``function``, Huber with
    ``huber_delta`` or MSE) of normalised targets — per-atom energies after e0 (``e0``: eV by Z), forces,
    stresses — each summed and divided by its *global* count [frames, force components, stress components],
    weighted E:F:S (``weights``) and multiplied by ``world`` (DDP averages the ranks' gradients, which gives
    the gradient of the whole global batch's loss).

    With ``atomic_weight`` > 0 a fourth term: the elementwise loss of the model's per-atom energies
    (``out["atomic_energies"]``, e0 and shift included, the terms its energy sums) against per-atom labels
    (a teacher's, ``batch.atomic_energies``), both normalised by :func:`normalised_atomic_energies` (e0
    subtracted, divided by σ_E, the energy term's scale: an error of δ eV on every atom of a frame costs in
    this term what δ eV/atom costs in the energy term), summed over the atoms of frames with labels and
    divided by their *global* count (``counts[3]``). Frames without per-atom labels contribute nothing. At 0
    (the default) the term is not computed and the loss is the E/F/S loss alone."""

    weights: list[float]
    function: str
    huber_delta: float
    e0: Tensor
    norm: Normalisation
    dtype: torch.dtype
    world: int = 1
    atomic_weight: float = 0.0

    def __call__(self, batch: Batch, out: dict[str, Tensor], counts: Tensor) -> tuple[Tensor, dict[str, float]]:
        """The loss of ``batch`` for the model's output ``out`` and the global ``counts`` [frames, force
        components, stress components, atoms with per-atom energy labels], and its energy, forces, stress and
        per-atom energy (``atomic``) terms (floats, unweighted)."""
        w_e, w_f, w_s = self.weights
        norm = self.norm
        pred_e = self._targets_per_atom(batch, out["energy"]).to(self.dtype)
        true_e = self._targets_per_atom(batch, batch.energy).to(self.dtype)
        loss_e = self._elementwise(pred_e, true_e).sum() / counts[0]
        atom_mask = batch.has_forces[batch.graph.batch]
        loss_f = (self._elementwise(out["forces"] / norm.force_std, batch.forces / norm.force_std)
                  * atom_mask[:, None]).sum() / counts[1].clamp(min=1)
        total = w_e * loss_e + w_f * loss_f
        loss_s = torch.zeros((), dtype=self.dtype, device=total.device)
        if w_s > 0 and "stress" in out:
            pred_s = (out["stress"] - norm.stress_mean) / norm.stress_std
            true_s = (batch.stress - norm.stress_mean) / norm.stress_std
            loss_s = (self._elementwise(pred_s, true_s) * batch.has_stress[:, None, None]).sum() / counts[2].clamp(min=1)
            total = total + w_s * loss_s
        loss_a = torch.zeros((), dtype=self.dtype, device=total.device)
        if self.atomic_weight > 0:
            loss_a = self._atomic_term(batch, out["atomic_energies"], counts[3])
            total = total + self.atomic_weight * loss_a
        parts = {"energy": float(loss_e.detach()) * self.world, "forces": float(loss_f.detach()) * self.world,
                 "stress": float(loss_s.detach()) * self.world, "atomic": float(loss_a.detach()) * self.world}
        return total * self.world, parts

    def _atomic_term(self, batch: Batch, atomic: Tensor, count: Tensor) -> Tensor:
        """The per-atom energy term (unweighted): summed over the labelled frames' atoms, divided by ``count``."""
        z = batch.graph.z
        pred = normalised_atomic_energies(atomic, z, self.e0, self.norm).to(self.dtype)
        true = normalised_atomic_energies(batch.atomic_energies, z, self.e0, self.norm).to(self.dtype)
        mask = batch.has_atomic_energies[batch.graph.batch]
        return (self._elementwise(pred, true) * mask).sum() / count.clamp(min=1)

    def _elementwise(self, pred: Tensor, true: Tensor) -> Tensor:
        return elementwise_loss(pred, true, self.function, self.huber_delta)

    def _targets_per_atom(self, batch: Batch, energy: Tensor) -> Tensor:
        """((E − Σ e0)/N − μ_E)/σ_E of each frame (float64)."""
        graph = batch.graph
        n = graph.num_atoms.to(torch.float64)
        e0 = self.e0.to(graph.z.device)[graph.z]
        e0_sum = torch.zeros(graph.num_graphs, dtype=torch.float64, device=graph.z.device).index_add_(
            0, graph.batch, e0)
        return ((energy.to(torch.float64) - e0_sum) / n - self.norm.energy_mean) / self.norm.energy_std


def loss_counts(batch: Batch) -> Tensor:
    """[frames, force components, stress components, atoms with per-atom energy labels] of one batch (float64),
    the denominators of :class:`TrainingLoss`'s terms (summed over the ranks for a distributed batch)."""
    graph = batch.graph
    atoms_with_forces = int(batch.has_forces[graph.batch].sum())
    atoms_with_energies = int(batch.has_atomic_energies[graph.batch].sum())
    return torch.tensor([graph.num_graphs, 3 * atoms_with_forces, 9 * int(batch.has_stress.sum()),
                         atoms_with_energies], dtype=torch.float64)


def validation_errors(model: nn.Module, batches: Iterable[Batch], loss: TrainingLoss, device: torch.device,
                      prefix: str) -> dict[str, float]:
    """Energy/atom (meV/atom), force (meV/Å) and stress (meV/Å³) MAE and the mean loss per frame of ``model``
    on ``batches`` (one rank's share; the sums are added over the ranks), keyed ``<prefix>_<metric>``."""
    sums = torch.zeros(7, dtype=torch.float64)
    for batch in batches:
        batch = batch.to(device)
        with torch.enable_grad():
            out = model(batch.graph, compute_stress=True)
        n = batch.graph.num_atoms.to(torch.float64)
        e_err = ((out["energy"].double() - batch.energy) / n).abs()
        f_err = (out["forces"] - batch.forces).abs().double()[batch.has_forces[batch.graph.batch]]
        s_err = (out["stress"] - batch.stress).abs().double()[batch.has_stress]
        counts = loss_counts(batch)
        value, _ = loss(batch, {k: v.detach() for k, v in out.items()}, counts.to(device))
        sums += torch.tensor([e_err.sum().item(), f_err.sum().item(), s_err.sum().item(),
                              counts[0], counts[1], counts[2], float(value) / loss.world * counts[0]])
    e, f, s, ne, nf, ns, loss_sum = distributed.sum_over_ranks(sums, device).tolist()
    return {f"{prefix}_energy_mae_mev_atom": 1000 * e / max(ne, 1),
            f"{prefix}_force_mae_mev_a": 1000 * f / max(nf, 1),
            f"{prefix}_stress_mae_mev_a3": 1000 * s / max(ns, 1), f"{prefix}_loss": loss_sum / max(ne, 1)}


class EMA:
    """Exponential moving average of a model's parameters and buffers.

    With ``warmup`` the decay of update t (0-based) is min(decay, (1 + t)/(10 + t)): the first updates
    follow the fast-moving weights closely, so early validation (on EMA weights) is not an average dragged
    back towards the random initialisation (decay 0.995 without warm-up still weighs the initial weights
    by 0.995^t, e.g. 0.6 after 100 steps).
    """

    def __init__(self, model: nn.Module, decay: float = 0.995, warmup: bool = True):
        self.decay = decay
        self.warmup = warmup
        self.updates = 0
        self.shadow = {k: v.detach().clone() for k, v in model.state_dict().items()}

    def current_decay(self) -> float:
        """The decay the next update uses."""
        if not self.warmup:
            return self.decay
        return min(self.decay, (1 + self.updates) / (10 + self.updates))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        decay = self.current_decay()
        for key, value in model.state_dict().items():
            shadow = self.shadow[key]
            if value.is_floating_point():
                shadow.mul_(decay).add_(value.detach(), alpha=1.0 - decay)
            else:
                shadow.copy_(value)
        self.updates += 1

    def copy_to(self, model: nn.Module) -> nn.Module:
        model.load_state_dict(self.shadow)
        return model

    def model_copy(self, model: nn.Module) -> nn.Module:
        return self.copy_to(copy.deepcopy(model))

    def state_dict(self) -> dict:
        return {"decay": self.decay, "warmup": self.warmup, "updates": self.updates, "shadow": self.shadow}

    def load_state_dict(self, state: dict) -> None:
        """Restore a state; one saved before the warm-up existed resumes without it (as it was trained)."""
        self.decay = state["decay"]
        self.warmup = state.get("warmup", False)
        self.updates = state.get("updates", 0)
        for key, value in state["shadow"].items():
            self.shadow[key].copy_(value)


class ZClip:
    """ZClip adaptive gradient clipping (Kumar et al. 2025), z-score mode.

    Keeps an EMA (factor ``alpha``) of the gradient norm's mean μ and variance σ². After ``warmup_steps``
    plain steps (whose norms initialise μ, σ), a step whose norm g has z = (g − μ)/σ > ``z_threshold`` is
    rescaled to μ + z_threshold·σ. The statistics are then updated with the (clipped) norm. Returns the norm
    before clipping. Gradients must be already reduced across ranks, so every rank clips identically.
    """

    def __init__(self, alpha: float = 0.97, z_threshold: float = 2.5, warmup_steps: int = 25, eps: float = 1e-6):
        self.alpha, self.z_threshold, self.warmup_steps, self.eps = alpha, z_threshold, warmup_steps, eps
        self.mean: float | None = None
        self.var: float | None = None
        self.warmup_norms: list[float] = []
        self.num_clipped = 0

    @torch.no_grad()
    def __call__(self, parameters) -> float:
        grads = [p.grad for p in parameters if p.grad is not None]
        if not grads:
            return 0.0
        norm = float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads])))
        if not math.isfinite(norm):
            return norm
        if self.mean is None:
            self.warmup_norms.append(norm)
            if len(self.warmup_norms) >= self.warmup_steps:
                values = torch.tensor(self.warmup_norms, dtype=torch.float64)
                self.mean = float(values.mean())
                self.var = float(values.var(unbiased=False))
                self.warmup_norms = []
            return norm
        std = math.sqrt(max(self.var, 0.0))
        z = (norm - self.mean) / (std + self.eps)
        clipped = norm
        if z > self.z_threshold:
            clipped = self.mean + self.z_threshold * std
            scale = clipped / (norm + self.eps)
            for g in grads:
                g.mul_(scale)
            self.num_clipped += 1
        self.mean = self.alpha * self.mean + (1 - self.alpha) * clipped
        self.var = self.alpha * self.var + (1 - self.alpha) * (clipped - self.mean) ** 2
        return norm

    def state_dict(self) -> dict:
        return {k: getattr(self, k) for k in ("alpha", "z_threshold", "warmup_steps", "eps", "mean", "var",
                                                "warmup_norms", "num_clipped")}

    def load_state_dict(self, state: dict) -> None:
        for key, value in state.items():
            setattr(self, key, list(value) if key == "warmup_norms" else value)


def warmup_linear_decay(optimizer, start_factor: float, warmup_steps: int, total_steps: int,
                        end_factor: float = 0.0) -> torch.optim.lr_scheduler.LambdaLR:
    """LR = peak·f(step): linear start_factor → 1 over warmup, then linear 1 → end_factor at total_steps."""

    def factor(step: int) -> float:
        if warmup_steps > 0 and step < warmup_steps:
            return start_factor + (1.0 - start_factor) * step / warmup_steps
        span = max(1, total_steps - warmup_steps)
        progress = min(1.0, (step - warmup_steps) / span)
        return 1.0 + (end_factor - 1.0) * progress

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
