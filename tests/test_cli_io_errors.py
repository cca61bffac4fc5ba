"""I/O failures are one line, and nothing computed is lost: a results folder that cannot be written is refused
before any work; a disk that fills during a run keeps every stored row and says the command resumes."""

from __future__ import annotations

import errno
import subprocess

import pandas as pd
import pytest
from typer.testing import CliRunner

from geodite.cli.main import app
from tests.conftest import DATA

runner = CliRunner(env={"COLUMNS": "400"})  # long tmp paths must not be wrapped mid-word


@pytest.fixture
def read_only_folder(tmp_path):
    """A folder nobody can write into: mode 555, or (as root, who ignores modes) immutable (chattr +i)."""
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o555)
    immutable = False
    try:
        (folder / "probe").touch()
    except OSError:
        pass
    else:
        (folder / "probe").unlink()
        immutable = subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode == 0
        if not immutable:
            pytest.skip("cannot make a folder read-only here")
    yield folder
    if immutable:
        subprocess.run(["chattr", "-i", str(folder)], check=True)
    folder.chmod(0o755)


def _one_line(result, code: int, *needles: str) -> str:
    assert result.exit_code == code, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    text = " ".join(result.output.replace("│", " ").split())
    assert "Traceback" not in text and all(needle in text for needle in needles), text
    return text


@pytest.mark.parametrize("command", [
    ["eval", "--model", "emt", "--data", str(DATA / "geodite_small_cases.extxyz")],
    ["bench", "diatomics", "--model", "emt", "--elements", "Cu"],
    ["bench", "speed", "--models", "emt", "--sizes", "8"],
])
def test_an_unwritable_results_folder_is_refused_before_any_work(read_only_folder, command):
    """`eval` computed everything, then lost it when it could not write (a 75-162 line traceback)."""
    result = runner.invoke(app, [*command, "--results-dir", str(read_only_folder / "results")])
    _one_line(result, 2, "Invalid value for '--results-dir'", "cannot write in", str(read_only_folder))


def _disk_full(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_a_full_disk_during_a_bench_run_is_one_line_and_keeps_the_stored_rows(tmp_path, monkeypatch):
    monkeypatch.setattr("geodite.tasks.runner.write_rows", _disk_full)
    args = ["bench", "diatomics", "--model", "emt", "--elements", "Cu,Ag", "--results-dir", str(tmp_path),
            "--no-progress", "--no-plots"]
    _one_line(runner.invoke(app, args), 1, "No space left on device", "the same command resumes")
    monkeypatch.undo()
    again = runner.invoke(app, args)
    assert again.exit_code == 0 and "2 already done, 0 to compute" in again.output


def test_a_full_disk_when_eval_writes_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setattr(pd.DataFrame, "to_csv", _disk_full)
    result = runner.invoke(app, ["eval", "--model", "emt", "--data", str(DATA / "geodite_small_cases.extxyz"),
                                 "--limit", "2", "--results-dir", str(tmp_path)])
    _one_line(result, 1, "cannot write the results of emt", "No space left on device")
