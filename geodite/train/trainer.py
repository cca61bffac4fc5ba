"""The Geodite trainer: MPtrj-scale data from a memory-mapped store, the published loss and optimiser,
exact resume from checkpoints, DistributedDataParallel (torchrun; NCCL on GPU, gloo on CPU), fine-tuning.

Read top-down: :meth:`Trainer.train` runs epochs (:meth:`Trainer._train_epoch`) of micro-batches
(:meth:`Trainer._accumulate`) and optimiser steps (:meth:`Trainer._optimiser_step`), validates
(:meth:`Trainer._validate_and_record`) and stops at the end of the epochs or of the step or time budget
(:meth:`Trainer._out_of_budget`). Around it: the config (:mod:`geodite.train.config`), what a run starts
from (:mod:`geodite.train.initial`: frames, model with e0 and normalisation, optimiser), the loss
(:class:`geodite.train.optim.TrainingLoss`), the resumable files (:mod:`geodite.train.state`), the
metrics record (:mod:`geodite.train.metrics_log`) and the process group (:mod:`geodite.train.distributed`).

Determinism and resume: the order of training frames in epoch e is a permutation drawn from (seed, e);
a checkpoint records the epoch, the position inside it (in global batches), the model, optimiser, EMA,
scheduler, ZClip and RNG states. A run killed at any time and restarted with the same config continues
from the last checkpoint and ends with the same weights as an uninterrupted run.

Distributed: each global batch of ``batch_size × world_size`` frames is split into equal rank shards; each
rank's loss is normalised by the *global* counts (frames, force components, stress components) and
multiplied by the world size, so that DDP's gradient averaging yields exactly the gradient of the loss
of the whole global batch — the same as single-process training on that batch.
"""

from __future__ import annotations

import math
import random
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from torch import Tensor
from torch.utils.data import DataLoader

from geodite.checkpoints import save_checkpoint
from geodite.data.dataset import Batch, FrameDataset, FrameStore, GraphCollate
from geodite.graph import DTYPES
from geodite.model import Geodite
from geodite.train import distributed
from geodite.train.config import TrainConfig
from geodite.train.initial import initial_model, optimiser, training_frames
from geodite.train.metrics_log import MetricsLog, metrics_table
from geodite.train.optim import Normalisation, TrainingLoss, loss_counts, validation_errors
from geodite.train.state import (
    BEST_FILE,
    STATE_FILE,
    STATE_FORMAT,
    read_training_state,
    rng_state,
    save_atomically,
    set_rng_state,
)

MODEL_FILE = "model.pt"
#: train_loss in the metrics is the mean loss of the epoch's last this many micro-batches
TRAIN_LOSS_WINDOW = 200


def epoch_batches(num_frames: int, batch: int, epoch: int, seed: int) -> list[np.ndarray]:
    """Global batches of an epoch: a permutation drawn from (seed, epoch); the last partial batch dropped
    when there is more than one batch (every rank must get equal shards)."""
    order = np.random.default_rng([seed, epoch]).permutation(num_frames)
    n_full = num_frames // batch
    if n_full == 0:
        return [order]
    return [order[i * batch:(i + 1) * batch] for i in range(n_full)]


class Trainer:
    """One training run (or its resumption from ``run.out_dir``/checkpoint.pt): data, model, optimiser and
    their state, built from a checked :class:`TrainConfig`."""

    def __init__(self, config: TrainConfig, console: Console | None = None):
        config.check()
        self.config = config
        self.console = console
        run = config.run
        if run.num_threads:
            torch.set_num_threads(run.num_threads)
        self.device = distributed.setup_distributed(run.device)
        self.rank, self.world = distributed.rank(), distributed.world_size()
        self.dtype = DTYPES[run.dtype]
        self.out_dir = Path(run.out_dir)
        if self.rank == 0:
            self.out_dir.mkdir(parents=True, exist_ok=True)
        torch.manual_seed(run.seed)
        np.random.seed(run.seed)
        random.seed(run.seed)

        self._build()
        self.step = 0
        self.epoch = 0
        self.batch_in_epoch = 0
        self.epoch_losses: list[float] = []  # of the current epoch's micro-batches (kept by checkpoints)
        self.epoch_seconds = 0.0  # of the current epoch before this process took it up (from a checkpoint)
        self.epoch_start = time.perf_counter()
        self.history: list[dict] = []
        self.model_path: Path | None = None  # the exported model (rank 0, once trained)
        self.best_valid = math.inf
        self._resume()
        loss = config.loss  # built after _resume: a resumed run's loss has its checkpoint's normalisation
        self.loss = TrainingLoss(loss.weights, loss.function, loss.huber_delta, self.e0, self.norm, self.dtype,
                                 self.world, loss.atomic_energy_weight)
        self.metrics_log = MetricsLog(self.out_dir, run.tensorboard and self.rank == 0, self.log)

    # ---------------------------------------------------------------- set-up
    def log(self, message: str) -> None:
        if self.rank != 0:
            return
        if self.console is not None:
            self.console.print(message)
        else:
            print(message, flush=True)

    def _build(self) -> None:
        """The frames, the model (on the run's device and dtype; DDP-wrapped when distributed) with its e0 and
        loss normalisation, and the optimiser, in this order (:mod:`geodite.train.initial`)."""
        config = self.config
        frames = training_frames(config, self.out_dir, self.rank)
        self.store, self.train_idx = frames.store, frames.train_idx
        self.valid_store, self.valid_idx, self.train_subset = frames.valid_store, frames.valid_idx, frames.train_subset
        self.log(f"data: {len(self.train_idx)} training frames, {len(self.valid_idx)} validation frames "
                 f"({len(np.unique(self.store.material_of(self.train_idx)))} training materials)")
        if config.loss.atomic_energy_weight > 0:
            labelled = int(self.store.has_atomic_energies(self.train_idx).sum())
            if not labelled:
                raise ValueError(f"config loss.atomic_energy_weight: none of the {len(self.train_idx)} training "
                                 f"frames has per-atom energies (a store converted before format v2 keeps "
                                 f"none: remove {self.store.path} to convert the sources again)")
            self.log(f"per-atom energy labels: {labelled} of {len(self.train_idx)} training frames")
        model, e0, self.norm = initial_model(config, frames, self.log)
        self.collate = GraphCollate(model.cutoff, self.dtype)
        self.e0 = torch.as_tensor(e0)
        self.model = model.to(device=self.device, dtype=self.dtype)
        self.log(f"normalisation: {self.norm.to_dict()}")
        self.ddp = distributed.data_parallel(self.model, self.device)
        self.steps_per_epoch = max(1, len(epoch_batches(len(self.train_idx), self._global_batch(), 0, 0))
                                   // config.optim.grad_accum)
        self.total_steps = config.optim.total_steps or self.steps_per_epoch * config.run.epochs
        self.optimizer, self.scheduler, self.ema, self.zclip = optimiser(config.optim, self.model, self.total_steps)

    def _global_batch(self) -> int:
        return self.config.data.batch_size * self.world

    # ---------------------------------------------------------------- loop
    def train(self) -> dict:
        """Train epoch after epoch until ``run.epochs``, ``run.max_steps`` or ``run.max_minutes``, validate the
        final weights if no validation saw them, export the model (rank 0). Returns the last metrics."""
        run = self.config.run
        started = time.perf_counter()
        while self.epoch < run.epochs:
            if self._train_epoch(started):
                break
        if (run.valid_every or not run.valid_each_epoch) and (not self.history or self.history[-1]["step"] != self.step):
            # stopped mid-epoch or between validations: validate the final weights too (keep_best sees them)
            self._validate_and_record(time.perf_counter(), [])
        if self.rank == 0:
            self.model_path = self.export_model()
        self.metrics_log.close()
        return self.history[-1] if self.history else {}

    def _train_epoch(self, started: float) -> bool:
        """Train the rest of the current epoch (from ``batch_in_epoch``), then close it (:meth:`_end_epoch`);
        True when the step or time budget ran out (then stopped with a checkpoint, mid-epoch or after closing)."""
        run, accum = self.config.run, self.config.optim.grad_accum
        batches = [self.train_idx[b] for b in
                   epoch_batches(len(self.train_idx), self._global_batch(), self.epoch, run.seed)]
        n_batches = (len(batches) // accum) * accum
        self.ddp.train()
        self.epoch_start = time.perf_counter() - self.epoch_seconds
        self.optimizer.zero_grad(set_to_none=True)
        stop = False
        for batch in self._loader(self.store, batches[self.batch_in_epoch:n_batches]):
            loss, parts = self._accumulate(batch.to(self.device))
            if self.batch_in_epoch % accum:
                continue
            grad_norm = self._optimiser_step()
            self._log_step(loss, parts, grad_norm)
            stop = self._out_of_budget(started)
            if run.valid_every and self.step % run.valid_every == 0 and not stop:
                self._validate_and_record(self.epoch_start, self.epoch_losses)
            if run.checkpoint_every and self.step % run.checkpoint_every == 0 or stop:
                self.save_state()
            if stop:
                break
        if stop and self.batch_in_epoch < n_batches:
            return True  # stopped inside the epoch: its checkpoint resumes it there
        self._end_epoch()
        return stop

    def _accumulate(self, batch: Batch) -> tuple[Tensor, dict]:
        """Forward and backward of one micro-batch: its gradients add to those of the optimiser step's other
        ``optim.grad_accum`` − 1 micro-batches (DDP synchronises them on the last one only). Returns the loss
        (times the world size) and its parts."""
        accum = self.config.optim.grad_accum
        last_micro = (self.batch_in_epoch + 1) % accum == 0
        counts = self._counts(batch)
        context = self.ddp.no_sync() if (self.world > 1 and not last_micro) else nullcontext()
        with context:
            out = self.ddp(batch.graph, compute_stress=self.config.loss.weights[2] > 0)
            loss, parts = self.loss(batch, out, counts)
            (loss / accum).backward()
        self.epoch_losses.append(float(loss.detach()) / self.world)
        self.batch_in_epoch += 1
        return loss, parts

    def _counts(self, batch: Batch) -> Tensor:
        """:func:`loss_counts` of the global batch (summed over the ranks)."""
        return distributed.sum_over_ranks(loss_counts(batch), self.device).to(self.device)

    def _optimiser_step(self) -> float:
        """One optimiser step on the accumulated gradients: ZClip, AdamW, EMA update, LR schedule (every step,
        except the plateau scheduler's, which steps on validations). Returns the gradient norm before clipping."""
        grad_norm = self.zclip(self.model.parameters())
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.ema.update(self.model)
        if self.config.optim.scheduler != "plateau":
            self.scheduler.step()
        self.step += 1
        return grad_norm

    def _log_step(self, loss: Tensor, parts: dict, grad_norm: float) -> None:
        """Every ``run.log_every`` steps: a log line (mean loss of the last micro-batches, the last one's parts,
        |g|, LR) and the TensorBoard scalars."""
        every = self.config.run.log_every
        if not every or self.step % every:
            return
        lr = self.optimizer.param_groups[0]["lr"]
        atomic = f" A {parts['atomic']:.4f}" if self.loss.atomic_weight > 0 else ""
        self.log(f"epoch {self.epoch} step {self.step} loss {np.mean(self.epoch_losses[-every:]):.4f} "
                 f"(E {parts['energy']:.4f} F {parts['forces']:.4f} S {parts['stress']:.4f}{atomic}) "
                 f"|g| {grad_norm:.3g} lr {lr:.3g}")
        self.metrics_log.scalars({"train/loss": float(loss) / self.world, "train/lr": lr}, self.step)

    def _out_of_budget(self, started: float) -> bool:
        """Whether ``run.max_steps`` steps are done or ``run.max_minutes`` have passed since ``started`` (on any
        rank: the ranks stop together)."""
        run = self.config.run
        out_of_time = run.max_minutes is not None and (time.perf_counter() - started) / 60 > run.max_minutes
        out_of_time = bool(distributed.sum_over_ranks(torch.tensor([int(out_of_time)]), self.device).item())
        out_of_steps = run.max_steps is not None and self.step >= run.max_steps
        return out_of_time or out_of_steps

    def _end_epoch(self) -> None:
        """Close the current epoch: validate (``run.valid_each_epoch``; the plateau scheduler steps on it), move
        to the next epoch, checkpoint."""
        if self.config.run.valid_each_epoch:
            metrics = self._validate_and_record(self.epoch_start, self.epoch_losses)
            if self.config.optim.scheduler == "plateau":
                self.scheduler.step(metrics["valid_loss"])
        self.epoch += 1
        self.batch_in_epoch = 0
        self.epoch_losses, self.epoch_seconds = [], 0.0
        self.save_state()

    def _loader(self, store: FrameStore, batches: list[np.ndarray], shard: bool = True) -> DataLoader:
        """Rank shard of each global batch (``shard``; else the batches are this rank's already); graphs
        built in DataLoader workers."""
        shards = []
        for global_batch in batches:
            parts = np.array_split(global_batch, self.world) if shard else [global_batch] * self.world
            shards.append([int(i) for i in parts[self.rank]])
        dataset = FrameDataset(store)
        workers = self.config.data.num_workers
        return DataLoader(dataset, batch_sampler=shards, collate_fn=self.collate, num_workers=workers,
                          persistent_workers=False, prefetch_factor=4 if workers > 0 else None)

    # ---------------------------------------------------------------- validation
    def _validate_and_record(self, epoch_start: float, epoch_losses: list[float]) -> dict:
        """Validate (EMA weights), append to the history and metrics.csv; with ``run.keep_best``, save the EMA
        weights when the validation force MAE is the best so far. ``epoch_losses`` give train_loss (NaN when
        empty), ``epoch_start`` (perf_counter seconds) epoch_seconds."""
        metrics = self.validate()
        metrics |= {"epoch": self.epoch, "step": self.step, "train_loss": float(np.mean(epoch_losses[-TRAIN_LOSS_WINDOW:]))
                    if epoch_losses else float("nan"), "lr": self.optimizer.param_groups[0]["lr"],
                    "epoch_seconds": time.perf_counter() - epoch_start}
        self.history.append(metrics)
        self._record(metrics)
        force = metrics.get("valid_force_mae_mev_a", math.inf)
        if self.config.run.keep_best and force < self.best_valid:
            self.best_valid = force
            if self.rank == 0:
                model = self.ema.model_copy(self.model)
                save_atomically({"model": model.state_dict(), "step": self.step, "metrics": metrics},
                                self.out_dir / BEST_FILE)
                self.log(f"best validation force MAE so far: {force:.1f} meV/Å at step {self.step}")
        return metrics

    def _record(self, metrics: dict) -> None:
        """Rank 0: the metrics as a row of metrics.csv (and TensorBoard) and as a table on the console."""
        if self.rank != 0:
            return
        columns = self.metrics_log.append(metrics, self.step)
        if self.console is None:
            self.console = Console()
        self.console.print(metrics_table(metrics, columns))

    def validate(self) -> dict:
        """EMA weights on the validation frames and on a fixed subset of the training frames (``run.train_subset``;
        the pair tells under- from over-fitting): energy/atom (meV/atom), force (meV/Å), stress (meV/Å³) MAE,
        and the validation loss; the raw (optimised) weights on the validation frames too (``raw_valid_*``: an
        EMA lagging behind the raw weights shows there)."""
        if len(self.valid_idx) == 0:
            return {"valid_loss": float("nan")}
        model = self.ema.model_copy(self.model)
        model.eval()
        metrics = self._errors(model, self.valid_store, self.valid_idx, "valid")
        was_training = self.model.training
        self.model.eval()
        raw = self._errors(self.model, self.valid_store, self.valid_idx, "valid")
        self.model.train(was_training)
        metrics |= {f"raw_{key}": value for key, value in raw.items() if key != "valid_loss"}
        if len(self.train_subset):
            train = self._errors(model, self.store, self.train_subset, "train")
            train.pop("train_loss")  # "train_loss" in the history is the running mean of the optimised loss
            metrics |= train
        return metrics

    def _errors(self, model: Geodite, store: FrameStore, indices: np.ndarray, prefix: str) -> dict:
        """MAEs and loss of ``model`` on ``store[indices]`` (each rank measures its shard)."""
        batch_size = self.config.data.batch_size
        shard = np.array_split(indices, self.world)[self.rank]
        batches = [np.asarray(shard[i:i + batch_size]) for i in range(0, len(shard), batch_size)]
        loader = self._loader(store, batches, shard=False) if len(shard) else []
        return validation_errors(model, loader, self.loss, self.device, prefix)

    # ---------------------------------------------------------------- checkpoints
    def state_dict(self) -> dict:
        return {
            "format": STATE_FORMAT,
            "config": self.config.to_dict(),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "ema": self.ema.state_dict(),
            "zclip": self.zclip.state_dict(),
            "rng": rng_state(),
            "step": self.step,
            "epoch": self.epoch,
            "batch_in_epoch": self.batch_in_epoch,
            "epoch_losses": self.epoch_losses[-TRAIN_LOSS_WINDOW:],
            "epoch_seconds": time.perf_counter() - self.epoch_start if self.batch_in_epoch else 0.0,
            "history": self.history,
            "best_valid": self.best_valid,
            "normalisation": self.norm.to_dict(),
            "world_size": self.world,
        }

    def save_state(self) -> None:
        if self.rank == 0:
            save_atomically(self.state_dict(), self.out_dir / STATE_FILE)
        distributed.barrier()

    def _resume(self) -> None:
        path = self.out_dir / STATE_FILE
        if not path.exists():
            return
        state = read_training_state(path)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.ema.load_state_dict(state["ema"])
        self.zclip.load_state_dict(state["zclip"])
        set_rng_state(state["rng"])
        self.step, self.epoch, self.batch_in_epoch = state["step"], state["epoch"], state["batch_in_epoch"]
        self.epoch_losses, self.epoch_seconds = list(state["epoch_losses"]), state["epoch_seconds"]
        self.history = state["history"]
        self.best_valid = state["best_valid"]
        self.norm = Normalisation(**state["normalisation"])
        self.log(f"resumed from {path}: step {self.step}, epoch {self.epoch}, batch {self.batch_in_epoch}")

    def export_model(self, path: str | Path | None = None, metadata: dict | None = None) -> Path:
        """Write the EMA weights in the package's checkpoint format (float64, loadable by load_model)."""
        model = self.ema.model_copy(self.model).double().cpu()
        meta = {"trained_steps": self.step, "epochs": self.epoch, "normalisation": self.norm.to_dict(),
                "history": self.history[-1:] if self.history else []}
        best = self.out_dir / BEST_FILE
        if self.config.run.keep_best and best.exists():
            saved = read_training_state(best)
            model.load_state_dict({k: v.to(torch.float64) if v.is_floating_point() else v
                                   for k, v in saved["model"].items()})
            meta |= {"trained_steps": saved["step"], "total_steps_run": self.step, "selected": "best validation "
                     "force MAE (EMA)", "history": [saved["metrics"]]}
        meta |= dict(metadata or {})
        return save_checkpoint(model, path or (self.out_dir / MODEL_FILE), metadata=meta)



def train(config: TrainConfig | dict | str | Path, console: Console | None = None) -> dict:
    """Run (or resume) training described by a config object, dict or YAML path. Returns the last epoch's
    metrics (rank 0)."""
    if isinstance(config, (str, Path)):
        config = TrainConfig.from_yaml(config)
    elif isinstance(config, dict):
        config = TrainConfig.from_dict(config)
    trainer = Trainer(config, console=console)
    return trainer.train()
