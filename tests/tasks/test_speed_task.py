"""`geodite bench speed`: interleaved timings, memory in child processes, table, plot and JSON rows."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from geodite.cli.main import app
from geodite.tasks.speed import crystal
from tests.conftest import DATA


def test_crystals_have_requested_size_and_density():
    si = crystal("si", 216)
    assert len(si) == 216 and abs(si.get_volume() / len(si) - 5.43**3 / 8) < 1e-6
    oxide = crystal("oxide", 1000)
    assert len(oxide) == 5 * 6**3 and set(oxide.get_chemical_symbols()) == {"Sr", "Ti", "O"}


def test_speed_command_json_rows(tmp_path):
    models = f"emt,{DATA / 'geodite_small_checkpoint.pt'},no-such-model"
    result = CliRunner().invoke(app, ["bench", "speed", "--models", models, "--sizes", "8,27", "--structure", "si",
                                      "--repeats", "2", "--threads", "1", "--results-dir", str(tmp_path), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[0])
    rows = {(r["model"], r["n_atoms"]): r for r in summary["rows"]}
    geodite = rows[(str(DATA / "geodite_small_checkpoint.pt"), 8)]
    assert geodite["us_per_atom_step"] > 0 and geodite["atom_steps_per_s"] > 0 and geodite["peak_mem_mb"] >= 0
    assert rows[("no-such-model", 8)]["error"]
    assert (tmp_path / "speed" / "si-cpu" / "speed-scaling.png").exists()
