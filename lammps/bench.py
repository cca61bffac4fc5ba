"""Time per MD step: LAMMPS (pair_style geodite, exported package) against ASE (GeoditeCalculator, eager
or the exported package).

    PYTHONPATH=. python lammps/bench.py --model geodite --package PKG.pt2 --sizes 1000,10000 --ranks 1,2

All run NVE from the same Si crystal at 300 K (1 fs); the first step (set-up, neighbour lists, warm-up)
is excluded. Prints one markdown row per (engine, package, atoms, ranks): seconds per step, atom-steps per
second, and for LAMMPS the peak resident memory of its largest rank (GNU time's %M, each rank wrapped). Several
packages (``--package A.pt2,B.pt2``) are timed in turn in each row group; engine ``lammps-virial`` is LAMMPS
computing per-atom virials every step (``compute stress/atom``). ``--repeats R`` alternates the engines R times
(ratios of alternated runs are what a shared machine can still compare).
"""

from __future__ import annotations

import argparse
import stat
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from ase import units
from ase.md.velocitydistribution import MaxwellBoltzmannDistribution
from ase.md.verlet import VelocityVerlet

from geodite.calculator import GeoditeCalculator
from geodite.lammps import run_pair_style
from geodite.registry import resolve
from geodite.tasks.speed import crystal

MD = "velocity all create 300 12345 mom yes rot no\nfix nve all nve\ntimestep 0.001\nrun 1\nrun {steps}"
PER_ATOM_VIRIAL = "compute virial all stress/atom NULL pair\nfix virial all ave/atom 1 1 1 c_virial[*]\n"


def ase_seconds_per_step(model: str, dtype: str, n_atoms: int, steps: int) -> float:
    """NVE with the GeoditeCalculator of ``model`` (:func:`geodite.registry.resolve`: a registry name or checkpoint,
    eager, or an exported ``.pt2``), reusing neighbour lists within a 1 Å skin."""
    atoms = crystal("si", n_atoms)
    atoms.calc = GeoditeCalculator(resolve(model).load(dtype=dtype).evaluator, skin=1.0)
    MaxwellBoltzmannDistribution(atoms, temperature_K=300, rng=np.random.default_rng(0))
    dynamics = VelocityVerlet(atoms, timestep=1.0 * units.fs)
    dynamics.run(1)
    start = time.perf_counter()
    dynamics.run(steps)
    return (time.perf_counter() - start) / steps


def lammps_seconds_per_step(executable: Path, package: Path, n_atoms: int, steps: int, ranks: int,
                            threads: int, per_atom_virial: bool = False) -> tuple[float, float]:
    """Seconds per step and the largest rank's peak resident memory (GB); ``threads`` torch threads per rank."""
    md = (PER_ATOM_VIRIAL if per_atom_virial else "") + MD.format(steps=steps)
    with tempfile.TemporaryDirectory() as directory:
        wrapper = Path(directory) / "lmp_timed"  # each rank under GNU time, its peak RSS (kB) into rss.PID
        wrapper.write_text(f'#!/bin/sh\nexec /usr/bin/time -f %M -o "rss.$$" {Path(executable).resolve()} "$@"\n')
        wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
        result = run_pair_style(wrapper, package, crystal("si", n_atoms), ["Si"], Path(directory) / "run",
                                ranks=ranks, md=md, thermo_every=steps, threads=threads)
        peaks = [int(path.read_text().split()[-1]) for path in (Path(directory) / "run").glob("rss.*")]
    return result.loop_seconds[-1] / steps, max(peaks) / 1e6


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
                    seconds = ase_seconds_per_step(model, args.dtype, n, args.steps)
                    print(f"| ASE + GeoditeCalculator({model}) | {atoms} | 1 x {args.threads} | {seconds:.3f} "
                          f"| {atoms / seconds:.0f} | |", flush=True)
            for engine in (e for e in ("lammps", "lammps-virial") if e in engines):
                for ranks in (int(r) for r in args.ranks.split(",")):
                    for package in packages:
                        per_rank = args.threads_per_rank or max(1, args.threads // ranks)
                        seconds, peak = lammps_seconds_per_step(args.executable, package, n, args.steps, ranks,
                                                                per_rank, per_atom_virial=engine == "lammps-virial")
                        print(f"| LAMMPS pair_style geodite{' + stress/atom' if engine == 'lammps-virial' else ''} "
                              f"({package.name}) | {atoms} | {ranks} x {per_rank} "
                              f"| {seconds:.3f} | {atoms / seconds:.0f} | {peak:.2f} |", flush=True)


if __name__ == "__main__":
    main()
