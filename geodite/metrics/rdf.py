"""Radial distribution functions, RDF comparison scores and diffusion from MD frames.

Units: positions and cells in Å, r in Å, g(r) dimensionless, time steps in fs,
MSD in Å², diffusion coefficients in Å²/ps and cm²/s (1 Å²/ps = 1e-4 cm²/s).

Periodic minimum image: pairs are counted up to r_max ≤ half the shortest lattice vector
(Matbench Discovery's ``min_image_radius``, :func:`max_rdf_radius`): two images of an atom
are at least one shortest lattice vector apart, so each pair has at most one image within
r_max. Up to half the shortest perpendicular cell width (:func:`half_min_width`) wrapping
fractional differences into [−½, ½) finds that image; beyond it (skewed cells) ASE's
``find_mic`` (Minkowski reduction, as MBD's ``get_distances``) does.
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike

_A2_PER_FS_TO_A2_PER_PS = 1e3
_A2_PER_FS_TO_CM2_PER_S = 1e-1  # 1 Å²/fs = 1e-16 cm² / 1e-15 s


def max_rdf_radius(cell: ArrayLike) -> float:
    """Half the shortest lattice vector of a periodic cell in Å (Minkowski-reduced basis), the largest
    RDF radius at which every pair has at most one image: MBD's ``min_image_radius``.

    For a hexagonal cell with a = 9 Å that is 4.5 Å (half the shortest perpendicular width would be
    3.897 Å).

    Args:
        cell: lattice vectors as rows, shape (3, 3), Å; periodic in all three directions.
    """
    from ase.geometry import minkowski_reduce

    cell = np.asarray(cell, dtype=float)
    if abs(np.linalg.det(cell)) <= 0:
        raise ValueError("degenerate cell")
    reduced, _ = minkowski_reduce(cell, np.ones(3, dtype=bool))
    return float(np.linalg.norm(reduced, axis=1).min() / 2)


def frames_rdf_radius(cells: np.ndarray) -> float:
    """:func:`max_rdf_radius` of a (T, 3, 3) stack of cells: of the first when all are ``np.allclose`` to it
    (NVT), else the smallest over frames, as MBD's ``min_image_radius``; Å."""
    cells = np.asarray(cells, dtype=float)
    unique = cells[:1] if np.allclose(cells, cells[0]) else cells
    return min(max_rdf_radius(c) for c in unique)


def half_min_width(cell: ArrayLike) -> float:
    """Half the shortest perpendicular width of a cell, h_min/2 in Å (h_k = V / |a_i × a_j|).

    Below it, wrapping fractional differences into [−½, ½) gives the minimum image of every pair
    (for |v| ≤ h_min/2 each fractional component |v·b_k| ≤ |v|/h_k ≤ ½).
    """
    cell = np.asarray(cell, dtype=float)
    volume = abs(np.linalg.det(cell))
    if volume <= 0:
        raise ValueError("degenerate cell")
    areas = [np.linalg.norm(np.cross(cell[(k + 1) % 3], cell[(k + 2) % 3])) for k in range(3)]
    return float(0.5 * volume / max(areas))


def _frame_cells(cell: ArrayLike, n_frames: int) -> np.ndarray:
    """Broadcast a (3, 3) cell or validate a (T, 3, 3) stack of cells."""
    cell = np.asarray(cell, dtype=float)
    if cell.shape == (3, 3):
        return np.broadcast_to(cell, (n_frames, 3, 3))
    if cell.shape == (n_frames, 3, 3):
        return cell
    raise ValueError(f"cell must have shape (3, 3) or ({n_frames}, 3, 3), got {cell.shape}")


def _pair_distances(
    pos_a: np.ndarray, pos_b: np.ndarray, cell: np.ndarray, r_max: float, same: bool, chunk: int = 256
) -> np.ndarray:
    """Minimum-image distances < r_max between rows of pos_a and pos_b (one frame).

    If ``same`` (pos_a is pos_b), each unordered pair i < j is returned once.
    """
    from ase.geometry import find_mic

    inv = np.linalg.inv(cell)
    frac_b = pos_b @ inv
    wrap_is_exact = r_max <= half_min_width(cell)
    out = []
    for start in range(0, len(pos_a), chunk):
        frac_a = pos_a[start : start + chunk] @ inv
        diff = frac_b[None, :, :] - frac_a[:, None, :]
        diff -= np.round(diff)
        if wrap_is_exact:
            dist = np.linalg.norm(diff @ cell, axis=-1)
        else:  # skewed cell beyond h_min/2: the true minimum image
            dist = find_mic((diff @ cell).reshape(-1, 3), cell, pbc=True)[1].reshape(diff.shape[:2])
        if same:
            rows = np.arange(start, start + len(frac_a))[:, None]
            dist = np.where(np.arange(len(frac_b))[None, :] > rows, dist, np.inf)
        out.append(dist[dist < r_max])
    return np.concatenate(out) if out else np.empty(0)


def radial_distribution(
    frames_positions: ArrayLike,
    cell: ArrayLike,
    symbols: ArrayLike,
    pair: tuple[str, str] | None = None,
    r_max: float | None = None,
    n_bins: int = 200,
    normalisation: str = "pairs",
) -> tuple[np.ndarray, np.ndarray]:
    """Partial or pooled radial distribution function g(r), averaged over frames.

    g_AB(r_k) = ⟨ n_AB(k) · V / (N_A·N_B' · ΔV_k) ⟩_frames, with n_AB(k) the number of
    ordered (i ∈ A, j ∈ B, i ≠ j) pairs whose minimum-image distance lies in bin k,
    ΔV_k = 4π/3 (r_{k+1}³ − r_k³) the shell volume, and N_B' = N_B − 1 when A = B
    (N_A·N_B otherwise), so that an ideal gas gives g = 1. With ``pair=None`` all
    atoms are pooled (A = B = all, normalisation N(N − 1)). The matching coordination
    number is n_c(R) = ∫₀^R 4πr² ρ' g(r) dr with ρ' = (N_B − δ_AB)/V.

    ``normalisation="mbd"`` divides by N_A·N_B instead (N² when pooled), as Matbench
    Discovery's ``calc_rdf`` (paper Eq. 4): its g(r) is ours × (N − 1)/N, so it tends to
    1 − 1/N, not 1, for an ideal gas. MBD also uses 500 bins (ours 200 by default) and
    sums pair counts and 1/V over frames before dividing (identical for a fixed cell).

    Args:
        frames_positions: Cartesian positions, shape (T, N, 3) or (N, 3), Å (wrapped or not).
        cell: lattice vectors as rows, shape (3, 3) or (T, 3, 3), Å.
        symbols: chemical symbols, shape (N,).
        pair: element pair such as ("Li", "S"); None pools all atoms.
        r_max: largest distance (Å); default and maximum: :func:`frames_rdf_radius` (MBD's rule).
        n_bins: number of equal-width bins on [0, r_max].
        normalisation: ``"pairs"`` (N_A·(N_B − δ_AB), ideal gas → 1) or ``"mbd"`` (N_A·N_B).

    Returns:
        (r, g): bin centres (Å) and g(r), both shape (n_bins,).
    """
    pos = np.asarray(frames_positions, dtype=float)
    if pos.ndim == 2:
        pos = pos[None]
    if pos.ndim != 3 or pos.shape[-1] != 3:
        raise ValueError(f"positions must have shape (T, N, 3), got {pos.shape}")
    cells = _frame_cells(cell, len(pos))
    symbols = np.asarray(symbols)
    if symbols.shape != (pos.shape[1],):
        raise ValueError(f"need {pos.shape[1]} symbols, got {symbols.shape}")
    limit = frames_rdf_radius(cells)
    r_max = limit if r_max is None else float(r_max)
    if r_max > limit + 1e-12:
        raise ValueError(f"{r_max=} exceeds half the shortest lattice vector {limit:.4f} Å")
    if pair is None:
        idx_a = idx_b = np.arange(len(symbols))
    else:
        idx_a, idx_b = (np.flatnonzero(symbols == el) for el in pair)
    if normalisation not in ("pairs", "mbd"):
        raise ValueError(f"normalisation must be 'pairs' or 'mbd', not {normalisation!r}")
    same = pair is None or pair[0] == pair[1]
    n_a, n_b = len(idx_a), len(idx_b) - (1 if same and normalisation == "pairs" else 0)
    if n_a == 0 or n_b <= 0:
        raise ValueError(f"not enough atoms for pair {pair}")
    edges = np.linspace(0.0, r_max, n_bins + 1)
    shell = 4.0 / 3.0 * np.pi * np.diff(edges**3)
    g = np.zeros(n_bins)
    for frame, frame_cell in zip(pos, cells, strict=True):
        dists = _pair_distances(frame[idx_a], frame[idx_b], frame_cell, r_max, same)
        counts = np.histogram(dists, bins=edges)[0] * (2.0 if same else 1.0)  # ordered pairs
        g += counts * abs(np.linalg.det(frame_cell)) / (n_a * n_b * shell)
    return 0.5 * (edges[1:] + edges[:-1]), g / len(pos)


def rdf_overlap(g_ref: ArrayLike, g_pred: ArrayLike, r: ArrayLike) -> float:
    """Normalised RDF overlap in [0, 1] (1 = identical, 0 = disjoint supports).

    overlap = 1 − ½∫|g_ref − g_pred| dr / ½∫(g_ref + g_pred) dr   (trapezoid rule on r)

    NaN if both g are identically zero.
    """
    g_ref, g_pred, r = (np.asarray(x, dtype=float) for x in (g_ref, g_pred, r))
    total = np.trapezoid(g_ref + g_pred, r)
    if total == 0:
        return float("nan")
    return float(np.clip(1.0 - np.trapezoid(np.abs(g_ref - g_pred), r) / total, 0.0, 1.0))


def rdf_error(g_ref: ArrayLike, g_pred: ArrayLike, r: ArrayLike) -> float:
    """MBD's RDF error in percent, in [0, 100] (0 = identical).

    error = 100 · min(1, ∫|g_ref − g_pred| dr / ∫|g_ref − 1| dr)   (trapezoid rule on r)

    100 if g_ref ≡ 1 (a reference without structure: as far from it as an ideal gas), as
    MBD's ``calc_rdf_error``. The paper's companion score is :func:`rdf_overlap`.
    """
    g_ref, g_pred, r = (np.asarray(x, dtype=float) for x in (g_ref, g_pred, r))
    structure = np.trapezoid(np.abs(g_ref - 1.0), r)
    if structure == 0:
        return 100.0
    return float(100.0 * min(1.0, np.trapezoid(np.abs(g_ref - g_pred), r) / structure))


MBD_RDF_BINS = 500  # MBD's evaluate_md_system


def matched_frame_counts(n_ref: int, n_pred: int, ref_interval_fs: float, pred_interval_fs: float) -> tuple[int, int]:
    """Frames (n_ref_use, n_pred_use) of two trajectories, both from t = 0, that span the same time on their
    common time grid (least common multiple of the two frame intervals, fs), as MBD's
    ``matched_frame_counts``; a trajectory of n frames every dt spans (n − 1)·dt."""
    if min(ref_interval_fs, pred_interval_fs) <= 0:
        raise ValueError(f"frame intervals must be > 0 fs, got {ref_interval_fs=}, {pred_interval_fs=}")
    ref_dt, pred_dt = Fraction(str(ref_interval_fs)), Fraction(str(pred_interval_fs))
    common = Fraction(math.lcm(ref_dt.numerator, pred_dt.numerator), math.gcd(ref_dt.denominator, pred_dt.denominator))
    ref_stride, pred_stride = int(common / ref_dt), int(common / pred_dt)
    if min(n_ref, n_pred) < 1:
        return 0, 0
    n_common = min((n_ref - 1) // ref_stride, (n_pred - 1) // pred_stride)
    return n_common * ref_stride + 1, n_common * pred_stride + 1


def mbd_rdf_error(
    ref_positions: ArrayLike, ref_cells: ArrayLike, pred_positions: ArrayLike, pred_cells: ArrayLike
) -> float:
    """Matbench Discovery's MD ``rdf_error`` (%) of two trajectories, as its ``evaluate_md_system`` computes it
    from the (already time-matched, :func:`matched_frame_counts`) frames: the pooled g(r) of all atoms with
    N² normalisation and 500 bins up to the reference's :func:`frames_rdf_radius`, the prediction on the
    same bins, then :func:`rdf_error`.

    Args:
        ref_positions, pred_positions: Cartesian positions, shape (T, N, 3), Å.
        ref_cells, pred_cells: lattice vectors as rows, shape (3, 3) or (T, 3, 3), Å.
    """
    ref, pred = np.asarray(ref_positions, float), np.asarray(pred_positions, float)
    r, g_ref = radial_distribution(ref, ref_cells, ["X"] * ref.shape[1], n_bins=MBD_RDF_BINS, normalisation="mbd")
    r_max = float(r[-1] + (r[1] - r[0]) / 2)
    _, g_pred = radial_distribution(pred, pred_cells, ["X"] * pred.shape[1], r_max=r_max, n_bins=MBD_RDF_BINS,
                                    normalisation="mbd")  # fmt: skip
    return rdf_error(g_ref, g_pred, r)


def unwrap_positions(frames_positions: ArrayLike, cell: ArrayLike) -> np.ndarray:
    """Unwrap wrapped trajectories by adding the minimum-image step between frames.

    Valid when no atom moves more than half a cell width between saved frames.

    Args:
        frames_positions: wrapped Cartesian positions, shape (T, N, 3), Å.
        cell: (3, 3) or (T, 3, 3) lattice vectors as rows, Å.

    Returns:
        Unwrapped positions, shape (T, N, 3), Å; frame 0 unchanged.
    """
    pos = np.asarray(frames_positions, dtype=float)
    cells = _frame_cells(cell, len(pos))
    frac = np.einsum("tnj,tjk->tnk", pos, np.linalg.inv(cells))
    steps = np.diff(frac, axis=0)
    steps -= np.round(steps)
    frac_unwrapped = np.concatenate([frac[:1], frac[:1] + np.cumsum(steps, axis=0)])
    return np.einsum("tnj,tjk->tnk", frac_unwrapped, cells)


def mean_squared_displacement(
    positions_unwrapped: ArrayLike, atom_mask: ArrayLike | None = None, max_lag: int | None = None
) -> np.ndarray:
    """Time-origin-averaged MSD(τ) = ⟨|x_i(t₀ + τ) − x_i(t₀)|²⟩_{i, t₀} in Å².

    Args:
        positions_unwrapped: unwrapped Cartesian positions, shape (T, N, 3), Å.
        atom_mask: optional boolean (N,) or index array selecting atoms (e.g. Li only).
        max_lag: largest lag in frames (default T − 1).

    Returns:
        MSD for lags 0 … max_lag (in frames), shape (max_lag + 1,), Å²; MSD[0] = 0.
    """
    pos = np.asarray(positions_unwrapped, dtype=float)
    if pos.ndim != 3 or pos.shape[-1] != 3:
        raise ValueError(f"positions must have shape (T, N, 3), got {pos.shape}")
    if atom_mask is not None:
        pos = pos[:, np.asarray(atom_mask)]
    n_frames = len(pos)
    max_lag = n_frames - 1 if max_lag is None else int(max_lag)
    if not 0 <= max_lag < n_frames:
        raise ValueError(f"{max_lag=} must be in [0, {n_frames - 1}]")
    msd = np.zeros(max_lag + 1)
    for lag in range(1, max_lag + 1):
        msd[lag] = np.mean(np.sum((pos[lag:] - pos[:-lag]) ** 2, axis=-1))
    return msd


class Diffusion(NamedTuple):
    """Einstein-relation diffusion coefficient and the linear fit behind it."""

    d_a2_per_ps: float  # Å²/ps
    d_cm2_per_s: float  # cm²/s
    slope_a2_per_fs: float  # d(MSD)/dt, Å²/fs
    intercept_a2: float  # Å²


def diffusion_coefficient(
    msd: ArrayLike, dt_fs: float, fit_start: int = 1, fit_end: int | None = None, dim: int = 3
) -> Diffusion:
    """Tracer diffusion coefficient from the MSD slope (Einstein relation).

    D = slope / (2·dim), slope = d(MSD)/dt from a least-squares line through
    MSD[fit_start:fit_end] versus t = lag·dt_fs; D = slope/6 in 3D.

    Args:
        msd: MSD per lag in Å², shape (L,), lag 0 first (e.g. from
            :func:`mean_squared_displacement`).
        dt_fs: time between consecutive lags (saved frames), fs.
        fit_start, fit_end: lag range of the fit (skip the ballistic start; default 1 … L).
        dim: dimensionality (3 for bulk diffusion).

    Returns:
        Diffusion(d_a2_per_ps, d_cm2_per_s, slope_a2_per_fs, intercept_a2).
    """
    msd = np.asarray(msd, dtype=float)
    lags = np.arange(len(msd))[fit_start:fit_end]
    if len(lags) < 2:
        raise ValueError("need at least 2 lags to fit")
    slope, intercept = np.polyfit(lags * float(dt_fs), msd[fit_start:fit_end], 1)
    d_a2_per_fs = slope / (2 * dim)
    return Diffusion(
        d_a2_per_ps=float(d_a2_per_fs * _A2_PER_FS_TO_A2_PER_PS),
        d_cm2_per_s=float(d_a2_per_fs * _A2_PER_FS_TO_CM2_PER_S),
        slope_a2_per_fs=float(slope),
        intercept_a2=float(intercept),
    )
