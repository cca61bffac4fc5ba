"""Thermal conductivity (κ_SRME) benchmark — Matbench Discovery, docs/benchmarks.md §2, docs/kappa.md.

Protocol per item (one phononDB material), as MBD's ``matbench_discovery/phonons/calc_kappa.py``:

1. Structure. ``full``: the DFT unit cell of MBD's ``phonondb_pbe_103_structures`` with its
   ``fc2_supercell``, ``fc3_supercell`` and q-mesh. ``offline``: the ideal AB prototype
   (rocksalt / zincblende / wurtzite) built from formula and space group
   (:func:`geodite.data.kappa.prototype_atoms`: nearest-neighbour distance = sum of covalent
   radii), then — with ``start_scan`` — isotropically rescaled to the model's energy minimum on
   a coarse grid of scale factors, so that the relaxation starts near the model's lattice constant.
2. Relax: ASE FIRE on FrechetCellFilter(mask=[1, 1, 1, 0, 0, 0]) (cell tilt masked) with
   FixSymmetry(symprec=``relax_symprec`` = 0.01), fmax 1e-4 eV/Å, at most 300 steps.
   Space group before/after with spglib at ``symprec`` = 1e-5; a change is "broken symmetry".
3. phono3py (``primitive_matrix="auto"``, symprec 1e-5): displacements of 0.03 Å (phono3py's and
   MBD's default; docs/kappa.md shows that the published κ were made with it); FC2 from the
   model's forces on the fc2 supercells, symmetrised; phonons on the q-mesh; imaginary-mode
   check as MBD (:func:`has_imaginary_modes`).
4. Without imaginary modes or broken symmetry: FC3 from the fc3 supercells (symmetrised), then
   the Wigner (particle + coherence, SMM19) conductivity in the RTA at 300 K with isotope
   scattering and boundary_mfp = 1e6 µm. Supercell forces use the model's batched evaluator
   (one ``ctx.evaluate`` call per set: batched for Geodite, one supercell at a time for other models).
5. κ = trace/3 of the total (particle + coherence) tensor, W/(m·K). Mode-resolved total κ per
   (irreducible q-point, band) = particle term + Σ_j' 2 C_j/(C_j + C_j') × coherence[j, j']
   (MBD's ``calc_mode_kappa_tot``); with the DFT mode-resolved reference (full mode) the row gets
   its SRME (:func:`geodite.metrics.phonons.kappa_srme_per_material`).

Penalties (MBD): a failed material, one with imaginary modes or broken symmetry has no κ
(SRD = −2, SRE = 2) and SRME = 2. Offline there is no mode-resolved reference: κ_SRME is
reported as null with the reason; κ_SRE and κ_SRD are computed against the real DFT κ.

Row schema: material_id, formula, spg_num, source, kappa_pred, kappa_p, kappa_c, kappa_dft, srd, sre,
srme (NaN offline), imaginary_modes, broken_symmetry, failed, stage, error, spg_initial,
spg_relaxed, a0_guess, scan_scale, relax_steps, relax_converged, relax_fmax, volume_per_atom,
n_fc2_supercells, n_fc3_supercells, min_frequency (THz), relax_s, fc2_s, fc3_s, conductivity_s,
wall_s. (``kappa_published`` of a compared model is added in metrics/plots, not stored.)
"""

from __future__ import annotations

import inspect
import math
import os
import time
import traceback
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from geodite.data import downloads
from geodite.data import kappa as kdata
from geodite.metrics.phonons import SRME_PENALTY, kappa_scalar, kappa_srd, kappa_sre, kappa_srme_per_material
from geodite.tasks.contract import PROTOCOL

FULL_FILES = [kdata.STRUCTURES_KEY]
IMAGINARY_ACOUSTIC_THRESHOLD = -0.01  # THz, MBD's check_imaginary_freqs

# registry model name → MBD model key in kappa-103-analysis.jsonl (published κ to compare with)
PUBLISHED_KEYS = {
    "chgnet": "chgnet-0.3.0",
    "mace-mp-0": "mace-mp-0",
    "emt": None,
}


# --------------------------------------------------------------------------- physics helpers


def has_imaginary_modes(frequencies: np.ndarray, threshold: float = IMAGINARY_ACOUSTIC_THRESHOLD) -> bool:
    """MBD's imaginary-mode check on phonon frequencies (THz), shape (n_q, n_bands), q = 0 first.

    True if all are NaN, any optical mode at Γ is negative, any acoustic mode at Γ is below
    ``threshold`` (−0.01 THz), or any mode away from Γ is negative.
    """
    freqs = np.asarray(frequencies, dtype=float)
    if freqs.size == 0 or np.all(np.isnan(freqs)):
        return True
    if np.any(freqs[0, 3:] < 0) or np.any(freqs[0, :3] < threshold):
        return True
    return bool(np.any(freqs[1:] < 0))


def mode_kappa_total(mode_kappa_p: np.ndarray, mode_kappa_c: np.ndarray, heat_capacity: np.ndarray) -> np.ndarray:
    """Per-mode total (particle + coherence) κ, MBD's ``calc_mode_kappa_tot``.

    Args:
        mode_kappa_p: particle-like mode κ, (..., n_q, n_bands, 6), weight included.
        mode_kappa_c: band-pair coherence κ, (..., n_q, n_bands, n_bands, 6).
        heat_capacity: mode heat capacities, (..., n_q, n_bands).

    Returns κ_P,j + Σ_j' 2 C_j / (C_j + C_j') κ_C,jj' with 0/0 → 0, shape of ``mode_kappa_p``.
    """
    cv = np.asarray(heat_capacity, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        share = 2 * cv[..., :, None] / (cv[..., :, None] + cv[..., None, :])
        coh = (np.asarray(mode_kappa_c, float) * share[..., None]).sum(axis=-2)
    coh[np.isnan(coh)] = 0.0
    return np.asarray(mode_kappa_p, float) + coh


def spacegroup_number(atoms, symprec: float = 1e-5) -> int | None:
    import spglib

    cell = (np.asarray(atoms.cell), atoms.get_scaled_positions(), atoms.numbers)
    ds = spglib.get_symmetry_dataset(cell, symprec=symprec)
    return None if ds is None else int(ds.number)


def supercell_forces(supercells, evaluate, n_atoms: int) -> np.ndarray:
    """Forces (eV/Å) on phono3py's displaced supercells; zeros for ``None`` entries (skipped displacements).
    ``evaluate``: the worker's :meth:`~geodite.tasks.contract.WorkerContext.evaluate`, so the whole set goes in
    one call (forward passes of up to the Evaluator's ``max_atoms`` atoms for Geodite)."""
    from ase import Atoms

    structures = [
        None if sc is None else Atoms(sc.symbols, cell=sc.cell, positions=sc.positions, pbc=True)
        for sc in supercells
    ]
    todo = [i for i, a in enumerate(structures) if a is not None]
    forces = np.zeros((len(structures), n_atoms, 3))
    predictions = evaluate([structures[i] for i in todo], compute_stress=False)
    bad = [p.error for p in predictions if not p.ok]
    if bad:
        raise RuntimeError(f"model evaluation failed on a displaced supercell: {bad[0]}")
    for i, p in zip(todo, predictions, strict=True):
        forces[i] = p.forces
    return forces


def _limit_rust_threads() -> None:
    """phono3py ≥ 4 runs its kernels in Rust (rayon): one global pool sized by RAYON_NUM_THREADS,
    read once per process. Give it the worker's thread budget (OMP_NUM_THREADS from the runner,
    else torch's), not all cores, so that parallel workers do not oversubscribe the machine."""
    if "RAYON_NUM_THREADS" in os.environ:
        return
    n = os.environ.get("OMP_NUM_THREADS")
    if n is None:
        try:
            import torch

            n = str(torch.get_num_threads())
        except ImportError:
            n = "1"
    os.environ["RAYON_NUM_THREADS"] = n


def _produce_fc2(ph3) -> None:
    """FC2 from the forces, symmetrised (phono3py ≥ 4: a separate call; 3.x: a keyword)."""
    if hasattr(ph3, "symmetrize_fc2"):
        ph3.produce_fc2()
        ph3.symmetrize_fc2()
    else:
        ph3.produce_fc2(symmetrize_fc2=True)


def _produce_fc3(ph3) -> None:
    """FC3 from the forces, symmetrised (index permutation and translational invariance)."""
    if hasattr(ph3, "symmetrize_fc3"):
        ph3.produce_fc3()
        ph3.symmetrize_fc3()
    else:
        ph3.produce_fc3(symmetrize_fc3r=True)


def _wigner_kwargs(run_thermal_conductivity) -> dict:
    """Keyword selecting the Wigner (particle + coherence, SMM19) transport in this phono3py:
    ``conductivity_type="wigner"`` (phono3py 3.x) or ``transport_type="SMM19"`` (4.x)."""
    params = inspect.signature(run_thermal_conductivity).parameters
    if "conductivity_type" in params:
        return {"conductivity_type": "wigner"}
    if "transport_type" in params:
        return {"transport_type": "SMM19"}
    raise RuntimeError("this phono3py has neither conductivity_type nor transport_type: cannot select Wigner transport")


def extract_wigner(cond) -> dict:
    """κ tensors (Voigt, 300 K) and per-mode scalar total κ from a phono3py Wigner RTA result.

    Handles phono3py 4.x (``kappa`` = total, ``kappa_intra`` = particle, ``mode_kappa_matrix``
    band-pair matrix whose diagonal is the particle term) and 3.x (``kappa_TOT_RTA``,
    ``kappa_P_RTA``, ``kappa_C``, ``mode_kappa_P_RTA``, ``mode_kappa_C``).
    """
    cv = np.asarray(cond.mode_heat_capacities)[0]  # (q, band) at the first temperature
    if getattr(cond, "mode_kappa_matrix", None) is not None:  # phono3py 4.x
        total = np.asarray(cond.kappa)[0, 0]
        particle = np.asarray(cond.kappa_intra)[0, 0]
        matrix = np.asarray(cond.mode_kappa_matrix)[0, 0]  # (q, band0, band, 6), weights included
        # the diagonal j = j' is the particle term and gets weight 2C/(2C) = 1: one formula for both
        with np.errstate(divide="ignore", invalid="ignore"):
            share = 2 * cv[:, :, None] / (cv[:, :, None] + cv[:, None, :])
        share[np.isnan(share)] = 0.0
        idx = np.arange(matrix.shape[1])
        share[:, idx, idx] = 1.0
        mode = (matrix * share[..., None]).sum(axis=2)
    else:  # phono3py 3.x Wigner calculator
        total = np.asarray(cond.kappa_TOT_RTA)[0, 0]
        particle = np.asarray(cond.kappa_P_RTA)[0, 0]
        mode = mode_kappa_total(
            np.asarray(cond.mode_kappa_P_RTA)[0, 0], np.asarray(cond.mode_kappa_C)[0, 0], cv
        )
    return {
        "kappa_tensor": total,
        "kappa_p_tensor": particle,
        "mode_kappa": np.asarray(kappa_scalar(mode)),  # (q, band) scalar per mode
        "weights": np.asarray(cond.grid_weights, dtype=float),
    }


# --------------------------------------------------------------------------- the task


@dataclass
class KappaTask:
    """κ_SRME benchmark task (see module docstring). Fields marked PROTOCOL are hashed into the store's config."""

    mode: str = field(default="auto", metadata=PROTOCOL)  # "auto" | "offline" | "full"
    data_dir: str | None = None
    download: bool = False
    analysis_path: str | None = None
    materials: list[str] = field(default_factory=list)  # material ids or formulas (formula matches all polymorphs)
    space_groups: list[int] = field(default_factory=list)  # keep only these (225, 216, 186)
    fmax: float = field(default=1e-4, metadata=PROTOCOL)
    steps: int = field(default=300, metadata=PROTOCOL)
    optimizer: str = field(default="FIRE", metadata=PROTOCOL)
    relax_symprec: float = field(default=0.01, metadata=PROTOCOL)  # FixSymmetry during relaxation
    symprec: float = field(default=1e-5, metadata=PROTOCOL)  # space-group check and phono3py
    # Å; phono3py's default and MBD's init_phono3py default (docs/kappa.md)
    displacement: float = field(default=0.03, metadata=PROTOCOL)
    temperature: float = field(default=300.0, metadata=PROTOCOL)  # K
    boundary_mfp: float = field(default=1e6, metadata=PROTOCOL)  # µm
    is_isotope: bool = field(default=True, metadata=PROTOCOL)
    cell: str = field(default="conventional", metadata=PROTOCOL)  # offline unit cell: conventional | primitive
    # overrides: diagonal multiples of the unit cell, and the q-mesh
    fc2_supercell: list[int] | None = field(default=None, metadata=PROTOCOL)
    fc3_supercell: list[int] | None = field(default=None, metadata=PROTOCOL)
    q_mesh: list[int] | None = field(default=None, metadata=PROTOCOL)
    # offline: rescale the prototype to the model's minimum first, over these scale factors
    start_scan: bool = field(default=True, metadata=PROTOCOL)
    scan_scales: list[float] = field(
        default_factory=lambda: [round(x, 3) for x in np.linspace(0.85, 1.2, 15)], metadata=PROTOCOL
    )
    compare_with: str | None = None  # published model key in the analysis file, e.g. "chgnet-0.3.0"
    name: str = "kappa"

    def __post_init__(self) -> None:
        if self.mode not in {"auto", "offline", "full"}:
            raise ValueError(f"mode must be auto, offline or full, not {self.mode!r}")
        if self.mode == "auto":
            self.mode = "full" if downloads.have_all(FULL_FILES, self.data_dir) else "offline"
        if self.cell not in ("conventional", "primitive"):
            raise ValueError(f"cell must be conventional or primitive, not {self.cell!r}")
        for knob in ("fc2_supercell", "fc3_supercell", "q_mesh"):
            val = getattr(self, knob)
            if val is not None and len(val) != 3:
                raise ValueError(f"{knob} needs 3 integers, got {val}")
        self.analysis_path = str(self.analysis_path or kdata.default_analysis_path())
        if self.compare_with is not None and self.compare_with not in kdata.published_models(self.analysis_path):
            known = ", ".join(kdata.published_models(self.analysis_path))
            raise ValueError(f"unknown published model {self.compare_with!r}; known: {known}")
        self._reference = None
        self._reference_reason: str | None = None
        self._items: list[dict] | None = None

    def __getstate__(self) -> dict:
        # the task travels to workers with every item: leave the cached item list (structures,
        # reference mode κ of all materials) behind; each item carries what it needs
        state = dict(self.__dict__)
        state["_items"] = None
        return state

    # ------------------------------------------------------------------ protocol
    def protocol_extras(self) -> dict:
        return {"analysis_md5": downloads.md5sum(self.analysis_path)}

    @staticmethod
    def published_key_for(model: str) -> str | None:
        return PUBLISHED_KEYS.get(model)

    def items(self) -> list[dict]:
        if self._items is None:
            items = self._full_items() if self.mode == "full" else self._offline_items()
            if self.space_groups:
                items = [it for it in items if it.get("spg_num") in set(self.space_groups)]
            if self.materials:
                wanted = set(self.materials)
                items = [it for it in items if it["material_id"] in wanted or it["formula"] in wanted]
                if not items:
                    raise ValueError(f"no material matches {sorted(wanted)}")
            for it in items:
                it["key"] = it["material_id"]
            self._items = items
        return self._items

    def _overrides(self, item: dict) -> dict:
        if self.fc2_supercell is not None:
            item["fc2_supercell"] = np.diag(self.fc2_supercell).astype(int).tolist()
        if self.fc3_supercell is not None:
            item["fc3_supercell"] = np.diag(self.fc3_supercell).astype(int).tolist()
        if self.q_mesh is not None:
            item["q_mesh"] = [int(x) for x in self.q_mesh]
        return item

    def _offline_items(self) -> list[dict]:
        self._reference_reason = (
            "κ_SRME needs the mode-resolved DFT reference (Matbench Discovery's "
            f"'{kdata.REFERENCE_KEY}', {downloads.DATA_FILES[kdata.REFERENCE_KEY].url}); "
            "it is not available offline. Provide it with --data-dir or the cache for the full mode."
        )
        return [self._overrides(it) for it in kdata.offline_items(self.analysis_path, cell=self.cell)]

    def _full_items(self) -> list[dict]:
        path = downloads.fetch(kdata.STRUCTURES_KEY, self.data_dir, download=self.download)
        items = kdata.load_phonondb_structures(path)
        meta = {m["material_id"]: m for m in kdata.load_materials(self.analysis_path)}
        try:
            ref_path = downloads.fetch(kdata.REFERENCE_KEY, self.data_dir, download=self.download)
            ref = kdata.load_reference(ref_path)
        except downloads.DataUnavailableError as exc:
            ref = None
            self._reference_reason = f"mode-resolved DFT reference unavailable: {exc}"
        for it in items:
            m = meta.get(it["material_id"], {})
            it["spg_num"] = m.get("spg_num")
            it["kappa_dft"] = m.get("kappa_dft", float("nan"))
            if m.get("formula"):
                it["formula"] = m["formula"]
            entry = kdata.reference_entry(ref, it["material_id"]) if ref is not None else None
            if entry is not None:
                it["kappa_dft"] = entry["kappa_dft"]
                if entry["mode_kappa"] is not None and entry["weights"] is not None:
                    it["ref_mode_kappa"] = np.asarray(entry["mode_kappa"]).tolist()
                    it["ref_weights"] = np.asarray(entry["weights"]).tolist()
            self._overrides(it)
        if ref is not None and not any("ref_mode_kappa" in it for it in items):
            self._reference_reason = "the DFT reference file has no mode-resolved κ (mode_kappa_tot_*)"
        return items

    # ------------------------------------------------------------------ one material
    def run_item(self, item: dict, ctx) -> dict:
        _limit_rust_threads()
        t0 = time.perf_counter()
        row = {
            "material_id": item["material_id"],
            "formula": item["formula"],
            "spg_num": item.get("spg_num"),
            "source": item.get("source"),
            "kappa_dft": float(item.get("kappa_dft", float("nan"))),
            "kappa_pred": float("nan"),
            "imaginary_modes": False,
            "broken_symmetry": False,
            "failed": False,
            "stage": "start",
        }
        try:
            self._compute(item, ctx, row)
        except Exception as exc:  # noqa: BLE001 - the row keeps its metadata and the stage that failed
            row.update(
                failed=True,
                status="failed",
                error=f"{row['stage']}: {type(exc).__name__}: {exc}",
                traceback=traceback.format_exc(limit=6),
            )
        row["wall_s"] = time.perf_counter() - t0
        self._score(row, item)
        return row

    def _start_structure(self, item: dict, ctx, row: dict):
        if item.get("atoms") is not None:
            return kdata.atoms_from_dict(item["atoms"])
        atoms = kdata.prototype_atoms(item["formula"], item["spg_num"], cell=item.get("cell", self.cell))
        a_el, b_el = kdata.split_binary(item["formula"])
        row["bond_guess"] = kdata.bond_length_guess(a_el, b_el)
        row["scan_scale"] = 1.0
        if self.start_scan:
            row["stage"] = "start_scan"
            trial = []
            for s in self.scan_scales:
                a = atoms.copy()
                a.set_cell(atoms.cell * s, scale_atoms=True)
                trial.append(a)
            e = np.array([p.energy if p.ok else np.nan for p in ctx.evaluate(trial, compute_stress=False)])
            if np.isfinite(e).any():
                best = int(np.nanargmin(e))
                row["scan_scale"] = float(self.scan_scales[best])
                atoms = trial[best]
        return atoms

    def _relax(self, atoms, calculator, row: dict):
        from ase import optimize
        from ase.constraints import FixSymmetry
        from ase.filters import FrechetCellFilter

        t0 = time.perf_counter()
        atoms = atoms.copy()
        atoms.calc = calculator
        atoms.set_constraint(FixSymmetry(atoms, symprec=self.relax_symprec))
        filtered = FrechetCellFilter(atoms, mask=[True, True, True, False, False, False])
        opt = getattr(optimize, self.optimizer)(filtered, logfile=None)
        converged = bool(opt.run(fmax=self.fmax, steps=self.steps))
        forces = filtered.get_forces()
        stress = atoms.get_stress()
        row.update(
            relax_steps=int(opt.nsteps),
            relax_converged=converged,
            relax_fmax=float(np.sqrt((forces**2).sum(axis=1)).max()),
            relax_max_stress=float(np.abs(stress).max()),  # eV/Å³
            relax_s=time.perf_counter() - t0,
        )
        atoms.calc = None
        atoms.set_constraint()
        return atoms

    def _compute(self, item: dict, ctx, row: dict) -> None:
        from phono3py import Phono3py
        from phonopy.structure.atoms import PhonopyAtoms

        atoms = self._start_structure(item, ctx, row)
        row["spg_initial"] = spacegroup_number(atoms, self.symprec)

        row["stage"] = "relax"
        atoms = self._relax(atoms, ctx.calculator, row)
        row["spg_relaxed"] = spacegroup_number(atoms, self.symprec)
        row["broken_symmetry"] = row["spg_relaxed"] != row["spg_initial"]
        row["volume_per_atom"] = float(atoms.get_volume() / len(atoms))
        row["lattice_abc"] = [round(float(x), 5) for x in atoms.cell.cellpar()[:3]]

        row["stage"] = "fc2"
        t0 = time.perf_counter()
        unit = PhonopyAtoms(symbols=list(atoms.symbols), cell=np.asarray(atoms.cell), positions=atoms.positions)
        with warnings.catch_warnings():  # phonopy ≥ 3 warns that "auto" finds a non-identity primitive: intended
            warnings.simplefilter("ignore", UserWarning)
            ph3 = Phono3py(
                unit,
                supercell_matrix=item["fc3_supercell"],
                phonon_supercell_matrix=item["fc2_supercell"],
                primitive_matrix="auto",
                symprec=self.symprec,
                log_level=0,
            )
        ph3.mesh_numbers = item["q_mesh"]
        ph3.generate_displacements(distance=self.displacement)
        fc2_cells = ph3.phonon_supercells_with_displacements
        row["n_fc2_supercells"] = len(fc2_cells)
        ph3.phonon_forces = supercell_forces(fc2_cells, ctx.evaluate, len(ph3.phonon_supercell))
        _produce_fc2(ph3)
        ph3.init_phph_interaction(symmetrize_fc3q=False)
        ph3.run_phonon_solver()
        freqs, _, _ = ph3.get_phonon_data()
        row["min_frequency"] = float(np.nanmin(freqs))
        row["imaginary_modes"] = has_imaginary_modes(freqs)
        row["fc2_s"] = time.perf_counter() - t0
        if row["imaginary_modes"] or row["broken_symmetry"]:
            row["stage"] = "skipped_fc3"
            return

        row["stage"] = "fc3"
        t0 = time.perf_counter()
        fc3_cells = ph3.supercells_with_displacements
        row["n_fc3_supercells"] = len(fc3_cells)
        ph3.forces = supercell_forces(fc3_cells, ctx.evaluate, len(ph3.supercell))
        _produce_fc3(ph3)
        row["fc3_s"] = time.perf_counter() - t0

        row["stage"] = "conductivity"
        t0 = time.perf_counter()
        ph3.init_phph_interaction(symmetrize_fc3q=False)
        ph3.run_thermal_conductivity(
            temperatures=[self.temperature],
            is_isotope=self.is_isotope,
            boundary_mfp=self.boundary_mfp,
            **_wigner_kwargs(ph3.run_thermal_conductivity),
        )
        res = extract_wigner(ph3.thermal_conductivity)
        row["conductivity_s"] = time.perf_counter() - t0
        row["kappa_tensor"] = [float(x) for x in res["kappa_tensor"]]
        row["kappa_pred"] = float(kappa_scalar(res["kappa_tensor"]))
        row["kappa_p"] = float(kappa_scalar(res["kappa_p_tensor"]))
        row["kappa_c"] = row["kappa_pred"] - row["kappa_p"]
        row["n_irreducible_q"] = int(len(res["weights"]))
        row["mode_kappa"], row["q_weights"] = res["mode_kappa"].tolist(), res["weights"].tolist()  # submission file
        row["mode_kappa_sum_check"] = float(res["mode_kappa"].sum() / res["weights"].sum() - row["kappa_pred"])
        if "ref_mode_kappa" in item:
            row["stage"] = "srme"
            ref_mode = np.asarray(item["ref_mode_kappa"], float)
            if ref_mode.shape != res["mode_kappa"].shape:
                row["srme_error"] = f"mode κ shapes differ: model {res['mode_kappa'].shape}, DFT {ref_mode.shape}"
            else:
                row["srme"] = kappa_srme_per_material(
                    res["mode_kappa"],
                    ref_mode,
                    res["weights"],
                    row["kappa_pred"],
                    row["kappa_dft"],
                    mode_kappa_is_scalar=True,
                )
        row["stage"] = "done"

    def with_published(self, df: pd.DataFrame) -> pd.DataFrame:
        """``df`` plus ``kappa_published`` (κ of the ``compare_with`` model, NaN where it has none)."""
        if self.compare_with is None or "material_id" not in df and "key" not in df:
            return df
        pub = kdata.published_kappa(self.compare_with, self.analysis_path)
        ids = df["material_id"] if "material_id" in df else df["key"]
        return df.assign(kappa_published=[pub.get(m, {}).get("kappa", float("nan")) for m in ids])

    def _score(self, row: dict, item: dict) -> None:
        """Per-material SRD/SRE (penalties for missing κ) and, with the mode-resolved reference, SRME."""
        kdft = row["kappa_dft"]
        if not (np.isfinite(kdft) and kdft > 0):
            row["srd"] = row["sre"] = float("nan")
            return
        row["srd"] = kappa_srd(row["kappa_pred"], kdft)
        row["sre"] = kappa_sre(row["kappa_pred"], kdft)
        row["has_mode_reference"] = "ref_mode_kappa" in item
        if row["has_mode_reference"]:
            penalised = row["failed"] or row["imaginary_modes"] or row["broken_symmetry"]
            if penalised or not np.isfinite(row["kappa_pred"]):
                row["srme"] = SRME_PENALTY
            elif "srme" not in row:  # mode arrays did not match: cannot score the modes
                row["srme"] = float("nan")
        else:
            row["srme"] = float("nan")

    # ------------------------------------------------------------------ metrics
    def _with_dft(self, df: pd.DataFrame) -> pd.DataFrame:
        """Fill κ_DFT of rows that lack it (e.g. a row failed outside run_item) from the items."""
        if not len(df) or "key" not in df:
            return df
        dft = {it["key"]: it.get("kappa_dft", float("nan")) for it in self.items()}
        have = df["kappa_dft"].astype(float) if "kappa_dft" in df else pd.Series(np.nan, index=df.index)
        return df.assign(kappa_dft=have.fillna(df["key"].map(dft)))

    def metrics(self, df: pd.DataFrame, model: str) -> dict:
        df = self.with_published(self._with_dft(df))
        return kappa_metrics(df, self.mode, self._reference_reason, self.compare_with)

    def plots(self, df: pd.DataFrame, out_dir: Path, model: str) -> list[Path]:
        return [parity_plot(self.with_published(self._with_dft(df)), out_dir / "parity_kappa.png", model, self.compare_with)]


# --------------------------------------------------------------------------- metrics and plots


def _flag(df: pd.DataFrame, col: str) -> pd.Series:
    if col not in df:
        return pd.Series(False, index=df.index)
    return df[col].map(lambda v: bool(v) if v is not None and not (isinstance(v, float) and math.isnan(v)) else False)


def compare_published(pred: pd.Series, published: pd.Series) -> dict:
    """Agreement of per-material κ with a published model's κ on materials where both are finite
    and positive: Spearman rank correlation, median |ln(κ/κ_pub)|, count within 20 %."""
    p, q = pred.astype(float), published.astype(float)
    both = np.isfinite(p) & np.isfinite(q) & (p > 0) & (q > 0)
    n = int(both.sum())
    out: dict = {"n_both": n}
    if n == 0:
        return out | {"spearman": None, "median_abs_log_ratio": None, "n_within_20pct": 0}
    ratio = p[both] / q[both]
    out["spearman"] = float(p[both].rank().corr(q[both].rank())) if n > 1 else None
    out["median_abs_log_ratio"] = float(np.median(np.abs(np.log(ratio))))
    out["n_within_20pct"] = int((np.abs(ratio - 1) <= 0.2).sum())
    return out


def kappa_metrics(
    df: pd.DataFrame, mode: str, reference_reason: str | None = None, compare_with: str | None = None
) -> dict:
    """κ_SRE, κ_SRD, κ_SRME (or null + reason), counts of penalties; with ``compare_with`` the
    agreement with that published model's κ on the same materials."""
    out: dict = {"subset": f"{mode} ({len(df)} of 103 phononDB materials)"}
    n = len(df)
    out["n_materials"] = n
    if not n or "kappa_dft" not in df:
        return out | {"kappa_SRE": None, "kappa_SRD": None, "kappa_SRME": None, "kappa_SRME_reason": "no rows"}
    kdft = df["kappa_dft"].astype(float)
    pred = df["kappa_pred"].astype(float) if "kappa_pred" in df else pd.Series(np.nan, index=df.index)
    failed = _flag(df, "failed") | (df["status"] != "ok" if "status" in df else False)
    imag, broken = _flag(df, "imaginary_modes"), _flag(df, "broken_symmetry")
    pred = pred.where(~(failed | imag | broken))
    valid = np.isfinite(kdft) & (kdft >= 0)
    if not valid.all():
        out["n_without_kappa_dft"] = int((~valid).sum())  # not scored (no DFT κ for them)
    srd = pd.Series(np.nan, index=df.index)
    if valid.any():
        srd[valid] = kappa_srd(pred[valid].to_numpy(), kdft[valid].to_numpy())
    out["kappa_SRE"] = float(srd.abs().mean()) if valid.any() else None
    out["kappa_SRD"] = float(srd.mean()) if valid.any() else None
    out["n_kappa"] = int(np.isfinite(pred).sum())
    out["n_failed"] = int(failed.sum())
    out["n_imaginary_modes"] = int(imag.sum())
    out["n_broken_symmetry"] = int(broken.sum())
    if "relax_converged" in df:
        out["n_relax_not_converged"] = int((~_flag(df, "relax_converged") & ~failed).sum())
    srme = df["srme"].astype(float) if "srme" in df else pd.Series(np.nan, index=df.index)
    has_ref = _flag(df, "has_mode_reference") if "has_mode_reference" in df else srme.notna() | failed | imag | broken
    # censored as MBD: penalty flags, an unusable κ, or mode κ that could not be compared (shape mismatch)
    censored = failed | imag | broken | ~(np.isfinite(pred) & (pred >= 0)) | (has_ref & srme.isna())
    srme = srme.where(~censored, SRME_PENALTY)
    out["imaginary_mode_rate"] = float(imag.mean())
    out["failure_rate"] = float(censored.mean())  # without mode references: flags and unusable κ only
    out["spectrum_w1"] = None  # rows keep only the lowest frequency, not the spectrum MBD's W1 needs
    out["spectrum_w1_reason"] = "not computable: rows store min_frequency only, not the phonon spectrum"
    if has_ref.all() and srme.notna().all():
        out["kappa_SRME"] = float(srme.mean())
        out["kappa_SRME_reason"] = None
    else:
        out["kappa_SRME"] = None
        missing = int((~has_ref | srme.isna()).sum())
        out["kappa_SRME_reason"] = reference_reason or (
            f"{missing} of {n} materials have no mode-resolved comparison (no reference, or srme_error in rows)"
        )
    if compare_with and "kappa_published" in df:
        cmp = compare_published(pred, df["kappa_published"])
        out |= {f"published_{k}": v for k, v in cmp.items()}
        out["published_model"] = compare_with
        if valid.any():
            pub_srd = kappa_srd(df["kappa_published"].astype(float)[valid].to_numpy(), kdft[valid].to_numpy())
            out["published_kappa_SRE_same_materials"] = float(np.abs(pub_srd).mean())
    return out


def parity_plot(df: pd.DataFrame, path: Path, model: str, compare_with: str | None = None) -> Path:
    """κ_pred vs κ_DFT on log axes (penalised materials drawn at the bottom edge)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    from geodite.registry import model_label

    model = model_label(model)
    kdft = df["kappa_dft"].astype(float).to_numpy() if "kappa_dft" in df else np.array([])
    pred = df["kappa_pred"].astype(float).to_numpy() if "kappa_pred" in df else np.full(len(kdft), np.nan)
    ok = np.isfinite(pred) & (pred > 0)
    fig, ax = plt.subplots(figsize=(5, 5), dpi=120)
    finite = np.r_[kdft[np.isfinite(kdft)], pred[ok]]
    lo = 10 ** np.floor(np.log10(max(finite.min(), 1e-3))) if finite.size else 0.1
    hi = 10 ** np.ceil(np.log10(finite.max())) if finite.size else 1e3
    ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
    ax.fill_between([lo, hi], [lo / 1.2, hi / 1.2], [lo * 1.2, hi * 1.2], color="0.9", label="±20 %")
    ax.scatter(kdft[ok], pred[ok], s=18, label=f"{model} ({ok.sum()})", zorder=3)
    bad = ~ok & np.isfinite(kdft)
    if bad.any():
        ax.scatter(kdft[bad], np.full(bad.sum(), lo * 1.05), marker="v", color="C3", s=20,
                   label=f"no κ: failed/imaginary/broken ({bad.sum()})", zorder=3)
    if compare_with and "kappa_published" in df:
        pub = df["kappa_published"].astype(float).to_numpy()
        okp = np.isfinite(pub) & (pub > 0)
        ax.scatter(kdft[okp], pub[okp], s=18, marker="x", color="C1", label=f"published {compare_with}", zorder=2)
    for x, y, f in zip(kdft[ok], pred[ok], df.loc[ok, "formula"] if "formula" in df else [], strict=False):
        ax.annotate(f, (x, y), fontsize=6, xytext=(2, 2), textcoords="offset points")
    ax.set(xscale="log", yscale="log", xlim=(lo, hi), ylim=(lo, hi),
           xlabel="κ DFT (PBE, phononDB) [W/(m·K)]", ylabel=f"κ {model} [W/(m·K)]")
    sre = np.abs(kappa_srd(np.where(ok, pred, np.nan), kdft)).mean() if len(kdft) and np.all(kdft > 0) else float("nan")
    ax.set_title(f"κ at 300 K: n={len(kdft)}, mean SRE={sre:.3f}", fontsize=9)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
