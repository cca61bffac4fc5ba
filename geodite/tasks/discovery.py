"""Discovery (thermodynamic stability) benchmark — Matbench Discovery, docs/benchmarks.md §1.

Protocol per item (one WBM material):

1. Relax the start structure with the model: ASE FIRE + FrechetCellFilter, fmax 0.05 eV/Å,
   at most 500 steps (all configurable). Engines (same physics, not part of the protocol, so a
   store made with one resumes with the other): ``batched`` (default) relaxes a chunk of
   materials with one model call per step for all structures in flight
   (:func:`geodite.relax.relax_in_flight`, ``atoms_in_flight`` atoms in flight); ``ase`` relaxes one
   material at a time with ASE's own loop (:func:`geodite.relax.relax_atoms`).
2. Energy → formation energy per atom with MP's elemental reference energies (rounded to
   4 decimals, as MBD).
3. Geometry: RMSD between the ML-relaxed and the DFT-relaxed structure,
   ``StructureMatcher(stol=1.0, scale=False).get_rms_dist`` (pymatgen normalises by
   (V/n)^(1/3)); unmatched (or a failed relaxation) counts as 1.0. Symmetry of both structures
   by moyopy at symprec 1e-2 and 1e-5 (:mod:`geodite.metrics.symmetry`): ``n_sym_ops_mae_<symprec>``,
   ``symmetry_{decrease,match,increase}_<symprec>``, ``n_structures_<symprec>`` (MBD's geo-opt task).
   Rows keep the relaxed structure (``structure_pred``, pymatgen JSON) for the submission files.

Two data modes:

* ``full`` — the MBD files (:mod:`geodite.data.downloads`): WBM *initial* structures;
  an uncorrected model energy goes through the WBM ComputedStructureEntry and
  ``MaterialsProject2020Compatibility`` (a model with ``energy_convention ==
  "mp2020_corrected"``, e.g. CHGNet, is used as is, as MBD does); predicted hull distance
  = DFT hull distance + (predicted − DFT) corrected formation energy (missing when the
  error exceeds 5 eV/atom); metrics (:func:`geodite.metrics.discovery.full_metrics_from_rows`) on the unique-prototype
  subset (headline keys ``F1``, ``DAF``, ...), on all items (``full_*``) and on the 10k
  lowest predicted hull distances among unique prototypes (``most_stable_10k_*``).
* ``offline`` — the shipped 1000-material WBM subset (DFT-relaxed structures and
  energies, no initial structures, no hull distances). Start = the DFT structure with a
  seeded random strain (components in ±``strain``) and Gaussian rattle (σ = ``rattle`` Å);
  the per-material seed depends only on the material id and ``seed``. Reported:
  formation-energy MAE/RMSE/R² in the uncorrected convention against the file's
  ``formation_energy_per_atom`` (``e_form_MAE_1k``, ``e_form_RMSE_1k``, ``e_form_R2_1k``: not MBD's
  ``MAE``/``R2``, which are of hull distances on WBM), the same in the MP2020
  convention against ``corrected_formation_energy_per_atom`` (``*_mp2020_corrected``),
  ``RMSD`` (and ``RMSD_start`` for the perturbed starts), relaxation success rate
  (:func:`geodite.metrics.discovery.offline_metrics_from_rows`).
  The file's MP2020 correction of each material, ``corrected_energy − energy``, converts
  a model's energy between the two conventions (the correction depends on composition,
  oxidation-state/anion assignment and U settings, not on the energy).

  Elemental references: the file's own ``formation_energy_per_atom`` is reproduced by
  (energy − Σ n μ_MBD)/N to < 1e-3 eV/atom for 902 of the 1000 materials; the other 98
  all contain Bi, Br, I, Yb or O, for which the file's references differ from MBD's by a
  constant per element (fitted, residual 3e-9 eV/atom): Bi −0.0495, Br −0.0839,
  I −0.0506, O −0.0013, Yb +1.5396 eV/atom (Bi, Br and I match lower-energy MP
  polymorphs in matcalc's MP-PBE-Element-Refs; Yb reflects the PBE54 Yb_3 PAW).
  Rows carry ``refs_consistent``; ``e_form_MAE_1k_refs_consistent`` is the MAE on those rows.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from geodite.data import downloads
from geodite.data import wbm as wbm_data
from geodite.metrics.discovery import full_metrics_from_rows, offline_metrics_from_rows
from geodite.metrics.symmetry import symmetry_comparison
from geodite.relax import ENGINES
from geodite.submission import write_discovery
from geodite.tasks.contract import PROTOCOL, failed_row, item_rows

FULL_FILES = ["wbm_summary", "wbm_initial_structures", "wbm_computed_structure_entries", "mp_elemental_ref_entries"]
REFS_CONSISTENT_TOL = 1e-3  # eV/atom


def structure_rmsd(relaxed, reference, stol: float = 1.0) -> float:
    """pymatgen StructureMatcher(stol, scale=False) rms distance; 1.0 when unmatched."""
    from pymatgen.analysis.structure_matcher import StructureMatcher

    res = StructureMatcher(stol=stol, scale=False).get_rms_dist(relaxed, reference)
    return 1.0 if res is None else float(res[0])


@dataclass
class DiscoveryTask:
    mode: str = field(default="auto", metadata=PROTOCOL)  # "auto" | "offline" | "full"
    data_dir: str | None = None
    offline_path: str | None = None
    refs_path: str | None = None
    download: bool = False
    fmax: float = field(default=0.05, metadata=PROTOCOL)
    steps: int = field(default=500, metadata=PROTOCOL)
    optimizer: str = field(default="FIRE", metadata=PROTOCOL)
    cell_filter: str = field(default="FrechetCellFilter", metadata=PROTOCOL)
    rattle: float = field(default=0.05, metadata=PROTOCOL)
    strain: float = field(default=0.03, metadata=PROTOCOL)
    seed: int = field(default=0, metadata=PROTOCOL)
    name: str = "discovery"
    engine: str = "batched"  # "batched" | "ase": same physics (module docstring)
    atoms_in_flight: int | None = None  # batched engine (default geodite.relax.default_atoms_in_flight)

    def __post_init__(self) -> None:
        if self.mode not in {"auto", "offline", "full"}:
            raise ValueError(f"mode must be auto, offline or full, not {self.mode!r}")
        if self.engine not in ENGINES:
            raise ValueError(f"engine must be batched or ase, not {self.engine!r}")
        if self.atoms_in_flight is not None and self.atoms_in_flight < 1:
            raise ValueError(f"atoms_in_flight must be at least 1, not {self.atoms_in_flight}")
        self.relax_settings()  # ValueError for an unknown optimizer, a non-finite fmax, ... before any item
        if self.mode == "auto":
            self.mode = "full" if downloads.have_all(FULL_FILES, self.data_dir) else "offline"
        if self.mode == "offline":
            self.offline_path = str(self.offline_path or wbm_data.default_offline_wbm_path())
            self.refs_path = str(self.refs_path or wbm_data.default_mp_refs_path())

    def relax_settings(self):
        """The relaxation every material gets (a :class:`geodite.relax.RelaxSettings`)."""
        from geodite.relax import RelaxSettings

        return RelaxSettings(self.fmax, self.steps, self.optimizer, self.cell_filter)

    # ------------------------------------------------------------------ protocol
    def protocol_extras(self) -> dict:
        return {"offline_data_md5": downloads.file_digest(self.offline_path, "md5")} if self.mode == "offline" else {}

    def items(self) -> list[dict]:
        return self._offline_items() if self.mode == "offline" else self._full_items()

    def _offline_items(self) -> list[dict]:
        return [{"key": rec["material_id"], **rec} for rec in wbm_data.load_offline_wbm(self.offline_path)]

    def _full_items(self) -> list[dict]:
        paths = {k: downloads.fetch(k, self.data_dir, download=self.download) for k in FULL_FILES}
        self.refs_path = str(paths["mp_elemental_ref_entries"])
        summary = wbm_data.load_wbm_summary(paths["wbm_summary"])
        init = wbm_data.load_wbm_initial_structures(paths["wbm_initial_structures"])
        cses = wbm_data.load_wbm_computed_structure_entries(paths["wbm_computed_structure_entries"])
        items = []
        for mid, row in summary.iterrows():
            if mid not in init or mid not in cses:
                continue
            items.append(
                {
                    "key": mid,
                    "material_id": mid,
                    "formula": row.get("formula"),
                    "initial_structure": init[mid],
                    "cse": cses[mid],
                    "e_form_dft": float(row["e_form_per_atom_mp2020_corrected"]),
                    "e_above_hull_dft": float(row["e_above_hull_mp2020_corrected_ppd_mp"]),
                    "unique_prototype": bool(row.get("unique_prototype", True)),
                }
            )
        return items

    def start_structure(self, item: dict):
        """The structure the relaxation starts from (ase.Atoms): offline the DFT structure with the seeded
        strain and rattle, full the WBM initial structure."""
        from pymatgen.core import Structure
        from pymatgen.io.ase import AseAtomsAdaptor

        if self.mode == "full":
            return AseAtomsAdaptor.get_atoms(Structure.from_dict(item["initial_structure"]))
        return wbm_data.perturb_atoms(
            AseAtomsAdaptor.get_atoms(Structure.from_dict(item["structure"])),
            wbm_data.item_seed(item["material_id"], self.seed), self.rattle, self.strain,
        )

    def run_item(self, item: dict, ctx) -> dict:
        """One material with ASE's own relaxation loop (the ``ase`` engine)."""
        from geodite.relax import relax_atoms

        start = self.start_structure(item)
        res = relax_atoms(start, ctx.calculator, self.relax_settings())
        return self.row(item, start, res, ctx)

    def run_batch(self, items: list[dict], ctx) -> Iterator[dict]:
        """Rows of ``items`` as their relaxations finish: the ``batched`` engine keeps ``atoms_in_flight`` atoms in
        flight, one model call per step for all of them (``ase``: one material after the other)."""
        if self.engine == "ase":
            yield from item_rows(self.run_item, items, ctx)
            return
        from geodite.relax import default_atoms_in_flight, relax_in_flight

        by_key = {item["key"]: item for item in items}
        starts: dict[str, object] = {}
        for item in items:
            try:
                starts[item["key"]] = self.start_structure(item)
            except Exception as exc:  # noqa: BLE001 - a bad record fails its own row
                yield failed_row(item["key"], exc)
        budget = self.atoms_in_flight or default_atoms_in_flight(ctx.device)
        relaxations = relax_in_flight(starts.items(), ctx.evaluate, self.relax_settings(), budget)
        for key, res in relaxations:
            if isinstance(res, str):
                yield {"key": key, "status": "failed", "error": f"StructureError: {res}"}
                continue
            try:
                yield self.row(by_key[key], starts[key], res, ctx) | {"key": key}
            except Exception as exc:  # noqa: BLE001 - scoring one material must not stop the others
                yield failed_row(key, exc)

    def row(self, item: dict, start, res, ctx) -> dict:
        """The result row of one relaxed material (``res``: a :class:`geodite.relax.RelaxResult`)."""
        return self._row_offline(item, start, res, ctx) if self.mode == "offline" else self._row_full(item, res, ctx)

    def _row_offline(self, item: dict, start, res, ctx) -> dict:
        from pymatgen.core import Structure
        from pymatgen.io.ase import AseAtomsAdaptor

        from geodite.registry import MP2020_CORRECTED

        s_dft = Structure.from_dict(item["structure"])
        comp = s_dft.composition
        s_ml = AseAtomsAdaptor.get_structure(res.atoms)
        refs = wbm_data.mp_elemental_ref_energies(self.refs_path)
        correction = float(item["corrected_energy"]) - float(item["energy"])  # eV, MP2020, from the DFT entry
        if ctx.handle.energy_convention == MP2020_CORRECTED:
            e_unc, e_cor = res.energy - correction, res.energy
        else:
            e_unc, e_cor = res.energy, res.energy + correction
        e_form_dft_mbd = wbm_data.formation_energy_per_atom(float(item["energy"]), comp, refs)
        return {
            "material_id": item["material_id"],
            "formula": comp.reduced_formula,
            "n_atoms": len(s_dft),
            "energy_pred": res.energy,
            "e_form_pred": wbm_data.formation_energy_per_atom(e_unc, comp, refs),
            "e_form_pred_mp2020": wbm_data.formation_energy_per_atom(e_cor, comp, refs),
            "e_form_dft": float(item["formation_energy_per_atom"]),
            "e_form_dft_mp2020": float(item["corrected_formation_energy_per_atom"]),
            "e_form_dft_mbd_refs": e_form_dft_mbd,
            "refs_consistent": abs(e_form_dft_mbd - float(item["formation_energy_per_atom"])) < REFS_CONSISTENT_TOL,
            "rmsd": structure_rmsd(s_ml, s_dft),
            **symmetry_comparison(s_ml, s_dft),
            "structure_pred": json.dumps(s_ml.as_dict()),
            "rmsd_start": structure_rmsd(AseAtomsAdaptor.get_structure(start), s_dft),
            "volume_ratio": s_ml.volume / s_dft.volume,
            "n_steps": res.n_steps,
            "converged": res.converged,
            "fmax_final": res.fmax_final,
            "relax_s": res.wall_s,
        }

    def _row_full(self, item: dict, res, ctx) -> dict:
        from pymatgen.core import Structure
        from pymatgen.entries.compatibility import MaterialsProject2020Compatibility
        from pymatgen.entries.computed_entries import ComputedStructureEntry
        from pymatgen.io.ase import AseAtomsAdaptor

        from geodite.registry import MP2020_CORRECTED

        s_init = Structure.from_dict(item["initial_structure"])
        s_ml = AseAtomsAdaptor.get_structure(res.atoms)
        cse = ComputedStructureEntry.from_dict(item["cse"])
        s_dft = cse.structure
        refs = wbm_data.mp_elemental_ref_energies(self.refs_path)
        if ctx.handle.energy_convention == MP2020_CORRECTED:
            e_cor = res.energy
        else:
            # as MBD: put the ML energy and structure into the WBM entry, then MP2020
            # (check_potcar off and no anion check: the 2023.5-era behaviour of the released table)
            cse._energy = res.energy  # noqa: SLF001 - the uncorrected energy
            cse._structure = s_ml  # noqa: SLF001
            compat = MaterialsProject2020Compatibility(check_potcar=False, strict_anions="no_check")
            processed = compat.process_entry(cse, clean=True)
            e_cor = float("nan") if processed is None else processed.energy
        e_form = wbm_data.formation_energy_per_atom(e_cor, s_init.composition, refs)
        return {
            "material_id": item["material_id"],
            "formula": s_init.composition.reduced_formula,
            "n_atoms": len(s_init),
            "energy_pred": res.energy,
            "e_form_pred": e_form,
            "e_form_dft": item["e_form_dft"],
            "e_above_hull_dft": item["e_above_hull_dft"],
            "unique_prototype": item["unique_prototype"],
            "rmsd": structure_rmsd(s_ml, s_dft),
            **symmetry_comparison(s_ml, s_dft),
            "structure_pred": json.dumps(s_ml.as_dict()),
            "n_steps": res.n_steps,
            "converged": res.converged,
            "fmax_final": res.fmax_final,
            "relax_s": res.wall_s,
        }

    # ------------------------------------------------------------------ metrics
    def metrics(self, df: pd.DataFrame, model: str) -> dict:
        return offline_metrics_from_rows(df) if self.mode == "offline" else full_metrics_from_rows(df)

    def submission(self, df: pd.DataFrame, summary: dict, folder: Path, model: str,
                   date: str) -> tuple[list[Path], dict]:
        """Matbench Discovery's discovery and geo-opt files (:func:`geodite.submission.write_discovery`)."""
        return write_discovery(df, summary, folder, model, date)

    def plots(self, df: pd.DataFrame, out_dir: Path, model: str) -> list[Path]:
        cols = ("e_form_dft", "e_form_pred")
        if not set(cols) <= set(df.columns):
            return []
        ok = df[np.isfinite(df["e_form_pred"].astype(float))]
        label = "uncorrected" if self.mode == "offline" else "MP2020-corrected"
        return parity_and_hist(ok["e_form_dft"], ok["e_form_pred"], out_dir, model, label)


def error_histogram(err: np.ndarray, model: str):
    """Histogram of formation-energy errors (eV/atom; a matplotlib Figure) with whole-number counts on its axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, ax = plt.subplots(figsize=(5, 3.5), dpi=120)
    ax.hist(err, bins=min(50, max(5, len(err) // 3)))
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.axvline(0, color="k", lw=0.8)
    ax.set(xlabel=f"{model} − DFT E_form [eV/atom]", ylabel="count")
    fig.tight_layout()
    return fig


def parity_and_hist(true, pred, out_dir: Path, model: str, label: str) -> list[Path]:
    """Parity plot of predicted vs DFT formation energy and a histogram of the errors."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    true, pred = np.asarray(true, float), np.asarray(pred, float)
    err = pred - true
    mae = float(np.mean(np.abs(err))) if len(err) else math.nan
    paths = []
    fig, ax = plt.subplots(figsize=(4.5, 4.5), dpi=120)
    ax.scatter(true, pred, s=8, alpha=0.6)
    lo = float(np.nanmin(np.r_[true, pred])) if len(true) else -1
    hi = float(np.nanmax(np.r_[true, pred])) if len(true) else 1
    ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
    ax.set(xlabel=f"DFT E_form ({label}) [eV/atom]", ylabel=f"{model} E_form [eV/atom]")
    ax.set_title(f"{model}: n={len(true)}, MAE={mae:.3f} eV/atom", fontsize=9)
    fig.tight_layout()
    paths.append(out_dir / "parity_e_form.png")
    fig.savefig(paths[-1])
    plt.close(fig)
    fig = error_histogram(err, model)
    paths.append(out_dir / "hist_e_form_error.png")
    fig.savefig(paths[-1])
    plt.close(fig)
    return paths
