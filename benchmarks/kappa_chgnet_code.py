"""Does the chgnet code version change CHGNet 0.3.0's forces? (docs/kappa.md, BeO; issue #30 item 7)

The published CHGNet κ (2024-11) ran the CHGNet 0.3.0 weights with chgnet 0.3.0's code; the project runs the same
weights with chgnet 0.3.8. This compares the forces (eV/Å) of both codes on a sample of BeO's FC3 supercells::

    # project environment: sample 24 of the 1254 displaced supercells with their saved chgnet 0.3.8 forces
    python benchmarks/kappa_chgnet_code.py --write-sample /work/runs/beo-fc3-sample.npz \\
        --forces /work/runs/beo-chgnet-forces.npz
    # throw-away environment with chgnet 0.3.0's code (its wheel lacks the weights: copy 0.3.8's
    # pretrained/0.3.0/*.pth.tar into it; nvidia_smi, imported for GPU queries only, as an empty module)
    python3.11 -m venv /tmp/chg30-venv
    /tmp/chg30-venv/bin/pip install torch==2.13.0 pymatgen==2024.5.1 "ase<3.24" "numpy<2"
    /tmp/chg30-venv/bin/pip install --no-deps chgnet==0.3.0
    /tmp/chg30-venv/bin/python benchmarks/kappa_chgnet_code.py --compare /work/runs/beo-fc3-sample.npz
"""

from __future__ import annotations

import argparse

import numpy as np
from ase import Atoms


def write_sample(forces_file: str, out: str, n: int = 24) -> None:
    """``n`` evenly spaced FC3 supercells (numbers, cell, positions in Å) and their saved forces (eV/Å)."""
    from kappa_phono3py3 import make_phono3py

    data = dict(np.load(forces_file))
    cells = make_phono3py(data, [int(x) for x in data["q_mesh"]]).supercells_with_displacements
    idx = np.linspace(0, len(cells) - 1, n).astype(int)
    np.savez(out, idx=idx, numbers=np.array([cells[i].numbers for i in idx]),
             cell=np.array([cells[i].cell for i in idx]), positions=np.array([cells[i].positions for i in idx]),
             forces=data["fc3_forces"][idx])


def compare(sample: str) -> None:
    """Largest force difference per supercell between this environment's chgnet and the saved forces."""
    import chgnet
    from chgnet.model.dynamics import CHGNetCalculator

    s = dict(np.load(sample))
    calc = CHGNetCalculator(use_device="cpu")
    diffs = []
    for i in range(len(s["idx"])):
        atoms = Atoms(numbers=s["numbers"][i], cell=s["cell"][i], positions=s["positions"][i], pbc=True)
        atoms.calc = calc
        diffs.append(float(np.abs(atoms.get_forces() - s["forces"][i]).max()))
    print(f"chgnet {chgnet.__version__}: max |ΔF| {max(diffs):.2e} eV/Å, median {np.median(diffs):.2e} over "
          f"{len(diffs)} supercells (largest saved |F| {np.abs(s['forces']).max():.3f} eV/Å)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write-sample", help="npz to write (project environment)")
    parser.add_argument("--forces", help="npz of kappa_fc_symmetrisation.py --forces")
    parser.add_argument("--compare", help="sample npz to compare with (chgnet 0.3.0 environment)")
    args = parser.parse_args()
    if args.write_sample:
        write_sample(args.forces, args.write_sample)
    else:
        compare(args.compare)


if __name__ == "__main__":
    main()
