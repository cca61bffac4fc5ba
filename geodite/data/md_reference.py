"""MD reference sets: systems with a starting structure, a temperature and AIMD frames or a g(r).

A reference set is a folder with a ``manifest.json``::

    {"name": "...", "description": "...", "source": "...",
     "systems": [{"name": "Li6PS5Cl_0p",
                  "trajectory": "Li6PS5Cl_0p.XDATCAR.gz",   # AIMD frames: any ASE-readable file,
                  "format": "vasp-xdatcar",                  #   .gz allowed; format as ase.io names it
                  "structure": "start.cif",                  # optional: start structure (default: 1st frame)
                  "rdf": "Li6PS5Cl_0p.rdf.csv",              # optional: precomputed g(r) instead of frames
                  "temperature_K": 500.0,
                  "timestep_fs": 2.0, "frame_interval_steps": 50}]}   # time between frames (for MSD)

A precomputed ``rdf`` file is a CSV with a column ``r`` (Å) and one column per pair ("Li-S", …) plus
``pooled``. Paths are relative to the folder. The shipped set (six argyrodite AIMD runs) is in
``geodite/data/files/md/argyrodites``.
"""

from __future__ import annotations

import gzip
import io
import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd
from ase import Atoms
from ase.io import read


@dataclass
class ReferenceSystem:
    """One system of a reference set (temperatures in K, times in fs)."""

    name: str
    folder: Path
    temperature_K: float
    trajectory: str | None = None
    format: str | None = None
    structure: str | None = None
    rdf: str | None = None
    timestep_fs: float | None = None
    frame_interval_steps: int | None = None
    description: str = ""
    _frames: list[Atoms] | None = field(default=None, repr=False)

    @property
    def frame_interval_fs(self) -> float | None:
        if self.timestep_fs is None or self.frame_interval_steps is None:
            return None
        return self.timestep_fs * self.frame_interval_steps

    def frames(self) -> list[Atoms]:
        """The AIMD frames (empty when the system ships only a g(r))."""
        if self._frames is None:
            self._frames = read_frames(self.folder / self.trajectory, self.format) if self.trajectory else []
        return self._frames

    def start_structure(self) -> Atoms:
        if self.structure:
            return read(self.folder / self.structure)
        frames = self.frames()
        if not frames:
            raise ValueError(f"{self.name}: neither a structure nor frames to start from")
        return frames[0].copy()

    def precomputed_rdf(self) -> pd.DataFrame | None:
        return pd.read_csv(self.folder / self.rdf) if self.rdf else None


def read_frames(path: Path, format: str | None = None) -> list[Atoms]:
    """All frames of a trajectory file; gzip-compressed files are read transparently."""
    if path.suffix == ".gz":
        with gzip.open(path, "rt") as handle:
            return read(io.StringIO(handle.read()), index=":", format=format)
    return read(path, index=":", format=format)


def shipped_reference_dir() -> Path:
    return Path(str(resources.files("geodite") / "data" / "files" / "md" / "argyrodites"))


def load_reference_set(folder: str | Path | None = None) -> tuple[dict, list[ReferenceSystem]]:
    """(manifest, systems) of a reference-set folder (default: the shipped argyrodite set)."""
    folder = Path(folder) if folder else shipped_reference_dir()
    manifest_path = folder / "manifest.json"
    if not manifest_path.exists():
        raise FileNotFoundError(f"no manifest.json in {folder}: see geodite/data/md_reference.py for the format")
    manifest = json.loads(manifest_path.read_text())
    systems = []
    for entry in manifest["systems"]:
        if not entry.get("trajectory") and not entry.get("rdf"):
            raise ValueError(f"{entry.get('name')}: a system needs AIMD frames ('trajectory') or an 'rdf'")
        known = {k: v for k, v in entry.items() if k in ReferenceSystem.__dataclass_fields__ and k != "folder"}
        systems.append(ReferenceSystem(folder=folder, **known))
    return manifest, systems


def wrapped_positions(frames: list[Atoms]) -> np.ndarray:
    """[T, N, 3] Cartesian positions (Å) of a list of frames."""
    return np.stack([frame.positions for frame in frames])
