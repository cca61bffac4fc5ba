"""Force and energy errors of models on teacher labels, by kind of frame, beside zero forces.

    PYTHONPATH=. python tools/label_errors.py LABELS.db MODEL [MODEL ...] [--limit N] [--dtype float32]

LABELS: a label database or exported shard (uids ``<material>/relax-<step>``, ``<material>/end-<k>``,
``pair-XY/<d>A``, ``atom-X/isolated``); MODEL: a registry name or checkpoint path. Kinds: the start of a
relaxation (``relax0``), its first steps (``relax1-6``), later steps and the last one (``relax7+``), each
end-point perturbation (``end-<k>``: k = 0 is the end point rattled by 0.01 Å, the frames nearest to
equilibrium), heteronuclear pairs (``pair``). Per kind: frames, force MAE (meV/Å), zero-force MAE (meV/Å),
energy MAE (meV/atom). A model worse than zero forces on ``end-0`` predicts spurious forces near equilibrium,
which MPtrj's relaxed frames expose.
"""

from __future__ import annotations

import argparse
from collections import defaultdict

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


def kind_errors(frames, predict) -> dict[str, dict[str, float]]:
    """{kind: {frames, force_mae, zero_force_mae (meV/Å), energy_mae (meV/atom)}} over ``frames`` (uid, Atoms
    with the reference results) for ``predict(atoms) -> (energy eV, forces eV/Å)``; "all" over every frame."""
    sums: dict[str, np.ndarray] = defaultdict(lambda: np.zeros(5))  # |ΔF|, |F|, components, |ΔE|/N, frames
    for uid, atoms in frames:
        energy, forces = predict(atoms)
        ref_f, ref_e = atoms.get_forces(), atoms.get_potential_energy()
        row = np.array([np.abs(forces - ref_f).sum(), np.abs(ref_f).sum(), ref_f.size,
                        abs(energy - ref_e) / len(atoms), 1.0])
        for kind in (frame_kind(uid), "all"):
            sums[kind] += row
    return {kind: {"frames": int(s[4]), "force_mae": 1000 * s[0] / s[2], "zero_force_mae": 1000 * s[1] / s[2],
                   "energy_mae": 1000 * s[3] / s[4]} for kind, s in sorted(sums.items())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("labels")
    parser.add_argument("models", nargs="+")
    parser.add_argument("--limit", type=int, default=None, help="a random subset of N frames (seed 0)")
    parser.add_argument("--dtype", default="float32")
    args = parser.parse_args()
    import torch

    from geodite.calculator import GeoditeCalculator
    from geodite.train.distill import read_label_rows

    torch.set_num_threads(1)
    frames = [(uid, atoms) for uid, _, _, atoms in read_label_rows(args.labels)]
    if args.limit is not None and args.limit < len(frames):
        keep = np.random.default_rng(0).choice(len(frames), args.limit, replace=False)
        frames = [frames[i] for i in sorted(keep)]
    for model in args.models:
        calc = GeoditeCalculator(model=model, dtype=args.dtype)

        def predict(atoms):
            work = atoms.copy()
            work.calc = calc
            return work.get_potential_energy(), work.get_forces()

        print(f"\n{model} on {args.labels} ({len(frames)} frames)\n")
        print("| kind | frames | F (meV/Å) | zero F | E (meV/atom) |\n|---|---|---|---|---|")
        for kind, e in kind_errors(frames, predict).items():
            print(f"| {kind} | {e['frames']} | {e['force_mae']:.1f} | {e['zero_force_mae']:.1f} | "
                  f"{e['energy_mae']:.1f} |")


if __name__ == "__main__":
    main()
