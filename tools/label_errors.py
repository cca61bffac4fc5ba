"""Force and energy errors of models on teacher labels, by kind of frame, beside zero forces.

    PYTHONPATH=. python tools/label_errors.py LABELS.db MODEL [MODEL ...] [--limit N] [--dtype float32]

LABELS: a label database or exported shard (uids ``<material>/relax-<step>``, ``<material>/end-<k>``,
``pair-XY/<d>A``, ``atom-X/isolated``); MODEL: a registry name or checkpoint path. Kinds: the start of a
relaxation (``relax0``), its first steps (``relax1-6``), later steps and the last one (``relax7+``), each
end-point perturbation (``end-<k>``: k = 0 is the end point rattled by 0.01 Å, the frames nearest to
equilibrium), heteronuclear pairs (``pair``). Per kind: frames, force MAE (meV/Å), zero-force MAE (meV/Å),
energy MAE (meV/atom). A model worse than zero forces on ``end-0`` predicts spurious forces near equilibrium,
which MPtrj's relaxed frames expose. The errors are `geodite eval`'s (geodite.evaluate: batched predictions,
the same pooled definitions).
"""

from __future__ import annotations

import argparse

import numpy as np


def frame_kind(uid: str) -> str:
    """The kind of a label frame from its uid (see the module docstring)."""
    material, _, frame = uid.partition("/")
    if material.startswith("pair-"):
        return "pair"
    if frame.startswith("relax-"):
        step = int(frame.split("-")[1])
        return "relax0" if step == 0 else "relax1-6" if step <= 6 else "relax7+"
    return frame if frame.startswith("end-") else frame or "other"


def kind_errors(table, uids: list[str]) -> dict[str, dict]:
    """{kind: geodite.evaluate.summarise of its rows} of a ``geodite.evaluate.evaluate_structures`` table whose
    row ``index`` is the position in ``uids``; "all" over every row."""
    from geodite.evaluate import summarise

    kinds = table["index"].map(lambda i: frame_kind(uids[i]))
    return {"all": summarise(table)} | {kind: summarise(table[kinds == kind]) for kind in sorted(set(kinds))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("labels")
    parser.add_argument("models", nargs="+")
    parser.add_argument("--limit", type=int, default=None, help="a random subset of N frames (seed 0)")
    parser.add_argument("--dtype", default="float32")
    args = parser.parse_args()
    import torch

    from geodite.calculator import GeoditeCalculator
    from geodite.evaluate import evaluate_structures
    from geodite.train.distill import read_label_rows

    torch.set_num_threads(1)
    frames = [(uid, atoms) for uid, _, _, atoms in read_label_rows(args.labels)]
    if args.limit is not None and args.limit < len(frames):
        keep = np.random.default_rng(0).choice(len(frames), args.limit, replace=False)
        frames = [frames[i] for i in sorted(keep)]
    uids, structures = [uid for uid, _ in frames], [atoms for _, atoms in frames]
    for model in args.models:
        table = evaluate_structures(GeoditeCalculator(model=model, dtype=args.dtype), structures)
        print(f"\n{model} on {args.labels} ({len(frames)} frames)\n")
        print("| kind | frames | F (meV/Å) | zero F | E (meV/atom) |\n|---|---|---|---|---|")
        for kind, e in kind_errors(table, uids).items():
            print(f"| {kind} | {e['n_structures'] - e['n_failed']} | {1000 * e['forces_mae']:.1f} | "
                  f"{1000 * e['zero_forces_mae']:.1f} | {1000 * e['energy_per_atom_mae']:.1f} |")


if __name__ == "__main__":
    main()
