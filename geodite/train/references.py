"""What the training data say about energies before any training: per-element reference energies e0 (eV),
the data's isolated-atom limit, and the normalisation constants of the loss."""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
from ase.data import chemical_symbols
from ase.neighborlist import neighbor_list

from geodite.data.dataset import FrameStore
from geodite.train.optim import Normalisation

#: Å: a single atom whose nearest periodic image is at least this far is isolated (wider than the cutoffs of
#: the teachers and students used here); a one-atom crystal cell is not
ISOLATION_DISTANCE = 6.0


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


def isolated_atom_energies(store: FrameStore, indices: np.ndarray,
                           min_distance: float = ISOLATION_DISTANCE) -> dict[int, float]:
    """{Z: energy (eV)} of the isolated atoms among ``store[indices]``: frames of one atom with no periodic
    image within ``min_distance`` Å (the data's isolated-atom limit; the first frame of an element wins)."""
    sizes = store.num_atoms_per_frame
    energies: dict[int, float] = {}
    for i in np.asarray(indices)[sizes[np.asarray(indices)] == 1]:
        frame = store[int(i)]
        if len(neighbor_list("i", frame.to_atoms(), min_distance)) == 0:
            energies.setdefault(int(frame.numbers[0]), float(frame.energy))
    return energies


def reference_energies(mode: str, model_e0: np.ndarray, isolated: dict[int, float], store: FrameStore,
                       indices: np.ndarray, log: Callable[[str], None]) -> np.ndarray:
    """e0 per element (eV, indexed by Z) for ``loss.e0`` ``mode``: "model" — ``model_e0``; "isolated" — the
    energies ``isolated`` of the data's single-atom frames (other elements keep ``model_e0``); "fit" — least
    squares on the composition of ``store[indices]`` (warned about without single-atom frames to check it)."""
    if mode == "fit":
        e0 = fit_e0(store, indices, model_e0)
        log("e0 fitted to the training energies (least squares on composition)")
        if not isolated:
            log("warning: e0 fitted by least squares is not an isolated-atom limit and the data have no "
                "single-atom frames to check it against: dimers and atoms near the cutoff may carry "
                "spurious energies and forces (use e0: isolated with single-atom frames)")
        return e0
    if mode == "isolated":
        if not isolated:
            raise ValueError("loss.e0 'isolated' needs single-atom frames in the training data (none found)")
        e0 = model_e0.copy()
        e0[list(isolated)] = list(isolated.values())
        log(f"e0 from the {len(isolated)} single-atom frames of the training data")
        return e0
    return model_e0


def isolated_limit_mismatches(model_isolated: np.ndarray, data_isolated: dict[int, float],
                              tolerance: float) -> list[str]:
    """"symbol: model X eV, data Y eV" for each element whose isolated-atom energy in the model
    (``model_isolated[Z]`` = e0 + energy_shift, eV) is more than ``tolerance`` eV from the data's single-atom
    frame. A model whose isolated atoms sit eV away from the data's must change its energy by as much between
    the bonded region and the cutoff: spurious forces on every atom with neighbours near the cutoff."""
    return [f"{chemical_symbols[z]}: model {model_isolated[z]:.3f} eV, data {energy:.3f} eV"
            for z, energy in sorted(data_isolated.items()) if abs(model_isolated[z] - energy) > tolerance]
