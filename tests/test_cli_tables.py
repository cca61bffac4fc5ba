"""What a newcomer reads at 80 columns: `geodite models` and `bench speed` tables without clipped cells, and
`bench speed` of a model that cannot be timed (EMT has no Si) is an error message, not a KeyError."""

from __future__ import annotations

from typer.testing import CliRunner

from geodite.cli.main import app

runner = CliRunner()


def test_models_table_is_readable_at_80_columns():
    result = runner.invoke(app, ["models"], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert all(len(line) <= 80 for line in lines)
    assert "…" not in result.output  # before: 'geodite[seven…', 'mp2020_correc…', 'effective-med…'
    for name, convention in (("sevennet-l3i5", "uncorrected"), ("chgnet", "mp2020_corrected")):
        assert any(line.split()[:1] == [name] and convention in line.split() for line in lines), name


def test_speed_of_a_model_that_cannot_be_timed_says_why_and_exits_1(tmp_path):
    result = runner.invoke(app, ["bench", "speed", "--models", "emt", "--sizes", "8", "--repeats", "1",
                                 "--no-memory", "--results-dir", str(tmp_path)], env={"COLUMNS": "80"})
    assert result.exit_code == 1, result.output  # before: KeyError: ['us_per_atom_step']
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "emt: NotImplementedError: No EMT-potential for Si" in result.output
    assert "no model could be timed" in result.output and "…" not in result.output
    assert (tmp_path / "speed" / "si-cpu" / "speed-scaling.png").is_file()


def test_speed_table_fits_80_columns(tmp_path):
    result = runner.invoke(app, ["bench", "speed", "--models", "emt,geodite", "--sizes", "8", "--repeats", "1",
                                 "--no-memory", "--results-dir", str(tmp_path)], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    assert all(len(line) <= 80 for line in result.output.splitlines()) and "…" not in result.output
    [geodite] = [line.split() for line in result.output.splitlines() if line.split()[:1] == ["geodite"]]
    assert geodite[1] == "8" and float(geodite[2]) > 0  # atoms and μs/atom-step on the model's own line


def test_speed_table_keeps_a_model_name_on_one_line(tmp_path):
    """A 17-character name such as geodite-published used to fold into three lines ("geodite-", "publishe", "d")."""
    result = runner.invoke(app, ["bench", "speed", "--models", "geodite-published", "--sizes", "8", "--repeats", "1",
                                 "--no-memory", "--results-dir", str(tmp_path)], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    assert all(len(line) <= 80 for line in result.output.splitlines())
    [row] = [line.split() for line in result.output.splitlines() if line.split()[:1] == ["geodite-published"]]
    assert row[1] == "8" and float(row[2]) > 0
    assert len(row) == 7 and row[-1] == "1.00"  # every column shown, × Geodite last (--no-memory: peak MB "—")
