"""Errors of a model against reference energies, forces and stresses (eV, eV/Å, eV/Å³)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd
from ase import Atoms
from ase.io import read
from ase.stress import voigt_6_to_full_3x3_stress

from geodite.calculator import Evaluator, Prediction, describe
from geodite.registry import get_spec, model_label

#: where reference values may sit on an Atoms object, first match wins
_ENERGY_INFO_KEYS = ("ref_energy", "energy", "REF_energy", "dft_energy")
_FORCE_ARRAY_KEYS = ("ref_forces", "forces", "REF_forces", "dft_forces")
_STRESS_INFO_KEYS = ("ref_stress", "stress", "REF_stress", "dft_stress")


def read_structures(path: str | Path) -> list[Atoms]:
    """Every structure of an extxyz/xyz file or an ASE database (.db), with whatever references it holds."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such data file: {path}")
    if path.suffix == ".db":
        from ase.db import connect

        structures = []
        with connect(path) as db:
            for row in db.select():
                atoms = row.toatoms(add_additional_information=True)
                atoms.info.update(atoms.info.pop("key_value_pairs", {}))
                atoms.info.setdefault("id", row.id)
                structures.append(atoms)
        return structures
    return read(path, index=":")


def _as_3x3(stress) -> np.ndarray | None:
    if stress is None:
        return None
    stress = np.asarray(stress, dtype=float)
    return voigt_6_to_full_3x3_stress(stress) if stress.shape == (6,) else stress.reshape(3, 3)


def reference_values(atoms: Atoms) -> tuple[float | None, np.ndarray | None, np.ndarray | None]:
    """(energy eV, forces [N, 3] eV/Å, stress [3, 3] eV/Å³) stored with the structure; None where absent."""
    results = atoms.calc.results if atoms.calc is not None else {}
    energy = results.get("energy", next((atoms.info[k] for k in _ENERGY_INFO_KEYS if k in atoms.info), None))
    forces = results.get("forces", next((atoms.arrays[k] for k in _FORCE_ARRAY_KEYS if k in atoms.arrays), None))
    stress = results.get("stress", next((atoms.info[k] for k in _STRESS_INFO_KEYS if k in atoms.info), None))
    return (
        None if energy is None else float(energy),
        None if forces is None else np.asarray(forces, dtype=float),
        _as_3x3(stress),
    )


def error_row(index: int, atoms: Atoms, prediction: Prediction) -> dict:
    """One table row: the structure, its references, the prediction and the errors."""
    energy_ref, forces_ref, stress_ref = reference_values(atoms)
    n = len(atoms)
    row = {
        "index": index,
        "structure": describe(atoms),
        "formula": atoms.get_chemical_formula(),
        "n_atoms": n,
        "energy_ref": energy_ref,
        "energy_pred": prediction.energy,
        "energy_per_atom_error": np.nan,
        "forces_mae": np.nan,
        "forces_max_error": np.nan,
        "stress_mae": np.nan,
        "error": prediction.error,
    }
    if not prediction.ok:
        return row
    if energy_ref is not None:
        row["energy_per_atom_error"] = (prediction.energy - energy_ref) / n
    if forces_ref is not None:
        row["_force_ref_abs_sum"] = float(np.abs(forces_ref).sum())
        diff = np.abs(prediction.forces - forces_ref)
        row["forces_mae"] = float(diff.mean())
        row["forces_max_error"] = float(diff.max())
        row["_force_sq"] = float((diff**2).sum())
        row["_force_count"] = diff.size
    if stress_ref is not None and atoms.pbc.all():
        diff = np.abs(prediction.stress - stress_ref)
        row["stress_mae"] = float(diff.mean())
        row["_stress_sq"] = float((diff**2).mean())
    return row


def summarise(table: pd.DataFrame) -> dict:
    """MAE/RMSE of energy per atom (eV/atom), of force components (eV/Å) and of stress components (eV/Å³).

    ``max_abs_energy_error`` is per atom (eV/atom); ``max_abs_force_error`` per component (eV/Å);
    ``energy_per_atom_mean_error`` = mean(E_pred − E_ref)/N (eV/atom, signed: shows convention offsets);
    ``zero_forces_mae`` = mean |F_ref| over the same components, the force MAE of predicting zero forces.

    Force errors are pooled over all components of all atoms; stress over the 9 components of each periodic
    structure with a reference.
    """
    ok = table[table["error"].isna()]
    e = ok["energy_per_atom_error"].dropna()
    summary = {
        "n_structures": int(len(table)),
        "n_failed": int(table["error"].notna().sum()),
        "energy_per_atom_mae": float(e.abs().mean()) if len(e) else None,
        "energy_per_atom_rmse": float(np.sqrt((e**2).mean())) if len(e) else None,
        "energy_per_atom_mean_error": float(e.mean()) if len(e) else None,
        "max_abs_energy_error": float(e.abs().max()) if len(e) else None,
    }
    if "_force_count" in ok and ok["_force_count"].notna().any():
        f = ok.dropna(subset=["_force_count"])
        count = f["_force_count"].sum()
        summary["forces_mae"] = float((f["forces_mae"] * f["_force_count"]).sum() / count)
        summary["forces_rmse"] = float(np.sqrt(f["_force_sq"].sum() / count))
        summary["max_abs_force_error"] = float(f["forces_max_error"].max())
        summary["zero_forces_mae"] = float(f["_force_ref_abs_sum"].sum() / count)
    else:
        summary |= {"forces_mae": None, "forces_rmse": None, "max_abs_force_error": None, "zero_forces_mae": None}
    if "_stress_sq" in ok and ok["_stress_sq"].notna().any():
        s = ok.dropna(subset=["_stress_sq"])
        summary["stress_mae"] = float(s["stress_mae"].mean())
        summary["stress_rmse"] = float(np.sqrt(s["_stress_sq"].mean()))
    else:
        summary |= {"stress_mae": None, "stress_rmse": None}
    return summary


def evaluate_structures(
    evaluator: Evaluator,
    structures: Sequence[Atoms],
    chunk_size: int = 32,
    progress: Callable[[int], None] | None = None,
) -> pd.DataFrame:
    """Per-structure table of predictions and errors; ``progress(n)`` is called after each chunk."""
    rows = []
    for start in range(0, len(structures), chunk_size):
        chunk = structures[start : start + chunk_size]
        for offset, prediction in enumerate(evaluator.evaluate(chunk)):
            rows.append(error_row(start + offset, chunk[offset], prediction))
        if progress is not None:
            progress(len(chunk))
    return pd.DataFrame(rows)


def public_columns(table: pd.DataFrame) -> pd.DataFrame:
    """The table without the bookkeeping columns used for pooled RMSEs."""
    return table[[c for c in table.columns if not c.startswith("_")]]


class CalculatorEvaluator:
    """The Evaluator interface over any ASE calculator (the peers): one structure at a time."""

    def __init__(self, calculator):
        self.calculator = calculator

    def evaluate(self, structures: Sequence[Atoms]) -> list[Prediction]:
        """One Prediction per structure; a structure the calculator fails on gets its error, the rest go on."""
        predictions = []
        for index, atoms in enumerate(structures):
            work = atoms.copy()
            work.calc = self.calculator
            try:
                energy, forces = work.get_potential_energy(), work.get_forces()
                stress = work.get_stress(voigt=False) if atoms.pbc.all() else None
            except Exception as error:  # peers raise arbitrary types; one bad structure must not end the run
                predictions.append(Prediction(error=f"{describe(atoms, index)}: {type(error).__name__}: {error}"))
                continue
            predictions.append(Prediction(energy=float(energy), forces=np.asarray(forces, dtype=float),
                                          stress=None if stress is None else np.asarray(stress, dtype=float)))
        return predictions


def make_evaluator(model: str, device: str = "cpu", dtype: str = "float64") -> Evaluator | CalculatorEvaluator:
    """Batched Evaluator for a Geodite (registry name or checkpoint path), else the model's ASE calculator."""
    spec = get_spec(model)
    if spec.checkpoint is not None:
        return Evaluator(spec.checkpoint, device=device, dtype=dtype)
    return CalculatorEvaluator(spec.make_calculator(device=device, dtype=dtype))


def summary_row(summary: dict) -> dict:
    """One model's ``geodite eval`` summary as a row of the comparison table, in meV units."""
    def milli(key: str) -> float:
        return np.nan if summary.get(key) is None else 1000 * summary[key]

    return {
        "model": model_label(summary["model"]),
        "energy convention": summary.get("energy_convention", ""),
        "structures": summary["n_structures"],
        "failed": summary["n_failed"],
        "energy MAE (meV/atom)": milli("energy_per_atom_mae"),
        "mean energy error (meV/atom)": milli("energy_per_atom_mean_error"),
        "force MAE (meV/Å)": milli("forces_mae"),
        "stress MAE (meV/Å³)": milli("stress_mae"),
        "zero-force MAE (meV/Å)": milli("zero_forces_mae"),
        "s/structure": summary["wall_s"] / max(1, summary["n_structures"]),
    }


def comparison_table(results_dir: str | Path, data_stem: str) -> pd.DataFrame:
    """Every model evaluated on one data file (``results_dir/eval/*/<data_stem>.summary.json``), one row each,
    sorted by force MAE. Rows may cover different numbers of structures (see the ``structures`` column)."""
    paths = sorted(Path(results_dir, "eval").glob(f"*/{data_stem}.summary.json"))
    rows = [summary_row(json.loads(path.read_text())) for path in paths]
    table = pd.DataFrame(rows)
    return table.sort_values("force MAE (meV/Å)", ignore_index=True) if len(table) else table


def write_comparison(results_dir: str | Path, data_stem: str) -> tuple[Path, int]:
    """Write ``results_dir/eval/<data_stem>.md`` and ``.csv`` (the comparison table); returns (md path, rows)."""
    from geodite.tasks.results import table_markdown

    table = comparison_table(results_dir, data_stem)
    out = Path(results_dir, "eval", data_stem)
    table.to_csv(out.with_suffix(".csv"), index=False)
    title = f"# Errors vs the references in {data_stem} (`geodite eval`)\n\n"
    out.with_suffix(".md").write_text(title + table_markdown(table))
    return out.with_suffix(".md"), len(table)
