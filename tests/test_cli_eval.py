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
