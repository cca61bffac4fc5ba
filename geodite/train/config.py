"""The training config (``geodite train CONFIG.yaml``): five sections — model, data, loss, optim, run — each
key checked when the config is read (type, range, choice), so a bad value stops the run before any work
with a one-line :class:`ConfigError` naming the key (and the file, when read from one).

The model section is the network's :class:`~geodite.model.GeoditeConfig` (the keys of
:data:`ARCHITECTURE_KEYS`, written flat in the YAML as before) plus ``init_from`` for fine-tuning.
"""

from __future__ import annotations

import math
import typing
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import yaml

from geodite.calculator import torch_device
from geodite.model import GeoditeConfig
from geodite.train.optim import LOSS_FUNCTIONS


class ConfigError(ValueError):
    """A training config value of the wrong type, out of range or not among its choices, an unknown key, or a
    file that is not YAML (one line)."""


class _Section:
    """A config section: a dataclass whose fields are its keys (ModelSection overrides the three methods)."""

    @classmethod
    def keys(cls) -> dict[str, Any]:
        """{key: annotated type} of the section's keys."""
        return typing.get_type_hints(cls)

    @classmethod
    def from_values(cls, values: dict[str, Any]) -> "_Section":
        """The section from values already typed by :func:`_typed`."""
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """{key: value}: the YAML mapping of the section."""
        return asdict(self)


#: the GeoditeConfig keys a training config sets (flat in its model section); the others keep GeoditeConfig's
#: defaults, and energy_scale/energy_shift are set from the normalisation by the trainer
ARCHITECTURE_KEYS = ("num_channels", "num_layers", "num_heads", "cutoff", "num_rbf", "attn_dropout")


@dataclass
class ModelSection(_Section):
    """The network: a fresh Geodite of ``architecture``, or (``init_from``: a checkpoint path or "geodite" /
    "geodite-mp") the checkpoint's network fine-tuned, of which ``architecture`` sets only attn_dropout."""

    architecture: GeoditeConfig = field(default_factory=GeoditeConfig)
    init_from: str | None = None

    @classmethod
    def keys(cls) -> dict[str, Any]:
        architecture = typing.get_type_hints(GeoditeConfig)
        return {key: architecture[key] for key in ARCHITECTURE_KEYS} | {"init_from": str | None}

    @classmethod
    def from_values(cls, values: dict[str, Any]) -> "ModelSection":
        values = dict(values)
        init_from = values.pop("init_from", None)
        return cls(architecture=GeoditeConfig(**values), init_from=init_from)

    def to_dict(self) -> dict[str, Any]:
        return {key: getattr(self.architecture, key) for key in ARCHITECTURE_KEYS} | {"init_from": self.init_from}


@dataclass
class DataSection(_Section):
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
class LossSection(_Section):
    weights: list[float] = field(default_factory=lambda: [1.0, 1.0, 1.0])  # E:F:S
    function: str = "huber"  # elementwise loss of normalised targets: "huber" (published) or "mse"
    huber_delta: float = 0.01
    # "data": μ_E, σ_E, σ_F and the stress statistics of the training frames; "model": the model's μ_E and σ_E
    # (the published constants for a fresh model, the checkpoint's when fine-tuning); "published" is an alias
    # of "model" (the two always ran the same code), accepted so that older configs still load
    normalisation: str = "data"
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
    # weight of the per-atom energy term (a teacher's per-atom energies, TrainingLoss); 0: off, frames without
    # per-atom energies never contribute to it
    atomic_energy_weight: float = 0.0


@dataclass
class OptimSection(_Section):
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
class RunSection(_Section):
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
        unknown = set(values) - set(SECTIONS)
        if unknown:
            raise ConfigError(f"unknown config sections: {sorted(unknown)}")
        kwargs = {}
        for name, section_cls in SECTIONS.items():
            given = values.get(name) or {}
            if not isinstance(given, dict):
                raise ConfigError(f"config {name}: expected a mapping of keys, got {given!r}")
            types = section_cls.keys()
            bad = set(given) - set(types)
            if bad:
                raise ConfigError(f"unknown keys in [{name}]: {sorted(bad)}")
            kwargs[name] = section_cls.from_values({key: _typed(value, types[key], f"{name}.{key}")
                                                    for key, value in given.items()})
        config = cls(**kwargs)
        config.check()
        return config

    def check(self) -> None:
        """ConfigError for the first value out of its range or choices, or keys that disagree."""
        for name, section in self.to_dict().items():
            for key, value in section.items():
                _check_value(f"{name}.{key}", value)
        architecture, loss = self.model.architecture, self.loss
        if architecture.num_channels % architecture.num_heads:
            raise ConfigError(f"config model.num_heads: {architecture.num_heads} does not divide "
                              f"model.num_channels {architecture.num_channels}")
        if sum(loss.weights) <= 0:
            raise ConfigError(f"config loss.weights: {loss.weights} weighs no term (energy, forces, stress)")
        if self.optim.scheduler == "plateau" and not self.run.valid_each_epoch:
            raise ConfigError("config optim.scheduler: the plateau scheduler steps on each epoch's validation "
                              "loss: keep run.valid_each_epoch true")
        if self.run.device != "auto":
            try:
                torch_device(self.run.device)
            except ValueError as error:
                raise ConfigError(f"config run.device: {error}") from None

    @classmethod
    def from_yaml(cls, path: str | Path) -> "TrainConfig":
        """The config in YAML file ``path``; ConfigError naming the file and the key (or the YAML error)."""
        values = read_yaml(path)
        try:
            return cls.from_dict(values)
        except ConfigError as error:
            raise ConfigError(f"{path}: {error}") from None

    def to_dict(self) -> dict[str, Any]:
        """{section: {key: value}}, the mapping from_dict reads (kept in training checkpoints)."""
        return {name: getattr(self, name).to_dict() for name in SECTIONS}


#: the sections of a training config, in file order
SECTIONS: dict[str, type[_Section]] = {"model": ModelSection, "data": DataSection, "loss": LossSection,
                                       "optim": OptimSection, "run": RunSection}

#: the overrides of ``geodite train --finetune``: the published fine-tuning recipe
FINETUNE_DEFAULTS = {
    "loss": {"weights": [1.0, 5.0, 1.0], "normalisation": "model"},
    "optim": {"lr": 3e-5, "scheduler": "plateau", "warmup_steps": 0, "lr_start": 1.0},
}


def read_yaml(path: str | Path) -> dict[str, Any]:
    """The mapping in YAML file ``path`` ({} for an empty file); ConfigError (one line: the file, the line and
    column, the problem) for a file that is not YAML or not a mapping."""
    try:
        values = yaml.safe_load(Path(path).read_text())
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}:" if mark is not None else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise ConfigError(f"{path}:{where} not valid YAML: {problem}") from None
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: expected a mapping of sections (model, data, loss, optim, run), "
                          f"got {type(values).__name__}")
    return values


# ----------------------------------------------------------------------------------- the rules of the keys

_Rule = tuple[Callable[[Any], bool], str]
_POSITIVE: _Rule = (lambda v: v > 0, "> 0")
_NON_NEGATIVE: _Rule = (lambda v: v >= 0, ">= 0")
_AT_LEAST_ONE: _Rule = (lambda v: v >= 1, ">= 1")
_FRACTION: _Rule = (lambda v: 0 <= v < 1, "in [0, 1)")
_OPEN_FRACTION: _Rule = (lambda v: 0 < v < 1, "in (0, 1)")

#: ranges of the numeric config values (of each item, for lists); None (where allowed) is never checked
RANGES: dict[str, _Rule] = {key: rule for rule, keys in (
    (_AT_LEAST_ONE, ("model.num_channels", "model.num_layers", "model.num_heads", "model.num_rbf",
                     "data.batch_size", "data.max_frames", "optim.total_steps", "optim.grad_accum", "run.epochs",
                     "run.num_threads", "run.max_steps", "run.valid_every")),
    (_POSITIVE, ("model.cutoff", "loss.huber_delta", "loss.energy_std", "loss.force_std", "loss.stress_std",
                 "loss.e0_tolerance", "optim.lr", "optim.zclip_z", "run.max_minutes")),
    (_NON_NEGATIVE, ("data.split_seed", "data.num_workers", "loss.weights", "loss.atomic_energy_weight",
                     "optim.lr_start",
                     "optim.warmup_steps", "optim.lr_end", "optim.plateau_patience", "optim.weight_decay",
                     "optim.zclip_warmup", "run.seed", "run.checkpoint_every", "run.log_every",
                     "run.train_subset")),
    (_FRACTION, ("model.attn_dropout", "data.valid_fraction", "optim.betas", "optim.ema_decay")),
    (_OPEN_FRACTION, ("optim.plateau_factor", "optim.zclip_alpha")),
) for key in keys}
#: the allowed values of the config's choice keys
CHOICES: dict[str, tuple[str, ...]] = {
    "loss.normalisation": ("data", "model", "published"),  # "published": an alias of "model" (LossSection)
    "loss.e0": ("model", "fit", "isolated"),
    "loss.function": LOSS_FUNCTIONS,
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
