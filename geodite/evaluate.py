"""Errors of a model against reference energies, forces and stresses (eV, eV/Å, eV/Å³)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd
from ase import Atoms
from ase.calculators.calculator import Calculator
from ase.db import connect
from ase.io import iread
from ase.neighborlist import neighbor_list
from ase.stress import voigt_6_to_full_3x3_stress

from geodite.calculator import Prediction, describe, predict
from geodite.data.downloads import file_digest
from geodite.tasks.results import table_markdown

#: where reference values may sit on an Atoms object, first match wins
_ENERGY_INFO_KEYS = ("ref_energy", "energy", "REF_energy", "dft_energy")
_FORCE_ARRAY_KEYS = ("ref_forces", "forces", "REF_forces", "dft_forces")
_STRESS_INFO_KEYS = ("ref_stress", "stress", "REF_stress", "dft_stress")


#: eV/Å: a frame whose largest reference force (per-atom norm) is below this counts as relaxed (issue #27's
#: "relaxed frames" of mptrj-random-1k: a model should predict near-zero forces there)
RELAXED_MAX_FORCE = 0.1

#: an element's force error is compared with zero forces only where it has at least this many atoms
MIN_ELEMENT_ATOMS = 100

#: Å: atoms closer than this are not a physical structure (the shortest bond, in H2, is 0.74 Å); such a frame is
#: a failed row, named, rather than an error of 1e5 eV/atom in the MAE
MIN_PLAUSIBLE_DISTANCE = 0.5


class DataFileError(ValueError):
    """A data file with nothing to evaluate: missing, a directory, empty, or not one readable structure."""


@dataclass(frozen=True)
class UnreadableFrame:
    """A frame of a data file that could not be parsed, in its place among the structures."""

    index: int  # 0-based position in the file
    error: str  # names the file and the frame


def read_structures(path: str | Path) -> list[Atoms | UnreadableFrame]:
    """Every frame of an extxyz/xyz/... file or row of an ASE database (.db), with whatever references it holds.

    A frame that cannot be parsed becomes an :class:`UnreadableFrame` in its place and reading goes on
    with the next frame; a file cut short ends with one for its partial last frame. When the frame after
    a bad one cannot be reached either (a damaged index, as in a cut .traj), reading stops there and the
    bad frame's error says so. Raises :class:`DataFileError` when there is nothing to evaluate.
    """
    path = Path(path)
    if not path.exists():
        raise DataFileError(f"no such data file: {path}")
    if path.is_dir():
        raise DataFileError(f"{path} is a directory, not a data file (extxyz, xyz, traj or ASE .db)")
    if path.stat().st_size == 0:
        raise DataFileError(f"data file {path} is empty")
    frames = _read_database(path) if path.suffix == ".db" else _read_frames(path)
    if not any(isinstance(frame, Atoms) for frame in frames):
        reason = frames[0].error if frames else "it holds no structure"
        raise DataFileError(f"no structure could be read from {path}: {reason}")
    return frames


def _read_frames(path: Path) -> list[Atoms | UnreadableFrame]:
    """Frames of a file ASE reads, going past a frame that fails to parse (see :func:`read_structures`)."""
    frames: list[Atoms | UnreadableFrame] = []
    while True:
        start = len(frames)
        try:
            for atoms in iread(path, index=slice(start, None)):
                frames.append(atoms)
            return frames
        except Exception as error:  # noqa: BLE001 - ASE's readers raise many types; the frame is named
            if not frames:
                raise DataFileError(f"cannot read {path}: {type(error).__name__}: {error}".strip()) from None
            message = f"{path.name} frame {len(frames)}: {type(error).__name__}: {error}".strip()
            if frames and isinstance(frames[-1], UnreadableFrame) and start == len(frames):
                last = frames[-1]  # the bad frame's successor cannot be reached either: stop
                frames[-1] = UnreadableFrame(last.index, f"{last.error}; reading stopped here (later frames, "
                                                         f"if any, not read: {type(error).__name__})")
                return frames
            frames.append(UnreadableFrame(len(frames), message))


def _read_database(path: Path) -> list[Atoms | UnreadableFrame]:
    """Rows of an ASE database; a row that cannot be turned into Atoms becomes an UnreadableFrame."""
    frames: list[Atoms | UnreadableFrame] = []
    try:
        with connect(path) as db:
            for index, row in enumerate(db.select()):
                try:
                    atoms = row.toatoms(add_additional_information=True)
                except Exception as error:  # noqa: BLE001 - a damaged row must not hide the others
                    frames.append(UnreadableFrame(index, f"{path.name} row {row.id}: {type(error).__name__}: {error}"))
                    continue
                atoms.info.update(atoms.info.pop("key_value_pairs", {}))
                atoms.info.setdefault("id", row.id)
                frames.append(atoms)
    except Exception as error:  # noqa: BLE001 - sqlite/JSON errors of a damaged database
        frames.append(UnreadableFrame(len(frames), f"{path.name} row {len(frames) + 1}: {type(error).__name__}: "
                                                   f"{error}; reading stopped here"))
    return frames


def _as_3x3(stress) -> np.ndarray | None:
    if stress is None:
        return None
    stress = np.asarray(stress, dtype=float)
    return voigt_6_to_full_3x3_stress(stress) if stress.shape == (6,) else stress.reshape(3, 3)


def implausible_contact(atoms: Atoms, min_distance: float = MIN_PLAUSIBLE_DISTANCE) -> str | None:
    """Why ``atoms`` is not a physical structure (two atoms closer than ``min_distance`` Å), or None."""
    if len(atoms) < 2 or not np.isfinite(atoms.positions).all():
        return None
    i, j, d = neighbor_list("ijd", atoms, min_distance)
    if not len(d):
        return None
    k = int(np.argmin(d))
    return (f"atoms {i[k]} and {j[k]} are {d[k]:.3g} Å apart (< {min_distance} Å): not a physical structure, "
            "left out of the errors")


def nonfinite_references(atoms: Atoms) -> list[str]:
    """The references stored with ``atoms`` that are present but not finite (NaN, inf): "energy", "forces",
    "stress"; such a reference is left out of its error, and the frame is reported."""
    return [name for name, value in zip(("energy", "forces", "stress"), reference_values(atoms, finite_only=False))
            if value is not None and not np.isfinite(value).all()]


def reference_values(atoms: Atoms, finite_only: bool = True) -> tuple[float | None, np.ndarray | None, np.ndarray | None]:
    """(energy eV, forces [N, 3] eV/Å, stress [3, 3] eV/Å³) stored with the structure; None where absent and,
    with ``finite_only``, where a value is not finite (see :func:`nonfinite_references`)."""
    results = atoms.calc.results if atoms.calc is not None else {}
    energy = results.get("energy", next((atoms.info[k] for k in _ENERGY_INFO_KEYS if k in atoms.info), None))
    forces = results.get("forces", next((atoms.arrays[k] for k in _FORCE_ARRAY_KEYS if k in atoms.arrays), None))
    stress = results.get("stress", next((atoms.info[k] for k in _STRESS_INFO_KEYS if k in atoms.info), None))
    values = (
        None if energy is None else float(energy),
        None if forces is None else np.asarray(forces, dtype=float),
        _as_3x3(stress),
    )
    if finite_only:
        return tuple(v if v is None or np.isfinite(v).all() else None for v in values)  # type: ignore[return-value]
    return values


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
        "nonfinite_reference": ", ".join(nonfinite_references(atoms)) or None,
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
        row["_max_force_ref"] = float(np.linalg.norm(forces_ref, axis=1).max())
        row["_element_sums"] = element_force_sums(atoms.get_chemical_symbols(), diff, np.abs(forces_ref))
        row["_forces"] = (np.asarray(forces_ref, float).ravel(), np.asarray(prediction.forces, float).ravel())
    if stress_ref is not None and atoms.pbc.all():
        diff = np.abs(prediction.stress - stress_ref)
        row["stress_mae"] = float(diff.mean())
        row["_stress_sq"] = float((diff**2).mean())
    return row


def element_force_sums(symbols: Sequence[str], abs_error: np.ndarray, abs_reference: np.ndarray) -> dict:
    """Per element of one frame: (Σ|F_pred − F_ref|, Σ|F_ref|, atoms), sums over the atoms' three components
    (eV/Å); ``abs_error`` and ``abs_reference`` are [N, 3]."""
    symbols = np.asarray(symbols)
    sums: dict[str, tuple[float, float, int]] = {}
    for symbol in np.unique(symbols):
        mask = symbols == symbol
        sums[str(symbol)] = (float(abs_error[mask].sum()), float(abs_reference[mask].sum()), int(mask.sum()))
    return sums


def element_errors(table: pd.DataFrame) -> pd.DataFrame:
    """Force MAE per element over the evaluated frames, beside the MAE of predicting zero forces on the same
    atoms: columns ``element``, ``atoms``, ``forces_mae`` and ``zero_forces_mae`` (eV/Å, means over the
    atoms' components: Σ|ΔF| / 3n and Σ|F_ref| / 3n), ``worse_than_zero`` (forces_mae > zero_forces_mae),
    sorted by force MAE, largest first."""
    totals: dict[str, np.ndarray] = {}
    for sums in table["_element_sums"].dropna() if "_element_sums" in table else []:
        for symbol, values in sums.items():
            totals[symbol] = totals.get(symbol, np.zeros(3)) + np.asarray(values, dtype=float)
    rows = [{"element": symbol, "atoms": int(n), "forces_mae": error / (3 * n), "zero_forces_mae": zero / (3 * n)}
            for symbol, (error, zero, n) in totals.items()]
    frame = pd.DataFrame(rows, columns=["element", "atoms", "forces_mae", "zero_forces_mae"])
    frame["worse_than_zero"] = frame["forces_mae"] > frame["zero_forces_mae"]
    return frame.sort_values("forces_mae", ascending=False, ignore_index=True)


def summarise(table: pd.DataFrame) -> dict:
    """MAE/RMSE of energy per atom (eV/atom), of force components (eV/Å) and of stress components (eV/Å³).

    ``max_abs_energy_error`` is per atom (eV/atom); ``max_abs_force_error`` per component (eV/Å);
    ``energy_per_atom_mean_error`` = mean(E_pred − E_ref)/N (eV/atom, signed: shows convention offsets);
    ``zero_forces_mae`` = mean |F_ref| over the same components, the force MAE of predicting zero forces;
    ``relaxed_forces_mae`` and ``relaxed_zero_forces_mae`` the same over the ``n_relaxed`` frames whose largest
    reference force is below :data:`RELAXED_MAX_FORCE`; ``elements_worse_than_zero``: the elements with at
    least :data:`MIN_ELEMENT_ATOMS` atoms whose force MAE exceeds zero forces' (:func:`element_errors`).

    Force errors are pooled over all components of all atoms; stress over the 9 components of each periodic
    structure with a reference.
    """
    ok = table[table["error"].isna()]
    e = ok["energy_per_atom_error"].dropna()
    summary = {
        "n_structures": int(len(table)),
        "n_failed": int(table["error"].notna().sum()),
        "n_nonfinite_reference": int(table["nonfinite_reference"].notna().sum()) if "nonfinite_reference" in table
        else 0,
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
        relaxed = f[f["_max_force_ref"] < RELAXED_MAX_FORCE]
        relaxed_count = relaxed["_force_count"].sum()
        summary["n_relaxed"] = int(len(relaxed))
        summary["relaxed_forces_mae"] = (float((relaxed["forces_mae"] * relaxed["_force_count"]).sum()
                                               / relaxed_count) if len(relaxed) else None)
        summary["relaxed_zero_forces_mae"] = (float(relaxed["_force_ref_abs_sum"].sum() / relaxed_count)
                                              if len(relaxed) else None)
        elements = element_errors(f)
        summary["elements_worse_than_zero"] = sorted(
            elements[elements["worse_than_zero"] & (elements["atoms"] >= MIN_ELEMENT_ATOMS)]["element"])
    else:
        summary |= {"forces_mae": None, "forces_rmse": None, "max_abs_force_error": None, "zero_forces_mae": None,
                    "n_relaxed": 0, "relaxed_forces_mae": None, "relaxed_zero_forces_mae": None,
                    "elements_worse_than_zero": []}
    if "_stress_sq" in ok and ok["_stress_sq"].notna().any():
        s = ok.dropna(subset=["_stress_sq"])
        summary["stress_mae"] = float(s["stress_mae"].mean())
        summary["stress_rmse"] = float(np.sqrt(s["_stress_sq"].mean()))
    else:
        summary |= {"stress_mae": None, "stress_rmse": None}
    return summary


def evaluate_structures(
    calculator: Calculator,
    structures: Sequence[Atoms | UnreadableFrame],
    chunk_size: int = 32,
    progress: Callable[[int], None] | None = None,
) -> pd.DataFrame:
    """Per-structure table of ``calculator``'s predictions and errors (batched for Geodite, see
    :func:`geodite.calculator.predict`), an unreadable frame as a failed row in its place; ``progress(n)``
    is called after each chunk."""
    rows = []
    for start in range(0, len(structures), chunk_size):
        chunk = structures[start : start + chunk_size]
        refused = {offset: implausible_contact(item) for offset, item in enumerate(chunk) if isinstance(item, Atoms)}
        readable = [item for offset, item in enumerate(chunk) if isinstance(item, Atoms) and not refused[offset]]
        predictions = iter(predict(calculator, readable) if readable else [])
        for offset, item in enumerate(chunk):
            if isinstance(item, UnreadableFrame):
                rows.append(unreadable_row(start + offset, item))
            elif refused[offset]:
                rows.append(error_row(start + offset, item, Prediction(
                    error=f"{describe(item, start + offset)}: {refused[offset]}")))
            else:
                rows.append(error_row(start + offset, item, next(predictions)))
        if progress is not None:
            progress(len(chunk))
    return pd.DataFrame(rows)


def unreadable_row(index: int, frame: UnreadableFrame) -> dict:
    """The table row of a frame that could not be read: no reference, no prediction, its read error."""
    return {"index": index, "structure": f"frame {frame.index} (unreadable)", "formula": "", "n_atoms": 0,
            "energy_ref": np.nan, "energy_pred": np.nan, "energy_per_atom_error": np.nan, "forces_mae": np.nan,
            "forces_max_error": np.nan, "stress_mae": np.nan, "error": frame.error}


def public_columns(table: pd.DataFrame) -> pd.DataFrame:
    """The table without the bookkeeping columns used for pooled RMSEs."""
    return table[[c for c in table.columns if not c.startswith("_")]]


def summary_row(summary: dict, label: str) -> dict:
    """One model's ``geodite eval`` summary, filed under ``label`` (its folder, see
    :func:`~geodite.registry.model_label`), as a row of the comparison table, in meV units."""
    def milli(key: str) -> float:
        return np.nan if summary.get(key) is None else 1000 * summary[key]

    return {
        "model": label,
        "energy convention": summary.get("energy_convention", ""),
        "structures": summary["n_structures"],
        "failed": summary["n_failed"],
        "energy MAE (meV/atom)": milli("energy_per_atom_mae"),
        "mean energy error (meV/atom)": milli("energy_per_atom_mean_error"),
        "force MAE (meV/Å)": milli("forces_mae"),
        "stress MAE (meV/Å³)": milli("stress_mae"),
        "zero-force MAE (meV/Å)": milli("zero_forces_mae"),
        "relaxed frames": summary.get("n_relaxed", np.nan),
        "relaxed force MAE (meV/Å)": milli("relaxed_forces_mae"),
        "elements worse than zero forces": " ".join(summary.get("elements_worse_than_zero") or []),
        "s/structure": summary["wall_s"] / max(1, summary["n_structures"]),
    }


def data_key(path: str | Path) -> tuple[str, str]:
    """(key, sha256) of a data file. ``geodite eval`` files its results under ``<stem>-<12 hex of sha256>``,
    so files of one name with other contents (frames.extxyz in two folders) never share a table."""
    sha256 = file_digest(path)
    return f"{Path(path).stem}-{sha256[:12]}", sha256


class MixedDataError(ValueError):
    """Summaries filed under one data key that were scored on different files."""


def comparison_table(results_dir: str | Path, key: str) -> pd.DataFrame:
    """Every model evaluated on one data file (``results_dir/eval/*/<key>.summary.json``, see :func:`data_key`),
    one row each, sorted by force MAE. Rows may cover different numbers of structures (the ``structures``
    column). Raises :class:`MixedDataError` when the summaries name different file contents."""
    paths = sorted(Path(results_dir, "eval").glob(f"*/{key}.summary.json"))
    summaries = [json.loads(path.read_text()) for path in paths]
    hashes = {summary.get("data_sha256") for summary in summaries}
    if len(hashes) > 1:
        seen = ", ".join(f"{path.parent.name}: {summary.get('data')} (sha256 {summary.get('data_sha256')})"
                         for path, summary in zip(paths, summaries))
        raise MixedDataError(f"the results filed as {key} were scored on different files ({seen}); "
                             f"rerun those models on one file")
    table = pd.DataFrame([summary_row(summary, path.parent.name) for path, summary in zip(paths, summaries)])
    return table.sort_values("force MAE (meV/Å)", ignore_index=True) if len(table) else table


def write_model_results(table: pd.DataFrame, summary: dict, results_dir: str | Path, label: str, key: str) -> Path:
    """File one model's evaluation: ``results_dir/eval/<label>/<key>.csv`` (the per-structure table, public columns),
    ``<key>.summary.json`` (:func:`summarise` plus the run's facts), ``<key>.elements.csv`` (:func:`element_errors`)
    and the figures of :func:`geodite.eval_plots.write_figures` (parity PNG, periodic-table HTML) where there are
    forces to plot; returns the table's path."""
    from geodite.eval_plots import write_figures

    out_dir = Path(results_dir, "eval", label)
    out_dir.mkdir(parents=True, exist_ok=True)
    csv = out_dir / f"{key}.csv"
    public_columns(table).to_csv(csv, index=False)
    (out_dir / f"{key}.summary.json").write_text(json.dumps(summary, indent=2))
    elements = element_errors(table)
    elements.to_csv(out_dir / f"{key}.elements.csv", index=False)
    write_figures(table, elements, out_dir, key, label)
    return csv


def write_comparison(results_dir: str | Path, key: str, data_name: str) -> tuple[Path, int]:
    """Write ``results_dir/eval/<key>.md`` and ``.csv`` (the comparison table of :func:`comparison_table`);
    returns (md path, rows)."""
    table = comparison_table(results_dir, key)
    markdown = Path(results_dir, "eval", f"{key}.md")
    table.to_csv(markdown.with_name(f"{key}.csv"), index=False)
    title = f"# Errors vs the references in {data_name} (`geodite eval`; results key {key})\n\n"
    markdown.write_text(title + table_markdown(table))
    return markdown, len(table)
