"""The geodite:: operators alone on a real graph (issue 32): median milliseconds per call of the interaction's
forward and backward operators, the rejected inner products' (both degrees, l = 1 and 2, as the model calls
them: slices of [N, 8, F] features) and the edge update's gate (forward, and forward + backward keeping or
recomputing its intermediates, against the plain expression through autograd: fused.py's products, ATen's
elementwise operators), at each thread count, on the
edges of rattled diamond Si (6 Å) with random features (published size: F = 192, 8 heads, float32).

    python benchmarks/kernel_ops.py --atoms 216 --threads 1 2 [--order receiver sender random] [--allocator system]

``--order``: the edge list as the model gets it (``given``: vesin's cell-list order, atoms partly grouped), sorted
by receiver, sorted by sender, or shuffled — the same work with the per-edge rows read in another order (the
forward pass visits edges by receiver, the backward operator's main pass by sender). Timing needs an idle
machine.
"""

from __future__ import annotations

import argparse
import statistics
import timeit

import torch
from geodite.custom_ops import load_library
from geodite.graph import neighbour_list
from geodite.model.fused import edge_linear
from geodite.tasks.speed import ALLOCATORS, crystal, retain_freed_memory


def median_ms(call, repeats: int) -> float:
    """Median milliseconds of ``repeats`` calls after a warm-up call (timeit, one call per sample)."""
    call()
    return 1e3 * statistics.median(timeit.repeat(call, repeat=repeats, number=1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--atoms", type=int, default=216)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--order", nargs="+", default=["given"], choices=("given", "receiver", "sender", "random"))
    parser.add_argument("--channels", type=int, default=192)
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--allocator", choices=ALLOCATORS, default="retain",
                        help="retain: keep freed memory, as `geodite bench speed` times (default); system: glibc's "
                        "(the backward operators' fresh [E, F] and [E, 3F] outputs are then faulted in every call)")
    args = parser.parse_args()
    if args.allocator == "retain":
        retain_freed_memory()
    load_library()
    atoms = crystal("si", args.atoms)
    receiver, sender = (torch.from_numpy(x) for x in neighbour_list(atoms, 6.0)[:2])
    N, E, F, H = len(atoms), len(receiver), args.channels, args.heads
    generator = torch.Generator().manual_seed(0)

    def rand(*shape):
        return torch.randn(*shape, generator=generator)

    a, fi, Y = rand(E, F), rand(E, 3 * F), rand(E, 8)
    q, k, v, f, X = rand(N, F), rand(N, F), rand(N, 3 * F), rand(N, 3 * F), rand(N, 8, F)
    gh, gX, gw, Q, K = rand(N, F), rand(N, 8, F), rand(E, F), rand(N, 8, F), rand(N, 8, F)
    t, w = rand(E, F).requires_grad_(), rand(E, F).requires_grad_()
    gate_weights = [rand(F, F) / F**0.5 for _ in range(3)] + [torch.ones(F), torch.zeros(F)]
    ops = torch.ops.geodite
    degrees = (slice(0, 3), slice(3, 8))

    def gate(keep: bool | None):
        """Forward + backward of the edge update's gate: the operator (keep or recompute), or the plain expression
        (None)."""
        if keep is None:
            silu, (w_in, w_out, w_e, norm_w, norm_b) = torch.nn.functional.silu, gate_weights
            update = edge_linear(torch.nn.functional.layer_norm(w, (F,), norm_w, norm_b, 1e-5), w_e)
            out = t + silu(edge_linear(silu(edge_linear(t, w_in)), w_out)) * update
        else:
            out = ops.edge_gate_update(t, w, *gate_weights, 1e-5, keep)[0]
        return torch.autograd.grad(out, [t, w], gw)

    print(f"{N} atoms, {E} edges, F = {F}, {H} heads, float32; median ms per call")
    for order in args.order:
        permutation = {"given": torch.arange(E), "receiver": torch.argsort(receiver, stable=True), "sender": torch.argsort(sender, stable=True),
                       "random": torch.randperm(E, generator=generator)}[order]
        snd, rcv = sender[permutation].contiguous(), receiver[permutation].contiguous()
        calls = {
            "interaction": lambda: ops.interaction_messages(a, fi, Y, q, k, v, f, X, snd, rcv, H),
            "interaction backward": lambda: ops.interaction_messages_backward(gh, gX, a, fi, Y, q, k, v, f, X, snd,
                                                                              rcv, H),
            "rejected": lambda: [ops.rejected_inner_product(Q[:, d], K[:, d], Y[:, d], snd, rcv) for d in degrees],
            "rejected backward": lambda: [ops.rejected_inner_product_backward(gw, Q[:, d], K[:, d], Y[:, d], snd, rcv)
                                          for d in degrees],
            "gate": lambda: ops.edge_gate_update(t.detach(), w.detach(), *gate_weights, 1e-5, True),
            "gate + backward, kept": lambda: gate(True),
            "recomputed": lambda: gate(False),
            "plain": lambda: gate(None),
        }
        for threads in args.threads:
            torch.set_num_threads(threads)
            times = ", ".join(f"{name} {median_ms(call, args.repeats):.1f}" for name, call in calls.items())
            print(f"edges by {order}, {threads} thread(s): {times}")


if __name__ == "__main__":
    main()
