"""Homonuclear dimer curves: smoothness (self-consistency) and accuracy against PBE (docs/benchmarks.md §3).

Protocols:
* ``mbd`` (Matbench Discovery): Z = 1…92, r = geomspace(0.1, 6.0, 119) Å, two atoms in a 50 Å periodic
  cube; metrics on the window [0.9 r_cov, min(3.1 r_vdW, r_max)] with ≥ 5 points; scores average over
  87 elements (Po, At, Rn, Fr, Ra skipped).
* ``arena`` (MLIP Arena): r from 0.9 r_cov to 3.1 r_vdW (6 Å where r_vdW is unknown) every 0.01 Å,
  non-periodic.
One item per element. ``run_batch`` evaluates every dimer of every element of a chunk in one
``ctx.evaluate`` call (batched forward passes of up to the Evaluator's ``atoms_per_call`` atoms for Geodite,
point by point through the ASE calculator for other models).
"""

from __future__ import annotations

import gzip
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd
from ase import Atoms
from ase.data import atomic_numbers, chemical_symbols, covalent_radii, vdw_alvarez

from geodite.metrics import diatomics as m
from geodite.metrics.diatomics_scores import MBD_SKIPPED, curve_metrics, diatomics_summary
from geodite.submission import write_diatomics
from geodite.tasks.contract import PROTOCOL, UNSUPPORTED, failed_row

MBD_BOX = 50.0  # Å


@lru_cache(maxsize=1)
def pbe_reference() -> dict:
    """MBD's VASP PBE dimer curves, H…U: {"X-X": {distances Å, energies eV, forces [pt][atom][xyz] eV/Å}}."""
    path = resources.files("geodite") / "data" / "files" / "diatomics-dft.json.gz"
    with gzip.open(str(path), "rt") as handle:
        return json.load(handle)["PBE"]


def distances_for(symbol: str, protocol: str) -> np.ndarray:
    """Sampled separations (Å) of a protocol."""
    if protocol == "mbd":
        return np.geomspace(0.1, 6.0, 119)
    z = atomic_numbers[symbol]
    r_vdw = vdw_alvarez.vdw_radii[z]
    r_max = 3.1 * r_vdw if np.isfinite(r_vdw) else 6.0
    return np.arange(0.9 * covalent_radii[z], r_max + 1e-9, 0.01)


def dimer(symbol: str, r: float, protocol: str) -> Atoms:
    """Atom 0 at the box centre, atom 1 at +x·r (the reference file's layout)."""
    if protocol == "mbd":
        centre = np.full(3, MBD_BOX / 2)
        return Atoms(f"{symbol}2", positions=[centre, centre + [r, 0, 0]], cell=[MBD_BOX] * 3, pbc=True)
    return Atoms(f"{symbol}2", positions=[[0, 0, 0], [r, 0, 0]], pbc=False)


def curve_arrays(predictions: list, r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Energies (eV) and Cartesian forces [n, 2, 3] (eV/Å) of the Predictions of a curve at separations ``r``
    (Å); the first error raises, naming its separation."""
    failed = [(x, p.error) for x, p in zip(r, predictions) if not p.ok]
    if failed:
        x, error = failed[0]
        raise ValueError(f"dimer at r = {x:.3f} Å: {error.split(': ', 1)[-1]}")
    return np.array([p.energy for p in predictions]), np.stack([p.forces for p in predictions])


def unsupported_row(key: str, symbol: str, protocol: str) -> dict:
    """The row of an element the model has no embedding or isolated-atom energy for."""
    scored = (" (MBD does not score it either)" if symbol in MBD_SKIPPED else " (it counts as not run in the CDS)"
              ) if protocol == "mbd" else ""
    return {"key": key, "status": UNSUPPORTED, "element": symbol, "Z": atomic_numbers[symbol],
            "error": f"{symbol} is outside the model's elements{scored}"}


@dataclass
class DiatomicsTask:
    """One item per element: a dimer curve and its metrics."""

    protocol: str = field(default="mbd", metadata=PROTOCOL)
    elements: list[str] = field(default_factory=list)
    name: str = "diatomics"

    def __post_init__(self) -> None:
        if self.protocol not in ("mbd", "arena"):
            raise ValueError(f"unknown protocol {self.protocol!r}: choose 'mbd' or 'arena'")
        unknown = [s for s in self.elements if s not in atomic_numbers]
        if unknown:
            raise ValueError(f"unknown element(s): {', '.join(unknown)}")

    def items(self) -> list[dict]:
        symbols = self.elements or [chemical_symbols[z] for z in range(1, 93)]
        return [{"key": s, "symbol": s} for s in symbols]

    def run_batch(self, items: list[dict], ctx) -> Iterator[dict]:
        """Every dimer of every element of ``items`` in one ``ctx.evaluate`` call, then one row per element; an
        element outside a Geodite model's elements is not evaluated: its row has status "unsupported" (not a
        failure of the model; in the MBD score it counts as an element that did not run, as MBD counts it).

        Each row's ``item_wall_s`` (s) is its share of that call, in proportion to its points, plus its own
        scoring time: the run time the CDS sums is then the same for the same rows however they were chunked
        (the call's whole time is not charged to the chunk's first element)."""
        supported = ctx.evaluator.supported if ctx.evaluator is not None else None
        outside = [item for item in items if supported is not None and not supported[atomic_numbers[item["symbol"]]]]
        for item in outside:
            yield unsupported_row(item["key"], item["symbol"], self.protocol)
        items = [item for item in items if item not in outside]
        curves = {item["key"]: distances_for(item["symbol"], self.protocol) for item in items}
        structures = [dimer(item["symbol"], x, self.protocol) for item in items for x in curves[item["key"]]]
        started = time.perf_counter()
        predictions = ctx.evaluate(structures, compute_stress=False)
        per_point_s = (time.perf_counter() - started) / max(1, len(structures))
        start = 0
        for item in items:
            r = curves[item["key"]]
            scoring = time.perf_counter()
            try:
                row = self.row(item["symbol"], r, *curve_arrays(predictions[start : start + len(r)], r))
            except Exception as exc:  # noqa: BLE001 - one element's curve must not stop the others
                row = failed_row(item["key"], exc)
            start += len(r)
            yield row | {"key": item["key"], "item_wall_s": per_point_s * len(r) + time.perf_counter() - scoring}

    def row(self, symbol: str, r: np.ndarray, energies: np.ndarray, forces: np.ndarray) -> dict:
        """The row of one element's curve: r (Å), energies (eV), Cartesian forces [n, 2, 3] (eV/Å)."""
        bond_force = m.bond_force_from_cartesian(forces)
        lo, hi = m.evaluation_window(symbol, r.max())
        window = (r >= lo) & (r <= hi)
        if window.sum() < 5:
            raise ValueError(f"fewer than 5 points in the evaluation window [{lo:.2f}, {hi:.2f}] Å")
        row = {"element": symbol, "Z": atomic_numbers[symbol], "n_points": int(window.sum())}
        row |= curve_metrics(symbol, r[window], energies[window], bond_force[window], forces[window],
                             pbe_reference().get(f"{symbol}-{symbol}"))
        row |= {"distances": r.tolist(), "energies": energies.tolist(), "bond_forces": bond_force.tolist(),
                "forces": np.asarray(forces, float).tolist()}  # Cartesian: the submission file's (MBD scores them)
        return row

    def metrics(self, df: pd.DataFrame, model: str) -> dict:
        return diatomics_summary(df, self.protocol, pbe_reference())

    def submission(self, df: pd.DataFrame, summary: dict, folder: Path, model: str,
                   date: str) -> tuple[list[Path], dict]:
        """Matbench Discovery's dimer-curve file (:func:`geodite.submission.write_diatomics`)."""
        return write_diatomics(df, summary, folder, model, date)

    def plots(self, df: pd.DataFrame, out_dir: Path, model: str) -> list[Path]:
        return plot_curves(df, out_dir, model)


def plot_curves(df: pd.DataFrame, out_dir: Path, model: str) -> list[Path]:
    """A grid of model curves against PBE (energies zeroed at their far end), and a zoom on the wall."""
    import matplotlib.pyplot as plt

    paths = []
    for zoom in (False, True):
        fig = curves_figure(df, model, zoom)
        path = out_dir / ("diatomics-wall.png" if zoom else "diatomics-curves.png")
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)
    return paths


def curves_figure(df: pd.DataFrame, model: str, zoom: bool):
    """The figure of :func:`plot_curves` (a matplotlib Figure): one panel per element that ran, the title
    wrapped to the figure's width so that a grid of one or two panels does not clip it."""
    import textwrap

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = df[(df["status"] == "ok")] if "status" in df else df
    ok = ok.sort_values("Z")
    reference = pbe_reference()
    n = len(ok)
    cols = min(10, max(1, n))
    rows = max(1, -(-n // cols))
    width = max(3.0, 2.0 * cols)
    fig, axes = plt.subplots(rows, cols, figsize=(width, 1.7 * rows + 0.6), squeeze=False)
    for ax in axes.flat[n:]:
        ax.axis("off")
    for ax, (_, row) in zip(axes.flat, ok.iterrows()):
        r, e = np.asarray(row["distances"]), np.asarray(row["energies"])
        ax.plot(r, e - e[-1], lw=1, label=model)
        ref = reference.get(f"{row['element']}-{row['element']}")
        if ref is not None:
            r_ref, e_ref = np.asarray(ref["distances"]), np.asarray(ref["energies"])
            ax.plot(r_ref, e_ref - e_ref[-1], "k--", lw=0.8, label="PBE")
        r_cov = covalent_radii[int(row["Z"])]
        if zoom:
            ax.set_xlim(0.1, 1.2 * r_cov)
            ax.set_yscale("symlog", linthresh=1.0)
        else:
            ax.set_xlim(0.5 * r_cov, 6.0)
            ax.set_ylim(-6, 8)
        ax.set_title(row["element"], fontsize=8, pad=2)
        ax.tick_params(labelsize=5)
    if n:
        axes.flat[0].legend(fontsize=5)
    title = (f"Homonuclear dimers: {model} (solid) vs PBE (dashed), E − E(r_max) in eV vs r in Å"
             + (" — repulsive wall" if zoom else ""))
    fig.suptitle(textwrap.fill(title, width=int(11 * width)), fontsize=9)  # ~11 characters per inch at 9 pt
    fig.tight_layout()
    return fig
