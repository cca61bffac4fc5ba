"""Thermal-conductivity metrics (κ_SRD, κ_SRE, κ_SRME), following Matbench Discovery.

Conventions (as in MBD's ``matbench_discovery/metrics/phonons.py``, itself adapted
from the k_SRME package of Póta et al., arXiv:2408.00755):

* κ is the lattice thermal conductivity in W/(m·K) at 300 K. The scalar κ is the
  directional average trace(κ)/3; for phono3py's Voigt vectors (xx, yy, zz, yz, xz, xy)
  that is the mean of the first three components.
* SRD = 2(κ_pred − κ_DFT)/(κ_pred + κ_DFT) ∈ [−2, 2]; SRE = |SRD| ∈ [0, 2]. An invalid
  prediction (NaN, ±inf or negative κ) gets SRD = −2 and SRE = 2, as MBD's
  ``_symmetric_relative_difference``; κ_pred = κ_DFT = 0 gives 0. κ_DFT must be finite
  and ≥ 0 (κ_DFT = 0 with κ_pred > 0 gives SRD = 2).
* SRME (per material) = 2·Σ_modes |κ_pred,mode − κ_DFT,mode| / Σ_q w_q / (κ_pred + κ_DFT),
  where κ_mode is the trace/3 of phono3py's ``mode_kappa`` (already multiplied by the
  q-point weight, so that κ = Σ_modes κ_mode / Σ_q w_q) and w_q are the irreducible
  q-point weights. SRME ∈ [0, 2] and SRME ≥ SRE (triangle inequality).
* Penalty (censoring, MBD's ``_calc_kappa_srme_dataframes``): SRME = 2 for a material
  whose calculation failed, that has imaginary modes, that broke symmetry during
  relaxation, whose predicted κ is missing or negative, whose predicted mode κ or q-point
  weights are missing/non-finite (weights also negative or summing to 0), whose mode κ
  shape differs from the reference, or whose SRME falls outside [0, 2] (possible with
  mixed-sign mode κ). κ_pred + κ_DFT = 0 gives 0 if every mode agrees, else 2.
  ``failure_rate`` is the fraction of censored materials.
* κ_SRME (and mean κ_SRE) = arithmetic mean over the 103 materials, penalties included.

Rows of ``geodite bench kappa`` → its metrics: :func:`kappa_metrics` (and :func:`compare_published`).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

SRME_PENALTY = 2.0


def kappa_scalar(kappa: ArrayLike) -> np.ndarray | float:
    """Directionally averaged conductivity κ = trace(κ)/3.

    Args:
        kappa: conductivity tensor(s), either Voigt vectors of shape (..., 6) ordered
            (xx, yy, zz, yz, xz, xy) or full tensors of shape (..., 3, 3); W/(m·K).

    Returns:
        trace/3 with the leading shape (...); a float for a single tensor. NaN entries
        propagate.
    """
    arr = np.asarray(kappa, dtype=float)
    if arr.ndim >= 2 and arr.shape[-2:] == (3, 3):
        out = np.trace(arr, axis1=-2, axis2=-1) / 3.0
    elif arr.ndim >= 1 and arr.shape[-1] == 6:
        out = arr[..., :3].mean(axis=-1)
    else:
        raise ValueError(f"expected shape (..., 6) or (..., 3, 3), got {arr.shape}")
    return float(out) if np.ndim(out) == 0 else out


def _valid_kappa(value: float) -> bool:
    """A usable scalar conductivity: finite and ≥ 0."""
    return bool(np.isfinite(value) and value >= 0)


def kappa_srd(kappa_pred: ArrayLike, kappa_dft: ArrayLike) -> np.ndarray | float:
    """Symmetric relative difference SRD = 2(κ_pred − κ_DFT)/(κ_pred + κ_DFT) ∈ [−2, 2].

    An invalid prediction (NaN, inf or negative) gives −2; κ_pred = κ_DFT = 0 gives 0.
    κ_DFT must be finite and ≥ 0 (an invalid reference raises ``ValueError``).

    Args:
        kappa_pred: predicted scalar κ (W/(m·K)), scalar or shape (n,).
        kappa_dft: reference scalar κ (W/(m·K)), same shape.
    """
    pred = np.asarray(kappa_pred, dtype=float)
    dft = np.asarray(kappa_dft, dtype=float)
    if not np.all(np.isfinite(dft)) or np.any(dft < 0):
        raise ValueError("kappa_dft must be finite and non-negative")
    invalid = ~np.isfinite(pred) | (pred < 0)
    pred = np.where(invalid, 0.0, pred)
    total = pred + dft
    with np.errstate(divide="ignore", invalid="ignore"):
        srd = np.where(total == 0, 0.0, 2.0 * (pred - dft) / total)
    srd = np.where(invalid, -SRME_PENALTY, srd)
    return float(srd) if srd.ndim == 0 else srd


def kappa_sre(kappa_pred: ArrayLike, kappa_dft: ArrayLike) -> np.ndarray | float:
    """Symmetric relative error SRE = |SRD| = 2|κ_pred − κ_DFT|/(κ_pred + κ_DFT) ∈ [0, 2].

    Invalid (NaN, inf, negative) predictions give SRE = 2; see :func:`kappa_srd`.
    """
    srd = kappa_srd(kappa_pred, kappa_dft)
    return abs(srd) if isinstance(srd, float) else np.abs(srd)


def kappa_srme_censored(
    mode_kappa_pred: ArrayLike | None,
    mode_kappa_dft: ArrayLike,
    q_weights: ArrayLike | None,
    kappa_pred: float | None,
    kappa_dft: float,
    *,
    failed: bool = False,
    imaginary_modes: bool = False,
    broken_symmetry: bool = False,
    mode_kappa_is_scalar: bool = False,
) -> tuple[float, bool]:
    """Symmetric relative mean error of one material and whether it was censored to 2.

    SRME = 2·Σ_modes |κ_pred,mode − κ_DFT,mode| / Σ_q w_q / (κ_pred + κ_DFT)

    Censored (returns (2, True)) as listed in the module docstring: a penalty flag, or an
    invalid prediction (missing/negative κ_pred, non-finite mode κ, bad weights, a shape
    different from the reference, SRME outside [0, 2]). With κ_pred + κ_DFT = 0 the SRME
    is 0 if all modes agree, else 2 (not censored).

    Args:
        mode_kappa_pred: predicted phono3py ``mode_kappa`` at one temperature, shape
            (n_q, n_bands, 6) Voigt or (n_q, n_bands, 3, 3); W/(m·K), weight included.
            With ``mode_kappa_is_scalar`` already trace/3-averaged, shape (n_q, n_bands).
        mode_kappa_dft: DFT mode κ in the same layout and on the same q-mesh.
        q_weights: irreducible q-point weights, shape (n_q,) (integers in phono3py).
        kappa_pred: predicted scalar κ = trace/3 (W/(m·K)).
        kappa_dft: DFT scalar κ = trace/3 (W/(m·K)); must be finite and ≥ 0.
        failed, imaginary_modes, broken_symmetry: penalty flags.
        mode_kappa_is_scalar: whether mode κ arrays are already per-mode scalars.

    Returns:
        (SRME in [0, 2] (dimensionless), censored).
    """
    if kappa_dft is None or not _valid_kappa(kappa_dft):
        raise ValueError(f"reference kappa_dft must be finite and non-negative, got {kappa_dft}")
    penalty = (SRME_PENALTY, True)
    if failed or imaginary_modes or broken_symmetry:
        return penalty
    dft = np.asarray(mode_kappa_dft, float)
    if not mode_kappa_is_scalar:
        dft = np.asarray(kappa_scalar(dft))
    if dft.size == 0 or not np.all(np.isfinite(dft)):
        raise ValueError("reference mode kappa must be finite")
    if mode_kappa_pred is None or q_weights is None or kappa_pred is None or not _valid_kappa(kappa_pred):
        return penalty
    pred, weights = np.asarray(mode_kappa_pred, float), np.asarray(q_weights, float)
    if not mode_kappa_is_scalar:
        try:
            pred = np.asarray(kappa_scalar(pred))
        except ValueError:
            return penalty
    invalid_weights = weights.size == 0 or not np.all(np.isfinite(weights)) or np.any(weights < 0)
    if invalid_weights or weights.sum() <= 0 or pred.shape != dft.shape or not np.all(np.isfinite(pred)):
        return penalty
    microscopic_error = np.abs(pred - dft).sum() / weights.sum()
    total = float(kappa_pred) + float(kappa_dft)
    if total == 0:
        return (0.0 if microscopic_error == 0 else SRME_PENALTY), False
    srme = 2.0 * microscopic_error / total
    if not (np.isfinite(srme) and 0.0 <= srme <= SRME_PENALTY):
        return penalty
    return float(srme), False


def kappa_srme_per_material(*args: Any, **kwargs: Any) -> float:
    """SRME of one material in [0, 2]: :func:`kappa_srme_censored` (same arguments) without the flag."""
    return kappa_srme_censored(*args, **kwargs)[0]


def phonon_spectrum_w1(
    freqs_pred: ArrayLike,
    freqs_ref: ArrayLike,
    q_weights_pred: ArrayLike | None = None,
    q_weights_ref: ArrayLike | None = None,
) -> float:
    """Wasserstein-1 distance (THz) between two phonon spectra (MBD's ``spectrum_w1``).

    Each spectrum is the sample of all mode frequencies, shape (n_q, n_bands), THz. The
    q-point weights (shape (n_q,)) weight every band of their q-point; weights whose
    length is not n_q mean a uniform full mesh (ignored), as MBD's ``mode_weights_for_freqs``.
    Meshes may differ between the two spectra.
    """
    from scipy.stats import wasserstein_distance

    def sample(freqs: ArrayLike, weights: ArrayLike | None) -> tuple[np.ndarray, np.ndarray | None]:
        arr = np.asarray(freqs, float)
        if arr.ndim != 2 or not np.all(np.isfinite(arr)):
            raise ValueError(f"frequencies must be a finite (n_q, n_bands) array, got shape {arr.shape}")
        if weights is None:
            return arr.ravel(), None
        w = np.ravel(np.asarray(weights, float))
        if w.shape != (arr.shape[0],) or not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
            return arr.ravel(), None
        return arr.ravel(), np.repeat(w, arr.shape[1])

    (u, u_w), (v, v_w) = sample(freqs_pred, q_weights_pred), sample(freqs_ref, q_weights_ref)
    return float(wasserstein_distance(u, v, u_w, v_w))


def kappa_srme(per_material: ArrayLike) -> float:
    """Mean of per-material symmetric errors (κ_SRME, or mean κ_SRE), penalties included.

    κ_SRME = (1/M) Σ_m SRME_m over all M materials. NaN entries (a material without a
    result) count as the penalty 2. Dimensionless, in [0, 2].
    """
    values = np.asarray(per_material, dtype=float)
    if values.size == 0:
        raise ValueError("no per-material values")
    return float(np.where(np.isnan(values), SRME_PENALTY, values).mean())


def material_kappa_scores(kappa_pred: float, kappa_dft: float, *, penalised: bool, has_mode_reference: bool,
                          srme: float | None = None) -> dict:
    """One material's scores as the κ task stores them in its row.

    Args:
        kappa_pred: predicted scalar κ, W/(m·K) (NaN when the calculation stopped before it).
        kappa_dft: DFT scalar κ, W/(m·K).
        penalised: the calculation failed, has imaginary modes or broke symmetry (MBD's penalty cases).
        has_mode_reference: a mode-resolved DFT κ exists for the material.
        srme: the SRME computed from the mode κ (:func:`kappa_srme_censored`), None where it could not be
            (mode κ shapes differed, or the calculation stopped before).

    Returns:
        ``{"srd": NaN, "sre": NaN}`` when κ_DFT is not finite and > 0 (nothing to compare with); else ``srd``
        and ``sre`` (:func:`kappa_srd`, :func:`kappa_sre`; a missing κ_pred gives −2 and 2),
        ``has_mode_reference`` and ``srme``: the penalty 2 for a penalised material or a non-finite κ_pred,
        else ``srme`` (NaN when None); NaN without a mode reference.
    """
    if not (np.isfinite(kappa_dft) and kappa_dft > 0):
        return {"srd": float("nan"), "sre": float("nan")}
    scores: dict = {"srd": kappa_srd(kappa_pred, kappa_dft), "sre": kappa_sre(kappa_pred, kappa_dft),
                    "has_mode_reference": has_mode_reference}
    if not has_mode_reference:
        scores["srme"] = float("nan")
    elif penalised or not np.isfinite(kappa_pred):
        scores["srme"] = SRME_PENALTY
    else:
        scores["srme"] = float("nan") if srme is None else srme
    return scores


# --------------------------------------------------------------------------- rows → benchmark metrics


def _flag(df: pd.DataFrame, col: str) -> pd.Series:
    """Boolean column ``col`` of result rows; missing column, None or NaN read as False."""
    if col not in df:
        return pd.Series(False, index=df.index)
    return df[col].map(lambda v: bool(v) if v is not None and not (isinstance(v, float) and math.isnan(v)) else False)


def compare_published(pred: pd.Series, published: pd.Series) -> dict:
    """Agreement of per-material κ (W/(m·K)) with a published model's κ.

    On the materials where both are finite and > 0 (``n_both``): ``spearman`` = Pearson correlation of
    the ranks (None for fewer than 2), ``median_abs_log_ratio`` = median |ln(κ/κ_pub)|,
    ``n_within_20pct`` = #{|κ/κ_pub − 1| ≤ 0.2}.
    """
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
    df: pd.DataFrame, mode: str, *, reference_reason: str | None = None, compare_with: str | None = None
) -> dict:
    """Benchmark metrics of the κ task from its result rows (one per material).

    Rows: ``kappa_dft``, ``kappa_pred`` (W/(m·K)), ``srme`` (per material, NaN without a mode-resolved
    comparison), ``srme_censored`` (the flag of :func:`kappa_srme_censored`), flags ``failed``,
    ``imaginary_modes``, ``broken_symmetry``, ``has_mode_reference``, ``relax_converged``, ``status``; with
    ``compare_with`` also ``kappa_published``.

    * A penalised material (failed, status not ok, imaginary modes, broken symmetry) has no κ_pred.
    * κ_SRD = mean SRD, κ_SRE = mean |SRD| over the materials with a finite κ_DFT ≥ 0
      (:func:`kappa_srd`; a missing κ_pred gives SRD = −2).
    * Censored (MBD's ``srme_censored``) = penalised, or κ_pred missing/negative, or a mode reference without
      an ``srme`` (shapes differed), or ``srme_censored`` set by :func:`kappa_srme_censored` (SRME outside
      [0, 2], bad mode κ or q-point weights); censored materials get SRME = 2. κ_SRME = mean SRME over all materials when every one
      has a mode-resolved comparison, else None with ``kappa_SRME_reason`` (``reference_reason`` if given).
    * ``failure_rate`` = censored fraction, ``imaginary_mode_rate`` = fraction with imaginary modes.
    * With ``compare_with`` (a published model key): :func:`compare_published` as ``published_*`` and that
      model's mean SRE on the same materials (``published_kappa_SRE_same_materials``).

    Args:
        df: the rows.
        mode: the task's data mode (``full`` or ``offline``), named in ``subset``.
        reference_reason: why there is no mode-resolved reference, reported when κ_SRME is None.
        compare_with: the published model whose κ is in ``kappa_published``.
    """
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
    censored |= _flag(df, "srme_censored")
    srme = srme.where(~censored, SRME_PENALTY)
    out["imaginary_mode_rate"] = float(imag.mean())
    out["failure_rate"] = float(censored.mean())  # MBD's mean of srme_censored (offline: flags and unusable κ)
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
