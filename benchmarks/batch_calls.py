"""Batched model calls against one structure a call, on the model workloads of kappa, diatomics and md.

* kappa: per material of the first ``--materials`` (the task's prototype structure and phononDB supercells), the FC2 and FC3
  displaced supercells through :func:`geodite.tasks.kappa.supercell_forces` (the task's calls);
* diatomics: the dimer curves of the first ``--elements`` elements (the task's distances, all in one
  ``evaluate`` call as ``DiatomicsTask.run_batch`` makes it), reported per element;
* md: ``--md-steps`` Nosé–Hoover steps (the task's thermostat) of the shipped argyrodite systems, in
  lockstep (:func:`geodite.lockstep.run_in_lockstep`) against one system after the other.

"one" is the runner's old way, a model call per structure (an Evaluator of ``atoms_per_call`` = 1, what
``--batch-atoms 1`` builds in every bench command; MD: each system alone); "batched" is today's default.
The two alternate, ``--repeats`` times, in this process; medians and their ratio are printed as JSON.
Figures and their commands: docs/batched-engine.md.

    python benchmarks/batch_calls.py --threads 2 --model geodite --workloads kappa,diatomics,md
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch
from ase import units
from ase.md.nose_hoover_chain import NoseHooverChainNVT
from ase.md.velocitydistribution import MaxwellBoltzmannDistribution

from geodite import phonons
from geodite.calculator import ATOMS_PER_CALL, Evaluator, GeoditeCalculator, predict
from geodite.data import kappa as kdata
from geodite.data.md_reference import load_reference_set
from geodite.lockstep import run_in_lockstep
from geodite.tasks.diatomics import dimer, distances_for
from geodite.registry import resolve
from geodite.tasks.kappa import supercell_forces

#: the two contenders: "one" (a model call per structure) and "batched" (the Evaluator's atoms per call)
MODES = ("one", "batched")


def timed(work: Callable[[], object]) -> float:
    start = time.perf_counter()
    work()
    return time.perf_counter() - start


def compare(work: Callable[[str], object], repeats: int) -> dict:
    """Median seconds of ``work(mode)`` for each of MODES, alternated ``repeats`` times after one untimed run of
    each (the first calls of a process on new shapes take seconds of set-up)."""
    seconds: dict[str, list[float]] = {mode: [] for mode in MODES}
    for repeat in range(repeats + 1):
        for mode in MODES:
            elapsed = timed(lambda: work(mode))
            if repeat:
                seconds[mode].append(elapsed)
    one, batched = statistics.median(seconds["one"]), statistics.median(seconds["batched"])
    return {"one_s": round(one, 3), "batched_s": round(batched, 3), "speedup": round(one / batched, 2)}


def prototype_supercells(item: dict) -> list:
    """The FC2 + FC3 displaced supercells (ase.Atoms) of a κ item's prototype structure, with the task's
    supercells (``geodite.data.kappa.offline_items``), skipped displacements left out."""
    atoms = kdata.prototype_atoms(item["formula"], item["spg_num"], cell=item["cell"])
    ph3 = phonons.init_phono3py(atoms, fc2_supercell=item["fc2_supercell"], fc3_supercell=item["fc3_supercell"],
                                q_mesh=item["q_mesh"])
    return [c for c in phonons.fc2_displacements(ph3) + phonons.fc3_displacements(ph3) if c is not None]


def kappa_sets(calculators: dict[str, GeoditeCalculator], n_materials: int, repeats: int) -> list[dict]:
    """FC2 + FC3 displacement sets of the first ``n_materials`` offline materials, one structure a call vs
    batched (``calculators``: one per mode of MODES)."""
    out = []
    for item in kdata.offline_items()[:n_materials]:
        cells = prototype_supercells(item)

        def work(mode: str) -> None:
            supercell_forces(cells, lambda structures, compute_stress: predict(calculators[mode], structures,
                                                                               compute_stress))

        row = compare(work, repeats)
        out.append({"material": item["formula"], "supercells": len(cells),
                     "atoms": sorted({len(c) for c in cells})} | row)
    return out


def dimer_curves(calculators: dict[str, GeoditeCalculator], n_elements: int, repeats: int) -> dict:
    """All dimers of the first ``n_elements`` elements (H, He, ...), per element, one a call vs batched."""
    from ase.data import chemical_symbols

    symbols = chemical_symbols[1 : n_elements + 1]
    structures = [dimer(s, r, "mbd") for s in symbols for r in distances_for(s, "mbd")]
    row = compare(lambda mode: predict(calculators[mode], structures, False), repeats)
    per_element = {k.replace("_s", "_s_per_element"): round(v / n_elements, 4) for k, v in row.items() if k != "speedup"}
    return {"elements": n_elements, "dimers": len(structures)} | per_element | {"speedup": row["speedup"]}


def md_systems(calculator: GeoditeCalculator, steps: int, repeats: int) -> dict:
    """``steps`` NVT steps of every shipped argyrodite system: one after the other vs in lockstep."""
    _, systems = load_reference_set()
    evaluator = calculator.evaluator

    def start(system):
        atoms = system.start_structure()
        MaxwellBoltzmannDistribution(atoms, temperature_K=system.temperature_K, rng=np.random.default_rng(0))
        return atoms

    def run(atoms, member_calculator) -> None:
        atoms.calc = member_calculator
        NoseHooverChainNVT(atoms, 2 * units.fs, temperature_K=500, tdamp=200 * units.fs).run(steps)

    def work(mode: str) -> None:
        if mode == "batched":
            for _, result in run_in_lockstep(evaluator, [start(s) for s in systems], run, skin=1.0):
                if isinstance(result, BaseException):
                    raise result
        else:
            for system in systems:
                run(start(system), GeoditeCalculator(evaluator, skin=1.0))

    return {"systems": len(systems), "atoms_each": len(systems[0].start_structure()), "steps": steps} | compare(
        work, repeats)


def main() -> None:
    parser = argparse.ArgumentParser(description="Batched model calls vs one structure a call")
    parser.add_argument("--model", default="geodite", help="registry name or geodite-published (timing only)")
    parser.add_argument("--workloads", default="kappa,diatomics,md")
    parser.add_argument("--elements", type=int, default=20)
    parser.add_argument("--md-steps", type=int, default=10)
    parser.add_argument("--materials", type=int, default=4, help="kappa: the first N of the 103 materials")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--batch-atoms", type=int, default=ATOMS_PER_CALL,
                        help="atoms per model call of the batched mode (default: %(default)s, the Evaluator's)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    calculator = resolve(args.model).load("cpu", args.dtype, atoms_per_call=args.batch_atoms)
    model = calculator.evaluator.model  # shared: an Evaluator of the same device and dtype does not copy it
    calculators = {"one": GeoditeCalculator(Evaluator(model, "cpu", args.dtype, atoms_per_call=1)),
                   "batched": calculator}
    out: dict = {"model": args.model, "threads": args.threads, "dtype": args.dtype,
                 "batch_atoms": calculator.evaluator.atoms_per_call}
    workloads = args.workloads.split(",")
    if "diatomics" in workloads:
        out["diatomics"] = dimer_curves(calculators, args.elements, args.repeats)
    if "md" in workloads:
        out["md"] = md_systems(calculator, args.md_steps, args.repeats)
    if "kappa" in workloads:
        out["kappa"] = kappa_sets(calculators, args.materials, args.repeats)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
