"""The chemical mix of the v8 pool (its generated starts, the whole pool, and the frames labelled so far)
beside mptrj-random-1k.xyz (MPtrj's mix), as a Markdown table (geodite.train.pool_stats.mix_stats).

    PYTHONPATH=. python tools/pool_stats.py [--pool v8] [--seed 0] [--labels DB_OR_SHARD ...]

Makes every structure of the pool (a few minutes: pyxtal crystals and packed salts).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from geodite.train.pool_stats import mix_stats
from geodite.train.pools import START_SUFFIX, build_pool, default_data_root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pool", default="v8")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-root", type=Path, default=default_data_root())
    parser.add_argument("--labels", nargs="*", default=[], help="label databases or exported shards")
    args = parser.parse_args()
    from ase.io import read

    from geodite.train.distill import read_label_rows

    pool = build_pool(args.pool, args.data_root, seed=args.seed)
    columns = {
        f"{args.pool} starts (relaxed by the teacher)": [(a.get_chemical_formula(), len(a)) for uid, a in pool
                                                         if uid.endswith(START_SUFFIX)],
        f"{args.pool} pool (+ pairs, atoms)": [(a.get_chemical_formula(), len(a)) for _, a in pool],
    }
    if args.labels:
        columns["labelled frames"] = [(a.get_chemical_formula(), len(a)) for path in args.labels
                                      for _, _, _, a in read_label_rows(path)]
    test = read(args.data_root / "mptrj" / "mptrj-random-1k.xyz", index=":")
    columns["mptrj-random-1k (MPtrj)"] = [(a.get_chemical_formula(), len(a)) for a in test]
    stats = {name: mix_stats(items) for name, items in columns.items()}
    keys = list(next(iter(stats.values())))
    print("| | " + " | ".join(keys) + " |")
    print("|---" * (len(keys) + 1) + "|")
    for name, values in stats.items():
        cells = [f"{values[k]:.0f}" if k in ("n", "elements", "atoms_max") else
                 f"{values[k]:.1f}" if k.startswith("atoms") else f"{100 * values[k]:.1f} %" for k in keys]
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
