"""Radial distribution functions, RDF comparison scores and diffusion from MD frames.

Units: positions and cells in Å, r in Å, g(r) dimensionless, time steps in fs,
MSD in Å², diffusion coefficients in Å²/ps and cm²/s (1 Å²/ps = 1e-4 cm²/s).

Periodic minimum image: for any cell (orthorhombic or triclinic), if
r ≤ half the shortest perpendicular width h_min of the cell, a separation vector v with
|v| ≤ r has all fractional components |v·b_k| ≤ |v|/h_k ≤ ½ (b_k the reciprocal
vectors without 2π). Wrapping fractional differences into [−½, ½) therefore finds
every pair within r exactly, and each pair appears at most once. ``max_rdf_radius``
returns that bound.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike

_A2_PER_FS_TO_A2_PER_PS = 1e3
_A2_PER_FS_TO_CM2_PER_S = 1e-1  # 1 Å²/fs = 1e-16 cm² / 1e-15 s


def max_rdf_radius(cell: ArrayLike) -> float:
    """Half the shortest perpendicular width of a cell, h_min/2 in Å.

    h_k = V / |a_i × a_j| is the distance between the lattice planes spanned by the two
    other cell vectors. Beyond h_min/2 a pair can have more than one periodic image.

    Args:
        cell: lattice vectors as rows, shape (3, 3), Å.
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
    inv = np.linalg.inv(cell)
    frac_b = pos_b @ inv
    out = []
    for start in range(0, len(pos_a), chunk):
        frac_a = pos_a[start : start + chunk] @ inv
        diff = frac_b[None, :, :] - frac_a[:, None, :]
        diff -= np.round(diff)
        dist = np.linalg.norm(diff @ cell, axis=-1)
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
        r_max: largest distance (Å); default and maximum: :func:`max_rdf_radius`.
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
    limit = min(max_rdf_radius(c) for c in cells)
    r_max = limit if r_max is None else float(r_max)
    if r_max > limit * (1 + 1e-12):
        raise ValueError(f"{r_max=} exceeds half the shortest cell width {limit:.4f} Å")
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
