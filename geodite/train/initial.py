"""What a training run starts from, built from its config: the training and validation frames, the initial
model (its e0 and energy scale set from the data) with the loss normalisation, and the optimiser with its LR
schedule, EMA and ZClip. The trainer (:mod:`geodite.train.trainer`) builds these in this order (the order of
the random draws is part of exact resume) and then replaces their state from a checkpoint when it resumes."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch.optim.lr_scheduler import LRScheduler

from geodite.checkpoints import load_model
from geodite.data.dataset import FrameStore, split_by_material
from geodite.data.mptrj import open_store
from geodite.model import Geodite, GeoditeConfig
from geodite.train import distributed
from geodite.train.config import LossSection, OptimSection, TrainConfig
from geodite.train.optim import EMA, Normalisation, ZClip, warmup_linear_decay
from geodite.train.references import (
    compute_normalisation,
    isolated_atom_energies,
    isolated_limit_mismatches,
    reference_energies,
)


@dataclass
class TrainingFrames:
    """The frames of a run: the training frames ``store[train_idx]``, the validation frames
    ``valid_store[valid_idx]``, and ``train_subset``, the training frames measured at each validation."""

    store: FrameStore
    train_idx: np.ndarray
    valid_store: FrameStore
    valid_idx: np.ndarray
    train_subset: np.ndarray


def training_frames(config: TrainConfig, out_dir: Path, rank: int) -> TrainingFrames:
    """The frames of ``data.train`` (and ``data.valid``, else a split by material), converted to stores under
    ``data.store_dir`` (default ``out_dir``/store) by rank 0 while the other ranks wait."""
    data = config.data
    if not data.train:
        raise ValueError("config data.train lists no training data")
    store_root = Path(data.store_dir or (out_dir / "store"))

    def open_sources(sources: list[str], name: str) -> FrameStore:
        return open_store(sources, store_root / name, data_dir=data.data_dir, convert=rank == 0,
                          barrier=distributed.barrier)

    store = open_sources(data.train, "train")
    if data.valid:
        valid_store = open_sources(data.valid, "valid")
        train_idx, valid_idx = np.arange(len(store)), np.arange(len(valid_store))
    else:
        valid_store = store
        train_idx, valid_idx = split_by_material(store, data.valid_fraction, data.split_seed)
    if data.max_frames is not None:
        train_idx = train_idx[: data.max_frames]
    subset = min(config.run.train_subset, len(train_idx))
    train_subset = np.sort(np.random.default_rng(data.split_seed).choice(train_idx, subset, replace=False))
    return TrainingFrames(store, train_idx, valid_store, valid_idx, train_subset)


def initial_model(config: TrainConfig, frames: TrainingFrames,
                  log: Callable[[str], None]) -> tuple[Geodite, np.ndarray, Normalisation]:
    """The model a run starts from, its e0 (eV, indexed by Z) and the loss normalisation.

    A fresh Geodite of ``model.architecture`` gets the e0 of ``loss.e0``, energy_shift 0 and energy_scale σ_E
    of the normalisation; a fine-tuned checkpoint (``model.init_from``, float64) keeps its own. ValueError when
    the model's isolated atoms disagree with the data's single-atom frames by more than ``loss.e0_tolerance``.
    """
    fine_tuning, loss = config.model.init_from, config.loss
    model = Geodite(config.model.architecture) if not fine_tuning else _fine_tuned(config, log)
    e0 = model.e0.detach().cpu().numpy().astype(np.float64)
    isolated = isolated_atom_energies(frames.store, frames.train_idx)
    if not fine_tuning:
        e0 = reference_energies(loss.e0, e0, isolated, frames.store, frames.train_idx, log)
    model.e0.copy_(torch.as_tensor(e0))
    norm = loss_normalisation(loss, model, frames, e0, config.data.split_seed)
    if not fine_tuning:
        # μ_E stays in the loss only (it cancels there): a shift in the model would move every isolated atom
        # away from e0, the limit the vacuum embedding pins it to
        model.energy_shift.fill_(0.0)
        model.energy_scale.fill_(norm.energy_std)
    bad = isolated_limit_mismatches(e0 + float(model.energy_shift), isolated, loss.e0_tolerance)
    if bad:
        raise ValueError(f"the model's isolated atoms disagree with the data's single-atom frames by more than "
                         f"{loss.e0_tolerance} eV ({len(bad)} elements; {'; '.join(bad[:3])}): set loss.e0 to "
                         f"'isolated' or train on data with the same isolated-atom limit")
    return model, e0, norm


def _fine_tuned(config: TrainConfig, log: Callable[[str], None]) -> Geodite:
    """The ``model.init_from`` checkpoint (float64) with the config's attention dropout."""
    section = config.model
    model = load_model(section.init_from)
    values = model.config.to_dict() | {"attn_dropout": section.architecture.attn_dropout}
    fresh = Geodite(GeoditeConfig.from_dict(values)).double()
    fresh.load_state_dict(model.state_dict())
    log(f"fine-tuning from {section.init_from} ({sum(p.numel() for p in fresh.parameters())} parameters)")
    return fresh


def loss_normalisation(loss: LossSection, model: Geodite, frames: TrainingFrames, e0: np.ndarray,
                       seed: int) -> Normalisation:
    """The constants of ``loss.normalisation`` ("data": of the training frames; "model" and its alias
    "published": the model's μ_E and σ_E), each replaced by its ``loss`` key where the config sets one."""
    if loss.normalisation == "data":
        norm = compute_normalisation(frames.store, frames.train_idx, e0, seed=seed)
    else:
        norm = Normalisation(energy_mean=float(model.energy_shift), energy_std=float(model.energy_scale))
    for key in ("energy_mean", "energy_std", "force_std", "stress_mean", "stress_std"):
        if getattr(loss, key) is not None:
            setattr(norm, key, float(getattr(loss, key)))
    return norm


def optimiser(section: OptimSection, model: Geodite,
              total_steps: int) -> tuple[torch.optim.AdamW, LRScheduler, EMA, ZClip]:
    """AdamW (weight decay on parameters of two or more dimensions only), its LR schedule (``optim.scheduler``), the EMA of the
    weights and ZClip."""
    decay, no_decay = [], []
    for param in model.parameters():
        (no_decay if param.ndim <= 1 else decay).append(param)
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": section.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=section.lr, betas=tuple(section.betas))
    if section.scheduler == "warmup-linear":
        scheduler = warmup_linear_decay(optimizer, section.lr_start / section.lr, section.warmup_steps,
                                        total_steps, section.lr_end / section.lr)
    elif section.scheduler == "plateau":
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, factor=section.plateau_factor, patience=section.plateau_patience)
    else:  # "constant"
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    ema = EMA(model, section.ema_decay, warmup=section.ema_warmup)
    return optimizer, scheduler, ema, ZClip(section.zclip_alpha, section.zclip_z, section.zclip_warmup)
