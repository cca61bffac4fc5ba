"""Time per MD step: LAMMPS (pair_style geodite, exported package) against ASE (GeoditeCalculator, eager
or the exported package).

    PYTHONPATH=. python lammps/bench.py --model geodite --package PKG.pt2 --sizes 1000,10000 --ranks 1,2

All run NVE from the same Si crystal at 300 K (1 fs); the first step (set-up, neighbour lists, warm-up)
is excluded. Prints one markdown row per (engine, package, atoms, ranks): seconds per step, atom-steps per
second, and for LAMMPS the peak resident memory of its largest rank (GNU time's %M, each rank wrapped). Several
packages (``--package A.pt2,B.pt2``) are timed in turn in each row group; engine ``lammps-virial`` is LAMMPS
computing per-atom virials every step (``compute stress/atom``). ``--repeats R`` alternates the engines R times
(ratios of alternated runs are what a shared machine can still compare).

``--profile`` adds, under each row, where the step's time went, as fractions of it: for ASE the neighbour list
and graph (``build_graph``) and the package call; for LAMMPS the phases of ``pair_style geodite``'s compute
(its ``GEODITE_PROFILE`` timers, mean over ranks: edges from the neighbour list, input tensors, stage calls,
copies of their outputs, forward exchanges, VJP calls, reverse exchanges, forces and virials) and the rest of
LAMMPS's step (integration, neighbour lists, communication of positions and forces).
"""

from __future__ import annotations

import argparse
import os
import stat
import tempfile
import time
from collections import Counter
from pathlib import Path
from unittest import mock

import numpy as np
import torch
from ase import units
from ase.md.velocitydistribution import MaxwellBoltzmannDistribution
from ase.md.verlet import VelocityVerlet

import geodite.calculator
from geodite.calculator import GeoditeCalculator
from geodite.lammps import run_pair_style
from geodite.registry import resolve
from geodite.tasks.speed import crystal

MD = "velocity all create 300 12345 mom yes rot no\nfix nve all nve\ntimestep 0.001\nrun 1\nrun {steps}"
PER_ATOM_VIRIAL = "compute virial all stress/atom NULL pair\nfix virial all ave/atom 1 1 1 c_virial[*]\n"
PHASES = ["edges", "inputs", "stages", "copies", "forward_comm", "vjps", "reverse_comm", "forces"]  # pair_geodite.h
GRAPH = ["graph_rows", "lammps_atoms"]  # the last step's graph rows and LAMMPS's owned + ghost atoms (per rank)


class Timed:
    """``function`` with the wall seconds of its calls summed in ``seconds`` (its other attributes passed through)."""

    def __init__(self, function):
        self.function, self.seconds = function, 0.0

    def __getattr__(self, name: str):
        return getattr(self.function, name)

    def __call__(self, *args, **kwargs):
        start = time.perf_counter()
        try:
            return self.function(*args, **kwargs)
        finally:
            self.seconds += time.perf_counter() - start


def ase_seconds_per_step(model: str, dtype: str, n_atoms: int, steps: int) -> tuple[float, dict[str, float]]:
    """NVE with the GeoditeCalculator of ``model`` (:func:`geodite.registry.resolve`: a registry name or checkpoint,
    eager, or an exported ``.pt2``), reusing neighbour lists within a 1 Å skin: seconds per step, and the seconds
    per step of building the graph (neighbour list included) and of the model's call."""
    atoms = crystal("si", n_atoms)
    atoms.calc = GeoditeCalculator(resolve(model).load(dtype=dtype).evaluator, skin=1.0)
    MaxwellBoltzmannDistribution(atoms, temperature_K=300, rng=np.random.default_rng(0))
    dynamics = VelocityVerlet(atoms, timestep=1.0 * units.fs)
    dynamics.run(1)
    graph, call = Timed(geodite.calculator.build_graph), Timed(atoms.calc.evaluator.model)
    with mock.patch.object(geodite.calculator, "build_graph", graph), \
            mock.patch.object(atoms.calc.evaluator, "model", call):
        start = time.perf_counter()
        dynamics.run(steps)
        seconds = time.perf_counter() - start
    return seconds / steps, {"graph": graph.seconds / steps, "model call": call.seconds / steps}


def lammps_seconds_per_step(executable: Path, package: Path, n_atoms: int, steps: int, ranks: int,
                            threads: int, per_atom_virial: bool = False,
                            profile: bool = False) -> tuple[float, float, dict[str, float]]:
    """Seconds per step, the largest rank's peak resident memory (GB; ``threads`` torch threads per rank) and, if
    ``profile``, the seconds per step of each phase of pair_style geodite's compute (``PHASES``, mean over ranks)."""
    md = (PER_ATOM_VIRIAL if per_atom_virial else "") + MD.format(steps=steps)
    with tempfile.TemporaryDirectory() as directory:
        run = Path(directory) / "run"
        wrapper = Path(directory) / "lmp_timed"  # each rank under GNU time, its peak RSS (kB) into rss.PID
        wrapper.write_text(f'#!/bin/sh\nexec /usr/bin/time -f %M -o "rss.$$" {Path(executable).resolve()} "$@"\n')
        wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
        with mock.patch.dict(os.environ, {"GEODITE_PROFILE": str(run / "profile")} if profile else {}):
            result = run_pair_style(wrapper, package, crystal("si", n_atoms), ["Si"], run, ranks=ranks, md=md,
                                    thermo_every=steps, threads=threads)
        peaks = [int(path.read_text().split()[-1]) for path in run.glob("rss.*")]
        phases: Counter[str] = Counter()
        for path in run.glob("profile.*"):  # one per rank: "name seconds" lines summed over the run's steps
            lines = dict(line.split() for line in path.read_text().splitlines())
            phases.update({name: float(lines[name]) / (steps * ranks) for name in PHASES})
            phases.update({name: int(lines[name]) / ranks for name in GRAPH})
    return result.loop_seconds[-1] / steps, max(peaks) / 1e6, dict(phases)


def fractions(seconds: float, phases: dict[str, float]) -> str:
    """The phases (seconds per step) as fractions of the step, and the rest; the graph's size (rank mean)."""
    timed = {name: value for name, value in phases.items() if name not in GRAPH}
    parts = [f"{name} {value / seconds:.3f}" for name, value in timed.items()]
    parts.append(f"rest {1 - sum(timed.values()) / seconds:.3f}")
    parts += [f"{name} {phases[name]:.0f}" for name in GRAPH if name in phases]
    return "|  | phases (fraction of the step): " + ", ".join(parts) + " | | | | |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="geodite", help="eager model for ASE (name or checkpoint)")
    parser.add_argument("--package", required=True,
                        help="the same model exported (geodite export); several, comma-separated, are timed in turn")
    parser.add_argument("--executable", type=Path, default=Path("build/lammps/lmp_geodite"))
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--sizes", default="1000,10000")
    parser.add_argument("--ranks", default="1,2")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--engines", default="ase,lammps",
                        help="of ase (eager), ase-exported (the package), lammps, lammps-virial (per-atom virials)")
    parser.add_argument("--threads", type=int, default=2, help="cores in all: torch threads = threads / ranks")
    parser.add_argument("--threads-per-rank", type=int, default=0,
                        help="torch threads of each LAMMPS rank (default: threads / ranks)")
    parser.add_argument("--repeats", type=int, default=1, help="alternate all engines this many times")
    parser.add_argument("--profile", action="store_true", help="where each step's time went (module docstring)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    engines, packages = args.engines.split(","), [Path(p) for p in args.package.split(",")]
    print("| engine | atoms | MPI ranks x threads | s/step | atom-steps/s | peak GB per rank |\n"
          "|---|---|---|---|---|---|", flush=True)
    for n in (int(s) for s in args.sizes.split(",")):
        atoms = len(crystal("si", n))
        for _ in range(args.repeats):
            models = [("ase", args.model)] + [("ase-exported", str(package)) for package in packages]
            for engine, model in models:
                if engine in engines:
                    seconds, phases = ase_seconds_per_step(model, args.dtype, n, args.steps)
                    print(f"| ASE + GeoditeCalculator({model}) | {atoms} | 1 x {args.threads} | {seconds:.3f} "
                          f"| {atoms / seconds:.0f} | |", flush=True)
                    if args.profile:
                        print(fractions(seconds, phases), flush=True)
            for engine in (e for e in ("lammps", "lammps-virial") if e in engines):
                for ranks in (int(r) for r in args.ranks.split(",")):
                    for package in packages:
                        per_rank = args.threads_per_rank or max(1, args.threads // ranks)
                        seconds, peak, phases = lammps_seconds_per_step(
                            args.executable, package, n, args.steps, ranks, per_rank,
                            per_atom_virial=engine == "lammps-virial", profile=args.profile)
                        print(f"| LAMMPS pair_style geodite{' + stress/atom' if engine == 'lammps-virial' else ''} "
                              f"({package.name}) | {atoms} | {ranks} x {per_rank} "
                              f"| {seconds:.3f} | {atoms / seconds:.0f} | {peak:.2f} |", flush=True)
                        if args.profile:
                            print(fractions(seconds, phases), flush=True)


if __name__ == "__main__":
    main()
