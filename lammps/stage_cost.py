"""What the cut into stages costs by itself, and what ghost rows add: a package's stages and VJPs (format 5,
``geodite.export.load_stages``) run from Python on two graphs of the same Si crystal, against the whole graph's
one call (``load_exported``).

    PYTHONPATH=. python lammps/stage_cost.py PKG.pt2 --atoms 1000 --repeats 3

A: every atom owned, periodic images as edge vectors (no ghost rows); B: one domain with a ghost row for every
image within the cutoff of an owned atom (``geodite.domains.split_domains``), as pair_style geodite's graph on one
rank. One torch thread. Prints seconds per call, the rows and edges, and the stages' and VJPs' times.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from ase.neighborlist import neighbor_list

from geodite.domains import Domain, split_domains
from geodite.export import load_exported, load_stages
from geodite.graph import build_graph
from geodite.tasks.speed import crystal


def stage_seconds(stages, vjps, domain: Domain, channels: int) -> tuple[list[float], list[float]]:
    """Wall seconds of each stage and of each VJP (stage order) over ``domain``, the exchanges left out."""
    z, edge_index, vectors = domain.z, domain.edge_index.contiguous(), domain.vectors.contiguous()
    rows, edges, dtype = domain.owner.shape[0], vectors.shape[0], vectors.dtype
    h, X = torch.zeros(rows, channels, dtype=dtype), torch.zeros(rows, 8, channels, dtype=dtype)
    t = torch.zeros(edges, channels, dtype=dtype)
    forward, backward, inputs, saved = [], [], [], []
    for stage in stages:
        inputs.append((h, X, t))
        start = time.perf_counter()
        out = stage(vectors, z, edge_index, h, X, t)
        forward.append(time.perf_counter() - start)
        h, X, t = out[1].contiguous(), out[2].contiguous(), out[3]
        saved.append(out[4:])
    grad_h, grad_X, grad_t = torch.zeros_like(h), torch.zeros_like(X), torch.zeros_like(t)
    for k in reversed(range(len(stages))):
        start = time.perf_counter()
        out = vjps[k](vectors, z, edge_index, domain.local, *inputs[k], grad_h, grad_X, grad_t, *saved[k])
        backward.append(time.perf_counter() - start)
        grad_h, grad_X, grad_t = out[1].contiguous(), out[2].contiguous(), out[3]
    return forward, backward[::-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("package")
    parser.add_argument("--atoms", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    package = load_exported(args.package)
    stages, vjps = load_stages(args.package)
    channels = int(package.runner.get_metadata()["num_channels"])
    atoms = crystal("si", args.atoms)
    graph = build_graph([atoms], package.cutoff, package.dtype)
    receivers, senders, vectors = neighbor_list("ijD", atoms, package.cutoff)
    owned = Domain(torch.arange(len(atoms)), len(atoms), torch.as_tensor(atoms.numbers),
                   torch.as_tensor(np.stack([senders, receivers])), torch.as_tensor(vectors, dtype=package.dtype))
    ghosts = split_domains(atoms, package.cutoff, 1, package.dtype)[0]
    for _ in range(args.repeats):
        start = time.perf_counter()
        package(graph)
        whole = time.perf_counter() - start
        print(f"whole graph: {whole:.3f} s ({len(atoms)} atoms, {graph.edge_index.shape[1]} edges)")
        for name, domain in (("A no ghost rows", owned), ("B ghost rows within the cutoff", ghosts)):
            forward, backward = stage_seconds(stages, vjps, domain, channels)
            total = sum(forward) + sum(backward)
            print(f"{name}: {domain.owner.shape[0]} rows, {domain.vectors.shape[0]} edges: stages {sum(forward):.3f} "
                  f"s, VJPs {sum(backward):.3f} s, {total / whole:.2f}x the whole graph; per stage "
                  f"{[round(x, 3) for x in forward]}, per VJP {[round(x, 3) for x in backward]}", flush=True)


if __name__ == "__main__":
    main()
