"""κ from saved force sets with an older phono3py, the calls of the published k_SRME run (docs/kappa.md, BeO).

Matbench Discovery's published CHGNet κ (k_SRME 1.0.0, 2024-11-09) was computed with phono3py 3.x:
``produce_fc2(symmetrize_fc2=True)``, ``produce_fc3(symmetrize_fc3r=True)`` (full arrays, symmetrised once),
``init_phph_interaction(symmetrize_fc3q=False)``, ``run_thermal_conductivity(is_isotope=True,
conductivity_type="wigner", boundary_mfp=1e6)`` and κ = ``kappa_TOT_RTA``. This script repeats exactly those calls
on the forces that ``benchmarks/kappa_fc_symmetrisation.py --forces FILE`` saved (phono3py 4.10, the project's
environment), in a separate environment with the older phono3py (not a project dependency)::

    python3.11 -m venv /tmp/ph3-venv
    /tmp/ph3-venv/bin/pip install --only-binary=:all: "phono3py==3.11.1" "numpy<2"
    /tmp/ph3-venv/bin/python benchmarks/kappa_phono3py3.py --forces /work/runs/beo-chgnet-forces.npz --q-mesh 19,19,15

It checks that this phono3py generates the same displacements as the saved set (``--displacements``, written by
the project's phono3py: ``python benchmarks/kappa_phono3py3.py --forces FILE --write-displacements D.npz``) and
prints one JSON line: κ (W/(m·K), 300 K, mean of xx, yy, zz) and the phono3py version.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np


def make_phono3py(data: dict, q_mesh: list[int]):
    """A ``Phono3py`` of the saved relaxed cell with k_SRME's settings (symprec 1e-5, auto primitive, 0.03 Å)."""
    from phono3py import Phono3py
    from phonopy.structure.atoms import PhonopyAtoms

    unit = PhonopyAtoms(numbers=[int(z) for z in data["numbers"]], cell=data["cell"], positions=data["positions"])
    ph3 = Phono3py(unit, supercell_matrix=data["fc3_supercell"], phonon_supercell_matrix=data["fc2_supercell"],
                   primitive_matrix="auto", symprec=1e-5, log_level=0)
    ph3.mesh_numbers = q_mesh
    ph3.generate_displacements(distance=0.03)
    return ph3


def displacements(ph3) -> dict[str, np.ndarray]:
    """The FC2 and FC3 supercell displacements (Å), one array per displaced supercell."""
    return {"fc2": np.asarray(ph3.phonon_displacements), "fc3": np.asarray(ph3.displacements)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--forces", required=True, help="npz of kappa_fc_symmetrisation.py --forces")
    parser.add_argument("--q-mesh", default=None, help="e.g. 19,19,15 (default: the saved one)")
    parser.add_argument("--write-displacements", default=None, help="write this phono3py's displacements, exit")
    parser.add_argument("--displacements", default=None, help="displacements the forces belong to (checked)")
    args = parser.parse_args()
    import phono3py

    data = dict(np.load(args.forces))
    q_mesh = [int(x) for x in args.q_mesh.split(",")] if args.q_mesh else [int(x) for x in data["q_mesh"]]
    ph3 = make_phono3py(data, q_mesh)
    ours = displacements(ph3)
    if args.write_displacements:
        np.savez(args.write_displacements, **ours)
        return
    if args.displacements:
        saved = dict(np.load(args.displacements))
        for key in ("fc2", "fc3"):
            if saved[key].shape != ours[key].shape or not np.allclose(saved[key], ours[key], atol=1e-12):
                raise SystemExit(f"{key} displacements differ from the saved set: the forces do not belong to them")
    ph3.phonon_forces, ph3.forces = data["fc2_forces"], data["fc3_forces"]
    ph3.produce_fc2(symmetrize_fc2=True)
    ph3.produce_fc3(symmetrize_fc3r=True)
    ph3.init_phph_interaction(symmetrize_fc3q=False)
    t0 = time.perf_counter()
    ph3.run_thermal_conductivity(temperatures=[300.0], is_isotope=True, conductivity_type="wigner",
                                 boundary_mfp=1e6)
    cond = ph3.thermal_conductivity
    total = np.asarray(cond.kappa_TOT_RTA)[0, 0]
    print(json.dumps({"phono3py": phono3py.__version__, "q_mesh": q_mesh, "kappa": float(total[:3].mean()),
                      "kappa_p": float(np.asarray(cond.kappa_P_RTA)[0, 0][:3].mean()),
                      "kappa_c": float(np.asarray(cond.kappa_C)[0, 0][:3].mean()),
                      "kappa_voigt": [round(float(x), 4) for x in total],
                      "conductivity_s": round(time.perf_counter() - t0, 1)}), flush=True)


if __name__ == "__main__":
    main()
