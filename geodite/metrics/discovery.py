"""Discovery (thermodynamic stability) metrics, following Matbench Discovery (MBD).

All energies are in eV/atom. A material is *stable* when its hull distance is
``<= stability_threshold`` (default 0 eV/atom). A missing (NaN) prediction counts as
"predicted unstable", so it can only ever be a false negative or a true negative, and
it is counted in the total N used for accuracy.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from geodite.metrics.symmetry import symmetry_metrics_from_rows

METRIC_KEYS: tuple[str, ...] = (
    "F1", "DAF", "Precision", "Recall", "Accuracy", "TPR", "FPR", "TNR", "FNR",
    "TP", "FP", "TN", "FN", "MAE", "RMSE", "R2",
)  # fmt: skip


class StabilityClasses(NamedTuple):
    """Boolean masks (one entry per material) of the four confusion-matrix classes."""

    tp: pd.Series
    fp: pd.Series
    tn: pd.Series
    fn: pd.Series


def _as_series(values: ArrayLike, name: str) -> pd.Series:
    """Return ``values`` as a float Series (keeping the index of an input Series)."""
    if isinstance(values, pd.Series):
        return values.astype(float)
    return pd.Series(np.asarray(values, dtype=float), name=name)


def classify_stable(
    e_above_hull_true: ArrayLike,
    e_above_hull_pred: ArrayLike,
    stability_threshold: float = 0.0,
) -> StabilityClasses:
    """Classify each material as TP, FP, TN or FN.

    actual stable  ⇔ e_above_hull_true <= stability_threshold, actual unstable ⇔ > threshold
    predicted stable ⇔ e_above_hull_pred <= stability_threshold (NaN ⇒ predicted unstable)
    TP = actual ∧ predicted, FP = unstable ∧ predicted, TN = unstable ∧ ¬predicted,
    FN = actual ∧ ¬predicted. A NaN truth is neither stable nor unstable: in no class (MBD).

    Args:
        e_above_hull_true: DFT hull distances (eV/atom), shape (n,); NaN = unknown (not counted).
        e_above_hull_pred: predicted hull distances (eV/atom), shape (n,); NaN = missing.
        stability_threshold: hull distance (eV/atom) at or below which a material is stable.

    Returns:
        StabilityClasses(tp, fp, tn, fn): four boolean Series of length n.
    """
    true = _as_series(e_above_hull_true, "e_above_hull_true")
    pred = _as_series(e_above_hull_pred, "e_above_hull_pred")
    if len(true) != len(pred):
        raise ValueError(f"length mismatch: {len(true)=} != {len(pred)=}")
    pred = pred.set_axis(true.index)
    actual_pos, actual_neg = true <= stability_threshold, true > stability_threshold  # both False for NaN
    model_pos = (pred <= stability_threshold).fillna(False).astype(bool)  # NaN -> unstable
    return StabilityClasses(
        tp=actual_pos & model_pos,
        fp=actual_neg & model_pos,
        tn=actual_neg & ~model_pos,
        fn=actual_pos & ~model_pos,
    )


def _safe_div(num: float, den: float) -> float:
    """num / den, NaN when den == 0."""
    return float(num) / float(den) if den else float("nan")


def metrics_from_counts(
    tp: float, fp: float, tn: float, fn: float, prevalence: float | None = None
) -> dict[str, float]:
    """Classification metrics from confusion-matrix counts.

    Precision = TP/(TP+FP); Recall = TPR = TP/(TP+FN); FNR = FN/(TP+FN);
    FPR = FP/(FP+TN); TNR = TN/(FP+TN); F1 = 2·P·R/(P+R);
    Accuracy = (TP+TN)/(TP+FP+TN+FN); DAF = Precision / prevalence, where
    prevalence = (TP+FN)/N unless given (MBD uses the data set's stable fraction, e.g.
    32,942/215,488 for unique prototypes). All outputs are dimensionless fractions
    (DAF is a ratio ≥ 0); counts are returned as floats. Undefined ratios are NaN.

    Args:
        tp, fp, tn, fn: confusion-matrix counts (non-negative).
        prevalence: fraction of truly stable materials used in DAF; default (TP+FN)/N.

    Returns:
        dict with keys F1, DAF, Precision, Recall, Accuracy, TPR, FPR, TNR, FNR, TP, FP, TN, FN.
    """
    tp, fp, tn, fn = (float(x) for x in (tp, fp, tn, fn))
    if min(tp, fp, tn, fn) < 0:
        raise ValueError(f"counts must be non-negative, got {tp=}, {fp=}, {tn=}, {fn=}")
    n_pos, n_neg = tp + fn, tn + fp
    n_total = n_pos + n_neg
    if prevalence is None:
        prevalence = _safe_div(n_pos, n_total)
    precision = _safe_div(tp, tp + fp)
    recall = _safe_div(tp, n_pos)
    f1 = _safe_div(2 * precision * recall, precision + recall)
    return {
        "F1": f1,
        "DAF": _safe_div(precision, prevalence),
        "Precision": precision,
        "Recall": recall,
        "Accuracy": _safe_div(tp + tn, n_total),
        "TPR": recall,
        "FPR": _safe_div(fp, n_neg),
        "TNR": _safe_div(tn, n_neg),
        "FNR": _safe_div(fn, n_pos),
        "TP": tp,
        "FP": fp,
        "TN": tn,
        "FN": fn,
    }


def regression_metrics(y_true: ArrayLike, y_pred: ArrayLike) -> dict[str, float]:
    """MAE, RMSE and R² over the pairs where neither value is NaN, as MBD's ``stable_metrics``.

    MAE = mean|ŷ−y|, RMSE = sqrt(mean (ŷ−y)²) (units of y, here eV/atom), R² = 1 − Σ(ŷ−y)² / Σ(y−ȳ)²
    (dimensionless) with sklearn ``r2_score``'s edge cases: a constant truth gives 1.0 for a perfect
    prediction, else 0.0; fewer than 2 pairs give NaN. An infinite value raises ``ValueError`` (sklearn's
    ``r2_score`` does).
    """
    y_true, y_pred = np.asarray(y_true, float), np.asarray(y_pred, float)
    mask = ~(np.isnan(y_true) | np.isnan(y_pred))
    y_true, y_pred = y_true[mask], y_pred[mask]
    if np.isinf(y_true).any() or np.isinf(y_pred).any():
        raise ValueError("infinite hull distance or prediction: R² is undefined (sklearn r2_score raises)")
    if y_true.size == 0:
        return {"MAE": float("nan"), "RMSE": float("nan"), "R2": float("nan")}
    err = y_pred - y_true
    return {"MAE": float(np.mean(np.abs(err))), "RMSE": float(np.sqrt(np.mean(err**2))), "R2": r2_score(y_true, y_pred)}


def r2_score(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Coefficient of determination 1 − Σ(ŷ−y)²/Σ(y−ȳ)² as sklearn's ``r2_score`` (``force_finite``): Σ(y−ȳ)² = 0
    gives 1.0 when Σ(ŷ−y)² = 0, else 0.0; NaN for fewer than 2 values. Finite inputs of equal length."""
    if len(y_true) < 2:
        return float("nan")
    ss_res = float(np.sum((y_true - y_pred) ** 2))
    ss_tot = float(np.sum((y_true - np.average(y_true)) ** 2))
    if ss_tot == 0:
        return 1.0 if ss_res == 0 else 0.0
    return 1.0 - ss_res / ss_tot


def stable_metrics(
    e_above_hull_true: ArrayLike,
    e_above_hull_pred: ArrayLike,
    stability_threshold: float = 0.0,
    prevalence: float | None = None,
) -> dict[str, float]:
    """Matbench Discovery stability metrics for one model.

    Confusion counts come from :func:`classify_stable` (NaN prediction ⇒ predicted
    unstable, still counted in N), ratios from :func:`metrics_from_counts`, and
    MAE/RMSE/R² (eV/atom, eV/atom, dimensionless) from :func:`regression_metrics` on the
    non-missing pairs only.

    Args:
        e_above_hull_true: DFT hull distances (eV/atom), shape (n,).
        e_above_hull_pred: predicted hull distances (eV/atom), shape (n,), NaN = missing.
        stability_threshold: stability cut (eV/atom), default 0.
        prevalence: stable fraction used for DAF (default: (TP+FN)/N of this subset).

    Returns:
        dict with the MBD keys F1, DAF, Precision, Recall, Accuracy, TPR, FPR, TNR, FNR,
        TP, FP, TN, FN, MAE, RMSE, R2.
    """
    classes = classify_stable(e_above_hull_true, e_above_hull_pred, stability_threshold)
    counts = (int(classes.tp.sum()), int(classes.fp.sum()), int(classes.tn.sum()), int(classes.fn.sum()))
    out = metrics_from_counts(*counts, prevalence=prevalence)
    out |= regression_metrics(e_above_hull_true, e_above_hull_pred)
    return {key: out[key] for key in METRIC_KEYS}


HULL_DECIMALS = 3  # MBD rounds its WBM table (DFT and predicted energies) to 3 decimals
MAX_E_FORM_ERROR = 5.0  # eV/atom; larger formation-energy errors count as missing predictions (MBD)
SUBSETS: tuple[str, ...] = ("full_test_set", "unique_prototypes", "most_stable_10k")


def predicted_hull_distance(
    e_form_pred: ArrayLike,
    e_form_dft: ArrayLike,
    e_above_hull_dft: ArrayLike,
    max_error: float = MAX_E_FORM_ERROR,
    decimals: int | None = HULL_DECIMALS,
) -> np.ndarray | pd.Series:
    """Predicted hull distance with the DFT convex hull held fixed, as the leaderboard computes it.

    E_hull,pred = (round(E_hull,DFT) + round(E_form,pred)) − round(E_form,DFT)   [eV/atom]

    Order of operations follows MBD (``load_df_wbm_with_preds`` then
    ``load_discovery_predictions``): predictions with |E_form,pred − E_form,DFT| >
    ``max_error`` eV/atom (on the unrounded values) and NaN predictions become NaN
    (= missing); then the three inputs are rounded to ``decimals`` (3) and added in MBD's
    floating-point order (a material on the hull gets ±1e-16 in another order, which flips
    its ≤ 0 classification); the sum is not rounded again. ``decimals=None`` skips the
    rounding.

    Args:
        e_form_pred: predicted formation energies (eV/atom), shape (n,).
        e_form_dft: DFT formation energies (eV/atom), e.g. e_form_per_atom_mp2020_corrected.
        e_above_hull_dft: DFT hull distances (eV/atom), e.g. e_above_hull_mp2020_corrected_ppd_mp.
        max_error: largest accepted |pred − DFT| formation-energy error (eV/atom).
        decimals: decimals the inputs are rounded to before adding (None: no rounding).

    Returns:
        Predicted hull distances (eV/atom); a Series if e_form_pred is a Series.
    """
    pred = np.asarray(e_form_pred, dtype=float)
    dft = np.asarray(e_form_dft, dtype=float)
    true = np.asarray(e_above_hull_dft, dtype=float)
    pred = np.where(np.abs(pred - dft) > max_error, np.nan, pred)  # NaN stays NaN
    if decimals is not None:
        pred, dft, true = (np.round(x, decimals) for x in (pred, dft, true))
    hull = (true + pred) - dft  # MBD's order: a hull distance of exactly 0 must come out as 0, not ±1e-16
    if isinstance(e_form_pred, pd.Series):
        return pd.Series(hull, index=e_form_pred.index, name="e_above_hull_pred")
    return hull


def most_stable_k(
    df: pd.DataFrame,
    k: int = 10_000,
    pred_col: str = "e_above_hull_pred",
    unique_prototype_col: str | None = None,
) -> pd.DataFrame:
    """The ``k`` rows with the lowest predicted hull distance (MBD's "most stable 10k").

    Rows are sorted by ascending predicted hull distance (stable sort) with missing
    predictions last, then the first ``k`` are kept, as MBD's
    ``discovery_subset_indices`` does: with fewer than ``k`` predicted rows, missing ones
    fill the selection (and count as predicted unstable). If ``unique_prototype_col`` is
    given, only rows where that boolean column is True are candidates (MBD takes the 10k
    from the unique-prototype subset).

    Args:
        df: one row per material; must contain ``pred_col`` (eV/atom).
        k: number of rows to keep.
        pred_col: column with predicted hull distances.
        unique_prototype_col: optional boolean column restricting the candidate pool.

    Returns:
        The selected rows in that order.
    """
    if k < 0:
        raise ValueError(f"{k=} must be >= 0")
    pool = df if unique_prototype_col is None else df[df[unique_prototype_col].astype(bool)]
    return pool.sort_values(pred_col, kind="stable", na_position="last").head(k)


def discovery_metrics_by_subset(
    e_form_pred: pd.Series,
    e_form_dft: pd.Series,
    e_above_hull_dft: pd.Series,
    unique_prototype: pd.Series,
    k: int = 10_000,
    max_error: float = MAX_E_FORM_ERROR,
    stability_threshold: float = 0.0,
) -> dict[str, dict[str, float]]:
    """Stability metrics on MBD's three WBM subsets, exactly as its leaderboard pipeline.

    * hull distances: :func:`predicted_hull_distance` (mask > ``max_error``, round inputs
      to 3 decimals, add); the truth is the DFT hull distance rounded to 3 decimals;
    * ``full_test_set``: all rows, DAF over this subset's own (rounded) prevalence;
    * ``unique_prototypes`` and ``most_stable_10k`` (the ``k`` lowest predicted hull
      distances among unique prototypes, missing last): DAF = Precision / prevalence
      with the prevalence of stable unique prototypes from the *unrounded* DFT hull
      distances (MBD's ``wbm_uniq_proto_prevalence``; rounding would turn barely
      unstable materials stable and inflate it by ≈1.3 % on WBM).

    Args:
        e_form_pred: predicted formation energies (eV/atom), NaN = missing; one index for all inputs.
        e_form_dft: DFT formation energies (eV/atom, MP2020-corrected).
        e_above_hull_dft: DFT hull distances (eV/atom), unrounded.
        unique_prototype: boolean, True for WBM's unique prototypes.
        k: size of the most-stable subset.
        max_error: formation-energy error (eV/atom) above which a prediction is missing.
        stability_threshold: stability cut (eV/atom).

    Returns:
        {subset name: :func:`stable_metrics` dict} for the names in :data:`SUBSETS`.
    """
    raw_true = e_above_hull_dft.astype(float)
    each_true = raw_true.round(HULL_DECIMALS)
    each_pred = predicted_hull_distance(e_form_pred.astype(float), e_form_dft, raw_true, max_error)
    uniq = unique_prototype.astype(bool).to_numpy()
    uniq_true = raw_true[uniq]
    prevalence = float((uniq_true <= stability_threshold).mean()) if len(uniq_true) else float("nan")
    frame = pd.DataFrame({"e_above_hull_pred": each_pred, "unique_prototype": uniq}, index=raw_true.index)
    top = most_stable_k(frame, k, unique_prototype_col="unique_prototype").index
    return {
        "full_test_set": stable_metrics(each_true, each_pred, stability_threshold),
        "unique_prototypes": stable_metrics(each_true[uniq], each_pred[uniq], stability_threshold, prevalence),
        "most_stable_10k": stable_metrics(each_true[top], each_pred[top], stability_threshold, prevalence),
    }


# --------------------------------------------------------------------------- rows → benchmark metrics
# Rows of the discovery task (one per material): e_form_pred, e_form_dft (eV/atom), rmsd (Å), converged,
# n_steps, relax_s, status ("ok" or "failed"), the symmetry fields, and per mode the columns below.

OFFLINE_NUMERIC = ("e_form_pred", "e_form_pred_mp2020", "e_form_dft", "e_form_dft_mp2020", "rmsd", "rmsd_start",
                   "n_steps", "relax_s")  # fmt: skip


def _ok(df: pd.DataFrame) -> pd.Series:
    """Rows whose material was computed (``status == "ok"``; all when there is no status column)."""
    return df["status"] == "ok" if "status" in df else pd.Series(True, index=df.index)


def masked_prediction(df: pd.DataFrame, pred: str, true: str, *, max_error: float = MAX_E_FORM_ERROR) -> pd.Series:
    """Column ``pred`` (eV/atom), NaN where the row failed or |pred − true| > ``max_error`` (MBD's missing rule)."""
    if pred not in df:
        return pd.Series(np.nan, index=df.index)
    p = df[pred].astype(float).where(_ok(df))
    return p.where((p - df[true].astype(float)).abs() <= max_error)


def mean_rmsd(df: pd.DataFrame, col: str = "rmsd", *, missing: float = 1.0) -> float:
    """Mean structure RMSD (Å, pymatgen's normalisation) over all rows, a failed or unmatched one counting as
    ``missing`` (MBD: 1.0); NaN without rows."""
    if not len(df):
        return float("nan")
    vals = df[col].astype(float).where(_ok(df)) if col in df else pd.Series(np.nan, index=df.index)
    return float(vals.fillna(missing).mean())


def offline_key(name: str) -> str:
    """Name of an offline formation-energy error (``MAE`` → ``e_form_MAE_1k``): not MBD's hull-distance metric."""
    return f"e_form_{name}_1k"


def offline_metrics_from_rows(df: pd.DataFrame, *, max_error: float = MAX_E_FORM_ERROR) -> dict:
    """Metrics of the offline discovery mode (perturbed DFT structures of the 1k WBM subset).

    * ``e_form_MAE_1k``, ``e_form_RMSE_1k``, ``e_form_R2_1k`` (:func:`regression_metrics`, eV/atom) of the
      uncorrected formation energy against ``e_form_dft`` on the offline 1k subset, over the rows with a
      prediction (:func:`masked_prediction`); ``*_mp2020_corrected`` the same in the MP2020 convention;
      ``e_form_MAE_1k_refs_consistent`` on the rows whose file references agree with MBD's; ``n_missing`` the
      rows without a prediction. Formation-energy errors, named apart from MBD's ``MAE``/``RMSE``/``R2``
      (errors of the predicted hull distance on the WBM test set), which this mode cannot compute.
    * ``RMSD`` and ``RMSD_start`` (:func:`mean_rmsd`, Å) of the relaxed and the start structures; the
      symmetry metrics of :func:`geodite.metrics.symmetry.symmetry_metrics_from_rows` on the ok rows.
    * ``success_rate`` = converged ok rows / all rows, ``n_converged``, and the mean steps and relaxation
      seconds of the ok rows.
    """
    out: dict = {"subset": "offline-wbm-1k (perturbed DFT structures)"}
    df = df.copy()
    for col in OFFLINE_NUMERIC:  # all items failed: columns absent
        if col not in df:
            df[col] = np.nan
    for col in ("refs_consistent", "converged"):
        if col not in df:
            df[col] = False
    ok = _ok(df)
    pred = masked_prediction(df, "e_form_pred", "e_form_dft", max_error=max_error)
    out |= {offline_key(k): v for k, v in regression_metrics(df["e_form_dft"], pred).items()}
    cor = regression_metrics(
        df["e_form_dft_mp2020"], masked_prediction(df, "e_form_pred_mp2020", "e_form_dft_mp2020", max_error=max_error)
    )
    out |= {f"{offline_key(k)}_mp2020_corrected": v for k, v in cor.items()}
    cons = df["refs_consistent"].fillna(False).astype(bool)
    out[f"{offline_key('MAE')}_refs_consistent"] = regression_metrics(df["e_form_dft"][cons], pred[cons])["MAE"]
    out["n_missing"] = int(pred.isna().sum())
    out["RMSD"] = mean_rmsd(df)
    out |= symmetry_metrics_from_rows(df[ok])
    out["RMSD_start"] = mean_rmsd(df, "rmsd_start")
    converged = df["converged"].fillna(False).astype(bool) & ok
    out["success_rate"] = float(converged.mean())
    out["n_converged"] = int(converged.sum())
    out["mean_steps"] = float(df.loc[ok, "n_steps"].mean()) if ok.any() else float("nan")
    out["mean_relax_s"] = float(df.loc[ok, "relax_s"].mean()) if ok.any() else float("nan")
    return out


DAF_PREVALENCE_NOTE = (
    "DAF = precision / prevalence with the prevalence of stable unique prototypes among the items run; it equals "
    "MBD's (wbm_uniq_proto_prevalence) only when the run covers the whole WBM test set (no --limit)"
)


def full_metrics_from_rows(df: pd.DataFrame, *, k: int = 10_000, max_error: float = MAX_E_FORM_ERROR) -> dict:
    """Metrics of the full discovery mode (WBM initial structures, MP2020-corrected energies).

    :func:`discovery_metrics_by_subset` of the rows (failed rows have no prediction): the unique-prototype
    subset under the headline keys of :data:`METRIC_KEYS` (``F1``, ``DAF``, ...), all rows as ``full_*``
    and the ``k`` lowest predicted hull distances among unique prototypes as ``most_stable_10k_*``; then
    ``RMSD`` (:func:`mean_rmsd`, Å), the symmetry metrics of the ok rows, ``n_unique_prototypes`` and
    ``success_rate`` = converged ok rows / all rows.
    """
    out: dict = {"subset": "unique_prototypes (headline); full_*; most_stable_10k_*"}
    if not len(df) or "e_above_hull_dft" not in df:
        return out | {"RMSD": mean_rmsd(df)}
    by_subset = discovery_metrics_by_subset(
        df["e_form_pred"].astype(float).where(_ok(df)),
        df["e_form_dft"].astype(float),
        df["e_above_hull_dft"].astype(float),
        df["unique_prototype"].astype(bool),
        k=k,
        max_error=max_error,
    )
    out |= {key: by_subset["unique_prototypes"][key] for key in METRIC_KEYS}
    out |= {f"full_{key}": by_subset["full_test_set"][key] for key in METRIC_KEYS}
    out |= {f"most_stable_10k_{key}": by_subset["most_stable_10k"][key] for key in METRIC_KEYS}
    out["RMSD"] = mean_rmsd(df)
    out |= symmetry_metrics_from_rows(df[_ok(df)])
    out["n_unique_prototypes"] = int(df["unique_prototype"].astype(bool).sum())
    out["DAF_prevalence_note"] = DAF_PREVALENCE_NOTE
    out["success_rate"] = float((df["converged"].fillna(False).astype(bool) & _ok(df)).mean())
    return out
