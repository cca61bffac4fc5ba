"""Data of the κ (thermal-conductivity) benchmark: the 103 phononDB PBE materials.

Two sources (see ``docs/kappa.md``):

* **full** — Matbench Discovery's figshare files (registry keys as in MBD's
  ``matbench_discovery/data-files.yml``):

  - ``phonondb_pbe_103_structures``: extended XYZ of the 103 DFT-relaxed phononDB unit
    cells; ``atoms.info`` carries ``material_id``, ``fc2_supercell``, ``fc3_supercell`` and
    ``q_point_mesh`` (older copies: ``q_mesh``).
  - ``phonondb_pbe_103_kappa_no_nac``: the DFT reference (phono3py, PBE, no NAC), a
    pandas JSON table indexed by ``material_id`` with the κ tensor at 300 K
    (``kappa_tot_rta``, Voigt, W/(m·K)) and the mode-resolved κ (``mode_kappa_tot_avg`` or
    ``mode_kappa_tot_rta``) with its q-point weights (``mode_weights``): what κ_SRME needs.

  Both go through :func:`geodite.data.downloads.fetch` (``--data-dir``, the cache, then a
  download with an md5 check; offline a :class:`~geodite.data.downloads.DataUnavailableError`
  says which file and where to put it).

* **offline** — ``kappa-103-analysis.jsonl.gz`` (package data; MBD's
  ``site/src/figs/kappa-103-analysis.jsonl``): material ids, formulas, space groups
  (225 rocksalt, 216 zincblende, 186 wurtzite) and the DFT κ at 300 K, plus every published
  model's per-material κ and SRME. The structures are built here from formula and prototype
  (:func:`prototype_atoms`); supercells and q-meshes follow phononDB / MBD
  (:data:`PHONONDB_SUPERCELLS`, :data:`Q_MESH`). No mode-resolved reference: κ_SRME is
  unavailable offline.
"""

from __future__ import annotations

import gzip
import json
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.data import atomic_numbers, covalent_radii

from geodite.data import downloads

ANALYSIS_FILE = "kappa-103-analysis.jsonl.gz"
STRUCTURES_KEY = "phonondb_pbe_103_structures"
REFERENCE_KEY = "phonondb_pbe_103_kappa_no_nac"

PROTOTYPES = {225: "rocksalt", 216: "zincblende", 186: "wurtzite"}

# q-point meshes by space group: matbench_discovery.phonons.spg_num_q_mesh_map
Q_MESH: dict[int, tuple[int, int, int]] = {225: (19, 19, 19), 216: (19, 19, 19), 186: (19, 19, 15)}

# Supercells (diagonal multiples of the unit cells built by prototype_atoms) as in phononDB's
# phono3py calculations of these prototypes: 2×2×2 (fc3, 64 atoms) and 4×4×4 (fc2, 512 atoms)
# conventional cubic cells for rocksalt and zincblende; 3×3×2 (fc3, 72 atoms) and 5×5×3
# (fc2, 300 atoms) hexagonal cells for wurtzite (as in phono3py's AlN wurtzite example).
PHONONDB_SUPERCELLS: dict[int, dict[str, tuple[int, int, int]]] = {
    225: {"fc3": (2, 2, 2), "fc2": (4, 4, 4)},
    216: {"fc3": (2, 2, 2), "fc2": (4, 4, 4)},
    186: {"fc3": (3, 3, 2), "fc2": (5, 5, 3)},
}

WURTZITE_U = 3 / 8  # ideal internal parameter
WURTZITE_C_OVER_A = float(np.sqrt(8 / 3))  # ideal c/a


# --------------------------------------------------------------------------- the analysis file


def default_analysis_path() -> Path:
    """The package-data copy of ``kappa-103-analysis.jsonl.gz``."""
    return Path(str(resources.files("geodite") / "data" / "files" / ANALYSIS_FILE))


@lru_cache(maxsize=4)
def _read_analysis(path: str) -> tuple[dict, dict]:
    base: dict = {}
    models: dict = {}
    with gzip.open(path, "rt") as handle:
        for line in handle:
            if not line.strip():
                continue
            row = json.loads(line)
            if "_base" in row:
                base = row["_base"]
            else:
                models[row["key"]] = row
    if not base:
        raise ValueError(f"{path}: no _base row (material ids, formulas, space groups, κ_DFT)")
    return base, models


def load_materials(path: str | Path | None = None) -> list[dict]:
    """The 103 materials of the analysis file, in file order.

    Each: ``material_id``, ``formula``, ``spg_num``, ``kappa_dft`` (W/(m·K), 300 K, trace/3).
    """
    base, _ = _read_analysis(str(path or default_analysis_path()))
    keys = ("material_ids", "formulas", "spg_nums", "kappa_dft")
    n = {len(base[k]) for k in keys}
    if len(n) != 1:
        raise ValueError(f"analysis file columns differ in length: {[len(base[k]) for k in keys]}")
    return [
        {"material_id": mid, "formula": f, "spg_num": int(s), "kappa_dft": float(k)}
        for mid, f, s, k in zip(*(base[k] for k in keys), strict=True)
    ]


def published_models(path: str | Path | None = None) -> dict[str, dict]:
    """Published per-model rows of the analysis file, keyed by MBD model key (e.g. ``chgnet-0.3.0``):
    ``label``, ``kappa_ml`` (W/(m·K), None where not computed), ``srme``, ``imag_modes``,
    ``broken_sym``, ... each a list aligned with :func:`load_materials`."""
    _, models = _read_analysis(str(path or default_analysis_path()))
    return models


def published_kappa(model_key: str, path: str | Path | None = None) -> dict[str, dict]:
    """{material_id: {kappa, srme, imag_modes, broken_sym}} of one published model."""
    models = published_models(path)
    if model_key not in models:
        raise KeyError(f"no published model {model_key!r} in the analysis file; known: {', '.join(models)}")
    row = models[model_key]
    out = {}
    for i, mat in enumerate(load_materials(path)):
        kappa = row["kappa_ml"][i]
        out[mat["material_id"]] = {
            "kappa": float("nan") if kappa is None else float(kappa),
            "srme": row["srme"][i],
            "imag_modes": bool(row["imag_modes"][i]),
            "broken_sym": bool(row["broken_sym"][i]),
        }
    return out


def published_frequency_quantiles(model_key: str, path: str | Path | None = None) -> dict[str, list[float]]:
    """{material_id: 17 quantiles (THz) of the model's phonon spectrum} as published in the analysis file
    (``freq_pairs["ml"]``, the materials that have a spectrum, in file order; see
    :func:`geodite.phonons.frequency_quantiles`)."""
    row = published_models(path)[model_key]
    ids = [m["material_id"] for i, m in enumerate(load_materials(path)) if row["freq_w1"][i] is not None]
    flat = row["freq_pairs"]["ml"]
    if len(flat) != 17 * len(ids):
        raise ValueError(f"{model_key}: {len(flat)} quantiles for {len(ids)} spectra, expected 17 each")
    return {mid: flat[17 * k : 17 * k + 17] for k, mid in enumerate(ids)}


# --------------------------------------------------------------------------- structures from prototypes


def split_binary(formula: str) -> tuple[str, str]:
    """'GaAs' → ('Ga', 'As'): the two elements of an AB formula (cation first, as written)."""
    from pymatgen.core import Composition

    comp = Composition(formula)
    if len(comp) != 2 or any(abs(v - 1) > 1e-8 for v in comp.get_el_amt_dict().values()):
        raise ValueError(f"expected a binary AB formula, got {formula!r}")
    els = [str(e) for e in comp.elements]
    # keep the order of the formula as written (pymatgen's is the order of appearance)
    return els[0], els[1]


def bond_length_guess(a: str, b: str) -> float:
    """Nearest-neighbour A–B distance guess (Å): sum of ASE's (Cordero) covalent radii."""
    return float(covalent_radii[atomic_numbers[a]] + covalent_radii[atomic_numbers[b]])


def prototype_atoms(formula: str, spg_num: int, bond: float | None = None, cell: str = "conventional") -> Atoms:
    """Ideal AB prototype structure.

    Args:
        formula: AB formula, e.g. ``"GaAs"``.
        spg_num: 225 (rocksalt), 216 (zincblende) or 186 (wurtzite).
        bond: nearest-neighbour distance (Å); default :func:`bond_length_guess`.
        cell: ``"conventional"`` (8-atom cubic cell for 225/216; 4-atom hexagonal cell for 186)
            or ``"primitive"`` (2-atom fcc cell for 225/216; the wurtzite cell is already primitive).

    Rocksalt a = 2d; zincblende a = 4d/√3; wurtzite with ideal c/a = √(8/3), u = 3/8, a = d·√(8/3).
    """
    from ase.build import bulk

    if spg_num not in PROTOTYPES:
        raise ValueError(f"unsupported space group {spg_num}; expected one of {sorted(PROTOTYPES)}")
    if cell not in ("conventional", "primitive"):
        raise ValueError(f"cell must be 'conventional' or 'primitive', not {cell!r}")
    a_el, b_el = split_binary(formula)
    d = bond if bond is not None else bond_length_guess(a_el, b_el)
    cubic = cell == "conventional"
    if spg_num == 225:
        atoms = bulk(a_el + b_el, "rocksalt", a=2 * d, cubic=cubic)
    elif spg_num == 216:
        atoms = bulk(a_el + b_el, "zincblende", a=4 * d / np.sqrt(3), cubic=cubic)
    else:
        a = d * np.sqrt(8 / 3)
        atoms = bulk(a_el + b_el, "wurtzite", a=a, c=a * WURTZITE_C_OVER_A, u=WURTZITE_U)
    atoms.info.update(formula=formula, spg_num=spg_num)
    return atoms


def offline_items(
    path: str | Path | None = None, cell: str = "conventional"
) -> list[dict]:
    """Items of the offline set: material metadata + prototype structure + phononDB supercells/q-mesh."""
    items = []
    for mat in load_materials(path):
        spg = mat["spg_num"]
        sc = PHONONDB_SUPERCELLS[spg]
        fc2, fc3 = np.diag(sc["fc2"]), np.diag(sc["fc3"])
        if cell == "primitive" and spg in (225, 216):
            # the same supercells expressed on the fcc primitive cell (rows: multiples of primitive vectors)
            to_conv = np.array([[-1, 1, 1], [1, -1, 1], [1, 1, -1]])
            fc2, fc3 = (np.diag(sc["fc2"]) @ to_conv).T, (np.diag(sc["fc3"]) @ to_conv).T
        items.append(
            {
                **mat,
                "source": "prototype",
                "cell": cell,
                "fc2_supercell": np.asarray(fc2, int).tolist(),
                "fc3_supercell": np.asarray(fc3, int).tolist(),
                "q_mesh": list(Q_MESH[spg]),
            }
        )
    return items


# --------------------------------------------------------------------------- the full (MBD) files


def _as_matrix(value) -> list[list[int]]:
    arr = np.asarray(value, dtype=float)
    if arr.size == 3:
        arr = np.diag(arr)
    return np.rint(arr.reshape(3, 3)).astype(int).tolist()


def load_phonondb_structures(path: str | Path) -> list[dict]:
    """Items from MBD's ``phonondb_pbe_103_structures`` extxyz: the DFT unit cell (as a dict of
    numbers/cell/positions) with its supercells and q-mesh."""
    import ase.io

    items = []
    for atoms in ase.io.read(str(path), index=":", format="extxyz"):
        info = atoms.info
        mid = info.get("material_id") or info.get("mat_id")
        if mid is None:
            raise ValueError(f"{path}: a structure without material_id in atoms.info")
        q_mesh = info.get("q_point_mesh", info.get("q_mesh"))
        if q_mesh is None or "fc2_supercell" not in info or "fc3_supercell" not in info:
            raise ValueError(f"{path}: {mid} lacks fc2_supercell/fc3_supercell/q_point_mesh in atoms.info")
        items.append(
            {
                "material_id": str(mid),
                "formula": atoms.get_chemical_formula(mode="reduce"),
                "source": "phonondb",
                "atoms": atoms_to_dict(atoms),
                "fc2_supercell": _as_matrix(info["fc2_supercell"]),
                "fc3_supercell": _as_matrix(info["fc3_supercell"]),
                "q_mesh": [int(x) for x in np.asarray(q_mesh).ravel()],
            }
        )
    return items


def load_reference(path: str | Path):
    """MBD's DFT κ reference (``phonondb_pbe_103_kappa_no_nac``) as a DataFrame indexed by material_id."""
    import pandas as pd

    df = pd.read_json(str(path))
    if "material_id" in df.columns:
        df = df.set_index("material_id")
    return df


def reference_entry(df, material_id: str) -> dict | None:
    """Scalar κ_DFT (trace/3, 300 K), per-mode scalar κ (n_q, n_bands) and q-point weights of one
    material from the reference table, or None when it is not there."""
    from geodite.metrics.phonons import kappa_scalar

    if material_id not in df.index:
        return None
    row = df.loc[material_id]

    kappa_tot = np.asarray(row["kappa_tot_rta"], dtype=float)  # (T, 6) or (6,)
    kappa_dft = float(np.ravel(kappa_scalar(kappa_tot))[0])  # the first temperature: 300 K
    mode = None
    if "mode_kappa_tot_avg" in row and row["mode_kappa_tot_avg"] is not None:
        mode = np.asarray(row["mode_kappa_tot_avg"], dtype=float)
        if mode.ndim == 3:  # (T, q, band)
            mode = mode[0]
    elif "mode_kappa_tot_rta" in row and row["mode_kappa_tot_rta"] is not None:
        full = np.asarray(row["mode_kappa_tot_rta"], dtype=float)
        if full.ndim == 4:  # (T, q, band, 6)
            full = full[0]
        mode = np.asarray(kappa_scalar(full))
    weights = np.asarray(row["mode_weights"], dtype=float) if "mode_weights" in row else None
    return {"kappa_dft": kappa_dft, "mode_kappa": mode, "weights": weights}


# --------------------------------------------------------------------------- helpers


def atoms_to_dict(atoms: Atoms) -> dict:
    """JSON-able (and picklable) form of a periodic structure."""
    return {
        "numbers": atoms.numbers.tolist(),
        "cell": np.asarray(atoms.cell).tolist(),
        "positions": atoms.positions.tolist(),
    }


def atoms_from_dict(d: dict) -> Atoms:
    return Atoms(numbers=d["numbers"], cell=d["cell"], positions=d["positions"], pbc=True)
