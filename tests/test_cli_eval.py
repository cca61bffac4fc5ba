"""`geodite eval` end to end: the golden fixture at round-off, an ASE database, JSON on stdout."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from geodite.cli.main import app
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
    table = (tmp_path / "eval" / "geodite_small_checkpoint" / "geodite_small_cases.csv").read_text()
    assert "a_Si_diamond" in table


def test_eval_ase_database(tmp_path):
    summary = run_eval(tmp_path, "mptrj-10-systems.db")
    assert summary["n_structures"] == 10
    assert summary["forces_mae"] is not None and summary["stress_mae"] is not None


def test_eval_missing_file_is_a_clear_error(tmp_path):
    result = runner.invoke(app, ["eval", "--data", str(tmp_path / "nope.xyz"), "--model", "x.pt"])
    assert result.exit_code == 2
    assert "no such data file" in result.output
