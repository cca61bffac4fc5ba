"""Geometry-optimisation symmetry metrics, as Matbench Discovery's ``geo_opt`` task.

Each ML-relaxed structure is compared with its DFT-relaxed counterpart by the space
group and the number of symmetry operations moyopy finds at a symmetry precision
(``symprec``, Å; MBD reports 1e-2 and 1e-5):

* ``n_sym_ops_mae``: mean |n_ops,ML − n_ops,DFT| (dimensionless);
* ``symmetry_match``: fraction with the same space-group number;
* ``symmetry_decrease`` / ``symmetry_increase``: fraction whose space group changed and
  whose number of operations fell / rose (a changed group with as many operations counts
  in neither, as in MBD);
* ``n_structures``: structures with a symmetry result on both sides (the denominator).

Structures whose symmetry could not be determined (None) are left out, as MBD does.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

SYMPRECS: tuple[float, ...] = (1e-2, 1e-5)
SYMMETRY_KEYS: tuple[str, ...] = (
    "n_sym_ops_mae", "symmetry_decrease", "symmetry_match", "symmetry_increase", "n_structures",
)  # fmt: skip


def symprec_tag(symprec: float) -> str:
    """``1e-2`` style label of a symmetry precision (MBD's ``symprec=1e-2`` keys)."""
    mantissa, exponent = f"{symprec:.0e}".split("e")
    return f"{mantissa}e{int(exponent)}"


def structure_symmetry(structure, symprec: float) -> tuple[int, int] | None:
    """(space-group number, number of symmetry operations) of a structure by moyopy.

    Args:
        structure: a pymatgen ``Structure`` (lattice rows in Å, fractional coordinates).
        symprec: symmetry precision in Å.

    Returns:
        The pair, or None when moyopy cannot determine the symmetry.
    """
    import moyopy

    cell = moyopy.Cell(
        basis=np.asarray(structure.lattice.matrix, float).tolist(),
        positions=np.asarray(structure.frac_coords, float).tolist(),
        numbers=[int(z) for z in structure.atomic_numbers],
    )
    try:
        dataset = moyopy.MoyoDataset(cell, symprec=symprec)
    except (RuntimeError, ValueError):  # moyopy raises on cells it cannot standardise
        return None
    return int(dataset.number), int(dataset.operations.num_operations)


def symmetry_comparison(relaxed, reference, symprecs: tuple[float, ...] = SYMPRECS) -> dict[str, float]:
    """Row fields ``spg_pred_<tag>``, ``n_sym_ops_pred_<tag>``, ``spg_dft_<tag>``,
    ``n_sym_ops_dft_<tag>`` for each symmetry precision (NaN where moyopy failed)."""
    row: dict[str, float] = {}
    for symprec in symprecs:
        tag = symprec_tag(symprec)
        for side, structure in (("pred", relaxed), ("dft", reference)):
            info = structure_symmetry(structure, symprec)
            row[f"spg_{side}_{tag}"], row[f"n_sym_ops_{side}_{tag}"] = info if info else (math.nan, math.nan)
    return row


def geo_opt_symmetry_metrics(
    spg_pred: pd.Series, spg_ref: pd.Series, n_ops_pred: pd.Series, n_ops_ref: pd.Series
) -> dict[str, float]:
    """MBD's geometry-optimisation symmetry metrics (see the module docstring).

    Args:
        spg_pred, spg_ref: space-group numbers of the ML- and DFT-relaxed structures, NaN = unknown.
        n_ops_pred, n_ops_ref: numbers of symmetry operations, same index.

    Returns:
        dict with the keys of :data:`SYMMETRY_KEYS` (fractions NaN without valid rows).
    """
    spg_diff = spg_pred.astype(float) - spg_ref.astype(float)
    ops_diff = n_ops_pred.astype(float) - n_ops_ref.astype(float)
    valid = spg_diff.notna()
    n_valid = int(valid.sum())
    changed = (spg_diff != 0) & valid

    def fraction(mask: pd.Series) -> float:
        return float(mask.sum() / n_valid) if n_valid else math.nan

    return {
        "n_sym_ops_mae": float(ops_diff[valid].abs().mean()) if n_valid else math.nan,
        "symmetry_decrease": fraction((ops_diff < 0) & changed),
        "symmetry_match": fraction(~changed & valid),
        "symmetry_increase": fraction((ops_diff > 0) & changed),
        "n_structures": n_valid,
    }


def symmetry_metrics_from_rows(df: pd.DataFrame, symprecs: tuple[float, ...] = SYMPRECS) -> dict[str, float]:
    """``<metric>_<tag>`` for every symmetry precision from rows holding
    :func:`symmetry_comparison` fields (absent columns: no entries)."""
    out: dict[str, float] = {}
    for symprec in symprecs:
        tag = symprec_tag(symprec)
        cols = [f"spg_pred_{tag}", f"spg_dft_{tag}", f"n_sym_ops_pred_{tag}", f"n_sym_ops_dft_{tag}"]
        if not set(cols) <= set(df.columns):
            continue
        metrics = geo_opt_symmetry_metrics(*(pd.to_numeric(df[c], errors="coerce") for c in cols))
        out |= {f"{key}_{tag}": value for key, value in metrics.items()}
    return out
