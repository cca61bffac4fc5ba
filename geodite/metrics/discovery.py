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

    actual stable  ⇔ e_above_hull_true <= stability_threshold
    predicted stable ⇔ e_above_hull_pred <= stability_threshold (NaN ⇒ predicted unstable)
    TP = actual ∧ predicted, FP = ¬actual ∧ predicted, TN = ¬actual ∧ ¬predicted,
    FN = actual ∧ ¬predicted.

    Args:
        e_above_hull_true: DFT hull distances (eV/atom), shape (n,); must not be NaN.
        e_above_hull_pred: predicted hull distances (eV/atom), shape (n,); NaN = missing.
        stability_threshold: hull distance (eV/atom) at or below which a material is stable.

    Returns:
        StabilityClasses(tp, fp, tn, fn): four boolean Series of length n.
    """
    true = _as_series(e_above_hull_true, "e_above_hull_true")
    pred = _as_series(e_above_hull_pred, "e_above_hull_pred")
    if len(true) != len(pred):
        raise ValueError(f"length mismatch: {len(true)=} != {len(pred)=}")
    if true.isna().any():
        raise ValueError(f"{int(true.isna().sum())} NaN values in e_above_hull_true")
    pred = pred.set_axis(true.index)
    actual_pos = true <= stability_threshold
    model_pos = (pred <= stability_threshold).fillna(False).astype(bool)  # NaN -> unstable
    return StabilityClasses(
        tp=actual_pos & model_pos,
        fp=~actual_pos & model_pos,
        tn=~actual_pos & ~model_pos,
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
    """MAE, RMSE and R² over the pairs where both values are finite.

    MAE = mean|ŷ−y|, RMSE = sqrt(mean (ŷ−y)²) (units of y, here eV/atom),
    R² = 1 − Σ(ŷ−y)² / Σ(y−ȳ)² (dimensionless; the sklearn ``r2_score`` definition).
    """
    y_true, y_pred = np.asarray(y_true, float), np.asarray(y_pred, float)
    mask = np.isfinite(y_true) & np.isfinite(y_pred)
    y_true, y_pred = y_true[mask], y_pred[mask]
    if y_true.size == 0:
        return {"MAE": float("nan"), "RMSE": float("nan"), "R2": float("nan")}
    err = y_pred - y_true
    ss_tot = float(np.sum((y_true - y_true.mean()) ** 2))
    return {
        "MAE": float(np.mean(np.abs(err))),
        "RMSE": float(np.sqrt(np.mean(err**2))),
        "R2": 1.0 - _safe_div(float(np.sum(err**2)), ss_tot),
    }


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
SUBSETS: tuple[str, ...] = ("full_test_set", "unique_prototypes", "most_stable_10k")


def predicted_hull_distance(
    e_form_pred: ArrayLike,
    e_form_dft: ArrayLike,
    e_above_hull_dft: ArrayLike,
    max_error: float = 5.0,
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
    max_error: float = 5.0,
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
