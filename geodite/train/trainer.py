"""The Geodite trainer: MPtrj-scale data from a memory-mapped store, the published loss and optimiser,
exact resume from checkpoints, DistributedDataParallel (torchrun; NCCL on GPU, gloo on CPU), fine-tuning.

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

import csv
import math
import os
import random
import time
import typing
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor

from geodite.data.dataset import Batch, FrameDataset, FrameStore, GraphCollate, split_by_material
from geodite.graph import DTYPES
from geodite.train.optim import EMA, LOSS_FUNCTIONS, Normalisation, ZClip, elementwise_loss, warmup_linear_decay

STATE_FILE = "checkpoint.pt"
BEST_FILE = "best_ema.pt"
MODEL_FILE = "model.pt"
METRICS_FILE = "metrics.csv"
#: format of checkpoint.pt: tensors and plain containers only (read with torch.load(weights_only=True))
STATE_FORMAT = "geodite-train-state-v2"
#: train_loss in the metrics is the mean loss of the epoch's last this many micro-batches
TRAIN_LOSS_WINDOW = 200


# --------------------------------------------------------------------------------------------- config


@dataclass
class ModelSection:
    num_channels: int = 192
    num_layers: int = 4
    num_heads: int = 8
    cutoff: float = 6.0
    num_rbf: int = 12
    attn_dropout: float = 0.2
    init_from: str | None = None  # checkpoint path or "geodite"/"geodite-mp": fine-tuning


@dataclass
class DataSection:
    train: list[str] = field(default_factory=list)  # store dirs, MPtrj JSON(.gz), MBD extxyz zip, extxyz, ASE db
    store_dir: str | None = None  # where converted stores go (default: <out_dir>/store)
    data_dir: str | None = None  # local copies of downloadable sets (e.g. MPtrj JSON)
    valid: list[str] = field(default_factory=list)  # explicit validation sources (else split by material)
    valid_fraction: float = 0.1
    split_seed: int = 0
    batch_size: int = 6  # frames per rank per micro-batch
    num_workers: int = 0
    max_frames: int | None = None


@dataclass
class LossSection:
    weights: list[float] = field(default_factory=lambda: [1.0, 1.0, 1.0])  # E:F:S
    function: str = "huber"  # elementwise loss of normalised targets: "huber" (published) or "mse"
    huber_delta: float = 0.01
    normalisation: str = "data"  # "data": computed from the training frames; "published"; "model" (fine-tune)
    # "model": the model's isolated-atom e0 (MPtrj PBE); "isolated": the energies of the single-atom frames of
    # the training data (a teacher's isolated atoms; other elements keep the model's); "fit": least squares on
    # the data (not an isolated-atom limit: warned about)
    e0: str = "model"
    e0_tolerance: float = 0.05  # eV: largest |model − data| allowed at the isolated-atom limit (else refused)
    energy_mean: float | None = None
    energy_std: float | None = None
    force_std: float | None = None
    stress_mean: float | None = None
    stress_std: float | None = None


@dataclass
class OptimSection:
    lr: float = 4.5e-4  # peak
    lr_start: float = 1e-4
    warmup_steps: int = 2000
    total_steps: int | None = None  # default: epochs × steps per epoch
    lr_end: float = 0.0
    scheduler: str = "warmup-linear"  # or "plateau" (fine-tuning), "constant"
    plateau_factor: float = 0.5
    plateau_patience: int = 2
    weight_decay: float = 0.01
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    ema_decay: float = 0.995
    ema_warmup: bool = True  # decay of update t: min(ema_decay, (1 + t)/(10 + t))
    zclip_alpha: float = 0.97
    zclip_z: float = 2.5
    zclip_warmup: int = 25
    grad_accum: int = 1


@dataclass
class RunSection:
    out_dir: str = "runs/geodite"
    epochs: int = 1
    seed: int = 0
    dtype: str = "float32"
    device: str = "auto"  # auto: cuda:<local_rank> if available, else cpu
    checkpoint_every: int = 500  # optimiser steps (also at every epoch end)
    log_every: int = 50
    tensorboard: bool = False
    num_threads: int | None = None
    max_steps: int | None = None  # stop after this many optimiser steps (time-boxed runs)
    max_minutes: float | None = None  # stop (with a checkpoint) after this wall time
    valid_every: int | None = None  # also validate every this many optimiser steps (besides epoch ends)
    valid_each_epoch: bool = True  # False: only every valid_every steps and at the end (short epochs)
    keep_best: bool = False  # export the EMA weights of the best validation force MAE, not the last ones
    train_subset: int = 256  # training frames also measured at each validation (train_*_mae columns); 0: off


@dataclass
class TrainConfig:
    model: ModelSection = field(default_factory=ModelSection)
    data: DataSection = field(default_factory=DataSection)
    loss: LossSection = field(default_factory=LossSection)
    optim: OptimSection = field(default_factory=OptimSection)
    run: RunSection = field(default_factory=RunSection)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "TrainConfig":
        """The config from {section: {key: value}}; every value checked (type, range, choice), ConfigError
        naming the first bad key and value otherwise."""
        if not isinstance(values, dict):
            raise ConfigError(f"config: expected sections (model, data, loss, optim, run), got {values!r}")
        sections = {f.name: f.type for f in fields(cls)}
        unknown = set(values) - set(sections)
        if unknown:
            raise ConfigError(f"unknown config sections: {sorted(unknown)}")
        kwargs = {}
        for name, section_cls in (("model", ModelSection), ("data", DataSection), ("loss", LossSection),
                                  ("optim", OptimSection), ("run", RunSection)):
            given = values.get(name) or {}
            if not isinstance(given, dict):
                raise ConfigError(f"config {name}: expected a mapping of keys, got {given!r}")
            known = {f.name for f in fields(section_cls)}
            bad = set(given) - known
            if bad:
                raise ConfigError(f"unknown keys in [{name}]: {sorted(bad)}")
            types = typing.get_type_hints(section_cls)
            kwargs[name] = section_cls(**{key: _typed(value, types[key], f"{name}.{key}")
                                          for key, value in given.items()})
        config = cls(**kwargs)
        config.check()
        return config

    def check(self) -> None:
        """ConfigError for the first value out of its range or choices, or keys that disagree."""
        for section in fields(self):
            for key, value in asdict(getattr(self, section.name)).items():
                where = f"{section.name}.{key}"
                _check_value(where, value)
        m, loss = self.model, self.loss
        if m.num_channels % m.num_heads:
            raise ConfigError(f"config model.num_heads: {m.num_heads} does not divide model.num_channels "
                              f"{m.num_channels}")
        if sum(loss.weights) <= 0:
            raise ConfigError(f"config loss.weights: {loss.weights} weighs no term (energy, forces, stress)")
        if self.run.device != "auto":
            from geodite.calculator import torch_device

            try:
                torch_device(self.run.device)
            except ValueError as error:
                raise ConfigError(f"config run.device: {error}") from None

    @classmethod
    def from_yaml(cls, path: str | Path) -> "TrainConfig":
        import yaml

        return cls.from_dict(yaml.safe_load(Path(path).read_text()) or {})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class ConfigError(ValueError):
    """A training config value of the wrong type, out of range or not among its choices (one line)."""


_Rule = tuple[Callable[[Any], bool], str]
_POSITIVE: _Rule = (lambda v: v > 0, "> 0")
_NON_NEGATIVE: _Rule = (lambda v: v >= 0, ">= 0")
_AT_LEAST_ONE: _Rule = (lambda v: v >= 1, ">= 1")
_FRACTION: _Rule = (lambda v: 0 <= v < 1, "in [0, 1)")
_OPEN_FRACTION: _Rule = (lambda v: 0 < v < 1, "in (0, 1)")

#: ranges of the numeric config values (of each item, for lists); None (where allowed) is never checked
RANGES: dict[str, _Rule] = {
    "model.num_channels": _AT_LEAST_ONE, "model.num_layers": _AT_LEAST_ONE, "model.num_heads": _AT_LEAST_ONE,
    "model.cutoff": _POSITIVE, "model.num_rbf": _AT_LEAST_ONE, "model.attn_dropout": _FRACTION,
    "data.valid_fraction": _FRACTION, "data.split_seed": _NON_NEGATIVE, "data.batch_size": _AT_LEAST_ONE,
    "data.num_workers": _NON_NEGATIVE, "data.max_frames": _AT_LEAST_ONE,
    "loss.weights": _NON_NEGATIVE, "loss.huber_delta": _POSITIVE, "loss.energy_std": _POSITIVE,
    "loss.force_std": _POSITIVE, "loss.stress_std": _POSITIVE, "loss.e0_tolerance": _POSITIVE,
    "optim.lr": _POSITIVE, "optim.lr_start": _NON_NEGATIVE, "optim.warmup_steps": _NON_NEGATIVE,
    "optim.total_steps": _AT_LEAST_ONE, "optim.lr_end": _NON_NEGATIVE, "optim.plateau_factor": _OPEN_FRACTION,
    "optim.plateau_patience": _NON_NEGATIVE, "optim.weight_decay": _NON_NEGATIVE, "optim.betas": _FRACTION,
    "optim.ema_decay": _FRACTION, "optim.zclip_alpha": _OPEN_FRACTION, "optim.zclip_z": _POSITIVE,
    "optim.zclip_warmup": _NON_NEGATIVE, "optim.grad_accum": _AT_LEAST_ONE,
    "run.epochs": _AT_LEAST_ONE, "run.seed": _NON_NEGATIVE, "run.checkpoint_every": _NON_NEGATIVE,
    "run.log_every": _NON_NEGATIVE, "run.num_threads": _AT_LEAST_ONE, "run.max_steps": _AT_LEAST_ONE,
    "run.max_minutes": _POSITIVE, "run.valid_every": _AT_LEAST_ONE, "run.train_subset": _NON_NEGATIVE,
}
#: the allowed values of the config's choice keys
CHOICES: dict[str, tuple[str, ...]] = {
    "loss.normalisation": ("data", "model", "published"),
    "loss.e0": ("model", "fit", "isolated"),
    "loss.function": ("huber", "mse"),
    "optim.scheduler": ("warmup-linear", "plateau", "constant"),
    "run.dtype": ("float32", "float64"),
}
#: the number of items of the config's list values of fixed length
LENGTHS: dict[str, int] = {"loss.weights": 3, "optim.betas": 2}


def _typed(value: Any, annotation: Any, where: str) -> Any:
    """``value`` as the annotated type of config key ``where``, else ConfigError. Floats accept integers and
    numeric strings (YAML 1.1 reads 1e-4, without a decimal point, as a string)."""
    args = typing.get_args(annotation)
    if type(None) in args:
        if value is None:
            return None
        annotation = next(arg for arg in args if arg is not type(None))
    if typing.get_origin(annotation) is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"config {where}: expected a list, got {value!r}")
        return [_typed(item, typing.get_args(annotation)[0], where) for item in value]
    if annotation is bool and isinstance(value, bool):
        return value
    if annotation is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if annotation is str and isinstance(value, str):
        return value
    if annotation is float and not isinstance(value, bool):
        try:
            number = float(value) if isinstance(value, (int, float, str)) else math.nan
        except ValueError:
            number = math.nan
        if math.isfinite(number):
            return number
    expected = {bool: "true or false", int: "a whole number", float: "a finite number", str: "a string"}
    raise ConfigError(f"config {where}: expected {expected.get(annotation, annotation)}, got {value!r}")


def _check_value(where: str, value: Any) -> None:
    """ConfigError if config value ``value`` of key ``where`` is outside RANGES, CHOICES or LENGTHS."""
    if value is None:
        return
    if where in LENGTHS and len(value) != LENGTHS[where]:
        raise ConfigError(f"config {where}: expected {LENGTHS[where]} values, got {value!r}")
    if where in CHOICES and value not in CHOICES[where]:
        raise ConfigError(f"config {where}: {value!r} is not one of {', '.join(CHOICES[where])}")
    if where in RANGES:
        within, description = RANGES[where]
        if not all(within(item) for item in (value if isinstance(value, list) else [value])):
            raise ConfigError(f"config {where}: {value!r} is not {description}")


FINETUNE_DEFAULTS = {
    "loss": {"weights": [1.0, 5.0, 1.0], "normalisation": "model"},
    "optim": {"lr": 3e-5, "scheduler": "plateau", "warmup_steps": 0, "lr_start": 1.0},
}


# --------------------------------------------------------------------------------------------- helpers


def _is_dist() -> bool:
    return dist.is_available() and dist.is_initialized()


def _rank() -> int:
    return dist.get_rank() if _is_dist() else 0


def _world() -> int:
    return dist.get_world_size() if _is_dist() else 1


def setup_distributed(device_pref: str = "auto") -> torch.device:
    """Initialise the process group from torchrun's environment (WORLD_SIZE > 1); choose the device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() and device_pref in ("auto", "cuda")
    if world > 1 and not _is_dist():
        dist.init_process_group("nccl" if use_cuda else "gloo")
    if device_pref not in ("auto", "cuda"):
        return torch.device(device_pref)
    if use_cuda:
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def epoch_batches(num_frames: int, batch: int, epoch: int, seed: int) -> list[np.ndarray]:
    """Global batches of an epoch: a permutation drawn from (seed, epoch); the last partial batch dropped
    when there is more than one batch (every rank must get equal shards)."""
    order = np.random.default_rng([seed, epoch]).permutation(num_frames)
    n_full = num_frames // batch
    if n_full == 0:
        return [order]
    return [order[i * batch:(i + 1) * batch] for i in range(n_full)]


def _rng_state() -> dict:
    """The torch, numpy, python (and CUDA) generator states as tensors and plain containers."""
    numpy_state = np.random.get_state(legacy=False)  # MT19937: key [624] uint32, pos, cached Gaussian
    state = {"torch": torch.get_rng_state(),
             "numpy": {"key": torch.from_numpy(numpy_state["state"]["key"].astype(np.int64)),
                       "pos": int(numpy_state["state"]["pos"]), "has_gauss": int(numpy_state["has_gauss"]),
                       "gauss": float(numpy_state["gauss"])},
             "python": random.getstate()}  # (version, tuple of ints, gauss or None)
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    numpy_state = state["numpy"]
    np.random.set_state({"bit_generator": "MT19937",
                         "state": {"key": numpy_state["key"].numpy().astype(np.uint32), "pos": numpy_state["pos"]},
                         "has_gauss": numpy_state["has_gauss"], "gauss": numpy_state["gauss"]})
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class ResumeError(ValueError):
    """A training state file that is refused: unreadable, of another format, or holding more than tensors and
    plain data (nothing of it is executed)."""


def read_training_state(path: Path) -> dict:
    """checkpoint.pt or best_ema.pt of a run, read with torch.load(weights_only=True), else ResumeError."""
    from geodite.checkpoints import CheckpointError, load_weights_only

    try:
        state = load_weights_only(path)
    except CheckpointError as error:
        raise ResumeError(f"{error}: move it away to start afresh") from None
    if path.name == STATE_FILE and (not isinstance(state, dict) or state.get("format") != STATE_FORMAT):
        found = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise ResumeError(f"{path}: format {found!r}, not {STATE_FORMAT!r}: move it away to start afresh")
    return state


def compute_normalisation(store: FrameStore, indices: np.ndarray, e0: np.ndarray, max_frames: int = 200_000,
                          seed: int = 0) -> Normalisation:
    """μ_E, σ_E of (E − Σe0)/N (3σ-clipped); σ_F = RMS force component; stress mean/std over components (on at most
    ``max_frames`` training frames)."""
    rng = np.random.default_rng(seed)
    idx = indices if len(indices) <= max_frames else rng.choice(indices, max_frames, replace=False)
    per_atom, force_sq, force_n, stresses = [], 0.0, 0, []
    for i in np.sort(idx):
        frame = store[int(i)]
        per_atom.append((frame.energy - e0[frame.numbers].sum()) / len(frame.numbers))
        if frame.forces is not None and np.isfinite(frame.forces).all():
            force_sq += float((frame.forces ** 2).sum())
            force_n += frame.forces.size
        if frame.stress is not None and np.isfinite(frame.stress).all() and frame.pbc.all():
            stresses.append(frame.stress.reshape(-1))
    per_atom = np.array(per_atom)
    # 3σ clipping (two passes): a few compressed dimers must not set the scale of every structure
    keep = np.ones(len(per_atom), dtype=bool)
    for _ in range(2):
        keep = np.abs(per_atom - per_atom[keep].mean()) <= 3 * per_atom[keep].std() + 1e-12
    per_atom = per_atom[keep]
    stress = np.concatenate(stresses) if stresses else np.zeros(1)
    return Normalisation(
        energy_mean=float(per_atom.mean()),
        energy_std=float(per_atom.std()) if len(per_atom) > 1 and per_atom.std() > 1e-8 else 1.0,
        force_std=math.sqrt(force_sq / force_n) if force_n and force_sq > 0 else 1.0,
        stress_mean=float(stress.mean()),
        stress_std=float(stress.std()) if stress.std() > 1e-12 else 1.0,
    )


def fit_e0(store: FrameStore, indices: np.ndarray, e0: np.ndarray, max_frames: int = 200_000,
           seed: int = 0) -> np.ndarray:
    """Per-element reference energies by least squares of E on composition over training frames (two
    passes; frames with |residual| > 3σ per atom dropped from the second). Elements absent from the data
    keep their value in ``e0``."""
    rng = np.random.default_rng(seed)
    idx = indices if len(indices) <= max_frames else rng.choice(indices, max_frames, replace=False)
    X = np.zeros((len(idx), len(e0)))
    y = np.zeros(len(idx))
    n = np.zeros(len(idx))
    for row, i in enumerate(np.sort(idx)):
        frame = store[int(i)]
        np.add.at(X[row], frame.numbers, 1.0)
        y[row], n[row] = frame.energy, len(frame.numbers)
    cols = X.sum(0) > 0
    keep = np.ones(len(idx), dtype=bool)
    for _ in range(2):
        coef, *_ = np.linalg.lstsq(X[keep][:, cols], y[keep], rcond=None)
        resid = (y - X[:, cols] @ coef) / n
        keep = np.abs(resid - resid[keep].mean()) < 3 * resid[keep].std() + 1e-12
    fitted = e0.copy()
    fitted[np.flatnonzero(cols)] = coef
    return fitted


#: Å: a single atom whose nearest periodic image is at least this far is isolated (wider than the cutoffs of
#: the teachers and students used here); a one-atom crystal cell is not
ISOLATION_DISTANCE = 6.0


def isolated_atom_energies(store: FrameStore, indices: np.ndarray,
                           min_distance: float = ISOLATION_DISTANCE) -> dict[int, float]:
    """{Z: energy (eV)} of the isolated atoms among ``store[indices]``: frames of one atom with no periodic
    image within ``min_distance`` Å (the data's isolated-atom limit; the first frame of an element wins)."""
    from ase.neighborlist import neighbor_list

    sizes = store.num_atoms_per_frame
    energies: dict[int, float] = {}
    for i in np.asarray(indices)[sizes[np.asarray(indices)] == 1]:
        frame = store[int(i)]
        if len(neighbor_list("i", frame.to_atoms(), min_distance)) == 0:
            energies.setdefault(int(frame.numbers[0]), float(frame.energy))
    return energies


def isolated_limit_mismatches(model_isolated: np.ndarray, data_isolated: dict[int, float],
                              tolerance: float) -> list[str]:
    """"symbol: model X eV, data Y eV" for each element whose isolated-atom energy in the model
    (``model_isolated[Z]`` = e0 + energy_shift, eV) is more than ``tolerance`` eV from the data's single-atom
    frame. A model whose isolated atoms sit eV away from the data's must change its energy by as much between
    the bonded region and the cutoff: spurious forces on every atom with neighbours near the cutoff."""
    from ase.data import chemical_symbols

    return [f"{chemical_symbols[z]}: model {model_isolated[z]:.3f} eV, data {energy:.3f} eV"
            for z, energy in sorted(data_isolated.items()) if abs(model_isolated[z] - energy) > tolerance]


# --------------------------------------------------------------------------------------------- trainer


class Trainer:
    def __init__(self, config: TrainConfig, console=None):
        self.config = config
        self.console = console
        run = config.run
        if run.num_threads:
            torch.set_num_threads(run.num_threads)
        self.device = setup_distributed(run.device)
        self.rank, self.world = _rank(), _world()
        self.dtype = DTYPES[run.dtype]
        self.out_dir = Path(run.out_dir)
        if self.rank == 0:
            self.out_dir.mkdir(parents=True, exist_ok=True)
        torch.manual_seed(run.seed)
        np.random.seed(run.seed)
        random.seed(run.seed)

        self._build_data()
        self._build_model()
        self._build_optim()
        self.step = 0
        self.epoch = 0
        self.batch_in_epoch = 0
        self.epoch_losses: list[float] = []  # of the current epoch's micro-batches (kept by checkpoints)
        self.epoch_seconds = 0.0  # of the current epoch before this process took it up (from a checkpoint)
        self.epoch_start = time.perf_counter()
        self.history: list[dict] = []
        self.best_valid = math.inf
        self._resume()

    # ---------------------------------------------------------------- set-up
    def log(self, message: str) -> None:
        if self.rank != 0:
            return
        if self.console is not None:
            self.console.print(message)
        else:
            print(message, flush=True)

    def _open_sources(self, sources: list[str], name: str) -> FrameStore:
        from geodite.data.mptrj import open_store

        store_root = Path(self.config.data.store_dir or (self.out_dir / "store"))
        return open_store(sources, store_root / name, data_dir=self.config.data.data_dir,
                          convert=self.rank == 0, barrier=dist.barrier if _is_dist() else None)

    def _build_data(self) -> None:
        data = self.config.data
        if not data.train:
            raise ValueError("config data.train lists no training data")
        self.store = self._open_sources(data.train, "train")
        if data.valid:
            self.valid_store = self._open_sources(data.valid, "valid")
            self.train_idx = np.arange(len(self.store))
            self.valid_idx = np.arange(len(self.valid_store))
        else:
            self.valid_store = self.store
            self.train_idx, self.valid_idx = split_by_material(self.store, data.valid_fraction, data.split_seed)
        if data.max_frames is not None:
            self.train_idx = self.train_idx[: data.max_frames]
        subset = min(self.config.run.train_subset, len(self.train_idx))
        self.train_subset = np.sort(np.random.default_rng(data.split_seed).choice(self.train_idx, subset,
                                                                                 replace=False))
        if self.rank == 0:
            self.log(f"data: {len(self.train_idx)} training frames, {len(self.valid_idx)} validation frames "
                     f"({len(np.unique(self.store.material_of(self.train_idx)))} training materials)")
        self.collate = GraphCollate(self.config.model.cutoff if not self.config.model.init_from else 0.0,
                                    self.dtype)

    def _build_model(self) -> None:
        from geodite.model import Geodite, GeoditeConfig

        m, loss = self.config.model, self.config.loss
        if m.init_from:
            from geodite.checkpoints import load_model

            model = load_model(m.init_from)
            values = model.config.to_dict() | {"attn_dropout": m.attn_dropout}
            fresh = Geodite(GeoditeConfig.from_dict(values)).double()
            fresh.load_state_dict(model.state_dict())
            model = fresh
            self.collate.cutoff = model.cutoff
            self.log(f"fine-tuning from {m.init_from} ({sum(p.numel() for p in model.parameters())} parameters)")
        else:
            model = Geodite(GeoditeConfig(num_channels=m.num_channels, num_layers=m.num_layers,
                                          num_heads=m.num_heads, cutoff=m.cutoff, num_rbf=m.num_rbf,
                                          attn_dropout=m.attn_dropout))
        if loss.function not in LOSS_FUNCTIONS:
            raise ValueError(f"unknown loss.function {loss.function!r} (one of {', '.join(LOSS_FUNCTIONS)})")
        e0 = model.e0.detach().cpu().numpy().astype(np.float64)
        isolated = isolated_atom_energies(self.store, self.train_idx)
        if loss.e0 not in ("model", "fit", "isolated"):
            raise ValueError(f"unknown e0 {loss.e0!r} (model, isolated, fit)")
        if not m.init_from and loss.e0 == "fit":
            e0 = fit_e0(self.store, self.train_idx, e0)
            self.log("e0 fitted to the training energies (least squares on composition)")
            if not isolated:
                self.log("warning: e0 fitted by least squares is not an isolated-atom limit and the data have no "
                         "single-atom frames to check it against: dimers and atoms near the cutoff may carry "
                         "spurious energies and forces (use e0: isolated with single-atom frames)")
        elif not m.init_from and loss.e0 == "isolated":
            if not isolated:
                raise ValueError("loss.e0 'isolated' needs single-atom frames in the training data (none found)")
            e0[list(isolated)] = list(isolated.values())
            self.log(f"e0 from the {len(isolated)} single-atom frames of the training data")
        model.e0.copy_(torch.as_tensor(e0))
        if loss.normalisation == "data":
            norm = compute_normalisation(self.store, self.train_idx, e0, seed=self.config.data.split_seed)
        elif loss.normalisation == "model":
            norm = Normalisation(energy_mean=float(model.energy_shift), energy_std=float(model.energy_scale))
        elif loss.normalisation == "published":
            norm = Normalisation(energy_mean=float(model.energy_shift), energy_std=float(model.energy_scale))
        else:
            raise ValueError(f"unknown normalisation {loss.normalisation!r} (data, model, published)")
        for key in ("energy_mean", "energy_std", "force_std", "stress_mean", "stress_std"):
            if getattr(loss, key) is not None:
                setattr(norm, key, float(getattr(loss, key)))
        self.norm = norm
        if not m.init_from:
            # μ_E stays in the loss only (it cancels there): a shift in the model would move every isolated atom
            # away from e0, the limit the vacuum embedding pins it to
            model.energy_shift.fill_(0.0)
            model.energy_scale.fill_(norm.energy_std)
        bad = isolated_limit_mismatches(e0 + float(model.energy_shift), isolated, loss.e0_tolerance)
        if bad:
            raise ValueError(f"the model's isolated atoms disagree with the data's single-atom frames by more than "
                             f"{loss.e0_tolerance} eV ({len(bad)} elements; {'; '.join(bad[:3])}): set loss.e0 to "
                             f"'isolated' or train on data with the same isolated-atom limit")
        self.e0 = torch.as_tensor(e0)
        self.model = model.to(device=self.device, dtype=self.dtype)
        self.log(f"normalisation: {norm.to_dict()}")
        if self.world > 1:
            from torch.nn.parallel import DistributedDataParallel

            # broadcasts rank 0's initial weights so every rank starts identical
            self.ddp = DistributedDataParallel(self.model, device_ids=[self.device.index]
                                               if self.device.type == "cuda" else None,
                                               broadcast_buffers=True)
        else:
            self.ddp = self.model

    def _build_optim(self) -> None:
        o = self.config.optim
        decay, no_decay = [], []
        for name, param in self.model.named_parameters():
            (no_decay if param.ndim <= 1 else decay).append(param)
        self.optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": o.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=o.lr, betas=tuple(o.betas))
        self.steps_per_epoch = max(1, len(epoch_batches(len(self.train_idx), self._global_batch(), 0, 0))
                                   // o.grad_accum)
        total = o.total_steps or self.steps_per_epoch * self.config.run.epochs
        self.total_steps = total
        if o.scheduler == "warmup-linear":
            self.scheduler = warmup_linear_decay(self.optimizer, o.lr_start / o.lr, o.warmup_steps, total,
                                                 o.lr_end / o.lr)
        elif o.scheduler == "plateau":
            if not self.config.run.valid_each_epoch:
                raise ValueError("the plateau scheduler steps on each epoch's validation loss: keep "
                                 "run.valid_each_epoch true")
            self.scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
                self.optimizer, factor=o.plateau_factor, patience=o.plateau_patience)
        elif o.scheduler == "constant":
            self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda step: 1.0)
        else:
            raise ValueError(f"unknown scheduler {o.scheduler!r}")
        self.ema = EMA(self.model, o.ema_decay, warmup=o.ema_warmup)
        self.zclip = ZClip(o.zclip_alpha, o.zclip_z, o.zclip_warmup)

    def _global_batch(self) -> int:
        return self.config.data.batch_size * self.world

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
            "rng": _rng_state(),
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
            path = self.out_dir / STATE_FILE
            tmp = path.with_suffix(".tmp")
            torch.save(self.state_dict(), tmp)
            os.replace(tmp, path)
        if _is_dist():
            dist.barrier()

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
        _set_rng_state(state["rng"])
        self.step, self.epoch, self.batch_in_epoch = state["step"], state["epoch"], state["batch_in_epoch"]
        self.epoch_losses, self.epoch_seconds = list(state["epoch_losses"]), state["epoch_seconds"]
        self.history = state["history"]
        self.best_valid = state["best_valid"]
        self.norm = Normalisation(**state["normalisation"])
        self.log(f"resumed from {path}: step {self.step}, epoch {self.epoch}, batch {self.batch_in_epoch}")

    def export_model(self, path: str | Path | None = None, metadata: dict | None = None) -> Path:
        """Write the EMA weights in the package's checkpoint format (float64, loadable by load_model)."""
        from geodite.checkpoints import save_checkpoint

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

    # ---------------------------------------------------------------- loss
    def _targets_per_atom(self, batch: Batch, energy: Tensor) -> Tensor:
        graph = batch.graph
        n = graph.num_atoms.to(torch.float64)
        e0 = self.e0.to(graph.z.device)[graph.z]
        e0_sum = torch.zeros(graph.num_graphs, dtype=torch.float64, device=graph.z.device).index_add_(
            0, graph.batch, e0)
        return ((energy.to(torch.float64) - e0_sum) / n - self.norm.energy_mean) / self.norm.energy_std

    def loss(self, batch: Batch, out: dict[str, Tensor], counts: Tensor) -> tuple[Tensor, dict]:
        """Σ over the local shard of the elementwise loss terms (``loss.function``), divided by the global counts [frames, force components,
        stress components], times the world size (DDP averages gradients)."""
        function, delta = self.config.loss.function, self.config.loss.huber_delta

        def elementwise(pred: Tensor, true: Tensor) -> Tensor:
            return elementwise_loss(pred, true, function, delta)

        w_e, w_f, w_s = self.config.loss.weights
        pred_e = self._targets_per_atom(batch, out["energy"]).to(self.dtype)
        true_e = self._targets_per_atom(batch, batch.energy).to(self.dtype)
        loss_e = elementwise(pred_e, true_e).sum() / counts[0]
        atom_mask = batch.has_forces[batch.graph.batch]
        loss_f = (elementwise(out["forces"] / self.norm.force_std, batch.forces / self.norm.force_std)
                  * atom_mask[:, None]).sum() / counts[1].clamp(min=1)
        total = w_e * loss_e + w_f * loss_f
        loss_s = torch.zeros((), dtype=self.dtype, device=total.device)
        if w_s > 0 and "stress" in out:
            pred_s = (out["stress"] - self.norm.stress_mean) / self.norm.stress_std
            true_s = (batch.stress - self.norm.stress_mean) / self.norm.stress_std
            loss_s = (elementwise(pred_s, true_s) * batch.has_stress[:, None, None]).sum() / counts[2].clamp(min=1)
            total = total + w_s * loss_s
        parts = {"energy": float(loss_e.detach()) * self.world, "forces": float(loss_f.detach()) * self.world,
                 "stress": float(loss_s.detach()) * self.world}
        return total * self.world, parts

    def _counts(self, batch: Batch) -> Tensor:
        atoms_with_forces = batch.has_forces[batch.graph.batch].sum()
        counts = torch.tensor([batch.graph.num_graphs, 3 * int(atoms_with_forces), 9 * int(batch.has_stress.sum())],
                              dtype=torch.float64)
        if _is_dist():
            reduce_device = self.device if self.device.type == "cuda" else torch.device("cpu")
            counts = counts.to(reduce_device)
            dist.all_reduce(counts)
            counts = counts.cpu()
        return counts.to(self.device)

    # ---------------------------------------------------------------- loop
    def _loader(self, store: FrameStore, batches: list[np.ndarray], shard: bool = True):
        """Rank shard of each global batch (``shard``; else the batches are this rank's already); graphs
        built in DataLoader workers."""
        shards = []
        for global_batch in batches:
            parts = np.array_split(global_batch, self.world) if shard else [global_batch] * self.world
            shards.append([int(i) for i in parts[self.rank]])
        dataset = FrameDataset(store)
        workers = self.config.data.num_workers
        return torch.utils.data.DataLoader(dataset, batch_sampler=shards, collate_fn=self.collate,
                                           num_workers=workers, persistent_workers=False,
                                           prefetch_factor=4 if workers > 0 else None)

    def train(self) -> dict:
        run, o = self.config.run, self.config.optim
        global_batch = self._global_batch()
        start_time = time.perf_counter()
        writer = None
        if run.tensorboard and self.rank == 0:
            try:
                from torch.utils.tensorboard import SummaryWriter

                writer = SummaryWriter(str(self.out_dir / "tensorboard"))
            except ImportError:
                self.log("tensorboard not installed; logging to CSV only")
        stop = False
        while self.epoch < run.epochs and not stop:
            batches = [self.train_idx[b] for b in
                       epoch_batches(len(self.train_idx), global_batch, self.epoch, run.seed)]
            n_batches = (len(batches) // o.grad_accum) * o.grad_accum
            remaining = batches[self.batch_in_epoch:n_batches]
            self.ddp.train()
            epoch_losses = self.epoch_losses  # the same list: resumed mid-epoch, it holds the earlier losses
            tic = self.epoch_start = time.perf_counter() - self.epoch_seconds
            self.optimizer.zero_grad(set_to_none=True)
            for offset, batch in enumerate(self._loader(self.store, remaining)):
                b = self.batch_in_epoch
                batch = batch.to(self.device)
                last_micro = (b + 1) % o.grad_accum == 0
                counts = self._counts(batch)
                context = self.ddp.no_sync() if (self.world > 1 and not last_micro) else _nullcontext()
                with context:
                    out = self.ddp(batch.graph, compute_stress=self.config.loss.weights[2] > 0)
                    loss, parts = self.loss(batch, out, counts)
                    (loss / o.grad_accum).backward()
                epoch_losses.append(float(loss.detach()) / self.world)
                self.batch_in_epoch = b + 1
                if not last_micro:
                    continue
                grad_norm = self.zclip(self.model.parameters())
                self.optimizer.step()
                self.optimizer.zero_grad(set_to_none=True)
                self.ema.update(self.model)
                if o.scheduler != "plateau":
                    self.scheduler.step()
                self.step += 1
                if run.log_every and self.step % run.log_every == 0:
                    rate = self.batch_in_epoch / max(1e-9, time.perf_counter() - tic)
                    self.log(f"epoch {self.epoch} step {self.step} loss {np.mean(epoch_losses[-run.log_every:]):.4f} "
                             f"(E {parts['energy']:.4f} F {parts['forces']:.4f} S {parts['stress']:.4f}) "
                             f"|g| {grad_norm:.3g} lr {self.optimizer.param_groups[0]['lr']:.3g}")
                    if writer:
                        writer.add_scalar("train/loss", float(loss) / self.world, self.step)
                        writer.add_scalar("train/lr", self.optimizer.param_groups[0]["lr"], self.step)
                out_of_time = run.max_minutes is not None and (time.perf_counter() - start_time) / 60 > run.max_minutes
                out_of_steps = run.max_steps is not None and self.step >= run.max_steps
                if _is_dist():
                    flag = torch.tensor([int(out_of_time)], device=self.device if self.device.type == "cuda" else "cpu")
                    dist.all_reduce(flag)
                    out_of_time = bool(flag.item())
                if run.valid_every and self.step % run.valid_every == 0 and not (out_of_time or out_of_steps):
                    self._validate_and_record(tic, epoch_losses, writer)
                if run.checkpoint_every and self.step % run.checkpoint_every == 0 or out_of_time or out_of_steps:
                    self.save_state()
                if out_of_time or out_of_steps:
                    stop = True
                    break
            if stop and self.batch_in_epoch < n_batches:
                break
            if run.valid_each_epoch:
                metrics = self._validate_and_record(tic, epoch_losses, writer)
                if o.scheduler == "plateau":
                    self.scheduler.step(metrics["valid_loss"])
            self.epoch += 1
            self.batch_in_epoch = 0
            self.epoch_losses, self.epoch_seconds = [], 0.0
            self.save_state()
        if (run.valid_every or not run.valid_each_epoch) and (not self.history or self.history[-1]["step"] != self.step):
            # stopped mid-epoch or between validations: validate the final weights too (keep_best sees them)
            self._validate_and_record(time.perf_counter(), [], writer)
        if self.rank == 0:
            self.export_model()
        if writer:
            writer.close()
        return self.history[-1] if self.history else {}

    def _validate_and_record(self, tic: float, epoch_losses: list, writer) -> dict:
        """Validate (EMA weights), append to the history and metrics.csv; with ``run.keep_best``, save the EMA
        weights when the validation force MAE is the best so far."""
        metrics = self.validate()
        metrics |= {"epoch": self.epoch, "step": self.step, "train_loss": float(np.mean(epoch_losses[-TRAIN_LOSS_WINDOW:]))
                    if epoch_losses else float("nan"), "lr": self.optimizer.param_groups[0]["lr"],
                    "epoch_seconds": time.perf_counter() - tic}
        self.history.append(metrics)
        self._write_metrics(metrics, writer)
        force = metrics.get("valid_force_mae_mev_a", math.inf)
        if self.config.run.keep_best and force < self.best_valid:
            self.best_valid = force
            if self.rank == 0:
                model = self.ema.model_copy(self.model)
                path = self.out_dir / BEST_FILE
                torch.save({"model": model.state_dict(), "step": self.step, "metrics": metrics},
                           path.with_suffix(".tmp"))
                os.replace(path.with_suffix(".tmp"), path)
                self.log(f"best validation force MAE so far: {force:.1f} meV/Å at step {self.step}")
        return metrics

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

    def _errors(self, model, store: FrameStore, indices: np.ndarray, prefix: str) -> dict:
        """MAEs and loss of ``model`` on ``store[indices]`` (sharded across ranks, sums all-reduced)."""
        batch_size = self.config.data.batch_size
        shard = np.array_split(indices, self.world)[self.rank]
        batches = [np.asarray(shard[i:i + batch_size]) for i in range(0, len(shard), batch_size)]
        sums = torch.zeros(7, dtype=torch.float64)
        for batch in self._loader(store, batches, shard=False) if len(shard) else []:
            batch = batch.to(self.device)
            with torch.enable_grad():
                out = model(batch.graph, compute_stress=True)
            n = batch.graph.num_atoms.to(torch.float64)
            e_err = ((out["energy"].double() - batch.energy) / n).abs()
            f_err = (out["forces"] - batch.forces).abs().double()[batch.has_forces[batch.graph.batch]]
            s_err = (out["stress"] - batch.stress).abs().double()[batch.has_stress]
            counts = torch.tensor([batch.graph.num_graphs, f_err.numel(), s_err.numel()], dtype=torch.float64)
            loss, _ = self.loss(batch, {k: v.detach() for k, v in out.items()}, counts.to(self.device))
            sums += torch.tensor([e_err.sum().item(), f_err.sum().item(), s_err.sum().item(),
                                  counts[0], counts[1], counts[2], float(loss) / self.world * counts[0]])
        if _is_dist():
            sums_device = sums.to(self.device) if self.device.type == "cuda" else sums
            dist.all_reduce(sums_device)
            sums = sums_device.cpu()
        e, f, s, ne, nf, ns, loss_sum = sums.tolist()
        return {f"{prefix}_energy_mae_mev_atom": 1000 * e / max(ne, 1),
                f"{prefix}_force_mae_mev_a": 1000 * f / max(nf, 1),
                f"{prefix}_stress_mae_mev_a3": 1000 * s / max(ns, 1), f"{prefix}_loss": loss_sum / max(ne, 1)}

    def _write_metrics(self, metrics: dict, writer) -> None:
        if self.rank != 0:
            return
        path = self.out_dir / METRICS_FILE
        keys = ["epoch", "step", "train_loss", "valid_loss", "valid_energy_mae_mev_atom", "valid_force_mae_mev_a",
                "valid_stress_mae_mev_a3", "raw_valid_energy_mae_mev_atom", "raw_valid_force_mae_mev_a",
                "raw_valid_stress_mae_mev_a3", "train_energy_mae_mev_atom", "train_force_mae_mev_a",
                "train_stress_mae_mev_a3", "lr", "epoch_seconds"]
        new = not path.exists()
        if not new:  # a run resumed under an older layout keeps its file's columns
            with open(path, newline="") as handle:
                keys = next(csv.reader(handle), keys)
        with open(path, "a", newline="") as handle:
            w = csv.DictWriter(handle, fieldnames=keys, extrasaction="ignore")
            if new:
                w.writeheader()
            w.writerow(metrics)
        if writer:
            for key in keys[2:]:
                if key in metrics:
                    writer.add_scalar(f"epoch/{key}", metrics[key], self.step)
        try:
            from rich.table import Table

            table = Table(title=f"epoch {metrics['epoch']}", show_header=True)
            for key in keys:
                table.add_column(key.replace("valid_", "").replace("_", " "))
            table.add_row(*[f"{metrics.get(k, float('nan')):.4g}" if isinstance(metrics.get(k), float)
                            else str(metrics.get(k)) for k in keys])
            if self.console is None:
                from rich.console import Console

                self.console = Console()
            self.console.print(table)
        except ImportError:
            self.log(str(metrics))


class _nullcontext:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def train(config: TrainConfig | dict | str | Path, console=None) -> dict:
    """Run (or resume) training described by a config object, dict or YAML path. Returns the last epoch's
    metrics (rank 0)."""
    if isinstance(config, (str, Path)):
        config = TrainConfig.from_yaml(config)
    elif isinstance(config, dict):
        config = TrainConfig.from_dict(config)
    trainer = Trainer(config, console=console)
    return trainer.train()
