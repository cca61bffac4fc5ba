"""A compact on-disk frame store (memory-mapped numpy arrays) and the torch Dataset/collate built on it.

Layout of a store directory (all little-endian raw arrays, shapes in ``meta.json``)::

    meta.json            format, counts, units, source description, material id list
    numbers.bin  int16   [A]        atomic numbers of all frames, concatenated
    positions.bin f64    [A, 3]     Å
    forces.bin   f32     [A, 3]     eV/Å (NaN where unknown)
    magmoms.bin  f32     [A]        μB   (NaN where unknown)
    atomic_energies.bin f64 [A]     eV, per-atom energies summing to the frame's energy (a teacher's
                                    decomposition, e.g. SevenNet-0's; NaN where unknown); since format v2
    offsets.bin  int64   [F + 1]    frame k's atoms are offsets[k]:offsets[k+1]
    energy.bin   f64     [F]        eV, total energy in Geodite's convention (MPtrj: uncorrected)
    corrected_energy.bin f64 [F]    eV, MP2020-corrected total energy (NaN where unknown)
    stress.bin   f64     [F, 3, 3]  eV/Å³, ASE sign (positive = tensile), NaN where unknown
    cell.bin     f64     [F, 3, 3]  Å, rows are lattice vectors
    pbc.bin      bool    [F, 3]
    material.bin int32   [F]        index into meta["material_ids"] (e.g. mp-1234, the trajectory)

Formats: ``geodite-framestore-v2`` (written now) added ``atomic_energies.bin``; a ``geodite-framestore-v1``
store (without it) stays readable, its frames without per-atom energies (``Frame.atomic_energies`` None).

Frames are appended one at a time (``FrameStoreWriter``), so converting the 1.58 M MPtrj frames never
holds them as Python objects; reading maps the files lazily (``FrameStore``). Graphs (neighbour lists) are
built per batch in DataLoader workers by ``GraphCollate``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import torch
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator

STORE_FORMAT = "geodite-framestore-v2"
#: the formats FrameStore reads, oldest first; a v1 store has no atomic_energies.bin
READABLE_FORMATS = ("geodite-framestore-v1", STORE_FORMAT)
#: the per-atom arrays a v1 store lacks (read as unknown)
_SINCE_V2 = ("atomic_energies",)

_PER_ATOM = {"numbers": (np.int16, ()), "positions": (np.float64, (3,)), "forces": (np.float32, (3,)),
             "magmoms": (np.float32, ()), "atomic_energies": (np.float64, ())}
_PER_FRAME = {"energy": (np.float64, ()), "corrected_energy": (np.float64, ()), "stress": (np.float64, (3, 3)),
              "cell": (np.float64, (3, 3)), "pbc": (np.bool_, (3,)), "material": (np.int32, ())}


@dataclass
class Frame:
    """One labelled structure, plain numpy. ``stress`` eV/Å³ ASE sign, ``energy`` eV, ``atomic_energies`` [N] eV
    (per-atom energies summing to ``energy``, e.g. a teacher's; None or NaN where unknown)."""

    numbers: np.ndarray
    positions: np.ndarray
    cell: np.ndarray
    pbc: np.ndarray
    energy: float
    forces: np.ndarray | None = None
    stress: np.ndarray | None = None
    material_id: str = ""
    corrected_energy: float = float("nan")
    magmoms: np.ndarray | None = None
    atomic_energies: np.ndarray | None = None

    def to_atoms(self) -> Atoms:
        atoms = Atoms(self.numbers, positions=self.positions, cell=self.cell, pbc=self.pbc)
        results: dict[str, Any] = {"energy": self.energy}
        if self.forces is not None and np.isfinite(self.forces).all():
            results["forces"] = self.forces
        if self.stress is not None and np.isfinite(self.stress).all():
            results["stress"] = self.stress
        if self.atomic_energies is not None and np.isfinite(self.atomic_energies).all():
            results["energies"] = self.atomic_energies  # ASE's name for per-atom energies
        atoms.calc = SinglePointCalculator(atoms, **results)
        atoms.info["material_id"] = self.material_id
        return atoms


def frame_from_atoms(atoms: Atoms, material_id: str = "", energy_key: str | None = None) -> Frame:
    """Frame from labelled ASE atoms (calculator results or ``info``/``arrays`` keys energy/forces/stress, and
    the per-atom energies ASE calls ``energies``)."""
    info, arrays = atoms.info, atoms.arrays
    results = dict(getattr(atoms.calc, "results", {}) or {}) if atoms.calc is not None else {}
    if energy_key and energy_key in info:
        energy = float(info[energy_key])
    elif "energy" in results:
        energy = float(results["energy"])
    elif "energy" in info:
        energy = float(info["energy"])
    else:
        raise ValueError("structure has no energy label")
    forces = results.get("forces", arrays.get("forces"))
    stress = results.get("stress", info.get("stress"))
    if stress is not None:
        stress = np.asarray(stress, dtype=np.float64)
        if stress.shape == (6,):
            from ase.stress import voigt_6_to_full_3x3_stress

            stress = voigt_6_to_full_3x3_stress(stress)
        stress = stress.reshape(3, 3)
    magmoms = arrays.get("magmoms", arrays.get("initial_magmoms"))
    atomic_energies = results.get("energies", arrays.get("energies"))
    return Frame(
        numbers=np.asarray(atoms.numbers),
        positions=np.asarray(atoms.positions, dtype=np.float64),
        cell=np.asarray(atoms.cell.array, dtype=np.float64),
        pbc=np.asarray(atoms.pbc, dtype=bool),
        energy=energy,
        forces=None if forces is None else np.asarray(forces, dtype=np.float64),
        stress=stress,
        material_id=str(material_id),
        corrected_energy=float(info.get("corrected_total_energy", np.nan)),
        magmoms=None if magmoms is None else np.asarray(magmoms, dtype=np.float64).reshape(-1)[: len(atoms)],
        atomic_energies=None if atomic_energies is None else np.asarray(atomic_energies, dtype=np.float64),
    )


class FrameStoreWriter:
    """Append frames to a new store directory; ``close()`` (or the context manager) writes meta.json."""

    def __init__(self, path: str | Path, source: str = "", overwrite: bool = False):
        self.path = Path(path)
        if (self.path / "meta.json").exists() and not overwrite:
            raise FileExistsError(f"frame store already exists at {self.path} (pass overwrite=True)")
        self.path.mkdir(parents=True, exist_ok=True)
        self.source = source
        self._files = {name: open(self.path / f"{name}.bin", "wb") for name in [*_PER_ATOM, *_PER_FRAME]}
        self._offsets = open(self.path / "offsets.bin", "wb")
        np.zeros(1, dtype=np.int64).tofile(self._offsets)
        self.num_frames = 0
        self.num_atoms = 0
        self._materials: dict[str, int] = {}

    def add(self, frame: Frame) -> None:
        n = len(frame.numbers)
        if n == 0:
            raise ValueError("empty frame")

        def put(name: str, value, fill_shape) -> None:
            dtype, _ = (_PER_ATOM | _PER_FRAME)[name]
            if value is None:
                value = np.full(fill_shape, np.nan)
            np.ascontiguousarray(value, dtype=dtype).reshape(-1).tofile(self._files[name])

        put("numbers", frame.numbers, None)
        put("positions", frame.positions, None)
        put("forces", frame.forces, (n, 3))
        put("magmoms", frame.magmoms, (n,))
        put("atomic_energies", frame.atomic_energies, (n,))
        put("energy", frame.energy, None)
        put("corrected_energy", frame.corrected_energy, None)
        put("stress", frame.stress, (3, 3))
        put("cell", frame.cell, None)
        put("pbc", frame.pbc, None)
        index = self._materials.setdefault(frame.material_id, len(self._materials))
        put("material", index, None)
        self.num_atoms += n
        self.num_frames += 1
        np.array([self.num_atoms], dtype=np.int64).tofile(self._offsets)

    def close(self) -> Path:
        for handle in [*self._files.values(), self._offsets]:
            handle.close()
        meta = {
            "format": STORE_FORMAT,
            "num_frames": self.num_frames,
            "num_atoms": self.num_atoms,
            "source": self.source,
            "units": {"energy": "eV", "forces": "eV/Å", "stress": "eV/Å³ (ASE sign)", "positions": "Å",
                      "atomic_energies": "eV"},
            "material_ids": list(self._materials),
        }
        tmp = self.path / "meta.json.tmp"
        tmp.write_text(json.dumps(meta))
        os.replace(tmp, self.path / "meta.json")
        return self.path

    def __enter__(self) -> "FrameStoreWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def write_store(frames: Iterable[Frame], path: str | Path, source: str = "", overwrite: bool = False) -> "FrameStore":
    with FrameStoreWriter(path, source=source, overwrite=overwrite) as writer:
        for frame in frames:
            writer.add(frame)
    return FrameStore(path)


class FrameStore:
    """Read-only, memory-mapped view of a store directory. Cheap to pickle into DataLoader workers."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        meta_path = self.path / "meta.json"
        if not meta_path.exists():
            raise FileNotFoundError(f"no frame store at {self.path} (meta.json missing)")
        self.meta = json.loads(meta_path.read_text())
        if self.meta.get("format") not in READABLE_FORMATS:
            raise ValueError(f"{self.path} is not a frame store of a known format ({', '.join(READABLE_FORMATS)})")
        self.material_ids: list[str] = self.meta["material_ids"]
        self._arrays: dict[str, np.ndarray] | None = None

    def __getstate__(self):
        return {"path": self.path, "meta": self.meta, "material_ids": self.material_ids, "_arrays": None}

    @property
    def arrays(self) -> dict[str, np.ndarray]:
        if self._arrays is None:
            A, F = self.meta["num_atoms"], self.meta["num_frames"]
            arrays = {}
            for name, (dtype, shape) in _PER_ATOM.items():
                if self.meta["format"] != STORE_FORMAT and name in _SINCE_V2:
                    continue  # an older store: unknown, read as None
                arrays[name] = self._map(name, dtype, (A, *shape))
            for name, (dtype, shape) in _PER_FRAME.items():
                arrays[name] = self._map(name, dtype, (F, *shape))
            arrays["offsets"] = self._map("offsets", np.int64, (F + 1,))
            self._arrays = arrays
        return self._arrays

    def _map(self, name: str, dtype, shape) -> np.ndarray:
        if int(np.prod(shape)) == 0:
            return np.zeros(shape, dtype=dtype)
        return np.memmap(self.path / f"{name}.bin", dtype=dtype, mode="r", shape=shape)

    def __len__(self) -> int:
        return int(self.meta["num_frames"])

    @property
    def num_atoms_per_frame(self) -> np.ndarray:
        return np.diff(self.arrays["offsets"])

    def has_atomic_energies(self, indices: Sequence[int] | None = None) -> np.ndarray:
        """[F] (or [len(indices)]) bool: whether each frame has per-atom energies for all its atoms."""
        a = self.arrays
        frames = np.arange(len(self)) if indices is None else np.asarray(indices, dtype=np.int64)
        if "atomic_energies" not in a:
            return np.zeros(len(frames), dtype=bool)
        offsets = np.asarray(a["offsets"])
        known = np.isfinite(np.asarray(a["atomic_energies"]))
        unknown_before = np.concatenate([[0], np.cumsum(~known)])  # unknown atoms before each atom index
        return unknown_before[offsets[frames + 1]] == unknown_before[offsets[frames]]

    def material_of(self, indices: Sequence[int] | None = None) -> np.ndarray:
        material = np.asarray(self.arrays["material"])
        return material if indices is None else material[np.asarray(indices)]

    def __getitem__(self, index: int) -> Frame:
        a = self.arrays
        index = int(index)
        if not 0 <= index < len(self):
            raise IndexError(index)
        lo, hi = int(a["offsets"][index]), int(a["offsets"][index + 1])
        return Frame(
            numbers=np.asarray(a["numbers"][lo:hi], dtype=np.int64),
            positions=np.array(a["positions"][lo:hi]),
            cell=np.array(a["cell"][index]),
            pbc=np.array(a["pbc"][index]),
            energy=float(a["energy"][index]),
            forces=np.asarray(a["forces"][lo:hi], dtype=np.float64),
            stress=np.array(a["stress"][index]),
            material_id=self.material_ids[int(a["material"][index])],
            corrected_energy=float(a["corrected_energy"][index]),
            magmoms=np.asarray(a["magmoms"][lo:hi], dtype=np.float64),
            atomic_energies=np.array(a["atomic_energies"][lo:hi]) if "atomic_energies" in a else None,
        )


def valid_materials(num_materials: int, valid_fraction: float, seed: int = 0) -> np.ndarray:
    """Boolean mask over material indices 0..num_materials-1 (in order of first appearance): the randomly
    chosen ``valid_fraction`` of them (at least one, never all, when the fraction is positive)."""
    rng = np.random.default_rng(seed)
    shuffled = rng.permutation(np.arange(num_materials))
    n_valid = int(round(valid_fraction * num_materials)) if valid_fraction > 0 else 0
    if valid_fraction > 0 and num_materials > 1:
        n_valid = min(max(n_valid, 1), num_materials - 1)
    mask = np.zeros(num_materials, dtype=bool)
    mask[shuffled[:n_valid]] = True
    return mask


def split_by_material(store: FrameStore, valid_fraction: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(train, valid) frame indices; all frames of one material (trajectory) land on the same side."""
    material = store.material_of()
    num_materials = int(material.max()) + 1 if len(material) else 0
    is_valid = valid_materials(num_materials, valid_fraction, seed)[material]
    return np.flatnonzero(~is_valid), np.flatnonzero(is_valid)


class FrameDataset(torch.utils.data.Dataset):
    """Frames of a store (optionally a subset of indices) as plain numpy Frame objects."""

    def __init__(self, store: FrameStore | str | Path, indices: Sequence[int] | None = None):
        self.store = store if isinstance(store, FrameStore) else FrameStore(store)
        self.indices = np.arange(len(self.store)) if indices is None else np.asarray(indices, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> Frame:
        return self.store[int(self.indices[i])]


@dataclass
class Batch:
    """A collated batch: the AtomGraph plus targets (float tensors) and masks for missing labels."""

    graph: Any
    energy: torch.Tensor  # [B] eV
    forces: torch.Tensor  # [N, 3] eV/Å
    stress: torch.Tensor  # [B, 3, 3] eV/Å³
    has_forces: torch.Tensor  # [B] bool
    has_stress: torch.Tensor  # [B] bool
    atomic_energies: torch.Tensor  # [N] eV, float64 (0 where unknown)
    has_atomic_energies: torch.Tensor  # [B] bool: every atom of the frame has a per-atom energy

    def to(self, device) -> "Batch":
        tensors = (self.energy, self.forces, self.stress, self.has_forces, self.has_stress, self.atomic_energies,
                   self.has_atomic_energies)
        return Batch(self.graph.to(device), *(t.to(device) for t in tensors))


class GraphCollate:
    """Collate Frames into a Batch; builds the neighbour lists (runs inside DataLoader workers)."""

    def __init__(self, cutoff: float, dtype: torch.dtype = torch.float32):
        self.cutoff = cutoff
        self.dtype = dtype

    def __call__(self, frames: Sequence[Frame]) -> Batch:
        from geodite.graph import build_graph

        atoms = [Atoms(f.numbers, positions=f.positions, cell=f.cell, pbc=f.pbc) for f in frames]
        graph = build_graph(atoms, cutoff=self.cutoff, dtype=self.dtype)
        forces = [f.forces if f.forces is not None else np.full((len(f.numbers), 3), np.nan) for f in frames]
        stress = [f.stress if f.stress is not None else np.full((3, 3), np.nan) for f in frames]
        has_forces = torch.tensor([bool(np.isfinite(x).all()) for x in forces])
        has_stress = torch.tensor([bool(np.isfinite(s).all()) and bool(np.all(f.pbc)) for s, f in zip(stress, frames)])
        forces_t = torch.as_tensor(np.nan_to_num(np.concatenate(forces)), dtype=self.dtype)
        stress_t = torch.as_tensor(np.nan_to_num(np.stack(stress)), dtype=self.dtype)
        energy = torch.as_tensor([f.energy for f in frames], dtype=torch.float64)
        atomic = [f.atomic_energies if f.atomic_energies is not None else np.full(len(f.numbers), np.nan)
                  for f in frames]
        has_atomic = torch.tensor([bool(np.isfinite(x).all()) for x in atomic])
        atomic_t = torch.as_tensor(np.nan_to_num(np.concatenate(atomic)), dtype=torch.float64)
        return Batch(graph, energy, forces_t, stress_t, has_forces, has_stress, atomic_t, has_atomic)
