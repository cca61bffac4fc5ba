"""Dimer curves against the PBE reference, and Matbench Discovery's combined dimer score.

Curves as in :mod:`geodite.metrics.diatomics` (``r`` Å, ``e`` eV, ``f`` eV/Å). Energy and force MAEs on a
common interpolated grid; bond length, well depth and harmonic frequency errors from a quadratic fit around
the minimum (NaN when the reference is unbound, well depth < 0.05 eV, as in MBD); the repulsive-wall
distance error; and the combined dimer score (CDS) over these and the self-consistency metrics.
Definitions: docs/benchmarks.md §3.
"""

from __future__ import annotations

import numpy as np
from ase.data import atomic_masses, atomic_numbers
from numpy.typing import ArrayLike

from geodite.metrics.diatomics import evaluation_window, sorted_curve

WALL_THRESHOLDS_EV: tuple[float, ...] = (1, 5, 10, 20, 50, 100)
MIN_REF_BINDING_EV = 0.05
WALL_R_MIN_FACTOR = 0.8  # × r_cov: lower end for the wall error (MBD scores the wall below the window)
N_SCORED_ELEMENTS = 87  # H…U without Po, At, Rn, Fr, Ra: CDS coverage denominator (MBD)

# unit conversions (CODATA 2018 exact/recommended values)
_EV_PER_A2_TO_N_PER_M = 16.02176634  # 1 eV/Å² = 1.602176634e-19 J / 1e-20 m²
_AMU_TO_KG = 1.66053906660e-27
_C_CM_PER_S = 2.99792458e10


# ----------------------------------------------------- PBE-relative metrics


def _common_grid(
    r_ref: ArrayLike, y_ref: ArrayLike, r_pred: ArrayLike, y_pred: ArrayLike, n_points: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Linear interpolation of both curves onto ``n_points`` equally spaced distances
    spanning the overlap of their r ranges. Trailing value dimensions are kept."""
    r_ref, y_ref = sorted_curve(r_ref, y_ref)
    r_pred, y_pred = sorted_curve(r_pred, y_pred)
    lo, hi = max(r_ref[0], r_pred[0]), min(r_ref[-1], r_pred[-1])
    if lo >= hi:
        raise ValueError(f"curves do not overlap: [{lo}, {hi}]")
    if n_points < 2:
        raise ValueError(f"{n_points=} must be >= 2")
    grid = np.linspace(lo, hi, n_points)

    def interp(r: np.ndarray, y: np.ndarray) -> np.ndarray:
        flat = y.reshape(len(y), -1)
        cols = [np.interp(grid, r, flat[:, k]) for k in range(flat.shape[1])]
        return np.stack(cols, axis=1).reshape(n_points, *y.shape[1:])

    return grid, interp(r_ref, y_ref), interp(r_pred, y_pred)


def pbe_energy_mae(
    r_ref: ArrayLike, e_ref: ArrayLike, r_pred: ArrayLike, e_pred: ArrayLike, n_points: int = 200
) -> float:
    """Energy MAE in eV: both curves linearly interpolated onto a common grid of
    ``n_points`` over the overlapping r range, each shifted to 0 at the far end of that
    grid, then mean |E_pred − E_ref|."""
    _, e_ref, e_pred = _common_grid(r_ref, e_ref, r_pred, e_pred, n_points)
    return float(np.mean(np.abs((e_pred - e_pred[-1]) - (e_ref - e_ref[-1]))))


def pbe_force_mae(
    r_ref: ArrayLike, f_ref: ArrayLike, r_pred: ArrayLike, f_pred: ArrayLike, n_points: int = 200
) -> float:
    """Force MAE in eV/Å on a common interpolated grid (as :func:`pbe_energy_mae`).

    With bond-projected forces of shape (n,) this is mean |F_pred − F_ref|. Cartesian
    forces of shape (n, 2, 3) are compared component-wise and averaged over all 6
    components, as MBD does (for an x-aligned dimer that is 1/3 of the bond-force MAE).
    """
    _, f_ref, f_pred = _common_grid(r_ref, f_ref, r_pred, f_pred, n_points)
    return float(np.mean(np.abs(f_pred - f_ref)))


def well_depth(r: ArrayLike, e: ArrayLike) -> float:
    """Binding energy D = E(r_max) − E_min in eV (≥ 0; 0 for a purely repulsive curve)."""
    _, e = sorted_curve(r, e)
    return float(e[-1] - e.min())


def quadratic_well_fit(r: ArrayLike, e: ArrayLike, n_fit_points: int = 5) -> tuple[float, float]:
    """Equilibrium distance and curvature from a quadratic fit around the minimum.

    Fits E ≈ a r² + b r + c to the ``n_fit_points`` samples centred on the lowest one
    (window shifted inward at the ends). Returns (r_eq [Å], k = 2a [eV/Å²]); r_eq is the
    vertex −b/2a if it lies inside the fit window, else the sampled minimum; k is NaN if
    the fit is not convex or has < 3 points.
    """
    r, e = sorted_curve(r, e)
    i_min = int(np.argmin(e))
    start = min(max(0, i_min - n_fit_points // 2), max(0, len(r) - n_fit_points))
    r_fit, e_fit = r[start : start + n_fit_points], e[start : start + n_fit_points]
    if len(r_fit) < 3:
        return float(r[i_min]), float("nan")
    a, b, _ = np.polyfit(r_fit, e_fit, 2)
    if a <= 0:
        return float(r[i_min]), float("nan")
    r_eq = -b / (2 * a)
    if not r_fit[0] <= r_eq <= r_fit[-1]:
        r_eq = r[i_min]
    return float(r_eq), float(2 * a)


def reduced_mass(element_a: str, element_b: str | None = None) -> float:
    """Reduced mass μ = m_a m_b / (m_a + m_b) in amu (ase.data.atomic_masses);
    homonuclear if ``element_b`` is None."""
    m_a = atomic_masses[atomic_numbers[element_a]]
    m_b = atomic_masses[atomic_numbers[element_b or element_a]]
    return float(m_a * m_b / (m_a + m_b))


def harmonic_wavenumber(force_constant: float, mu_amu: float) -> float:
    """Harmonic vibrational wavenumber ν̃ = √(k/μ) / (2πc) in cm⁻¹.

    Args:
        force_constant: k = d²E/dr² at the minimum in eV/Å² (1 eV/Å² = 16.0218 N/m).
        mu_amu: reduced mass in amu.

    Returns:
        ν̃ in cm⁻¹, NaN if k is not finite and positive.
    """
    if not np.isfinite(force_constant) or force_constant <= 0:
        return float("nan")
    omega = np.sqrt(force_constant * _EV_PER_A2_TO_N_PER_M / (mu_amu * _AMU_TO_KG))  # rad/s
    return float(omega / (2 * np.pi * _C_CM_PER_S))


def _reference_bound(r_ref: ArrayLike, e_ref: ArrayLike, min_ref_binding: float) -> bool:
    """Whether the reference well is at least ``min_ref_binding`` eV deep."""
    return well_depth(r_ref, e_ref) >= min_ref_binding


def bond_length_error(
    r_ref: ArrayLike, e_ref: ArrayLike, r_pred: ArrayLike, e_pred: ArrayLike,
    min_ref_binding: float = MIN_REF_BINDING_EV,
) -> float:  # fmt: skip
    """|r_eq,pred − r_eq,ref| in Å, each r_eq from :func:`quadratic_well_fit`; NaN if the
    reference well depth < ``min_ref_binding`` eV (unbound reference)."""
    if not _reference_bound(r_ref, e_ref, min_ref_binding):
        return float("nan")
    return abs(quadratic_well_fit(r_pred, e_pred)[0] - quadratic_well_fit(r_ref, e_ref)[0])


def well_depth_error(
    r_ref: ArrayLike, e_ref: ArrayLike, r_pred: ArrayLike, e_pred: ArrayLike,
    min_ref_binding: float = MIN_REF_BINDING_EV,
) -> float:  # fmt: skip
    """|D_pred − D_ref| in eV with D = E(r_max) − E_min; NaN for an unbound reference."""
    if not _reference_bound(r_ref, e_ref, min_ref_binding):
        return float("nan")
    return abs(well_depth(r_pred, e_pred) - well_depth(r_ref, e_ref))


def vibrational_frequency_error(
    r_ref: ArrayLike, e_ref: ArrayLike, r_pred: ArrayLike, e_pred: ArrayLike,
    element_a: str, element_b: str | None = None,
    min_ref_binding: float = MIN_REF_BINDING_EV,
) -> float:  # fmt: skip
    """|ν̃_pred − ν̃_ref| in cm⁻¹, harmonic wavenumbers from the quadratic-fit curvature and
    the reduced mass of (element_a, element_b). NaN for an unbound reference or a
    non-convex fit."""
    if not _reference_bound(r_ref, e_ref, min_ref_binding):
        return float("nan")
    mu = reduced_mass(element_a, element_b)
    nu_ref = harmonic_wavenumber(quadratic_well_fit(r_ref, e_ref)[1], mu)
    nu_pred = harmonic_wavenumber(quadratic_well_fit(r_pred, e_pred)[1], mu)
    return abs(nu_pred - nu_ref)


def repulsive_wall_radius(r: ArrayLike, e: ArrayLike, threshold_ev: float) -> float:
    """Distance (Å) inside the minimum where the curve first rises ``threshold_ev`` eV
    above E_min, walking inward from the minimum on the running-maximum envelope and
    interpolating linearly. NaN if the minimum is the first point or never reached."""
    r, e = sorted_curve(r, e)
    i_min = int(np.argmin(e))
    if i_min == 0:
        return float("nan")
    r_in = r[i_min::-1]
    envelope = np.maximum.accumulate(e[i_min::-1] - e[i_min])
    levels, first = np.unique(envelope, return_index=True)
    if len(levels) < 2 or threshold_ev > levels[-1]:
        return float("nan")
    return float(np.interp(threshold_ev, levels, r_in[first]))


def repulsive_wall_distance_error(
    r_ref: ArrayLike, e_ref: ArrayLike, r_pred: ArrayLike, e_pred: ArrayLike,
    thresholds_ev: tuple[float, ...] = WALL_THRESHOLDS_EV,
) -> float:  # fmt: skip
    """Mean |r_wall,pred − r_wall,ref| in Å at E_min + {1, 5, 10, 20, 50, 100} eV.

    Thresholds the reference never reaches are skipped; a threshold the reference
    reaches but the prediction does not costs the full reference radius (MBD
    convention). NaN if the reference reaches no threshold.
    """
    errors = []
    for threshold in thresholds_ev:
        r_wall_ref = repulsive_wall_radius(r_ref, e_ref, threshold)
        if not np.isfinite(r_wall_ref):
            continue
        r_wall_pred = repulsive_wall_radius(r_pred, e_pred, threshold)
        errors.append(abs(r_wall_pred - r_wall_ref) if np.isfinite(r_wall_pred) else r_wall_ref)
    return float(np.mean(errors)) if errors else float("nan")


def wall_distance_error_raw(
    element: str, r_ref: ArrayLike, e_ref: ArrayLike, r_pred: ArrayLike, e_pred: ArrayLike
) -> float:
    """MBD's ``pbe_wall_dist_mae`` (Å): :func:`repulsive_wall_distance_error` on the raw
    (unwindowed) curves cut to [0.8·r_cov, min(3.1·r_vdW, max r_pred)].

    The general metrics use the 0.9·r_cov window; the wall is scored further in, where
    the reference supports it. A boundary point within 1e-12 Å of 0.8·r_cov is kept (the
    reference grid starts there up to round-off). NaN with < 2 points on either curve.

    Args:
        element: element symbol or label such as ``"H-H"``.
        r_ref, e_ref: PBE separations (Å) and energies (eV), whole curve.
        r_pred, e_pred: model separations (Å) and energies (eV), whole curve.
    """
    r_ref, e_ref = np.asarray(r_ref, float), np.asarray(e_ref, float)
    r_pred, e_pred = np.asarray(r_pred, float), np.asarray(e_pred, float)
    r_min, r_max = evaluation_window(element, float(r_pred.max()), WALL_R_MIN_FACTOR)
    r_min -= 1e-12
    keep_ref = (r_ref >= r_min) & (r_ref <= r_max)
    keep_pred = (r_pred >= r_min) & (r_pred <= r_max)
    if keep_ref.sum() < 2 or keep_pred.sum() < 2:
        return float("nan")
    return repulsive_wall_distance_error(r_ref[keep_ref], e_ref[keep_ref], r_pred[keep_pred], e_pred[keep_pred])


# ------------------------------------------------------- combined dimer score

# pillar -> ((metric, weight within pillar, baseline, floor, log scale), ...); MBD's CDS_COMPONENTS
CDS_COMPONENTS: dict[str, tuple[tuple[str, float, float, float, bool], ...]] = {
    "accuracy": (("pbe_energy_mae", 5 / 9, 4.0, 0.0, False), ("pbe_force_mae", 4 / 9, 5.0, 0.0, False)),
    "geometry": (
        ("pbe_wall_dist_mae", 1 / 2, 0.5, 0.0, False),
        ("pbe_bond_length_error", 1 / 3, 0.8, 0.0, False),
        ("pbe_well_depth_error", 1 / 6, 3.5, 0.0, False),
    ),
    "speed": (("run_time_sec", 1.0, 5000.0, 50.0, True),),
    "physicality": (
        ("energy_jump", 2 / 5, 3.0, 0.0, False),
        ("force_flips", 2 / 5, 3.5, 1.0, False),
        ("tortuosity", 1 / 5, 2.0, 1.0, False),
    ),
}
CDS_WEIGHTS: dict[str, float] = {"accuracy": 4 / 9, "geometry": 2 / 9, "speed": 1 / 9, "physicality": 2 / 9}


def _subscore(value: float, baseline: float, floor: float, log: bool) -> float:
    """clamp(1 − (v − floor)/(baseline − floor), 0, 1), in log10 space when ``log``."""
    if log:
        value, floor, baseline = np.log10(value), np.log10(floor), np.log10(baseline)
    return float(min(1.0, max(0.0, 1.0 - (value - floor) / (baseline - floor))))


def combined_dimer_score(
    means: dict[str, float | None], n_excluded: int = 0, weights: dict[str, float] | None = None
) -> float | None:
    """Combined dimer score (CDS) in [0, 1], higher is better, as the MBD leaderboard computes it.

    CDS = coverage · Σ_p w_p S_p / Σ_p w_p over the pillars accuracy (4/9), geometry
    (2/9), speed (1/9) and physicality (2/9); each pillar score S_p is the weighted mean of
    its components' subscores clamp(1 − (v − floor)/(baseline − floor), 0, 1) (log10 scale
    for the run time), see :data:`CDS_COMPONENTS`; coverage = max(0, 1 − n_excluded/87).

    Args:
        means: element-mean metrics keyed as MBD (pbe_energy_mae eV, pbe_force_mae eV/Å,
            pbe_wall_dist_mae Å, pbe_bond_length_error Å, pbe_well_depth_error eV,
            energy_jump eV, force_flips, tortuosity) and run_time_sec (s).
        n_excluded: scored elements the run could not produce a curve for.
        weights: pillar weights (default :data:`CDS_WEIGHTS`); a zero weight drops a pillar.

    Returns:
        The score, or None when a component of a non-zero-weight pillar is missing, not
        finite, or (log scale) not positive, or when all weights are zero.
    """
    weights = CDS_WEIGHTS if weights is None else weights
    weighted, total = 0.0, 0.0
    for pillar, components in CDS_COMPONENTS.items():
        weight = weights[pillar]
        total += weight
        if weight == 0:
            continue
        pillar_score = 0.0
        for key, component_weight, baseline, floor, log in components:
            value = means.get(key)
            if value is None or not np.isfinite(value) or (log and value <= 0):
                return None
            pillar_score += _subscore(float(value), baseline, floor, log) * component_weight
        weighted += pillar_score * weight
    if total == 0:
        return None
    return weighted / total * max(0.0, 1.0 - n_excluded / N_SCORED_ELEMENTS)
