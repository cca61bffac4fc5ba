"""Running a benchmark must not modify tracked files: every command's default output folder is git-ignored,
and the committed reference runs live in a folder that no command writes to by default."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import typer

from geodite.cli.main import app

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = "reference-results"


def _git(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True)


pytestmark = pytest.mark.skipif(shutil.which("git") is None or _git("rev-parse", "--git-dir").returncode != 0,
                                reason="not a git checkout")


def _results_dir_defaults(command, path: tuple[str, ...] = ()) -> dict[str, Path]:
    """{"bench discovery": default of --results-dir, ...} over every (sub)command of the CLI."""
    found: dict[str, Path] = {}
    for name, sub in (getattr(command, "commands", None) or {}).items():
        found.update(_results_dir_defaults(sub, (*path, name)))
    for param in getattr(command, "params", []):
        if param.name == "results_dir":
            found[" ".join(path)] = Path(param.default)
    return found


def test_every_default_results_dir_is_ignored_and_holds_no_tracked_file():
    defaults = _results_dir_defaults(typer.main.get_command(app))
    assert {"eval", "report", "bench discovery", "bench diatomics", "bench all"} <= set(defaults)
    for command, default in defaults.items():
        assert not default.is_absolute(), command
        assert Path(REFERENCE) not in (default, *default.parents), f"`geodite {command}` writes into {REFERENCE}/"
        probe = default / "discovery" / "geodite" / "metrics.json"
        assert _git("check-ignore", "--no-index", "-q", str(probe)).returncode == 0, (
            f"`geodite {command}` writes to {default}/, which git does not ignore")
        assert _git("ls-files", "--", str(default)).stdout == "", f"tracked files under {default}/"


def test_reference_results_are_tracked_but_their_stores_are_not():
    tracked = _git("ls-files", "--", REFERENCE).stdout.split()
    assert f"{REFERENCE}/diatomics/geodite/metrics.json" in tracked
    store = f"{REFERENCE}/diatomics/geodite/store/part-0.parquet"
    assert _git("check-ignore", "--no-index", "-q", store).returncode == 0
    assert _git("check-ignore", "--no-index", "-q", f"{REFERENCE}/diatomics/geodite/metrics.json").returncode == 1
