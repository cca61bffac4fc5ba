"""Thermal conductivity (κ_SRME) benchmark — Matbench Discovery, docs/benchmarks.md §2, docs/kappa.md.

The task only (items of two data modes, one material's run and scoring, metrics wiring, the parity plot);
the phono3py steps are :mod:`geodite.phonons`, rows → metrics :func:`geodite.metrics.phonons.kappa_metrics`.

Protocol per item (one phononDB material), as MBD's ``matbench_discovery/phonons/calc_kappa.py``:

1. Structure. ``full``: the DFT unit cell of MBD's ``phonondb_pbe_103_structures`` with its
   ``fc2_supercell``, ``fc3_supercell`` and q-mesh. ``offline``: the ideal AB prototype
   (rocksalt / zincblende / wurtzite) built from formula and space group
   (:func:`geodite.data.kappa.prototype_atoms`: nearest-neighbour distance = sum of covalent
   radii), then — with ``start_scan`` — isotropically rescaled to the model's energy minimum on
   a coarse grid of scale factors, so that the relaxation starts near the model's lattice constant.
2. Relax (:func:`geodite.phonons.relax_with_symmetry`): ASE FIRE on FrechetCellFilter with the cell
   tilt masked and FixSymmetry(``relax_symprec`` = 0.01), fmax 1e-4 eV/Å, at most 300 steps. Space
   group before/after with spglib at ``symprec`` = 1e-5; a change is "broken symmetry".
3. The steps of :mod:`geodite.phonons`: phono3py with displacements of 0.03 Å (phono3py's and MBD's
   default; docs/kappa.md shows that the published κ were made with it); FC2 from the model's forces,
   phonons on the q-mesh and MBD's imaginary-mode check; without imaginary modes or broken symmetry,
   FC3 and the Wigner (particle + coherence, SMM19) RTA conductivity at 300 K with isotope scattering
   and boundary_mfp = 1e6 µm. Each displacement set goes to the model in one ``ctx.evaluate`` call
   (batched for Geodite, one supercell at a time for other models).
4. κ = trace/3 of the total tensor, W/(m·K), and the total κ per (irreducible q-point, band)
   (:func:`geodite.phonons.mode_kappa_total`); with the DFT mode-resolved reference (full mode) the
   row gets its SRME and whether it was censored (:func:`geodite.metrics.phonons.kappa_srme_censored`). Rows → metrics:
   :func:`geodite.metrics.phonons.kappa_metrics`.

Penalties (MBD; a row's SRD, SRE and SRME: :func:`geodite.metrics.phonons.material_kappa_scores`): a failed
material, one with imaginary modes or broken symmetry has no κ (SRD = −2, SRE = 2) and SRME = 2. Offline there is no mode-resolved reference: κ_SRME is
reported as null with the reason; κ_SRE and κ_SRD are computed against the real DFT κ.

Row schema: material_id, formula, spg_num, source, kappa_pred, kappa_p, kappa_c, kappa_dft, srd, sre,
srme (NaN offline), srme_censored (SRME set to 2 by MBD's censoring rules), imaginary_modes, broken_symmetry, failed, stage, error, spg_initial,
spg_relaxed, a0_guess, scan_scale, relax_steps, relax_converged, relax_fmax, volume_per_atom,
n_fc2_supercells, n_fc3_supercells, min_frequency (THz), freq_quantiles (17 quantiles of the phonon spectrum
on the q-mesh, THz, as MBD publishes per model: :func:`geodite.phonons.frequency_quantiles`), relax_s, fc2_s, fc3_s, conductivity_s,
wall_s. (``kappa_published`` of a compared model is added in metrics/plots, not stored.)

Over 400 lines because it keeps the whole protocol text above (MBD's recipe with the parameters that make
our numbers comparable to the leaderboard's) beside the two data modes' items, scoring and the parity plot;
the phonon physics itself is in :mod:`geodite.phonons`.
"""

from __future__ import annotations

import os
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from geodite import phonons
from geodite.data import downloads
from geodite.data import kappa as kdata
from geodite.metrics.phonons import (
    kappa_metrics,
    kappa_scalar,
    kappa_srd,
    kappa_srme_censored,
    material_kappa_scores,
)
from geodite.submission import write_kappa
from geodite.tasks.contract import PROTOCOL

FULL_FILES = [kdata.STRUCTURES_KEY]

# registry model name → MBD model key in kappa-103-analysis.jsonl (published κ to compare with)
PUBLISHED_KEYS = {
    "chgnet": "chgnet-0.3.0",
    "mace-mp-0": "mace-mp-0",
    "emt": None,
}


# --------------------------------------------------------------------------- helpers of the task


def supercell_forces(structures: list, evaluate, note: Callable[[str], None] | None = None,
                     what: str = "supercells") -> list[np.ndarray | None]:
    """Forces (eV/Å) on a displacement set (:func:`geodite.phonons.fc2_displacements` or ``fc3_``), ``None``
    for skipped displacements. ``evaluate``: the worker's :meth:`~geodite.tasks.contract.WorkerContext.evaluate`,
    so the whole set goes in one call (forward passes of up to the Evaluator's ``atoms_per_call`` atoms for Geodite);
    ``note``, when given, hears "<what> n/N" after each forward pass."""
    todo = [i for i, a in enumerate(structures) if a is not None]
    progress = None if note is None else (lambda n: note(f"{what} {n}/{len(todo)}"))
    predictions = evaluate([structures[i] for i in todo], compute_stress=False,
                           **({} if progress is None else {"progress": progress}))
    bad = [p.error for p in predictions if not p.ok]
    if bad:
        raise RuntimeError(f"model evaluation failed on a displaced supercell: {bad[0]}")
    forces: list[np.ndarray | None] = [None] * len(structures)
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
        from geodite.relax import RelaxSettings

        if self.mode not in {"auto", "offline", "full"}:
            raise ValueError(f"mode must be auto, offline or full, not {self.mode!r}")
        if self.mode == "auto":
            self.mode = "full" if downloads.have_all(FULL_FILES, self.data_dir) else "offline"
        if self.cell not in ("conventional", "primitive"):
            raise ValueError(f"cell must be conventional or primitive, not {self.cell!r}")
        RelaxSettings(self.fmax, self.steps, self.optimizer, None)  # ValueError: unknown optimizer, fmax inf, ...
        for knob in ("fc2_supercell", "fc3_supercell", "q_mesh"):
            val = getattr(self, knob)
            if val is not None and len(val) != 3:
                raise ValueError(f"{knob} needs 3 integers, got {val}")
        self.analysis_path = str(self.analysis_path or kdata.default_analysis_path())
        if self.compare_with is not None and self.compare_with not in kdata.published_models(self.analysis_path):
            known = ", ".join(kdata.published_models(self.analysis_path))
            raise ValueError(f"unknown published model {self.compare_with!r}; known: {known}")
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
        return {"analysis_md5": downloads.file_digest(self.analysis_path, "md5")}

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
        penalised = row["failed"] or row["imaginary_modes"] or row["broken_symmetry"]
        return row | material_kappa_scores(row["kappa_pred"], row["kappa_dft"], penalised=penalised,
                                           has_mode_reference="ref_mode_kappa" in item, srme=row.get("srme"))

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

    def _compute(self, item: dict, ctx, row: dict) -> None:
        """Start structure, relaxation, then the steps of :mod:`geodite.phonons`, each displacement set
        evaluated in one ``ctx.evaluate`` call; fills ``row`` and moves ``row["stage"]`` along."""
        atoms = self._start_structure(item, ctx, row)
        row["spg_initial"] = phonons.spacegroup_number(atoms, self.symprec)

        row["stage"] = "relax"
        ctx.note(f"{item['formula']}: relax")
        t0 = time.perf_counter()
        atoms, relaxation = phonons.relax_with_symmetry(
            atoms, ctx.calculator, fmax=self.fmax, steps=self.steps, optimizer=self.optimizer,
            symprec=self.relax_symprec,
        )
        row.update(relaxation, relax_s=time.perf_counter() - t0)
        row["spg_relaxed"] = phonons.spacegroup_number(atoms, self.symprec)
        row["broken_symmetry"] = row["spg_relaxed"] != row["spg_initial"]
        row["volume_per_atom"] = float(atoms.get_volume() / len(atoms))
        row["lattice_abc"] = [round(float(x), 5) for x in atoms.cell.cellpar()[:3]]

        row["stage"] = "fc2"
        t0 = time.perf_counter()
        ph3 = phonons.init_phono3py(
            atoms,
            fc2_supercell=item["fc2_supercell"],
            fc3_supercell=item["fc3_supercell"],
            q_mesh=item["q_mesh"],
            displacement=self.displacement,
            symprec=self.symprec,
        )
        cells = phonons.fc2_displacements(ph3)
        row["n_fc2_supercells"] = len(cells)
        forces = supercell_forces(cells, ctx.evaluate, ctx.note, f"{item['formula']}: FC2 supercells")
        ctx.note(f"{item['formula']}: FC2 and frequencies")
        freqs = phonons.fc2_and_frequencies(ph3, forces)
        row["min_frequency"] = float(np.nanmin(freqs))
        row["freq_quantiles"] = [round(float(x), 4) for x in phonons.frequency_quantiles(freqs)]
        row["imaginary_modes"] = phonons.has_imaginary_modes(freqs)
        row["fc2_s"] = time.perf_counter() - t0
        if row["imaginary_modes"] or row["broken_symmetry"]:
            row["stage"] = "skipped_fc3"
            return

        row["stage"] = "fc3"
        t0 = time.perf_counter()
        cells = phonons.fc3_displacements(ph3)
        row["n_fc3_supercells"] = len(cells)
        forces = supercell_forces(cells, ctx.evaluate, ctx.note, f"{item['formula']}: FC3 supercells")
        ctx.note(f"{item['formula']}: FC3")
        phonons.produce_fc3(ph3, forces)
        row["fc3_s"] = time.perf_counter() - t0

        row["stage"] = "conductivity"
        ctx.note(f"{item['formula']}: κ (Wigner) on the q-mesh")
        t0 = time.perf_counter()
        (res,) = phonons.wigner_conductivity(
            ph3, [self.temperature], is_isotope=self.is_isotope, boundary_mfp=self.boundary_mfp
        )
        row["conductivity_s"] = time.perf_counter() - t0
        row["kappa_tensor"] = [float(x) for x in res.kappa]
        row["kappa_pred"] = float(kappa_scalar(res.kappa))
        row["kappa_p"] = float(kappa_scalar(res.kappa_p))
        row["kappa_c"] = row["kappa_pred"] - row["kappa_p"]
        row["n_irreducible_q"] = int(len(res.weights))
        row["mode_kappa"], row["q_weights"] = res.mode_kappa.tolist(), res.weights.tolist()  # submission file
        row["mode_kappa_sum_check"] = float(res.mode_kappa.sum() / res.weights.sum() - row["kappa_pred"])
        if "ref_mode_kappa" in item:
            row["stage"] = "srme"
            ref_mode = np.asarray(item["ref_mode_kappa"], float)
            if ref_mode.shape != res.mode_kappa.shape:
                row["srme_error"] = f"mode κ shapes differ: model {res.mode_kappa.shape}, DFT {ref_mode.shape}"
            else:
                row["srme"], row["srme_censored"] = kappa_srme_censored(
                    res.mode_kappa, ref_mode, res.weights, row["kappa_pred"], row["kappa_dft"],
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
        return kappa_metrics(df, self.mode, reference_reason=self._reference_reason, compare_with=self.compare_with)

    def submission(self, df: pd.DataFrame, summary: dict, folder: Path, model: str,
                   date: str) -> tuple[list[Path], dict]:
        """Matbench Discovery's κ file (:func:`geodite.submission.write_kappa`)."""
        return write_kappa(df, summary, folder, model, date)

    def plots(self, df: pd.DataFrame, out_dir: Path, model: str) -> list[Path]:
        return [parity_plot(self.with_published(self._with_dft(df)), out_dir / "parity_kappa.png", model, self.compare_with)]


# --------------------------------------------------------------------------- plots


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
