"""How fast the published model's dense per-edge products run here (issue 32): GFLOP/s of F.linear on
[E, F] edge rows for each output width, and the interaction's two edge maps (W_r: F → F, W_s: F → 3F) as two
products or one concatenated product, forward (t Wᵀ) and backward (input gradient, g W).

    python benchmarks/edge_products.py --edges 9936 --channels 192 --threads 2 [--dtype bfloat16]

9,936 edges are the 216-atom Si graph at 6 Å. Median of 15 calls each; timing needs an idle machine.
"""

from __future__ import annotations

import argparse
import statistics
import timeit

import torch
from torch.nn import functional as F


def median_s(call, repeats: int = 15) -> float:
    """Median seconds of ``repeats`` calls after a warm-up call (timeit, one call per sample)."""
    call()
    return statistics.median(timeit.repeat(call, repeat=repeats, number=1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--edges", type=int, default=9936)
    parser.add_argument("--channels", type=int, default=192)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32",
                        help="bfloat16: what an opt-in lower-precision path would gain (oneDNN, AVX-512 BF16)")
    args = parser.parse_args()
    dtype = getattr(torch, args.dtype)
    torch.set_num_threads(args.threads)
    E, C = args.edges, args.channels
    t = torch.randn(E, C, dtype=dtype)
    for width in (C, 3 * C, 4 * C, 5 * C):
        weight = torch.randn(width, C, dtype=dtype)
        transposed = weight.t().contiguous()
        flop = 2 * E * C * width
        print(f"F.linear {C} -> {width}: {flop / median_s(lambda: F.linear(t, weight)) / 1e9:.0f} GFLOP/s; "
              f"t @ contiguous Wᵀ {flop / median_s(lambda: t @ transposed) / 1e9:.0f} GFLOP/s")
    w_r, w_s = torch.randn(C, C, dtype=dtype), torch.randn(3 * C, C, dtype=dtype)
    w_rs = torch.cat([w_r, w_s])
    g_r, g_s, g_rs = (torch.randn(E, n * C, dtype=dtype) for n in (1, 3, 4))
    rows = {
        "forward, W_r and W_s apart": lambda: (F.linear(t, w_r), F.linear(t, w_s)),
        "forward, [W_r; W_s] at once": lambda: F.linear(t, w_rs),
        "backward, apart": lambda: torch.addmm(g_r @ w_r, g_s, w_s),
        "backward, at once": lambda: g_rs @ w_rs,
    }
    for name, call in rows.items():
        print(f"{name}: {1e3 * median_s(call):.2f} ms")


if __name__ == "__main__":
    main()
