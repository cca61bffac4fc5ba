"""Thermal-conductivity metrics (κ_SRD, κ_SRE, κ_SRME), following Matbench Discovery.

Conventions (as in MBD's ``matbench_discovery/metrics/phonons.py``, itself adapted
from the k_SRME package of Póta et al., arXiv:2408.00755):

* κ is the lattice thermal conductivity in W/(m·K) at 300 K. The scalar κ is the
  directional average trace(κ)/3; for phono3py's Voigt vectors (xx, yy, zz, yz, xz, xy)
  that is the mean of the first three components.
* SRD = 2(κ_pred − κ_DFT)/(κ_pred + κ_DFT) ∈ [−2, 2]; SRE = |SRD| ∈ [0, 2]. A missing
  prediction (NaN) is treated as κ_pred = 0, i.e. SRD = −2 and SRE = 2 (MBD fills NaN
  SRD with −2).
* SRME (per material) = 2·Σ_modes |κ_pred,mode − κ_DFT,mode| / Σ_q w_q / (κ_pred + κ_DFT),
  where κ_mode is the trace/3 of phono3py's ``mode_kappa`` (already multiplied by the
  q-point weight, so that κ = Σ_modes κ_mode / Σ_q w_q) and w_q are the irreducible
  q-point weights. SRME ∈ [0, 2] and SRME ≥ SRE (triangle inequality).
* Penalty: SRME = 2 for a material whose calculation failed, that has imaginary modes,
  that broke symmetry during relaxation, or whose predicted κ / mode κ / weights are NaN.
* κ_SRME (and mean κ_SRE) = arithmetic mean over the 103 materials, penalties included.
"""

from __future__ import annotations

import numpy as np
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


def kappa_srd(kappa_pred: ArrayLike, kappa_dft: ArrayLike) -> np.ndarray | float:
    """Symmetric relative difference SRD = 2(κ_pred − κ_DFT)/(κ_pred + κ_DFT).

    Dimensionless, in [−2, 2] for non-negative κ. NaN κ_pred (missing prediction) is
    treated as κ_pred = 0, giving SRD = −2. κ_DFT must be finite and > 0.

    Args:
        kappa_pred: predicted scalar κ (W/(m·K)), scalar or shape (n,).
        kappa_dft: reference scalar κ (W/(m·K)), same shape.
    """
    pred = np.asarray(kappa_pred, dtype=float)
    dft = np.asarray(kappa_dft, dtype=float)
    if not np.all(np.isfinite(dft)) or np.any(dft <= 0):
        raise ValueError("kappa_dft must be finite and positive")
    pred = np.where(np.isnan(pred), 0.0, pred)
    srd = 2.0 * (pred - dft) / (pred + dft)
    return float(srd) if srd.ndim == 0 else srd


def kappa_sre(kappa_pred: ArrayLike, kappa_dft: ArrayLike) -> np.ndarray | float:
    """Symmetric relative error SRE = |SRD| = 2|κ_pred − κ_DFT|/(κ_pred + κ_DFT) ∈ [0, 2].

    Missing (NaN) predictions give SRE = 2; see :func:`kappa_srd`.
    """
    srd = kappa_srd(kappa_pred, kappa_dft)
    return abs(srd) if isinstance(srd, float) else np.abs(srd)


def kappa_srme_per_material(
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
) -> float:
    """Symmetric relative mean error of one material, with the MBD penalty.

    SRME = 2·Σ_modes |κ_pred,mode − κ_DFT,mode| / Σ_q w_q / (κ_pred + κ_DFT)

    Returns 2 (the penalty) if ``failed``, ``imaginary_modes`` or ``broken_symmetry`` is
    True, or if any predicted mode κ, κ_pred or weight is missing/NaN.

    Args:
        mode_kappa_pred: predicted phono3py ``mode_kappa`` at one temperature, shape
            (n_q, n_bands, 6) Voigt or (n_q, n_bands, 3, 3); W/(m·K), weight included.
            With ``mode_kappa_is_scalar`` already trace/3-averaged, shape (n_q, n_bands).
        mode_kappa_dft: DFT mode κ in the same layout and on the same q-mesh.
        q_weights: irreducible q-point weights, shape (n_q,) (integers in phono3py).
        kappa_pred: predicted scalar κ = trace/3 (W/(m·K)).
        kappa_dft: DFT scalar κ = trace/3 (W/(m·K)); must be finite.
        failed, imaginary_modes, broken_symmetry: penalty flags.
        mode_kappa_is_scalar: whether mode κ arrays are already per-mode scalars.

    Returns:
        SRME in [0, 2] (dimensionless).
    """
    if kappa_dft is None or not np.isfinite(kappa_dft):
        raise ValueError(f"reference kappa_dft must be finite, got {kappa_dft}")
    if failed or imaginary_modes or broken_symmetry:
        return SRME_PENALTY
    if mode_kappa_pred is None or q_weights is None or kappa_pred is None:
        return SRME_PENALTY
    pred, dft = np.asarray(mode_kappa_pred, float), np.asarray(mode_kappa_dft, float)
    weights = np.asarray(q_weights, float)
    if np.isnan(pred).any() or np.isnan(weights).any() or np.isnan(kappa_pred):
        return SRME_PENALTY
    if not mode_kappa_is_scalar:
        pred, dft = np.asarray(kappa_scalar(pred)), np.asarray(kappa_scalar(dft))
    if pred.shape != dft.shape:
        raise ValueError(f"mode kappa shapes differ: {pred.shape} != {dft.shape}")
    microscopic_error = np.abs(pred - dft).sum() / weights.sum()
    return float(2.0 * microscopic_error / (float(kappa_pred) + float(kappa_dft)))


def kappa_srme(per_material: ArrayLike) -> float:
    """Mean of per-material symmetric errors (κ_SRME, or mean κ_SRE), penalties included.

    κ_SRME = (1/M) Σ_m SRME_m over all M materials. NaN entries (a material without a
    result) count as the penalty 2. Dimensionless, in [0, 2].
    """
    values = np.asarray(per_material, dtype=float)
    if values.size == 0:
        raise ValueError("no per-material values")
    return float(np.where(np.isnan(values), SRME_PENALTY, values).mean())
