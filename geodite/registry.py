"""Model registry: :func:`resolve` turns a ``--model`` name into a :class:`ModelHandle`, once, for every entry point.

Names: ``geodite`` (shipped checkpoint, the default), ``geodite-mp`` (published checkpoint, downloaded to a
cache), a checkpoint path, an exported package (``FILE.pt2``, ``geodite export``), the peers ``sevennet-0``,
``sevennet-l3i5``, ``chgnet``, ``mace-mp-0`` (optional extras), ``emt`` (ASE's EMT, for tests) and the untrained
architectures at their published sizes that ``geodite bench speed`` times (``geodite-published`` and its
variants, ``mace-mp-0-medium``; ``trained=False``: no results are filed for them).

A handle carries everything a run needs to know about its model: the results label, the description, the
energy convention, whether its packages are installed, the identity of its weights for a results store's
protocol, and :meth:`ModelHandle.load`, which builds the ASE calculator (for Geodite: an
:class:`~geodite.calculator.Evaluator` of ``atoms_per_call`` atoms a model call, set at construction). A handle
is a frozen dataclass of plain values and module-level functions, so it pickles to pool and Dask workers.

Every entry records the *energy convention* of the model's total energy: ``"uncorrected"`` (raw PBE/PBE+U,
MPtrj ``uncorrected_total_energy``) or ``"mp2020_corrected"`` (CHGNet is trained on MP2020-corrected energies).
Tasks that compare with DFT use it to put prediction and reference on the same footing.

The peers' packages (optional extras) are imported only inside their loaders.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import ase.constraints
import ase.filters
import numpy as np
from ase.calculators.emt import EMT

from geodite.calculator import ATOMS_PER_CALL, GeoditeCalculator, torch_device
from geodite.checkpoints import load_model, resolve_model_path
from geodite.data.downloads import file_digest
from geodite.export import load_exported

UNCORRECTED = "uncorrected"
MP2020_CORRECTED = "mp2020_corrected"
GEODITE_REQUIRES = ("torch", "geodite.calculator")  # what a Geodite entry needs importable
DEFAULT_MODEL = "geodite"
LABEL_HASH_CHARS = 8  # hex digits of a checkpoint's sha256 in its label
#: what an untrained architecture's weights are: fixed by the seed its loader sets
UNTRAINED_SEED = 0


class ModelNotAvailableError(RuntimeError):
    """The model cannot run here: its optional dependency is not installed (the message says how to install
    it), or it has no trained weights (an architecture for timing only)."""


def geodite_calculator(handle: ModelHandle, device: str, dtype: str, atoms_per_call: int) -> GeoditeCalculator:
    """The loader of a Geodite entry: the model :meth:`ModelHandle.load_model` gives, behind an Evaluator of
    ``atoms_per_call`` atoms a model call."""
    return GeoditeCalculator(handle.load_model(), device=device, dtype=dtype, atoms_per_call=atoms_per_call)


@dataclass(frozen=True)
class ModelHandle:
    """A resolved model (see the module docstring). ``name``: as given (a registry name, a path); ``label``: the
    filesystem-safe name its results are filed under (``results/<task>/<label>/``).

    ``loader(handle, device, dtype, atoms_per_call)`` builds the ASE calculator (Geodite entries:
    :func:`geodite_calculator`); ``model_loader(checkpoint)`` builds a Geodite entry's torch model (a
    :class:`~geodite.model.Geodite`, or the :class:`~geodite.export.ExportedGeodite` of a package);
    ``checkpoint``: the file (a name or path :func:`~geodite.checkpoints.resolve_model_path` takes) whose sha256
    fixes a Geodite entry's weights; ``upstream``: a peer's own name for its model (sevenn's ``"7net-0"``).
    Both loaders are module-level functions, so a handle pickles.
    """

    name: str
    label: str
    description: str
    loader: Callable[..., Any] = geodite_calculator
    model_loader: Callable[[str | None], Any] | None = None
    checkpoint: str | None = None
    upstream: str | None = None
    energy_convention: str = UNCORRECTED
    requires: tuple[str, ...] = GEODITE_REQUIRES  # importable modules the loader needs
    extra: str | None = None  # pip extra of the geodite package, e.g. "chgnet"
    install_hint: str | None = None
    trained: bool = True  # False: an architecture with freshly initialised weights, for timing only

    def available(self) -> bool:
        """Whether the packages the loader needs are installed here."""
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

    def require(self, trained: bool = True) -> None:
        """ModelNotAvailableError (one line) unless the model can run here: its packages installed and, with
        ``trained``, trained weights (what a benchmark or an evaluation files results for)."""
        if not self.available():
            raise ModelNotAvailableError(self.missing_message())
        if trained and not self.trained:
            raise ModelNotAvailableError(f"{self.name} is {self.description}: it has no trained weights, so only "
                                         "`geodite bench speed` runs it")

    def weights_identity(self) -> dict[str, str]:
        """What fixes this model's weights, for a results store's protocol: the sha256 of a Geodite checkpoint or
        package file (the shipped one, the published ``geodite-mp``, downloaded if not cached, or a path; read once
        per file and process: :func:`weights_sha256`), else the version of the package the weights come with
        (``"chgnet 0.3.8"``), so rows of other weights are never reused under the same name."""
        if self.checkpoint is not None:
            return {"weights_sha256": weights_sha256(resolve_model_path(self.checkpoint))}
        if not self.trained:
            return {"weights": f"untrained, torch.manual_seed({UNTRAINED_SEED})"}
        return {"weights_package": _package_version(self.requires[0]) if self.requires else "none"}

    def load_model(self) -> Any:
        """A Geodite entry's torch model (float64, eval): a checkpoint's :class:`~geodite.model.Geodite`, an
        exported package's :class:`~geodite.export.ExportedGeodite`, an untrained architecture; ValueError for a
        peer (no torch model of ours)."""
        if self.model_loader is None:
            raise ValueError(f"{self.name} is not a Geodite model ({self.description})")
        return self.model_loader(self.checkpoint)

    def load(self, device: str = "cpu", dtype: str = "float32", atoms_per_call: int = ATOMS_PER_CALL):
        """The model's ASE calculator on ``device`` in ``dtype``; a Geodite calculator's Evaluator takes at most
        ``atoms_per_call`` atoms in one model call (other calculators take one structure a call). Raises
        ModelNotAvailableError with an install hint, DeviceError for a device torch cannot use here."""
        self.require(trained=False)
        torch_device(device)  # DeviceError (a ValueError): one line for the CLI, not a peer's traceback
        return self.loader(self, device=device, dtype=dtype, atoms_per_call=atoms_per_call)


# --------------------------------------------------------------------------- loaders of the peers


def _emt(handle: ModelHandle, device: str, dtype: str, atoms_per_call: int):
    return EMT()


def _ase_compat_for_chgnet() -> None:
    """chgnet 0.3.x imports ``ExpCellFilter`` from ``ase.constraints``, which ASE ≥ 3.23
    moved to ``ase.filters`` (and 3.29 no longer re-exports): put the alias back."""
    if not hasattr(ase.constraints, "ExpCellFilter") and hasattr(ase.filters, "ExpCellFilter"):
        ase.constraints.ExpCellFilter = ase.filters.ExpCellFilter


def _chgnet(handle: ModelHandle, device: str, dtype: str, atoms_per_call: int):
    _ase_compat_for_chgnet()
    from chgnet.model.dynamics import CHGNetCalculator

    try:
        return CHGNetCalculator(use_device=device)
    except FileNotFoundError as exc:
        raise ModelNotAvailableError(
            f"CHGNet's pretrained weights are missing from the installed package ({exc.filename}). "
            "The chgnet 0.3.0 wheel ships without them; install chgnet==0.3.8, whose wheel carries the "
            "same CHGNet 0.3.0 model: pip install 'geodite[chgnet]'."
        ) from exc


def _sevennet(handle: ModelHandle, device: str, dtype: str, atoms_per_call: int):
    with warnings.catch_warnings():  # sevenn warns about its own optional dependencies on import
        warnings.simplefilter("ignore")
        from sevenn.calculator import SevenNetCalculator

    return SevenNetCalculator(handle.upstream, device=device)


def _mace_mp0(handle: ModelHandle, device: str, dtype: str, atoms_per_call: int):
    from mace.calculators import mace_mp

    return mace_mp(model=handle.upstream, device=device, default_dtype=dtype)


def _sevennet_entry(name: str, description: str, upstream: str) -> ModelHandle:
    return ModelHandle(name, name, description, _sevennet, upstream=upstream, extra="sevenn", requires=("sevenn",),
                       install_hint="pip install 'geodite[sevenn]'  (or: pip install sevenn torch==2.13.0)")


# --------------------------------------------------------------------------- untrained architectures (timing)


def untrained_geodite(checkpoint: str | None = None):
    """Geodite at the published size (F = 192, 4 layers, 8 heads, 6 Å) with freshly initialised weights
    (``torch.manual_seed(UNTRAINED_SEED)``): times the same as trained weights."""
    import torch

    from geodite.model import Geodite, GeoditeConfig

    torch.manual_seed(UNTRAINED_SEED)
    return Geodite(GeoditeConfig()).eval()


class ReferenceKernelsCalculator(GeoditeCalculator):
    """A GeoditeCalculator that runs fused.py's Python kernels (the eager path before the C++ kernels)."""

    def calculate(self, *args, **kwargs):
        from geodite.custom_ops import python_kernels

        with python_kernels():
            super().calculate(*args, **kwargs)


def _python_kernels(handle: ModelHandle, device: str, dtype: str, atoms_per_call: int):
    return ReferenceKernelsCalculator(handle.load_model(), device=device, dtype=dtype, atoms_per_call=atoms_per_call)


def _aoti(handle: ModelHandle, device: str, dtype: str, atoms_per_call: int, kernels: str = "ops"):
    """``geodite-published`` exported by AOTInductor (``geodite export --kernels KERNELS``), compiled on first
    use and cached in $GEODITE_CACHE/exported (minutes); the calculator's ``setup_note`` says how long
    compilation took."""
    from geodite.data.downloads import cache_dir
    from geodite.export import cached_export

    if device != "cpu":
        raise ValueError(f"{handle.name} is compiled for the CPU only")
    report = cached_export(handle.load_model(), cache_dir() / "exported", "geodite-published", dtype, kernels=kernels)
    calculator = GeoditeCalculator(load_exported(report.path), device=device, dtype=dtype,
                                   atoms_per_call=atoms_per_call)
    state = "cached; compiled" if report.cached else "compiled"
    calculator.setup_note = f"{report.path.name} ({report.size_mb:.1f} MB, {state} in {report.seconds:.0f} s)"
    return calculator


def _aoti_plain(handle: ModelHandle, device: str, dtype: str, atoms_per_call: int):
    return _aoti(handle, device, dtype, atoms_per_call, kernels="plain")


def _mace_mp0_medium(handle: ModelHandle, device: str, dtype: str, atoms_per_call: int):
    """MACE-MP-0 medium's architecture (128x0e+128x1o, L = 1, 2 interactions, correlation 3, 6 Å; 4.69 M
    parameters) with untrained weights, built in-process. mace-torch pins e3nn 0.4.4, which clashes with sevenn;
    installed with ``--no-deps`` beside e3nn ≥ 0.5 it builds and runs models in-process (pickled MACE files need
    0.4.4 and are not used here)."""
    import torch
    from e3nn import o3
    from mace import modules
    from mace.calculators import MACECalculator

    from geodite.model.priors import MPTRJ_E0

    elements = [z for z in range(1, 95) if MPTRJ_E0[z] != 0.0]  # the 89 MPtrj elements
    torch.manual_seed(UNTRAINED_SEED)
    block = modules.interaction_classes["RealAgnosticResidualInteractionBlock"]
    model = modules.ScaleShiftMACE(
        r_max=6.0, num_bessel=10, num_polynomial_cutoff=5, max_ell=3, interaction_cls=block,
        interaction_cls_first=block, num_interactions=2, num_elements=len(elements),
        hidden_irreps=o3.Irreps("128x0e + 128x1o"), MLP_irreps=o3.Irreps("16x0e"),
        atomic_energies=np.array([MPTRJ_E0[z] for z in elements]), avg_num_neighbors=61.96,
        atomic_numbers=elements, correlation=3, gate=torch.nn.functional.silu, radial_MLP=[64, 64, 64],
        atomic_inter_scale=0.8, atomic_inter_shift=0.0,
    )
    return MACECalculator(models=model.to(getattr(torch, dtype)), device=device, default_dtype=dtype)


def _architecture(name: str, description: str, loader: Callable[..., Any] = geodite_calculator,
                  **fields: Any) -> ModelHandle:
    """An untrained architecture's entry (Geodite's unless ``fields`` say otherwise)."""
    return ModelHandle(name, name, f"untrained {description} (timing only)", loader, model_loader=untrained_geodite,
                       trained=False, **fields)


# --------------------------------------------------------------------------- the registry

REGISTRY: dict[str, ModelHandle] = {
    h.name: h
    for h in [
        ModelHandle("geodite", "geodite", "Geodite, the checkpoint shipped with the package (default)",
                    model_loader=load_model, checkpoint="geodite"),
        ModelHandle("geodite-mp", "geodite-mp",
                    "Geodite-MP, the published MPtrj checkpoint (downloaded to a cache on first use)",
                    model_loader=load_model, checkpoint="geodite-mp"),
        _sevennet_entry("sevennet-0", "SevenNet-0 (7net-0), MPtrj", "7net-0"),
        _sevennet_entry("sevennet-l3i5",
                        "SevenNet-l3i5 (lmax 3, 5 layers), MPtrj; more accurate and ~3x slower than SevenNet-0",
                        "7net-l3i5"),
        ModelHandle(
            "chgnet", "chgnet", "CHGNet 0.3.0, MPtrj; predicts MP2020-corrected energies", _chgnet,
            extra="chgnet", requires=("chgnet",), energy_convention=MP2020_CORRECTED,
            install_hint="pip install 'geodite[chgnet]'  (or: pip install chgnet==0.3.8 torch==2.13.0)",
        ),
        ModelHandle(
            "mace-mp-0", "mace-mp-0", "MACE-MP-0 (medium), MPtrj", _mace_mp0, upstream="medium",
            extra="mace", requires=("mace",),
            install_hint="make peers (mace-torch pins e3nn 0.4.4; installed with --no-deps beside e3nn >= 0.5 it "
            "builds models, but the downloaded MACE-MP-0 file needs e3nn 0.4.4: use a separate environment)",
        ),
        ModelHandle("emt", "emt", "ASE's effective-medium theory (Al, Cu, Ag, Au, Ni, Pd, Pt, H, C, N, O); for tests",
                    _emt, requires=("ase",)),
        _architecture("geodite-published", "Geodite at the published size (F = 192, 4 layers, 8 heads, 6 Å)"),
        _architecture("geodite-published-python", "geodite-published with fused.py's Python kernels",
                      _python_kernels),
        _architecture("geodite-published-aoti",
                      "geodite-published exported by AOTInductor with the C++ kernels (CPU; compiled once, cached)",
                      _aoti),
        _architecture("geodite-published-aoti-plain",
                      "geodite-published exported by AOTInductor as a plain-autograd graph (CPU; compiled once, "
                      "cached)", _aoti_plain),
        _architecture("mace-mp-0-medium", "MACE-MP-0 medium's architecture (4.69 M parameters)", _mace_mp0_medium,
                      extra="mace", requires=("mace",), install_hint="make peers"),
    ]
}


def _package_version(module: str) -> str:
    """"<distribution> <version>" of the installed package providing ``module`` (e.g. mace → mace-torch)."""
    distribution = (importlib.metadata.packages_distributions().get(module) or [module])[0]
    try:
        return f"{distribution} {importlib.metadata.version(distribution)}"
    except importlib.metadata.PackageNotFoundError:
        return f"{distribution} (not installed)"


def _looks_like_path(name: str) -> bool:
    return name not in REGISTRY and (
        Path(name).suffix in {".pt", ".pth", ".ckpt", ".pt2"} or "/" in name or Path(name).exists()
    )


def resolve(name: str) -> ModelHandle:
    """The handle of ``name``: a registry entry as it is; a checkpoint path → a Geodite entry, an exported package
    (``.pt2``) → an entry that loads the package, each labelled by its file stem and the first 8 hex digits of its
    sha256 (``best.pt`` → ``best-1a2b3c4d``; see :func:`path_label`). KeyError (one line) for an unknown name or a
    path that is not a file."""
    if name in REGISTRY:
        return REGISTRY[name]
    if not _looks_like_path(name):
        raise KeyError(f"unknown model {name!r}; known: {', '.join(REGISTRY)}, a checkpoint path or an exported "
                       "package (FILE.pt2)")
    path = str(Path(name).expanduser())
    if Path(path).suffix == ".pt2":
        return ModelHandle(name, path_label(name), f"Geodite exported package {path}", model_loader=load_exported,
                           checkpoint=path)
    return ModelHandle(name, path_label(name), f"Geodite checkpoint {path}", model_loader=load_model, checkpoint=path)


@lru_cache(maxsize=64)
def _weights_digest(path: str, mtime_ns: int, size: int) -> str:
    return file_digest(path)


def weights_sha256(path: str | Path) -> str:
    """sha256 of a checkpoint file, read once per (path, modification time, size): the label and the store's
    protocol of one run both ask for it."""
    path = Path(path).expanduser().resolve()
    stat = path.stat()
    return _weights_digest(str(path), stat.st_mtime_ns, stat.st_size)


def path_label(name: str) -> str:
    """The results label of a checkpoint or package path: its file stem and the first 8 hex digits of its
    weights' sha256, so two files never share results unless their weights are the same, and a user's
    ``geodite.pt`` never lands on the shipped model's. KeyError when it is not a file (nothing to label)."""
    path = Path(name).expanduser().resolve()
    if not path.is_file():
        raise KeyError(f"no checkpoint at {name}: a checkpoint's results are filed under its file name and weights' "
                       "hash, so the file must exist (or pass the label, e.g. best-1a2b3c4d)")
    return f"{_filename_safe(Path(name).stem)}-{weights_sha256(path)[:LABEL_HASH_CHARS]}"


def model_label(name: str) -> str:
    """The label results are filed under for ``name``, where a results label may stand for the model (``geodite
    report``, ``bench cps`` read earlier results): a model's :attr:`ModelHandle.label`, else ``name`` itself made
    filesystem-safe. A path that looks like a checkpoint but is not a file raises KeyError (nothing to label)."""
    try:
        return resolve(name).label
    except KeyError:
        if _looks_like_path(name):
            raise
        return _filename_safe(name)


def _filename_safe(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text)


def list_models(trained: bool = True) -> list[dict[str, Any]]:
    """One dict per registered model with trained weights (``trained=False``: the untrained architectures that
    ``bench speed`` times instead): name, description, extra, energy_convention, available."""
    return [
        {
            "name": h.name,
            "description": h.description,
            "extra": h.extra or "",
            "energy_convention": h.energy_convention,
            "available": h.available(),
        }
        for h in REGISTRY.values() if h.trained == trained
    ]
