"""Homonuclear/heteronuclear dimer curve metrics (docs/benchmarks.md §3).

A curve is given as 1-D arrays over the sampled separations:

* ``r``: interatomic distances in Å (sorted ascending internally; no duplicates),
* ``e``: total energies in eV,
* ``f``: a force curve in eV/Å. MBD's force-smoothness metrics (:func:`force_flips`,
  :func:`force_total_variation`, :func:`force_jump`) take MBD's force, the x-force on the
  first atom (:func:`mbd_force`, ``forces[:, 0, 0]``); the other force metrics the
  bond-projected force F = −dE/dr (positive = repulsive, :func:`bond_force_from_cartesian`).
  The two agree up to sign only when the two atoms' forces are exactly opposite.
  Layout: atom 0 at the origin, atom 1 on +x (as MBD's ``diatomics-dft.json.gz``).

Definitions follow Matbench Discovery (``matbench_discovery/metrics/diatomics``):
sign-flip counts zero out |F| < 1e-2 eV/Å or |ΔE| < 1e-3 eV before counting; a "jump"
sums, at each sign flip of the successive differences, the magnitudes of the two
differences on either side of the flip. Flip counts and jumps do not depend on the sign
convention of the force. The metrics against the PBE reference curves and the combined dimer
score: :mod:`geodite.metrics.diatomics_pbe`.
"""

from __future__ import annotations

import numpy as np
from ase.data import atomic_numbers, covalent_radii, vdw_alvarez
from numpy.typing import ArrayLike
from scipy.stats import spearmanr

FORCE_FLIP_THRESHOLD = 1e-2  # eV/Å
ENERGY_FLIP_THRESHOLD = 1e-3  # eV
WINDOW_R_MIN_FACTOR = 0.9  # × r_cov: lower end of the scoring window (MLIP Arena, MBD)


# ---------------------------------------------------------------- helpers


def sorted_curve(r: ArrayLike, y: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Validate a sampled curve and return (r, y) sorted by ascending r.

    ``y`` may have trailing dimensions (e.g. (n, 2, 3) Cartesian forces).
    """
    r, y = np.asarray(r, dtype=float), np.asarray(y, dtype=float)
    if r.ndim != 1 or len(y) != len(r):
        raise ValueError(f"need r of shape (n,) and y of length n, got {r.shape}, {y.shape}")
    if len(r) < 2:
        raise ValueError(f"need at least 2 points, got {len(r)}")
    if not (np.all(np.isfinite(r)) and np.all(np.isfinite(y))):
        raise ValueError("curve contains NaN or inf")
    order = np.argsort(r, kind="stable")
    r, y = r[order], y[order]
    if np.any(np.diff(r) == 0):
        raise ValueError("duplicate distances")
    return r, y


def _curve_ef(r: ArrayLike, e: ArrayLike, f: ArrayLike) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validate an energy curve and a bond-force curve on the same distances, sorted by r."""
    r_arr = np.asarray(r, dtype=float)
    f_arr = np.asarray(f, dtype=float)
    if f_arr.shape != r_arr.shape:
        raise ValueError(f"bond forces must have shape {r_arr.shape}, got {f_arr.shape}")
    stacked = np.stack([np.asarray(e, dtype=float), f_arr], axis=1)
    r_sorted, stacked = sorted_curve(r_arr, stacked)
    return r_sorted, stacked[:, 0], stacked[:, 1]


def _diff_flips(values: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Non-zero successive differences (|Δ| < threshold set to 0 and dropped) and the
    boolean mask of sign flips between consecutive kept differences."""
    diffs = np.diff(values)
    diffs = diffs[np.abs(diffs) >= threshold] if threshold > 0 else diffs[diffs != 0]
    flips = np.diff(np.sign(diffs)) != 0
    return diffs, flips


def _jump(values: np.ndarray, threshold: float) -> float:
    """Σ over sign flips of the successive differences of |Δ_before| + |Δ_after|."""
    diffs, flips = _diff_flips(values, threshold)
    return float(np.abs(diffs[:-1][flips]).sum() + np.abs(diffs[1:][flips]).sum())


def bond_force_from_cartesian(forces: ArrayLike, bond_axis: ArrayLike = (1.0, 0.0, 0.0)) -> np.ndarray:
    """Bond-projected force F = ½(F₁ − F₀)·û in eV/Å (positive = repulsive).

    Args:
        forces: Cartesian forces, shape (n, 2, 3), eV/Å; atom 1 sits at atom 0 + r·û.
        bond_axis: direction û from atom 0 to atom 1 (normalised here), default +x.

    Returns:
        Shape (n,). For an exact gradient this equals −dE/dr.
    """
    forces = np.asarray(forces, dtype=float)
    if forces.ndim != 3 or forces.shape[1:] != (2, 3):
        raise ValueError(f"forces must have shape (n, 2, 3), got {forces.shape}")
    axis = np.asarray(bond_axis, dtype=float)
    axis = axis / np.linalg.norm(axis)
    return 0.5 * (forces[:, 1] - forces[:, 0]) @ axis


def mbd_force(forces: ArrayLike) -> np.ndarray:
    """MBD's force of a dimer curve: the x-component of the force on the first atom, ``forces[:, 0, 0]``
    (eV/Å), which MBD's ``calc_force_flips``, ``calc_force_total_variation`` and ``calc_force_jump`` use.

    Args:
        forces: Cartesian forces, shape (n, 2, 3), eV/Å.
    """
    forces = np.asarray(forces, dtype=float)
    if forces.ndim != 3 or forces.shape[1:] != (2, 3):
        raise ValueError(f"forces must have shape (n, 2, 3), got {forces.shape}")
    return forces[:, 0, 0]


def evaluation_window(
    element: str, r_max_available: float, r_min_factor: float = WINDOW_R_MIN_FACTOR
) -> tuple[float, float]:
    """MBD/MLIP-Arena evaluation window [0.9·r_cov, min(3.1·r_vdW, r_max_available)] in Å.

    Radii from ``ase.data.covalent_radii`` and ``ase.data.vdw_alvarez``; a missing (NaN)
    vdW radius leaves the upper bound at ``r_max_available``.

    Args:
        element: element symbol or homonuclear label such as ``"H-H"``.
        r_max_available: largest sampled separation (Å).
        r_min_factor: lower bound as a multiple of r_cov (0.8 for the wall error).
    """
    z = atomic_numbers[element.split("-", maxsplit=1)[0]]
    r_cov = covalent_radii[z]
    r_min = r_min_factor * r_cov if np.isfinite(r_cov) else 0.0
    r_vdw = vdw_alvarez.vdw_radii[z] if z < len(vdw_alvarez.vdw_radii) else np.nan
    r_max = min(3.1 * r_vdw, r_max_available) if np.isfinite(r_vdw) else r_max_available
    return float(r_min), float(r_max)


# ------------------------------------------------- self-consistency metrics


def force_flips(r: ArrayLike, f: ArrayLike, threshold: float = FORCE_FLIP_THRESHOLD) -> float:
    """Number of sign changes of the force ``f`` (MBD: :func:`mbd_force`) along r (ideal: 1 for a bound dimer,
    0 for a purely repulsive one). |F| < ``threshold`` (eV/Å, default 1e-2) counts as 0
    and zeros are skipped. Dimensionless count."""
    _, f = sorted_curve(r, f)
    f = np.where(np.abs(f) < threshold, 0.0, f)
    signs = np.sign(f[f != 0])
    return float(np.sum(np.diff(signs) != 0))


def force_total_variation(r: ArrayLike, f: ArrayLike) -> float:
    """Total variation of the force ``f`` (MBD: :func:`mbd_force`) Σ_i |F_{i+1} − F_i| in eV/Å."""
    _, f = sorted_curve(r, f)
    return float(np.sum(np.abs(np.diff(f))))


def force_jump(r: ArrayLike, f: ArrayLike) -> float:
    """Force jump in eV/Å of ``f`` (MBD: :func:`mbd_force`): at every sign flip of the successive differences ΔF (no
    threshold; ΔF = 0 dropped), add |ΔF| just before and just after the flip. 0 for a
    force that is monotone in r."""
    _, f = sorted_curve(r, f)
    return _jump(f, threshold=0.0)


def energy_diff_flips(r: ArrayLike, e: ArrayLike, threshold: float = ENERGY_FLIP_THRESHOLD) -> float:
    """Number of sign flips of the successive energy differences ΔE along r, after
    dropping |ΔE| < ``threshold`` (eV, default 1e-3). A single well gives 1."""
    _, e = sorted_curve(r, e)
    return float(np.sum(_diff_flips(e, threshold)[1]))


def energy_jump(r: ArrayLike, e: ArrayLike, threshold: float = ENERGY_FLIP_THRESHOLD) -> float:
    """Energy jump in eV: at each sign flip of ΔE (|ΔE| < ``threshold`` eV dropped), add
    |ΔE| just before and just after the flip."""
    _, e = sorted_curve(r, e)
    return _jump(e, threshold)


def tortuosity(r: ArrayLike, e: ArrayLike) -> float:
    """Energy tortuosity Σ|ΔE| / (|E(r_max) − E_min| + (E(r_min) − E_min)), dimensionless.

    1 for a curve with a single repulsive→attractive transition or a purely monotone
    one; > 1 with extra wiggles. NaN for a constant curve.
    """
    _, e = sorted_curve(r, e)
    e_min = e.min()
    denominator = abs(e[-1] - e_min) + (e[0] - e_min)
    if denominator == 0:
        return float("nan")
    return float(np.sum(np.abs(np.diff(e))) / denominator)


def conservation_deviation(r: ArrayLike, e: ArrayLike, f: ArrayLike) -> float:
    """Mean |F + dE/dr| in eV/Å, dE/dr by ``np.gradient`` (central differences inside,
    one-sided at the ends) on the sampled grid. 0 for a conservative model (up to
    finite-difference error)."""
    r, e, f = _curve_ef(r, e, f)
    return float(np.mean(np.abs(f + np.gradient(e, r))))


def _repulsive_branch(r: np.ndarray, e: np.ndarray) -> slice:
    """Slice of points from the shortest distance up to and including the energy minimum."""
    return slice(0, int(np.argmin(e)) + 1)


def spearman_repulsive_energy(r: ArrayLike, e: ArrayLike) -> float:
    """Spearman rank correlation of E vs r on the repulsive branch (r ≤ r at E_min).

    Ideal −1 (energy strictly decreasing towards the well). NaN with < 3 points.
    """
    r, e = sorted_curve(r, e)
    branch = _repulsive_branch(r, e)
    if len(r[branch]) < 3:
        return float("nan")
    return float(spearmanr(r[branch], e[branch]).statistic)


def spearman_repulsive_force(r: ArrayLike, e: ArrayLike, f: ArrayLike) -> float:
    """Spearman rank correlation of the bond force F vs r on the repulsive branch
    (r ≤ r at E_min, located from the energies). Ideal −1 (the repulsive force decreases
    monotonically as the atoms separate). NaN with < 3 points.

    Not MLIP Arena's "Spearman (F: descending)": that one is measured on the branch
    ending at the force minimum, this one on the branch ending at the energy minimum
    (where F changes sign), so it also covers the attractive part between the two and is
    not comparable number for number. MBD reports neither.
    """
    r, e, f = _curve_ef(r, e, f)
    branch = _repulsive_branch(r, e)
    if len(r[branch]) < 3:
        return float("nan")
    return float(spearmanr(r[branch], f[branch]).statistic)


def max_abs_force(r: ArrayLike, f: ArrayLike) -> float:
    """max |F| over the curve, eV/Å."""
    _, f = sorted_curve(r, f)
    return float(np.max(np.abs(f)))


def max_abs_energy_gradient(r: ArrayLike, e: ArrayLike) -> float:
    """max |dE/dr| over the curve (``np.gradient``), eV/Å."""
    r, e = sorted_curve(r, e)
    return float(np.max(np.abs(np.gradient(e, r))))


def is_bad_reference_curve(
    r: ArrayLike, e: ArrayLike, min_energy_jump: float = 1.5, min_energy_flips: int = 3
) -> bool:
    """Whether a DFT reference curve is too jumpy to score against (MBD's
    ``find_low_quality_dft_refs``): energy_jump ≥ ``min_energy_jump`` eV AND
    energy_diff_flips ≥ ``min_energy_flips``. Requiring both keeps curves with one large
    physical feature or many tiny wiggles. Apply it on the evaluation window."""
    return bool(energy_jump(r, e) >= min_energy_jump and energy_diff_flips(r, e) >= min_energy_flips)
