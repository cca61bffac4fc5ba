"""Build tests/train/data/mptrj-format-10.json.gz: the 10 real MPtrj frames of
../shared/data/mptrj/mptrj-10-systems.db (orb-models test fixture, Apache-2.0) written in the layout of
MPtrj_2022.9_full.json ({material id: {frame id: record}}), stress converted back to kBar in VASP's sign.

Synthetic parts (the .db carries none of them): material/frame ids ("mp-fixture-K", two frames per
material), corrected_total_energy (= uncorrected − 0.1 eV × N, an arbitrary offset so the two differ),
magmom (None), bandgap (0.0). Run: .venv/bin/python tests/train/make_mptrj_fixture.py
"""

import gzip
import json
from pathlib import Path

import numpy as np
from ase.db import connect
from pymatgen.io.ase import AseAtomsAdaptor

from geodite.data.mptrj import ev_a3_to_kbar

SOURCE = Path(__file__).resolve().parents[3] / "shared" / "data" / "mptrj" / "mptrj-10-systems.db"
OUT = Path(__file__).parent / "data" / "mptrj-format-10.json.gz"


def main() -> None:
    data: dict = {}
    for k, row in enumerate(connect(str(SOURCE)).select()):
        atoms = row.toatoms()
        mp_id = f"mp-fixture-{k // 2}"
        frame_id = f"{mp_id}-{k % 2}-{k}"
        n = len(atoms)
        energy = float(row.energy)
        stress = row.stress  # Voigt, eV/Å³, ASE sign
        full = np.array([[stress[0], stress[5], stress[4]], [stress[5], stress[1], stress[3]],
                         [stress[4], stress[3], stress[2]]])
        data.setdefault(mp_id, {})[frame_id] = {
            "structure": AseAtomsAdaptor.get_structure(atoms).as_dict(),
            "uncorrected_total_energy": energy,
            "corrected_total_energy": energy - 0.1 * n,
            "energy_per_atom": energy / n,
            "ef_per_atom": None,
            "e_per_atom_relaxed": None,
            "ef_per_atom_relaxed": None,
            "force": np.asarray(row.forces).tolist(),
            "stress": ev_a3_to_kbar(full).tolist(),
            "magmom": None,
            "bandgap": 0.0,
            "mp_id": mp_id,
        }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(OUT, "wt") as handle:
        json.dump(data, handle)


if __name__ == "__main__":
    main()
