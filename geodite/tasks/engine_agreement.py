"""Agreement of two discovery runs of the same protocol (e.g. ``--engine batched`` vs ``--engine ase``).

Per material present and ok in both: the relaxed energy difference per atom (eV/atom) and the
stable/unstable class. The offline WBM subset has no DFT hull distances, so the class uses a hull of the
subset itself: per material, the convex hull (pymatgen ``PhaseDiagram``) of the DFT energies of the
subset's materials in its chemical system plus MP's elemental references; the predicted hull distance
is that DFT hull distance plus the model's formation-energy error (Matbench Discovery's rule),
stable when ≤ 0 eV/atom. Two runs differ in class only where their energies straddle that threshold.

    python -m geodite.tasks.engine_agreement RESULTS_A RESULTS_B [--model geodite] [--json]

where ``RESULTS_*`` are ``--results-dir`` roots of the two runs.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from geodite.data import wbm as wbm_data

ENERGY_TOLERANCE = 1e-3  # eV/atom


def _rows(results_dir: str | Path, model: str) -> pd.DataFrame:
    from geodite.tasks.store import ResultStore

    rows = ResultStore(Path(results_dir) / "discovery" / model / "store").read_rows()
    return pd.DataFrame(rows.values()).set_index("key")


def subset_hull_distances(records: list[dict], refs: dict[str, float]) -> dict[str, float]:
    """DFT hull distance (eV/atom) of each material against the subset's own materials in its chemical system
    plus the elemental references (uncorrected energies, as the offline formation energies)."""
    from pymatgen.analysis.phase_diagram import PDEntry, PhaseDiagram
    from pymatgen.core import Composition, Structure

    entries = {r["material_id"]: PDEntry(Structure.from_dict(r["structure"]).composition, float(r["energy"]),
                                         name=r["material_id"]) for r in records}
    out = {}
    for mid, entry in entries.items():
        elements = {str(e) for e in entry.composition.elements}
        system = [e for e in entries.values() if {str(x) for x in e.composition.elements} <= elements]
        system += [PDEntry(Composition(el), refs[el]) for el in elements]
        out[mid] = float(PhaseDiagram(system).get_e_above_hull(entry, allow_negative=True))
    return out


def agreement(a: pd.DataFrame, b: pd.DataFrame, hull: dict[str, float]) -> dict:
    """Energy and class agreement of runs ``a`` and ``b`` (rows by material id) on the materials ok in both."""
    both = a.index[(a["status"] == "ok")].intersection(b.index[b["status"] == "ok"])
    a, b = a.loc[both], b.loc[both]
    diff = (a["energy_pred"] - b["energy_pred"]).abs() / a["n_atoms"]
    dft_hull = pd.Series(hull).reindex(both)
    stable_a = dft_hull + a["e_form_pred"] - a["e_form_dft"] <= 0
    stable_b = dft_hull + b["e_form_pred"] - b["e_form_dft"] <= 0
    within = diff <= ENERGY_TOLERANCE
    outliers = pd.DataFrame({
        "n_atoms": a["n_atoms"], "diff_meV_per_atom": 1e3 * diff, "steps_a": a["n_steps"], "steps_b": b["n_steps"],
        "converged_a": a["converged"], "converged_b": b["converged"], "volume_ratio_a": a["volume_ratio"],
        "volume_ratio_b": b["volume_ratio"], "same_class": stable_a == stable_b,
    })[~within | (stable_a != stable_b)]
    return {
        "n_both": int(len(both)),
        "n_within_1meV": int(within.sum()),
        "fraction_within_1meV": float(within.mean()),
        "fraction_same_class": float((stable_a == stable_b).mean()),
        "n_stable_a": int(stable_a.sum()),
        "n_same_steps": int((a["n_steps"] == b["n_steps"]).sum()),
        "median_diff_eV_per_atom": float(diff.median()),
        "max_diff_eV_per_atom": float(diff.max()),
        "outliers": outliers.reset_index().to_dict(orient="records"),
    }


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results_a")
    parser.add_argument("results_b")
    parser.add_argument("--model", default="geodite")
    args = parser.parse_args(argv)
    a, b = _rows(args.results_a, args.model), _rows(args.results_b, args.model)
    records = [r for r in wbm_data.load_offline_wbm() if r["material_id"] in set(a.index) & set(b.index)]
    hull = subset_hull_distances(records, wbm_data.mp_elemental_ref_energies())
    print(json.dumps(agreement(a, b, hull), indent=1, default=str))


if __name__ == "__main__":
    main()
