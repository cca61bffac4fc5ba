"""One material's κ under the two force-constant symmetrisations: phono3py 3.x's (full arrays, translational and
permutation symmetrisation once — what made MBD's published CHGNet/MACE/... κ of 2024-11) and phono3py 4.10's
(compact arrays, the two alternated three times — what :mod:`geodite.phonons` does). docs/kappa.md, BeO.

The structure comes from the offline task (prototype start, scan, relaxation); the displaced-supercell forces are
computed once and saved (``--forces``, reused when present), then each variant builds FC2/FC3 from the same forces
and runs the Wigner RTA conductivity on ``--q-mesh`` (default the task's). Prints one JSON line per variant.

    nice -n 5 python benchmarks/kappa_fc_symmetrisation.py --material mp-2542 --model chgnet \\
        --forces /tmp/beo-chgnet-forces.npz --q-mesh 19,19,15
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from ase import Atoms

from geodite import phonons
from geodite.tasks import kappa as kt
from geodite.tasks.worker import get_context_for


def forces_of(material: str, model: str, path: Path) -> dict:
    """Relaxed unit cell and FC2/FC3 force sets (eV/Å) of ``material`` with ``model``, cached in ``path``."""
    if path.is_file():
        return dict(np.load(path))
    task = kt.KappaTask(mode="offline", materials=[material])
    item, ctx = task.items()[0], get_context_for(model)
    atoms, _ = phonons.relax_with_symmetry(task._start_structure(item, ctx, {}), ctx.calculator)
    ph3 = phonons.init_phono3py(atoms, fc2_supercell=item["fc2_supercell"], fc3_supercell=item["fc3_supercell"],
                                q_mesh=item["q_mesh"])
    fc2 = kt.supercell_forces(phonons.fc2_displacements(ph3), ctx.evaluate)
    fc3 = kt.supercell_forces(phonons.fc3_displacements(ph3), ctx.evaluate)
    data = dict(numbers=atoms.numbers, cell=np.asarray(atoms.cell), positions=atoms.positions,
                fc2_supercell=item["fc2_supercell"], fc3_supercell=item["fc3_supercell"], q_mesh=item["q_mesh"],
                fc2_forces=phonons.force_set(fc2, len(ph3.phonon_supercell)),
                fc3_forces=phonons.force_set(fc3, len(ph3.supercell)))
    np.savez_compressed(path, **data)
    return data


def kappa(data: dict, variant: str, q_mesh: list[int]) -> dict:
    """κ (W/(m·K), 300 K) from the saved forces with FC symmetrisation ``variant`` ("phono3py3" or "phono3py4")."""
    atoms = Atoms(numbers=data["numbers"], cell=data["cell"], positions=data["positions"], pbc=True)
    ph3 = phonons.init_phono3py(atoms, fc2_supercell=data["fc2_supercell"], fc3_supercell=data["fc3_supercell"],
                                q_mesh=q_mesh)
    ph3.phonon_forces, ph3.forces = data["fc2_forces"], data["fc3_forces"]
    full, level = {"phono3py3": (True, "level=1"), "phono3py4": (False, "level=3")}[variant]
    ph3.produce_fc2(is_compact_fc=not full)
    ph3.symmetrize_fc2(options=level)
    ph3.produce_fc3(is_compact_fc=not full)
    ph3.symmetrize_fc3(options=level)
    t0 = time.perf_counter()
    (res,) = phonons.wigner_conductivity(ph3, [300.0])
    return {"variant": variant, "q_mesh": q_mesh, "kappa": float(res.kappa[:3].mean()),
            "kappa_p": float(res.kappa_p[:3].mean()), "kappa_voigt": [round(float(x), 4) for x in res.kappa],
            "conductivity_s": round(time.perf_counter() - t0, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--material", default="mp-2542")
    parser.add_argument("--model", default="chgnet")
    parser.add_argument("--forces", type=Path, required=True, help="npz cache of the relaxed cell and force sets")
    parser.add_argument("--q-mesh", default=None, help="e.g. 19,19,15 (default: the task's)")
    parser.add_argument("--variants", default="phono3py3,phono3py4")
    args = parser.parse_args()
    data = forces_of(args.material, args.model, args.forces)
    q_mesh = [int(x) for x in args.q_mesh.split(",")] if args.q_mesh else [int(x) for x in data["q_mesh"]]
    for variant in args.variants.split(","):
        print(json.dumps({"material": args.material, "model": args.model, **kappa(data, variant, q_mesh)}), flush=True)


if __name__ == "__main__":
    main()
