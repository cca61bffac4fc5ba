"""Errors of a model against labelled frames (e.g. DFT on mptrj-random-1k.xyz): energy/atom, force, stress MAE.

Used for the model card's table; evaluation only — nothing here trains or selects on the data.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np


def _reference(atoms):
    return (atoms.get_potential_energy(), np.asarray(atoms.get_forces()), np.asarray(atoms.get_stress(voigt=False)))


def evaluate_frames(frames, predict) -> dict:
    """``predict(atoms) -> (energy eV, forces eV/Å, stress 3×3 eV/Å³ ASE sign)``. MAEs in meV/atom, meV/Å,
    meV/Å³ (force MAE over all components of all atoms; stress over all 9 components), mean signed energy
    error, seconds per frame."""
    e_err, f_err, s_err = [], [], []
    start = time.perf_counter()
    for atoms in frames:
        ref_e, ref_f, ref_s = _reference(atoms)
        e, f, s = predict(atoms)
        e_err.append((e - ref_e) / len(atoms))
        f_err.append(np.abs(f - ref_f).ravel())
        s_err.append(np.abs(s - ref_s).ravel())
    seconds = time.perf_counter() - start
    e_err = np.array(e_err)
    return {"frames": len(e_err), "energy_mae_mev_atom": 1000 * float(np.abs(e_err).mean()),
            "energy_mean_error_mev_atom": 1000 * float(e_err.mean()),
            "force_mae_mev_a": 1000 * float(np.concatenate(f_err).mean()),
            "stress_mae_mev_a3": 1000 * float(np.concatenate(s_err).mean()),
            "seconds_per_frame": seconds / max(1, len(e_err))}


def geodite_predictor(model_path: str | Path = "geodite", dtype: str = "float64"):
    import torch

    from geodite.checkpoints import load_model
    from geodite.graph import build_graph

    model = load_model(str(model_path))
    torch_dtype = {"float64": torch.float64, "float32": torch.float32}[dtype]
    model = model.to(torch_dtype)

    def predict(atoms):
        graph = build_graph([atoms], cutoff=model.cutoff, dtype=torch_dtype)
        out = model(graph, compute_stress=True)
        return (float(out["energy"][0].detach()), out["forces"].detach().numpy().astype(np.float64),
                out["stress"][0].detach().numpy().astype(np.float64))

    return predict


def calculator_predictor(calc):
    def predict(atoms):
        work = atoms.copy()
        work.calc = calc
        return work.get_potential_energy(), work.get_forces(), work.get_stress(voigt=False)

    return predict


def main(argv=None) -> None:
    """python -m geodite.train.evaluate MODEL DATA [LIMIT]; MODEL = a Geodite checkpoint/name or
    teacher:sevennet-0 / teacher:sevennet-l3i5 / teacher:chgnet."""
    import json
    import sys

    import ase.io
    import torch

    torch.set_num_threads(1)
    args = list(argv if argv is not None else sys.argv[1:])
    model, data = args[0], args[1]
    limit = int(args[2]) if len(args) > 2 else None
    frames = ase.io.read(data, index=f":{limit}" if limit else ":")
    if model.startswith("teacher:"):
        from geodite.train.distill import make_teacher

        predict = calculator_predictor(make_teacher(model.split(":", 1)[1]))
    else:
        predict = geodite_predictor(model)
    predict(frames[0])  # warm-up
    result = {"model": model, "data": str(data)} | evaluate_frames(frames, predict)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
