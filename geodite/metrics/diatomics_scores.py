"""The diatomics benchmark's scoring: one curve's row of metrics, and the means and combined score over rows.

A curve (one element's homonuclear dimer) is scored by :func:`curve_metrics` from its model values on the
evaluation window: ``r`` Å, ``e`` eV, ``f`` the bond-projected force F = −dE/dr eV/Å, ``forces`` the
Cartesian forces [n, 2, 3] eV/Å (atom 0 at the origin, atom 1 on +x), and, where one exists, its PBE
reference curve ``{"distances" Å, "energies" eV, "forces" [n][2][3] eV/Å}`` (Matbench Discovery's
``diatomics-dft.json.gz``, read by :func:`geodite.tasks.diatomics.pbe_reference`). The rows of many
elements become the benchmark's summary in :func:`diatomics_summary`: means over elements (MBD's
``write_metrics_to_yaml``: the mean of the finite values), MBD's repulsive-wall error from the whole curves
(:func:`wall_errors`) and the combined dimer score (CDS, :func:`geodite.metrics.diatomics_pbe.combined_dimer_score`).
Definitions of the single metrics: :mod:`geodite.metrics.diatomics` and :mod:`geodite.metrics.diatomics_pbe`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from geodite.metrics import diatomics as m
from geodite.metrics import diatomics_pbe as m_pbe

#: the elements of Z ≤ 92 that Matbench Discovery does not score (its 87 elements are the others)
MBD_SKIPPED = ("Po", "At", "Rn", "Fr", "Ra")
MBD_FORCE_METRICS = {  # of MBD's force, the x-force on atom 0 (m.mbd_force)
    "force_flips": m.force_flips,
    "force_total_variation": m.force_total_variation,
    "force_jump": m.force_jump,
}
SELF_CONSISTENCY = {**MBD_FORCE_METRICS, "max_abs_force": m.max_abs_force}  # max_abs_force: of the bond force
ENERGY_ONLY = {
    "energy_diff_flips": m.energy_diff_flips,
    "energy_jump": m.energy_jump,
    "tortuosity": m.tortuosity,
    "spearman_repulsive_energy": m.spearman_repulsive_energy,
    "max_abs_energy_gradient": m.max_abs_energy_gradient,
}


def curve_metrics(symbol: str, r: np.ndarray, e: np.ndarray, f: np.ndarray, forces: np.ndarray,
                  reference: dict | None) -> dict:
    """Self-consistency metrics of a model curve and its PBE-relative errors (NaN where not defined).

    r Å, e eV, f bond-projected force eV/Å (F = −dE/dr), forces the Cartesian forces [n, 2, 3] eV/Å with the
    bond along +x, all restricted to the evaluation window; ``reference`` the element's PBE curve (see the
    module docstring) or None. The force flips, total variation and jump are of MBD's force (x-force on
    atom 0, :func:`geodite.metrics.diatomics.mbd_force`), the force MAE over Cartesian components, as MBD
    computes them; the other force metrics use the bond force. ``pbe_reference_excluded`` is True (and no
    ``pbe_*`` error is given) without a reference, with fewer than 5 reference points in the window or a
    reference curve MBD rejects (:func:`geodite.metrics.diatomics.is_bad_reference_curve`).
    """
    row: dict = {name: fn(r, m.mbd_force(forces)) for name, fn in MBD_FORCE_METRICS.items()}
    row["max_abs_force"] = m.max_abs_force(r, f)
    row |= {name: fn(r, e) for name, fn in ENERGY_ONLY.items()}
    row["conservation_deviation"] = m.conservation_deviation(r, e, f)
    row["spearman_repulsive_force"] = m.spearman_repulsive_force(r, e, f)
    row["pbe_reference_excluded"] = True
    if reference is None:
        return row
    r_ref = np.asarray(reference["distances"])
    e_ref = np.asarray(reference["energies"])
    forces_ref = np.asarray(reference["forces"])
    lo, hi = m.evaluation_window(symbol, r_ref.max())
    keep = (r_ref >= lo) & (r_ref <= hi)
    r_ref, e_ref, forces_ref = r_ref[keep], e_ref[keep], forces_ref[keep]
    if len(r_ref) < 5 or m.is_bad_reference_curve(r_ref, e_ref):
        return row
    row["pbe_reference_excluded"] = False
    row["pbe_energy_mae"] = m_pbe.pbe_energy_mae(r_ref, e_ref, r, e)
    row["pbe_force_mae"] = m_pbe.pbe_force_mae(r_ref, forces_ref, r, forces)
    row["pbe_bond_length_error"] = m_pbe.bond_length_error(r_ref, e_ref, r, e)
    row["pbe_well_depth_error"] = m_pbe.well_depth_error(r_ref, e_ref, r, e)
    row["pbe_frequency_error"] = m_pbe.vibrational_frequency_error(r_ref, e_ref, r, e, symbol)
    return row  # the wall error needs the whole curve: diatomics_summary scores it (MBD's 0.8·r_cov range)


def wall_errors(ok: pd.DataFrame, reference: dict) -> pd.Series:
    """Per-element MBD ``pbe_wall_dist_mae`` (Å) of rows holding whole curves (``element``, ``distances`` Å,
    ``energies`` eV), against ``reference`` (``"X-X"`` → PBE curve); NaN where the reference is missing or
    unusable (``pbe_reference_excluded``)."""

    def one(row: pd.Series) -> float:
        ref = reference.get(f"{row['element']}-{row['element']}")
        excluded = row.get("pbe_reference_excluded", True)
        if ref is None or pd.isna(excluded) or bool(excluded) or "distances" not in row:
            return float("nan")
        return m_pbe.wall_distance_error_raw(row["element"], ref["distances"], ref["energies"], row["distances"],
                                             row["energies"])

    return ok.apply(one, axis=1) if len(ok) else pd.Series(dtype=float)


def four_significant(value: float | None) -> float | None:
    """A mean as MBD stores it in the model YAML (4 significant digits), which its CDS reads."""
    return None if value is None else float(f"{value:.4}")


def diatomics_summary(df: pd.DataFrame, protocol: str, reference: dict) -> dict:
    """Means over elements of the rows ``df`` (one per element, ``status``, the metrics of :func:`curve_metrics`,
    ``item_wall_s`` s): self-consistency over the scored elements (``mbd``: MBD skips Po, At, Rn, Fr, Ra),
    PBE-relative errors over elements whose reference curve is usable; for the ``mbd`` protocol also the wall
    error against ``reference`` (:func:`wall_errors`), ``run_time_sec`` = Σ ``item_wall_s`` (s),
    ``n_excluded`` (scored elements without an ok row) and the combined dimer score (CDS) of the means rounded
    to 4 significant digits (as MBD reads them from its YAML)."""
    scored = df[~df["element"].isin(MBD_SKIPPED)] if protocol == "mbd" and "element" in df else df
    ok = scored[scored["status"] == "ok"] if "status" in scored else scored
    summary: dict = {"n_scored": int(len(ok))}
    names = [*SELF_CONSISTENCY, *ENERGY_ONLY, "conservation_deviation", "spearman_repulsive_force"]
    pbe = [c for c in ok.columns if c.startswith("pbe_") and c != "pbe_reference_excluded"]
    ok = ok.assign(pbe_wall_dist_mae=wall_errors(ok, reference)) if protocol == "mbd" else ok
    for name in names + pbe + ["pbe_wall_dist_mae"]:
        if name in ok:
            values = pd.to_numeric(ok[name], errors="coerce")
            values = values[np.isfinite(values)]  # MBD's write_metrics_to_yaml: mean of the finite values
            summary[name] = float(values.mean()) if len(values) else None
    if protocol == "mbd":
        n_excluded = int(len(scored) - len(ok))
        run_time = float(pd.to_numeric(scored["item_wall_s"], errors="coerce").sum()) if "item_wall_s" in scored else None
        cds_inputs = {
            "pbe_energy_mae": summary.get("pbe_energy_mae"),
            "pbe_force_mae": summary.get("pbe_force_mae"),
            "pbe_wall_dist_mae": summary.get("pbe_wall_dist_mae"),
            "pbe_bond_length_error": summary.get("pbe_bond_length_error"),
            "pbe_well_depth_error": summary.get("pbe_well_depth_error"),
            "energy_jump": summary.get("energy_jump"),
            "force_flips": summary.get("force_flips"),
            "tortuosity": summary.get("tortuosity"),
            "run_time_sec": run_time,
        }
        summary["run_time_sec"] = run_time
        summary["n_excluded"] = n_excluded
        summary["CDS"] = m_pbe.combined_dimer_score({k: four_significant(v) for k, v in cds_inputs.items()}, n_excluded)
    return summary
