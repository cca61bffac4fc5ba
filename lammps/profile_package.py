"""Where an exported package's time goes: one energy + forces + stress call under torch.profiler.

    PYTHONPATH=. python lammps/profile_package.py PKG.pt2 --sizes 216,1000 --threads 2

Si diamond (``geodite.tasks.speed.crystal``), the package's dtype. AOTInductor's compiled kernels are
invisible to the profiler; the ``geodite::`` operators (packages of ``--kernels ops``) and any ATen fallback
are not. Prints, per size, the unprofiled wall time of one call and the time inside each operator.
"""

from __future__ import annotations

import argparse
import time
from collections import Counter

import torch
from torch.profiler import ProfilerActivity, profile

from geodite.export import load_exported
from geodite.graph import build_graph
from geodite.tasks.speed import crystal


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("package")
    parser.add_argument("--sizes", default="216,1000")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    package = load_exported(args.package)
    for n in (int(size) for size in args.sizes.split(",")):
        graph = build_graph([crystal("si", n)], package.cutoff, package.dtype)
        package(graph)  # warm-up
        start = time.perf_counter()
        package(graph)
        seconds = time.perf_counter() - start
        with profile(activities=[ProfilerActivity.CPU]) as profiler:
            package(graph)
        events = profiler.key_averages()
        operators = {event.key: event.cpu_time_total / 1e6 for event in events if event.key.startswith("geodite::")}
        calls = Counter({event.key: event.count for event in events if event.key.startswith("aten::")})
        print(f"{len(graph.z)} atoms, {graph.edge_index.shape[1]} edges: {seconds:.3f} s per call, "
              f"{sum(operators.values()):.3f} s in the geodite:: operators")
        for name, operator_seconds in operators.items():
            print(f"  {name}: {operator_seconds:.3f} s")
        print(f"  ATen calls: {sum(calls.values())} ({', '.join(f'{k} {v}' for k, v in calls.most_common(4))})")


if __name__ == "__main__":
    main()
