"""Relaxation throughput of the relaxation backends, side by side: the engines of
:func:`geodite.relax.relax_structures` (``ase``, ``batched``) and torch-sim's
(:func:`geodite.torchsim.relax_structures_torchsim`).

Structures per hour of each backend (``ase``, ``batched``, ``torch-sim``) on the first ``--n`` offline WBM
materials, started from DiscoveryTask's perturbation (strain ±0.03, rattle 0.05 Å, seed 0), relaxed one
backend after the other in this process; also the mean steps, the converged count and, for two backends,
the per-atom energy differences and the materials more than 1e-3 eV/atom apart. Figures and their
commands: docs/batched-engine.md.

    python benchmarks/relax_engines.py --n 20 --backends batched,ase --threads 1

Prints one JSON object; writes nothing.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
from geodite.registry import resolve
from geodite.relax import ENGINES, RelaxSettings, relax_structures
from geodite.tasks.discovery import DiscoveryTask

BACKENDS = (*ENGINES, "torch-sim")


def relax_with(backend: str, starts: list, calculator, steps: int, atoms_in_flight: int | None) -> list:
    """The RelaxResults of ``starts`` with ``backend`` (fmax 0.05 eV/Å, at most ``steps`` steps)."""
    settings = RelaxSettings(steps=steps)
    if backend == "torch-sim":
        from geodite.torchsim import relax_structures_torchsim  # torch-sim: an optional dependency

        return relax_structures_torchsim(starts, calculator, settings, atoms_in_flight=atoms_in_flight)
    return relax_structures(starts, calculator, settings, engine=backend, atoms_in_flight=atoms_in_flight)


def throughput(
    n: int = 40,
    model: str = "geodite",
    backends: tuple[str, ...] = ("ase", "torch-sim"),
    device: str = "cpu",
    dtype: str = "float32",
    atoms_in_flight: int | None = None,
    steps: int = 500,
) -> dict:
    """Structures per hour, structure-steps per hour, mean steps and converged count of each backend (fmax
    0.05 eV/Å, ≤ ``steps`` steps), and the per-atom energy differences (eV/atom) between two backends.
    ``model``: a registry name, e.g. ``geodite-published`` (the published size with untrained weights, for
    timing only: a fixed ``steps`` makes the work comparable)."""
    unknown = set(backends) - set(BACKENDS)
    if unknown:
        raise ValueError(f"unknown backend(s) {sorted(unknown)}; choose from {', '.join(BACKENDS)}")
    handle = resolve(model)
    task = DiscoveryTask(mode="offline")
    records = task.items()[:n]
    starts = [task.start_structure(r) for r in records]
    n_atoms = np.array([len(a) for a in starts])
    out: dict = {"n": len(starts), "atoms_mean": float(n_atoms.mean()), "atoms_max": int(n_atoms.max())}
    energies, details = {}, {}
    for backend in backends:
        calculator = handle.load(device, dtype)
        t0 = time.perf_counter()
        res = relax_with(backend, starts, calculator, steps, atoms_in_flight)
        wall = time.perf_counter() - t0
        energies[backend] = np.array([r.energy for r in res]) / n_atoms
        details[backend] = res
        out[backend] = {
            "wall_s": round(wall, 1),
            "structures_per_hour": round(3600 * len(res) / wall, 1),
            "structure_steps_per_hour": round(3600 * sum(r.n_steps for r in res) / wall),
            "mean_steps": float(np.mean([r.n_steps for r in res])),
            "n_converged": int(sum(r.converged for r in res)),
        }
    if len(energies) == 2:
        diff = np.abs(np.subtract(*energies.values()))
        out["energy_diff_per_atom"] = {"median": float(np.median(diff)), "max": float(diff.max())}
        out["over_1e-3_eV_per_atom"] = [
            {"material_id": records[i]["material_id"], "n_atoms": int(n_atoms[i]), "diff": float(diff[i]),
             **{f"{b}_steps_converged": (details[b][i].n_steps, details[b][i].converged) for b in details}}
            for i in np.flatnonzero(diff > 1e-3)
        ]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description="Relaxation throughput of the relaxation backends")
    parser.add_argument("--n", type=int, default=40)
    parser.add_argument("--model", default="geodite")
    parser.add_argument("--backends", default="ase,torch-sim")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--atoms-in-flight", type=int, default=None,
                        help="atoms relaxing at once (default: the backend's)")
    parser.add_argument("--steps", type=int, default=500)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(json.dumps(throughput(args.n, args.model, tuple(args.backends.split(",")), args.device, args.dtype,
                                args.atoms_in_flight, args.steps), indent=1))


if __name__ == "__main__":
    main()
