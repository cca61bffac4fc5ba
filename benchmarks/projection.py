"""Wall time of the full Matbench Discovery WBM set and the 103 κ materials, projected from a size sweep.

The model's cost per atom-step u(B) at a batch of B atoms comes from the rows of ``geodite bench speed``
run on the target device (e.g. ``geodite bench speed --device cuda --models geodite --sizes
512,2048,8192,32768``; its ``rows.csv``): one crystal of B atoms costs what a batch of B atoms of small
structures costs, per atom (same density of edges). What is not the model is measured here, on this
machine's CPU, by relaxing ``--n`` structures with the batched engine (:func:`geodite.relax.relax_in_flight`)
and timing the model's forward passes apart: per structure-step, the optimiser, the cell filter and the
graph building (Python on the host, whatever the device).

* WBM: N = 256,963 structures × mean FIRE steps (measured here) × (atoms × u(B) + host cost per
  structure-step), the sizes those of the 1000 random offline WBM materials;
* κ: per material, the FC2 + FC3 displaced supercells (phono3py on the task's prototype structure and
  phononDB supercells) × atoms × u(B); phono3py's own force-constant and conductivity work is CPU work,
  reported apart from the reference rows' measurements (``--kappa-rows``).

With ``--local-speed`` (this CPU's sweep) the sweep is calibrated: a batch of small WBM structures costs
more per atom than one crystal of as many atoms (more edges per atom, per-structure sums), and the factor
measured here (``calibration``) multiplies the target device's sweep — an assumption (the factor may differ
on a GPU); ``check`` compares the uncalibrated projection with the measured run. Prints one JSON object.

    python benchmarks/projection.py --speed results/speed/geodite/rows.csv --model geodite --n 60 --threads 2
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import pandas as pd
import torch
from pymatgen.core import Structure

from batch_calls import prototype_supercells  # this folder's script (run as python benchmarks/projection.py)

from geodite.calculator import Evaluator
from geodite.data import kappa as kdata
from geodite.data import wbm
from geodite.registry import resolve
from geodite.relax import ATOMS_IN_FLIGHT, RelaxSettings, relax_in_flight
from geodite.tasks.discovery import DiscoveryTask

WBM_STRUCTURES = 256_963  # Matbench Discovery's full test set (docs/benchmarks.md)


def per_atom_cost(speed: pd.DataFrame, model: str, atoms: int) -> float:
    """u(B), seconds per atom-step at a batch of ``atoms`` atoms: log-log interpolation between the sweep's
    sizes (clamped to its ends)."""
    rows = speed[(speed["model"] == model) & speed["us_per_atom_step"].notna()].sort_values("n_atoms")
    if rows.empty:
        raise ValueError(f"no speed rows of model {model!r}")
    x, y = np.log(rows["n_atoms"].to_numpy(float)), np.log(rows["us_per_atom_step"].to_numpy(float))
    return float(np.exp(np.interp(np.log(atoms), x, y))) * 1e-6


def starts(n: int, initial: str | None = None) -> list:
    """The first ``n`` WBM initial structures of the ASE database ``initial`` (what the full benchmark
    relaxes), or without it the discovery task's offline starts (seeded strain ±0.03 and rattle 0.05 Å)."""
    if initial:
        from ase.db import connect

        return [row.toatoms() for row in connect(initial).select(limit=n)]
    task = DiscoveryTask(mode="offline")
    return [task.start_structure(item) for item in task.items()[:n]]


def measure_relaxations(evaluator: Evaluator, structures: list, budget: int) -> dict:
    """Relax ``structures`` in flight (``budget`` atoms); wall, forward-pass time, steps, host cost."""
    forward_s = [0.0]
    forward = evaluator.model.forward

    def timed_forward(*args, **kwargs):
        begin = time.perf_counter()
        out = forward(*args, **kwargs)
        forward_s[0] += time.perf_counter() - begin
        return out

    evaluator.model.forward = timed_forward
    begin = time.perf_counter()
    try:
        results = [r for _, r in relax_in_flight(enumerate(structures), evaluator.evaluate, RelaxSettings(), budget)]
    finally:
        del evaluator.model.forward
    wall = time.perf_counter() - begin
    steps = np.array([r.n_steps + 1 for r in results])  # +1: the evaluation before the first step
    atoms = np.array([len(s) for s in structures])
    return {"structures": len(structures), "wall_s": wall, "forward_s": forward_s[0],
            "structure_steps": int(steps.sum()), "atom_steps": int((steps * atoms).sum()),
            "mean_steps": float(steps.mean()),
            "host_s_per_structure_step": (wall - forward_s[0]) / steps.sum()}


def kappa_workload() -> pd.DataFrame:
    """Displaced supercells (FC2 + FC3) and their atoms per material of the 103."""
    rows = []
    for item in kdata.offline_items():
        cells = prototype_supercells(item)
        rows.append({"material": item["material_id"], "formula": item["formula"],
                     "atom_evaluations": sum(map(len, cells)), "supercells": len(cells)})
    return pd.DataFrame(rows)


def project(speed: pd.DataFrame, model: str, budget: int, measured: dict, sizes: np.ndarray,
            kappa: pd.DataFrame, calibration: float) -> dict:
    """Hours for the full WBM set and the 103 κ materials' model work at a batch of ``budget`` atoms;
    ``calibration`` multiplies the sweep's per-atom cost (a batch of small structures against one crystal)."""
    u = per_atom_cost(speed, model, budget) * calibration
    per_structure = measured["mean_steps"] * (sizes.mean() * u + measured["host_s_per_structure_step"])
    return {"atoms_in_flight": budget, "us_per_atom_step": round(u * 1e6, 2),
            "wbm_hours": round(WBM_STRUCTURES * per_structure / 3600, 1),
            "wbm_model_share": round(sizes.mean() * u / (sizes.mean() * u + measured["host_s_per_structure_step"]), 3),
            "kappa_model_hours": round(kappa["atom_evaluations"].sum() * u / 3600, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description="Project full WBM and κ wall times from a size sweep")
    parser.add_argument("--speed", required=True, help="rows.csv of geodite bench speed on the target device")
    parser.add_argument("--local-speed", help="rows.csv of geodite bench speed on this CPU (for the check)")
    parser.add_argument("--model", default="geodite", help="the model of the speed rows and of the relaxations")
    parser.add_argument("--budgets", default="512,2048,8192,32768", help="atoms in flight to project for")
    parser.add_argument("--n", type=int, default=60, help="WBM structures relaxed to measure steps/host cost")
    parser.add_argument("--initial", help="ASE db of WBM initial structures to relax (default: offline starts)")
    parser.add_argument("--kappa-rows", help="rows.csv of a kappa run: its conductivity_s (CPU, phono3py)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    structures = starts(args.n, args.initial)
    evaluator = resolve(args.model).load("cpu", "float32").evaluator
    budget = ATOMS_IN_FLIGHT["cpu"]  # what the discovery task keeps in flight on a CPU
    measured = measure_relaxations(evaluator, structures, budget)
    sizes = np.array([len(Structure.from_dict(r["structure"])) for r in wbm.load_offline_wbm()])
    kappa = kappa_workload()
    speed = pd.read_csv(args.speed)
    calibration = 1.0
    if args.local_speed:  # the measured forward passes against the local sweep at the same budget
        calibration = measured["forward_s"] / (measured["atom_steps"] * per_atom_cost(
            pd.read_csv(args.local_speed), args.model, budget))
    out = {"model": args.model, "measured_here": {k: round(v, 5) if isinstance(v, float) else v
                                                  for k, v in measured.items()},
           "wbm_mean_atoms": round(float(sizes.mean()), 2),
           "kappa": {"materials": len(kappa), "supercells": int(kappa["supercells"].sum()),
                     "atom_evaluations": int(kappa["atom_evaluations"].sum())},
           "calibration": round(calibration, 3),
           "projection": [project(speed, args.model, int(b), measured, sizes, kappa, calibration)
                          for b in args.budgets.split(",")]}
    if args.local_speed:
        u = per_atom_cost(pd.read_csv(args.local_speed), args.model, budget)
        predicted = measured["atom_steps"] * u + measured["structure_steps"] * measured["host_s_per_structure_step"]
        out["check"] = {"measured_wall_s": round(measured["wall_s"], 2), "projected_wall_s": round(predicted, 2),
                        "measured_forward_s": round(measured["forward_s"], 2),
                        "projected_forward_s": round(measured["atom_steps"] * u, 2)}
    if args.kappa_rows:
        rows = pd.read_csv(args.kappa_rows)
        out["kappa"]["cpu_conductivity_s_per_material_measured"] = rows["conductivity_s"].round(1).tolist()
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
