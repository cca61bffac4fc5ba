"""Figures of a `geodite eval` run: energy and force parity (matplotlib PNG) and the per-element force error on a
periodic table (pymatviz, an interactive plotly HTML page with plotly.js embedded, so it opens offline).

Inputs are the tables of :mod:`geodite.evaluate`: the per-structure table (its ``energy_ref``/``energy_pred``/
``n_atoms`` columns and the ``_forces`` bookkeeping column of (reference, predicted) components) and
:func:`geodite.evaluate.element_errors`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd


def parity_points(table: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(E_ref, E_pred) per atom (eV/atom) of the frames with both, and (F_ref, F_pred) components (eV/Å) of every
    frame with reference forces, concatenated."""
    ok = table.dropna(subset=["energy_ref", "energy_pred"])
    n = ok["n_atoms"].to_numpy(float)
    e_ref, e_pred = ok["energy_ref"].to_numpy(float) / n, ok["energy_pred"].to_numpy(float) / n
    pairs = [p for p in table["_forces"].dropna()] if "_forces" in table else []
    f_ref = np.concatenate([p[0] for p in pairs]) if pairs else np.zeros(0)
    f_pred = np.concatenate([p[1] for p in pairs]) if pairs else np.zeros(0)
    return e_ref, e_pred, f_ref, f_pred


def parity_figure(table: pd.DataFrame, label: str):
    """Two parity panels (a matplotlib Figure): energy per atom (scatter) and force components (hexbin, log
    counts), each with y = x and its MAE in the title."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    e_ref, e_pred, f_ref, f_pred = parity_points(table)
    fig, (ax_e, ax_f) = plt.subplots(1, 2, figsize=(9, 4.3), dpi=120)
    for ax, ref, pred, unit, name in ((ax_e, e_ref, e_pred, "eV/atom", "energy"),
                                      (ax_f, f_ref, f_pred, "eV/Å", "force component")):
        if len(ref):
            if name == "energy":
                ax.scatter(ref, pred, s=6, alpha=0.5)
            else:
                ax.hexbin(ref, pred, gridsize=80, bins="log", mincnt=1)
            lo, hi = float(np.min(np.r_[ref, pred])), float(np.max(np.r_[ref, pred]))
            ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
            ax.set_title(f"{name}: {len(ref)} {'frames' if name == 'energy' else 'components'}, MAE {1000 * np.mean(np.abs(pred - ref)):.1f} m{unit}", fontsize=9)
        ax.set(xlabel=f"reference {name} [{unit}]", ylabel=f"{label} {name} [{unit}]")
    fig.tight_layout()
    return fig


def element_heatmap(elements: pd.DataFrame, label: str):
    """A pymatviz periodic table (plotly Figure) of the force MAE per element (meV/Å), hovering atoms and the
    zero-force MAE of the same atoms."""
    import pymatviz

    values = dict(zip(elements["element"], 1000 * elements["forces_mae"]))
    hover = {row.element: f"{row.atoms} atoms, zero forces {1000 * row.zero_forces_mae:.0f} meV/Å"
             for row in elements.itertuples()}
    fig = pymatviz.ptable_heatmap(values, hover_data=hover, fmt=".0f", colorscale="viridis",
                                  colorbar={"title": "force MAE (meV/Å)"})
    fig.update_layout(title=f"{label}: force MAE per element (meV/Å)")
    return fig


def write_figures(table: pd.DataFrame, elements: pd.DataFrame, out_dir: Path, key: str, label: str) -> list[Path]:
    """Write ``<key>.parity.png`` and, where any element has forces, ``<key>.elements.html`` into ``out_dir``;
    returns the paths written. Nothing is written for a table without a single prediction."""
    import matplotlib.pyplot as plt

    if "energy_pred" not in table or table["energy_pred"].notna().sum() == 0:
        return []
    paths = []
    fig = parity_figure(table, label)
    paths.append(out_dir / f"{key}.parity.png")
    fig.savefig(paths[-1])
    plt.close(fig)
    if len(elements):
        paths.append(out_dir / f"{key}.elements.html")
        element_heatmap(elements, label).write_html(paths[-1], include_plotlyjs=True)
    return paths
