"""WBM test set and MP elemental references for the discovery benchmark.

Two sources:

* **offline subset** (always available): 1000 random WBM materials with their
  DFT-relaxed structures and energies (``wbm-random-pbe54-equilibrium-2025.1.json.gz``,
  materialsvirtuallab/matcalc ``benchmark_data/``), shipped in ``geodite/data/files/``.
  It has no initial (unrelaxed) structures and no hull distances, so the offline
  protocol relaxes from a *perturbed* DFT structure (:func:`perturb_atoms`).
* **full set** (Matbench Discovery figshare files, see :mod:`geodite.data.downloads`):
  the WBM summary table, initial structures and ComputedStructureEntries.

Energies are in eV (totals) or eV/atom (``*_per_atom``, formation energies).
"""

from __future__ import annotations

import gzip
import json
import zlib
from functools import lru_cache
from pathlib import Path

import numpy as np

FILES_DIR = Path(__file__).parent / "files"
OFFLINE_WBM_NAME = "wbm-random-pbe54-equilibrium-2025.1.json.gz"
MP_REFS_NAME = "2023-02-07-mp-elemental-reference-entries.json.gz"
# the repository checkout's shared data copy (../shared/data next to the repo root)
SHARED_DATA_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "data"


def _first_existing(*paths: Path) -> Path:
    for p in paths:
        if p.is_file():
            return p
    raise FileNotFoundError(f"none of these exist: {[str(p) for p in paths]}")


def default_offline_wbm_path() -> Path:
    """``../shared/data/wbm/<file>`` if present, else the packaged copy."""
    return _first_existing(SHARED_DATA_DIR / "wbm" / OFFLINE_WBM_NAME, FILES_DIR / OFFLINE_WBM_NAME)


def default_mp_refs_path() -> Path:
    return _first_existing(SHARED_DATA_DIR / "mp" / MP_REFS_NAME, FILES_DIR / MP_REFS_NAME)


def _open_json(path: str | Path):
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt") as fh:
        return json.load(fh)


def load_offline_wbm(path: str | Path | None = None) -> list[dict]:
    """Records ``{material_id, formula, structure (pymatgen dict), energy, corrected_energy,
    formation_energy_per_atom, corrected_formation_energy_per_atom}`` (eV, eV/atom)."""
    return _open_json(path or default_offline_wbm_path())


@lru_cache(maxsize=4)
def _load_refs(path: str) -> dict[str, float]:
    raw = _open_json(path)
    return {el: e["energy"] / sum(e["composition"].values()) for el, e in raw.items()}


def mp_elemental_ref_energies(path: str | Path | None = None, decimals: int | None = 4) -> dict[str, float]:
    """Element → energy per atom (eV/atom) of MP's lowest-energy elemental entry.

    Rounded to 4 decimals by default, as Matbench Discovery does
    (``matbench_discovery.energy.mp_elemental_ref_energies``).
    """
    refs = _load_refs(str(path or default_mp_refs_path()))
    return {el: (round(e, decimals) if decimals is not None else e) for el, e in refs.items()}


def formation_energy_per_atom(energy: float, composition, refs: dict[str, float]) -> float:
    """E_form = (E − Σ_el n_el μ_el) / N  [eV/atom]; ``composition`` is a pymatgen Composition
    or a {symbol: count} mapping, ``energy`` the total energy (eV) of that composition."""
    items = [(str(el), float(n)) for el, n in dict(composition).items()]
    missing = [el for el, _ in items if el not in refs]
    if missing:
        raise KeyError(f"no elemental reference energy for {missing}")
    n_atoms = sum(n for _, n in items)
    return (energy - sum(n * refs[el] for el, n in items)) / n_atoms


def item_seed(material_id: str, seed: int) -> int:
    """Deterministic per-material seed (independent of order and process)."""
    return (zlib.crc32(material_id.encode()) ^ (seed * 2654435761)) & 0xFFFFFFFF


def perturb_atoms(atoms, seed: int, rattle: float = 0.05, strain: float = 0.03):
    """A perturbed copy of ``atoms``: symmetric random strain with components uniform in
    [−strain, strain] (fractional coordinates kept), then Gaussian displacements of
    standard deviation ``rattle`` Å on every Cartesian coordinate."""
    rng = np.random.default_rng(seed)
    out = atoms.copy()
    eps = rng.uniform(-strain, strain, size=(3, 3))
    eps = 0.5 * (eps + eps.T)
    out.set_cell(out.cell.array @ (np.eye(3) + eps), scale_atoms=True)
    out.positions = out.positions + rng.normal(0.0, rattle, size=out.positions.shape)
    return out


# --------------------------------------------------------------------------- full MBD data


def load_wbm_summary(path: str | Path):
    """The WBM summary table (pandas DataFrame indexed by ``material_id``)."""
    import pandas as pd

    df = pd.read_csv(path)
    return df.set_index("material_id", drop=False)


def iter_jsonl(path: str | Path):
    """Records of a (gzipped) JSON-lines file, or of a JSON list/dict-of-columns file."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt") as fh:
        first = fh.read(1)
        fh.seek(0)
        if first == "[":
            yield from json.load(fh)
            return
        for line in fh:
            if line.strip():
                yield json.loads(line)


def _record_id(rec: dict) -> str:
    return rec.get("material_id") or rec.get("mat_id") or rec.get("entry_id") or rec["id"]


def load_wbm_initial_structures(path: str | Path) -> dict[str, dict]:
    """material_id → initial structure (pymatgen dict)."""
    out = {}
    for rec in iter_jsonl(path):
        struct = rec.get("initial_structure") or rec.get("structure") or rec
        out[_record_id(rec)] = struct
    return out


def load_wbm_computed_structure_entries(path: str | Path) -> dict[str, dict]:
    """material_id → ComputedStructureEntry dict."""
    out = {}
    for rec in iter_jsonl(path):
        cse = rec.get("computed_structure_entry") or rec
        mid = rec.get("material_id") or cse.get("entry_id")
        out[mid] = cse
    return out
