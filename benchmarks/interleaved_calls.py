"""The published-size Geodite at 216 atoms called alternately with another model at 1,000 atoms, the speed
benchmark's order (what huge pages change, docs/speed.md): min and median seconds per call of each, and the
process's system time and page faults over the timed calls.

    python benchmarks/interleaved_calls.py chgnet                              # huge pages (geodite's default)
    THP_MEM_ALLOC_ENABLE=0 python benchmarks/interleaved_calls.py chgnet       # without

Run the two alternately, several times, on an idle machine.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import time

import torch
from ase.calculators.calculator import all_changes

from geodite.registry import resolve
from geodite.tasks.speed import crystal

PROPERTIES = ["energy", "forces", "stress"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("other", help="the model called between Geodite's calls (a registry name)")
    parser.add_argument("--repeats", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    geodite, other = (resolve(name).load("cpu", "float32") for name in ("geodite-published", args.other))
    small, large = crystal("si", 216), crystal("si", 1000)
    geodite.calculate(small, PROPERTIES, all_changes)
    other.calculate(large, PROPERTIES, all_changes)
    ours, theirs = [], []
    before = resource.getrusage(resource.RUSAGE_SELF)
    for _ in range(args.repeats):
        for calculator, atoms, times in ((geodite, small, ours), (other, large, theirs)):
            start = time.perf_counter()
            calculator.calculate(atoms, PROPERTIES, all_changes)
            times.append(time.perf_counter() - start)
    after = resource.getrusage(resource.RUSAGE_SELF)
    print(f"THP_MEM_ALLOC_ENABLE={os.environ.get('THP_MEM_ALLOC_ENABLE')}: geodite-published 216 atoms min "
          f"{min(ours):.3f} median {statistics.median(ours):.3f} s; {args.other} 1000 atoms min {min(theirs):.3f} s; "
          f"system time {after.ru_stime - before.ru_stime:.2f} s, page faults {after.ru_minflt - before.ru_minflt}")


if __name__ == "__main__":
    main()
