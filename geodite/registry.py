"""Model registry: one ``--model`` name → an ASE calculator, for every benchmark task.

Names: ``geodite`` (shipped checkpoint, the default), ``geodite-mp`` (published
checkpoint, downloaded to a cache), a checkpoint path, the peers ``sevennet-0``,
``sevennet-l3i5``, ``chgnet``, ``mace-mp-0`` (optional extras) and ``emt`` (ASE's EMT, for tests).

Every entry records the *energy convention* of the model's total energy:
``"uncorrected"`` (raw PBE/PBE+U, MPtrj ``uncorrected_total_energy``) or
``"mp2020_corrected"`` (CHGNet is trained on MP2020-corrected energies). Tasks that
compare with DFT use it to put prediction and reference on the same footing.

The peers' packages (optional extras) are imported only inside their factories.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import ase.constraints
import ase.filters
from ase.calculators.emt import EMT

from geodite.calculator import GeoditeCalculator, torch_device
from geodite.checkpoints import resolve_model_path
from geodite.data.downloads import file_digest

UNCORRECTED = "uncorrected"
MP2020_CORRECTED = "mp2020_corrected"
GEODITE_REQUIRES = ("torch", "geodite.calculator")  # what a Geodite entry needs importable


class ModelNotAvailableError(RuntimeError):
    """The model's optional dependency is not installed (message says how to install it)."""


@dataclass(frozen=True)
class ModelSpec:
    name: str
    description: str
    factory: Callable[..., Any]  # (device, dtype, **kwargs) -> ASE calculator
    extra: str | None = None  # pip extra of the geodite package, e.g. "chgnet"
    requires: tuple[str, ...] = ()  # importable modules the factory needs
    energy_convention: str = UNCORRECTED
    install_hint: str | None = None
    path: str | None = None  # for checkpoint-path entries
    checkpoint: str | None = None  # Geodite entries: the name or path load_model takes
    notes: dict[str, Any] = field(default_factory=dict)

    def available(self) -> bool:
        try:
            return all(importlib.util.find_spec(m) is not None for m in self.requires)
        except (ImportError, ValueError):
            return False

    def missing_message(self) -> str:
        hint = self.install_hint or (f"pip install 'geodite[{self.extra}]'" if self.extra else "")
        return (
            f"Model {self.name!r} needs {', '.join(self.requires)} which is not installed. "
            f"Install it with: {hint}"
        )

    def weights_identity(self) -> dict[str, str]:
        """What fixes this model's weights, for a results store's protocol: the sha256 of a Geodite checkpoint
        file (the shipped one, the published ``geodite-mp``, downloaded if not cached, or a path), else the
        version of the package the weights come with (``"chgnet 0.3.8"``), so rows of other weights are
        never reused under the same name."""
        if self.checkpoint is not None:
            return {"weights_sha256": weights_sha256(resolve_model_path(self.checkpoint))}
        return {"weights_package": _package_version(self.requires[0]) if self.requires else "none"}

    def make_calculator(self, device: str = "cpu", dtype: str = "float32", **kwargs: Any):
        if not self.available():
            raise ModelNotAvailableError(self.missing_message())
        torch_device(device)  # DeviceError (a ValueError): one line for the CLI, not a peer's traceback
        return self.factory(device=device, dtype=dtype, **kwargs)


# --------------------------------------------------------------------------- factories


def _geodite_spec(name: str, description: str, checkpoint: str, path: str | None = None) -> ModelSpec:
    """The entry of a Geodite checkpoint (``checkpoint``: the name or path load_model takes)."""

    def make(device: str = "cpu", dtype: str = "float32", **kwargs: Any):
        return GeoditeCalculator(model=checkpoint, device=device, dtype=dtype, **kwargs)

    return ModelSpec(name, description, make, requires=GEODITE_REQUIRES, path=path, checkpoint=checkpoint)


def _emt(device: str = "cpu", dtype: str = "float32", **kwargs: Any):
    return EMT(**kwargs)


def _ase_compat_for_chgnet() -> None:
    """chgnet 0.3.x imports ``ExpCellFilter`` from ``ase.constraints``, which ASE ≥ 3.23
    moved to ``ase.filters`` (and 3.29 no longer re-exports): put the alias back."""
    if not hasattr(ase.constraints, "ExpCellFilter") and hasattr(ase.filters, "ExpCellFilter"):
        ase.constraints.ExpCellFilter = ase.filters.ExpCellFilter


def _chgnet(device: str = "cpu", dtype: str = "float32", **kwargs: Any):
    _ase_compat_for_chgnet()
    from chgnet.model.dynamics import CHGNetCalculator

    try:
        return CHGNetCalculator(use_device=device, **kwargs)
    except FileNotFoundError as exc:
        raise ModelNotAvailableError(
            f"CHGNet's pretrained weights are missing from the installed package ({exc.filename}). "
            "The chgnet 0.3.0 wheel ships without them; install chgnet==0.3.8, whose wheel carries the "
            "same CHGNet 0.3.0 model: pip install 'geodite[chgnet]'."
        ) from exc


def _sevennet_spec(name: str, description: str, model: str) -> ModelSpec:
    """The entry of a SevenNet model (``model``: sevenn's name for it, e.g. "7net-0")."""

    def make(device: str = "cpu", dtype: str = "float32", **kwargs: Any):
        with warnings.catch_warnings():  # sevenn warns about its own optional dependencies on import
            warnings.simplefilter("ignore")
            from sevenn.calculator import SevenNetCalculator

        return SevenNetCalculator(model, device=device, **kwargs)

    return ModelSpec(name, description, make, extra="sevenn", requires=("sevenn",),
                     install_hint="pip install 'geodite[sevenn]'  (or: pip install sevenn torch==2.13.0)")


def _mace_mp0(device: str = "cpu", dtype: str = "float32", **kwargs: Any):
    from mace.calculators import mace_mp

    return mace_mp(model=kwargs.pop("size", "medium"), device=device, default_dtype=dtype, **kwargs)


REGISTRY: dict[str, ModelSpec] = {
    s.name: s
    for s in [
        _geodite_spec("geodite", "Geodite, the checkpoint shipped with the package (default)", "geodite"),
        _geodite_spec(
            "geodite-mp", "Geodite-MP, the published MPtrj checkpoint (downloaded to a cache on first use)",
            "geodite-mp",
        ),
        _sevennet_spec("sevennet-0", "SevenNet-0 (7net-0), MPtrj", "7net-0"),
        _sevennet_spec(
            "sevennet-l3i5",
            "SevenNet-l3i5 (lmax 3, 5 layers), MPtrj; more accurate and ~3x slower than SevenNet-0",
            "7net-l3i5",
        ),
        ModelSpec(
            "chgnet",
            "CHGNet 0.3.0, MPtrj; predicts MP2020-corrected energies",
            _chgnet,
            extra="chgnet",
            requires=("chgnet",),
            energy_convention=MP2020_CORRECTED,
            install_hint="pip install 'geodite[chgnet]'  (or: pip install chgnet==0.3.8 torch==2.13.0)",
        ),
        ModelSpec(
            "mace-mp-0",
            "MACE-MP-0 (medium), MPtrj",
            _mace_mp0,
            extra="mace",
            requires=("mace",),
            install_hint="make peers (mace-torch pins e3nn 0.4.4; installed with --no-deps beside e3nn >= 0.5 it "
            "builds models, but the downloaded MACE-MP-0 file needs e3nn 0.4.4: use a separate environment)",
        ),
        ModelSpec(
            "emt",
            "ASE's effective-medium theory (Al, Cu, Ag, Au, Ni, Pd, Pt, H, C, N, O); for tests",
            _emt,
            requires=("ase",),
        ),
    ]
}

DEFAULT_MODEL = "geodite"


def _package_version(module: str) -> str:
    """"<distribution> <version>" of the installed package providing ``module`` (e.g. mace → mace-torch)."""
    distribution = (importlib.metadata.packages_distributions().get(module) or [module])[0]
    try:
        return f"{distribution} {importlib.metadata.version(distribution)}"
    except importlib.metadata.PackageNotFoundError:
        return f"{distribution} (not installed)"


def _looks_like_path(name: str) -> bool:
    return name not in REGISTRY and (
        Path(name).suffix in {".pt", ".pth", ".ckpt"} or "/" in name or Path(name).exists()
    )


def get_spec(name: str) -> ModelSpec:
    """The registry entry for ``name``; a checkpoint path gets a Geodite entry."""
    if name in REGISTRY:
        return REGISTRY[name]
    if _looks_like_path(name):
        path = str(Path(name).expanduser())
        return _geodite_spec(model_label(name), f"Geodite checkpoint {path}", path, path=path)
    raise KeyError(f"unknown model {name!r}; known: {', '.join(REGISTRY)} or a checkpoint path")


def get_calculator(name: str = DEFAULT_MODEL, device: str = "cpu", dtype: str = "float32", **kwargs: Any):
    """An ASE calculator for model ``name`` (raises ModelNotAvailableError with an install hint)."""
    return get_spec(name).make_calculator(device=device, dtype=dtype, **kwargs)


LABEL_HASH_CHARS = 8  # hex digits of a checkpoint's sha256 in its label


@lru_cache(maxsize=64)
def _weights_digest(path: str, mtime_ns: int, size: int) -> str:
    return file_digest(path)


def weights_sha256(path: str | Path) -> str:
    """sha256 of a checkpoint file, read once per (path, modification time, size): the label and the store's
    protocol of one run both ask for it."""
    path = Path(path).expanduser().resolve()
    stat = path.stat()
    return _weights_digest(str(path), stat.st_mtime_ns, stat.st_size)


def model_label(name: str) -> str:
    """The filesystem-safe label a model's results are filed under (``results/<task>/<label>/``): a registry
    name as it is; a checkpoint path → its file stem and the first 8 hex digits of its weights' sha256
    (``best.pt`` → ``best-1a2b3c4d``), so two checkpoint files never share results unless their weights are the
    same, and a user's ``geodite.pt`` never lands on the shipped model's; anything else (a label) cleaned.
    A path that looks like a checkpoint but is not a file raises KeyError (nothing to label)."""
    if name in REGISTRY:
        return name
    if not _looks_like_path(name):
        return _filename_safe(name)
    path = Path(name).expanduser().resolve()
    if not path.is_file():
        raise KeyError(f"no checkpoint at {name}: a checkpoint's results are filed under its file name and weights' "
                       "hash, so the file must exist (or pass the label, e.g. best-1a2b3c4d)")
    return f"{_filename_safe(Path(name).stem)}-{weights_sha256(path)[:LABEL_HASH_CHARS]}"


def _filename_safe(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text)


def list_models() -> list[dict[str, Any]]:
    """One dict per registered model: name, description, extra, energy_convention, available."""
    return [
        {
            "name": s.name,
            "description": s.description,
            "extra": s.extra or "",
            "energy_convention": s.energy_convention,
            "available": s.available(),
        }
        for s in REGISTRY.values()
    ]
