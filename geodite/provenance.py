"""Where a result came from: installed versions, the machine, the model's checkpoint and the shipped data.

Used by the report (provenance tables), ``bench all`` (``provenance.json``) and the speed task (the machine
line of its table). Nothing here runs a model.
"""

from __future__ import annotations

import datetime as dt
import os
import platform
from collections.abc import Sequence
from importlib import metadata, resources
from pathlib import Path
from typing import Any

PACKAGES = ("geodite", "torch", "ase", "pymatgen", "phono3py", "phonopy", "numpy", "spglib")


def utc_now() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def package_versions(names: Sequence[str] = PACKAGES) -> dict[str, str | None]:
    """Installed versions (None when absent), plus Python's."""
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def hardware() -> dict:
    """CPU model, cores (all / usable), memory, GPU (via torch, if any) and the OS."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as handle:
            cpu = next(line.split(":", 1)[1].strip() for line in handle if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    memory_gb = None
    try:
        with open("/proc/meminfo") as handle:
            kib = next(int(line.split()[1]) for line in handle if line.startswith("MemTotal"))
        memory_gb = round(kib / 2**20, 1)
    except (OSError, StopIteration, ValueError):
        pass
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    gpu = None
    try:
        import torch

        if torch.cuda.is_available():
            gpu = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
    except Exception:  # noqa: BLE001 - provenance must not fail on a broken CUDA set-up
        gpu = None
    return {"cpu": cpu, "cores": os.cpu_count(), "usable_cores": usable, "memory_gb": memory_gb, "gpu": gpu,
            "os": platform.platform()}


def shown_path(path: Path) -> str:
    """``path`` as records show it: a file shipped inside the geodite package relative to the package's parent
    (``geodite/weights/geodite-distilled.pt``, wherever the checkout or installation lies), others absolute."""
    path = Path(path).resolve()
    package_parent = Path(__file__).resolve().parent.parent
    return str(path.relative_to(package_parent)) if path.is_relative_to(package_parent / "geodite") else str(path)


def model_provenance(model: str) -> dict:
    """Checkpoint path, sha256 and parameter count of a Geodite model; the description of a peer."""
    from geodite.registry import resolve

    out: dict[str, Any] = {"model": model, "checkpoint": None, "sha256": None, "params_M": None}
    try:
        handle = resolve(model)
        out["description"] = handle.description
    except KeyError as error:
        return out | {"note": str(error)}
    path = None
    if handle.checkpoint == "geodite-mp":  # never download for a report: use the cached file if there is one
        from geodite.data.downloads import cache_dir

        candidate = cache_dir() / "Geodite-MP.ckpt"
        path = candidate if candidate.exists() else None
    elif handle.checkpoint is not None:
        from geodite.checkpoints import CheckpointError, resolve_model_path

        try:
            path = resolve_model_path(handle.checkpoint)
        except CheckpointError as error:
            out["note"] = str(error)
    if path is None:
        out.setdefault("note", "weights come with the model's own package (no checkpoint file of ours)" if handle.trained
                       else "untrained weights (timing only)")
        return out
    from geodite.registry import weights_sha256

    out |= {"checkpoint": shown_path(path), "sha256": weights_sha256(path)}  # the store's hash, read once per process
    try:
        from geodite.checkpoints import load_checkpoint

        out["params_M"] = round(sum(p.numel() for p in load_checkpoint(path).parameters()) / 1e6, 4)
    except Exception:  # noqa: BLE001 - the count is a nicety
        pass
    return out


def data_files() -> list[dict]:
    """sha256 and size of the data shipped in the package (geodite/data/files/**)."""
    from geodite.data.downloads import file_digest

    root = Path(str(resources.files("geodite") / "data" / "files"))
    rows = []
    for path in sorted(p for p in root.rglob("*") if p.is_file() and p.name != "README.md" and "__pycache__" not in p.parts):
        rows.append({"file": str(path.relative_to(root)), "bytes": path.stat().st_size, "sha256": file_digest(path)})
    return rows
