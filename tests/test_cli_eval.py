"""`geodite eval` end to end: the golden fixture at round-off, an ASE database, JSON on stdout."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from typer.testing import CliRunner

from geodite.cli.main import app
from geodite.evaluate import data_key
from geodite.registry import model_label
from tests.conftest import DATA

runner = CliRunner()


def run_eval(tmp_path, data: str) -> dict:
    result = runner.invoke(
        app,
        ["eval", "--model", str(DATA / "geodite_small_checkpoint.pt"), "--data", str(DATA / data),
         "--results-dir", str(tmp_path), "--json"],
    )
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_eval_golden_fixture_at_round_off(tmp_path):
    summary = run_eval(tmp_path, "geodite_small_cases.extxyz")
    assert summary["n_structures"] == 8 and summary["n_failed"] == 0
    assert summary["energy_per_atom_mae"] < 1e-6 and summary["max_abs_energy_error"] < 1e-6
    assert summary["max_abs_force_error"] < 1e-6 and summary["stress_rmse"] < 1e-6
    key, _ = data_key(DATA / "geodite_small_cases.extxyz")
    table = (tmp_path / "eval" / model_label(str(DATA / "geodite_small_checkpoint.pt")) / f"{key}.csv").read_text()
    assert "a_Si_diamond" in table


def test_eval_ase_database(tmp_path):
    summary = run_eval(tmp_path, "mptrj-10-systems.db")
    assert summary["n_structures"] == 10
    assert summary["forces_mae"] is not None and summary["stress_mae"] is not None


def test_eval_missing_file_is_a_clear_error(tmp_path):
    result = runner.invoke(app, ["eval", "--data", str(tmp_path / "nope.xyz"), "--model", "x.pt"])
    assert result.exit_code == 2
    assert "no such data file" in result.output


def test_eval_compares_geodite_with_an_ase_calculator(tmp_path):
    """Several --model at once: a Geodite checkpoint and a non-Geodite calculator (EMT) side by side."""
    from ase.build import bulk
    from ase.calculators.singlepoint import SinglePointCalculator
    from ase.io import write

    frames = []
    for i, strain in enumerate((0.98, 1.0, 1.03)):
        atoms = bulk("Cu", "fcc", a=3.6 * strain, cubic=True)
        atoms.rattle(0.05, seed=i)
        atoms.calc = SinglePointCalculator(atoms, energy=-1.0 * len(atoms), forces=np.zeros((len(atoms), 3)),
                                           stress=np.zeros(6))
        frames.append(atoms)
    write(tmp_path / "cu.extxyz", frames)
    result = runner.invoke(app, ["eval", "--data", str(tmp_path / "cu.extxyz"), "--model", "emt", "--model",
                                 str(DATA / "geodite_small_checkpoint.pt"), "--results-dir", str(tmp_path), "--json"])
    assert result.exit_code == 0, result.output
    emt = json.loads(result.stdout.strip().splitlines()[0])
    assert emt["model"] == "emt" and emt["n_failed"] == 0 and emt["energy_convention"] == "uncorrected"
    # references are zero forces, so the force MAE equals the mean |F| EMT predicts, and zero-force MAE is 0
    assert emt["zero_forces_mae"] == 0.0 and emt["forces_mae"] > 0.0
    key, _ = data_key(tmp_path / "cu.extxyz")
    table = pd.read_csv(tmp_path / "eval" / f"{key}.csv")
    assert sorted(table["model"]) == ["emt", model_label(str(DATA / "geodite_small_checkpoint.pt"))]
    assert (table["structures"] == 3).all()
    assert "| emt |" in (tmp_path / "eval" / f"{key}.md").read_text()


def test_eval_unknown_model_is_a_clear_error(tmp_path):
    result = runner.invoke(app, ["eval", "--data", str(DATA / "mptrj-10-systems.db"), "--model", "no-such-model"])
    assert result.exit_code == 2
    assert "unknown model" in result.output


def test_checkpoints_never_share_a_label_with_another_model(tmp_path):
    """A user's geodite.pt beside the shipped geodite, and two checkpoints named alike with other weights: each
    keeps its own summary and the comparison has one row per model (not "comparison of 1 models")."""
    import shutil

    import geodite

    users = tmp_path / "mine" / "geodite.pt"
    other = tmp_path / "theirs" / "geodite.pt"
    for path, source in ((users, DATA / "geodite_small_checkpoint.pt"),
                         (other, Path(geodite.__file__).parent / "weights" / "geodite-distilled.pt")):
        path.parent.mkdir()
        shutil.copy(source, path)
    data = DATA / "geodite_small_cases.extxyz"
    result = runner.invoke(app, ["eval", "--data", str(data), "--results-dir", str(tmp_path / "r"), "--limit", "2",
                                 "--model", "geodite", "--model", str(users), "--model", str(other)])
    assert result.exit_code == 0, result.output
    assert "comparison of 3 models" in " ".join(result.output.split())
    key, _ = data_key(data)
    shipped = json.loads((tmp_path / "r" / "eval" / "geodite" / f"{key}.summary.json").read_text())
    assert shipped["model"] == "geodite"  # not overwritten by the user's geodite.pt
    table = pd.read_csv(tmp_path / "r" / "eval" / f"{key}.csv")
    assert sorted(table["model"]) == sorted(["geodite", model_label(str(users)), model_label(str(other))])


def _copper_frames(path, close: int | None = None, nan_energy: int | None = None, nan_forces: int | None = None):
    """Four rattled fcc Cu cells with EMT's own labels (so EMT's errors are 0): frame ``close`` with two atoms
    0.01 Å apart, frame ``nan_energy`` with a NaN reference energy, ``nan_forces`` with NaN reference forces."""
    from ase.build import bulk
    from ase.calculators.emt import EMT
    from ase.calculators.singlepoint import SinglePointCalculator
    from ase.io import write

    frames = []
    for k in range(4):
        atoms = bulk("Cu", "fcc", a=3.6, cubic=True)
        atoms.rattle(0.02, seed=k)
        if k == close:
            atoms.positions[1] = atoms.positions[0] + [0.01, 0, 0]
        atoms.calc = EMT()
        energy, forces, stress = atoms.get_potential_energy(), atoms.get_forces(), atoms.get_stress()
        energy = float("nan") if k == nan_energy else energy
        forces = np.full_like(forces, np.nan) if k == nan_forces else forces
        atoms.calc = SinglePointCalculator(atoms, energy=energy, forces=forces, stress=stress)
        frames.append(atoms)
    write(path, frames)
    return path


def _eval_emt(tmp_path, data):
    result = runner.invoke(app, ["eval", "--model", "emt", "--data", str(data), "--results-dir", str(tmp_path),
                                 "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout.strip().splitlines()[-1]), " ".join(result.output.split())


def test_atoms_closer_than_any_bond_are_refused_with_the_frame_named(tmp_path):
    """0.01 Å apart, such a frame put 3e5 eV/atom into the MAE without a word."""
    summary, output = _eval_emt(tmp_path, _copper_frames(tmp_path / "frames.extxyz", close=1))
    assert summary["n_failed"] == 1 and summary["energy_per_atom_mae"] < 1e-6
    assert "structure 1 (Cu4): atoms 0 and 1 are 0.01 Å apart" in output


def test_a_nan_reference_is_left_out_and_said(tmp_path):
    summary, output = _eval_emt(tmp_path, _copper_frames(tmp_path / "frames.extxyz", nan_energy=2, nan_forces=3))
    assert summary["n_nonfinite_reference"] == 2 and summary["n_failed"] == 0
    assert summary["energy_per_atom_mae"] < 1e-6 and summary["forces_mae"] < 1e-6  # extxyz keeps 8 decimals
    assert "2 structure(s) with a NaN or infinite reference" in output
    assert "structure 2 (energy)" in output and "structure 3 (forces)" in output
