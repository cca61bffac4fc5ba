"""The shared run options and the task defaults of `geodite bench <task>`: declared once, the same in every
runner-backed command, and the command without options builds the task the library builds by default."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from typer.testing import CliRunner

from geodite.cli.main import app
from geodite.tasks import runner, suite

#: What the commands give their task that the task class does not default to: `--download` is on.
COMMAND_ONLY = {"discovery": {"download": True}, "kappa": {"download": True}, "diatomics": {}, "md": {}}


def runner_tasks() -> list[str]:
    return [name for name in suite.runner_tasks() if name != "kappa" or _have("phono3py")]


def _have(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


@pytest.mark.parametrize("name", runner_tasks())
def test_a_command_without_task_options_builds_the_library_s_default_task(name, tmp_path, runner_calls):
    calls = runner_calls
    result = CliRunner().invoke(app, ["bench", name, "--model", "emt", "--results-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    [(task, _)] = calls
    expected = suite.make_task(name, "emt", **COMMAND_ONLY[name])
    assert dataclasses.asdict(task) == dataclasses.asdict(expected)


@pytest.mark.parametrize("name", runner_tasks())
def test_every_runner_command_hands_its_shared_options_to_the_runner(name, tmp_path, runner_calls):
    calls = runner_calls
    slurm = tmp_path / "slurm.yaml"
    slurm.write_text("jobs: 1\n")
    shared = ["--model", "emt", "--limit", "2", "--workers", "3", "--threads", "2", "--scheduler", "tcp://host:1",
              "--slurm-config", str(slurm), "--dtype", "float64", "--batch-atoms", "4096",
              "--results-dir", str(tmp_path / "r"), "--retry-failed", "--fresh", "--no-progress", "--no-plots"]
    result = CliRunner().invoke(app, ["bench", name, *shared])
    assert result.exit_code == 0, result.output
    [(_, options)] = calls
    assert options == runner.RunOptions(
        model="emt", limit=2, workers=3, threads=2, scheduler="tcp://host:1", slurm_config=str(slurm),
        dtype="float64", atoms_per_call=4096, results_dir=tmp_path / "r", retry_failed=True, fresh=True, progress=False,
        plots=False)


@pytest.mark.parametrize("name", runner_tasks())
def test_without_shared_options_the_runner_gets_its_own_defaults(name, runner_calls):
    calls = runner_calls
    result = CliRunner().invoke(app, ["bench", name, "--model", "emt"])
    assert result.exit_code == 0, result.output
    [(_, options)] = calls
    assert options == runner.RunOptions(model="emt", results_dir=Path("results"))


def test_bench_all_has_no_cluster_options():
    result = CliRunner().invoke(app, ["bench", "all", "--scheduler", "tcp://host:1"])
    assert result.exit_code == 2 and "No such option" in result.output


def test_all_options_take_the_shared_options_bench_all_has():
    run = runner.RunOptions(model="emt", limit=3, workers=2, scheduler="tcp://host:1", fresh=True, results_dir="r",
                            atoms_per_call=64)
    assert suite.all_options(run, tasks=("md",), md_time="2ps") == suite.AllOptions(
        model="emt", limit=3, workers=2, fresh=True, results_dir="r", tasks=("md",), md_time="2ps", atoms_per_call=64)


def test_task_defaults_are_the_task_class_defaults_and_speed_is_not_a_runner_task():
    from geodite.tasks.md import MDTask

    assert suite.task_defaults("md")["timestep_fs"] == MDTask().timestep_fs
    assert "systems" not in suite.task_defaults("md")  # a default factory, not a value
    with pytest.raises(ValueError, match="speed"):
        suite.task_defaults("speed")


def test_bench_all_hands_its_options_to_run_all(monkeypatch):
    seen = []

    def record(opts, log=None):
        seen.append(opts)
        return {"tasks": {}, "cps": {"CPS": None, "reason": None}}

    monkeypatch.setattr(suite, "run_all", record)
    result = CliRunner().invoke(app, ["bench", "all", "--model", "emt", "--limit", "2", "--workers", "3", "--fresh",
                                      "--tasks", "md,speed", "--md-time", "2ps", "--speed-sizes", "64,216",
                                      "--no-report"])
    assert result.exit_code == 0, result.output
    assert seen == [suite.AllOptions(model="emt", limit=2, workers=3, fresh=True, tasks=("md", "speed"),
                                     md_time="2ps", speed_sizes=(64, 216), results_dir=Path("results"))]
