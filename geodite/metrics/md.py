"""The MD benchmark's scoring: one run's structure and diffusion scores against AIMD, and the means over runs.

A trajectory is given as arrays: ``positions`` (T, N, 3) Å, ``cells`` (T, 3, 3) or (3, 3) Å (lattice vectors
as rows), ``symbols`` the N chemical symbols, frames every ``interval_fs`` fs. The single functions (g(r),
overlap, MBD's rdf_error, MSD, diffusion) are :mod:`geodite.metrics.rdf`'s; this module puts them together
as the benchmark scores them (docs/md.md):

* :func:`rdf_table`: g(r) per element pair and pooled (``RDF_BINS`` bins, N(N − 1) normalisation);
* :func:`rdf_scores`: the model's g(r) on the reference's r grid and the overlaps
  1 − ½∫|g_ref − g_pred| dr / ½∫(g_ref + g_pred) dr (1 = identical), pooled and per pair;
* :func:`matched_rdf_error`: MBD's ``rdf_error`` (%) of the two trajectories cut to the same simulated time;
* :func:`li_diffusion`: the Li tracer diffusion coefficient (cm²/s, Einstein relation);
* :func:`unstable_overlap`: an unstable run scores 0 overlap (the measured value is kept aside);
* :func:`md_summary`: the means over the runs' rows.
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from geodite.metrics import rdf

RDF_BINS = 200


def element_pairs(symbols: list[str]) -> list[tuple[str, str]]:
    """The unordered element pairs of ``symbols``, each once, in alphabetical order (("Li", "Li"), ("Li", "S"), …)."""
    return list(itertools.combinations_with_replacement(sorted(set(symbols)), 2))


def rdf_table(positions: ArrayLike, cells: ArrayLike, symbols: list[str], r_max: float) -> pd.DataFrame:
    """g(r) of a trajectory: column ``r`` (Å, bin centres), one column per element pair (``"Li-S"``) and
    ``"pooled"`` (all atoms), ``RDF_BINS`` bins up to ``r_max`` Å, N(N − 1) normalisation."""
    r, pooled = rdf.radial_distribution(positions, cells, symbols, None, r_max, RDF_BINS)
    table = {"r": r, "pooled": pooled}
    for a, b in element_pairs(symbols):
        table[f"{a}-{b}"] = rdf.radial_distribution(positions, cells, symbols, (a, b), r_max, RDF_BINS)[1]
    return pd.DataFrame(table)


def rdf_scores(reference: pd.DataFrame, model: pd.DataFrame) -> dict:
    """The model's g(r) against the reference's (two :func:`rdf_table` tables; the reference may be a
    precomputed one with the same columns): ``rdf_overlap`` of the pooled g(r) after linear interpolation of
    the model's onto the reference's r grid, the curves compared (``rdf_r`` Å, ``rdf_reference``,
    ``rdf_model``) and ``overlap_<pair>`` for every element pair both tables have."""
    r = reference["r"].to_numpy()
    g_model = np.interp(r, model["r"], model["pooled"])
    scores = {
        "rdf_overlap": rdf.rdf_overlap(reference["pooled"], g_model, r),
        "rdf_r": r.tolist(),
        "rdf_reference": reference["pooled"].tolist(),
        "rdf_model": g_model.tolist(),
    }
    for pair in [c for c in reference.columns if "-" in c and c in model]:
        scores[f"overlap_{pair}"] = rdf.rdf_overlap(reference[pair], np.interp(r, model["r"], model[pair]), r)
    return scores


def matched_rdf_error(ref_positions: ArrayLike, ref_cells: ArrayLike, ref_interval_fs: float,
                      positions: ArrayLike, cells: ArrayLike, interval_fs: float) -> float | None:
    """MBD's ``rdf_error`` (%) of a model trajectory against the AIMD one, both from t = 0 and cut to the same
    simulated time (:func:`geodite.metrics.rdf.matched_frame_counts`), as MBD's ``evaluate_md_system``
    (:func:`geodite.metrics.rdf.mbd_rdf_error`); None when fewer than 4 frames match (MBD scores no such
    system). Positions (T, N, 3) Å, cells (T, 3, 3) Å, frame intervals fs."""
    ref_positions, positions = np.asarray(ref_positions, float), np.asarray(positions, float)
    n_ref, n_pred = rdf.matched_frame_counts(len(ref_positions), len(positions), ref_interval_fs, interval_fs)
    if min(n_ref, n_pred) < 4:
        return None
    ref_cells, cells = np.asarray(ref_cells, float), np.asarray(cells, float)
    return rdf.mbd_rdf_error(ref_positions[:n_ref], ref_cells[:n_ref], positions[:n_pred], cells[:n_pred])


def li_diffusion(positions: ArrayLike, cell: ArrayLike, symbols: list[str], interval_fs: float) -> float | None:
    """Li tracer diffusion coefficient (cm²/s) of a trajectory in the fixed ``cell`` (Å): positions unwrapped,
    MSD of the Li atoms up to half the trajectory's length, Einstein relation
    (:func:`geodite.metrics.rdf.diffusion_coefficient`); None without Li or with fewer than 4 frames."""
    symbols = np.array(symbols)
    if "Li" not in symbols or len(positions) < 4:
        return None
    unwrapped = rdf.unwrap_positions(np.asarray(positions, float), cell)
    msd = rdf.mean_squared_displacement(unwrapped, symbols == "Li", max_lag=len(unwrapped) // 2)
    return rdf.diffusion_coefficient(msd, interval_fs).d_cm2_per_s


def unstable_overlap(stable: bool, overlap: float) -> dict:
    """An unstable run scores 0 overlap; the value measured on its frames becomes ``rdf_overlap_measured``.
    Empty for a stable run (its overlap stands)."""
    return {} if stable else {"rdf_overlap_measured": overlap, "rdf_overlap": 0.0}


def _mean(df: pd.DataFrame, column: str) -> float | None:
    values = pd.to_numeric(df[column], errors="coerce").dropna() if column in df else pd.Series(dtype=float)
    return float(values.mean()) if len(values) else None


def md_summary(df: pd.DataFrame) -> dict:
    """Means over the ok rows (one per system; ``status``, ``rdf_overlap``, ``rdf_error`` %, ``stable``,
    ``ns_per_day``): ``mean_rdf_overlap``, ``mean_rdf_error`` (%), ``n_stable`` and ``mean_ns_per_day``
    (simulated ns per wall-clock day); a mean over no value is None."""
    ok = df[df["status"] == "ok"] if "status" in df else df
    return {"mean_rdf_overlap": _mean(ok, "rdf_overlap"), "mean_rdf_error": _mean(ok, "rdf_error"),
            "n_stable": int(ok["stable"].sum()) if "stable" in ok else 0,
            "mean_ns_per_day": _mean(ok, "ns_per_day")}
