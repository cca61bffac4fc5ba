"""The one task factory: `geodite bench <task>` and `geodite bench all` build the same task and runner options."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from geodite.cli.main import app
from geodite.tasks import contract, runner, suite


@pytest.mark.parametrize("task", ["md", "diatomics"])
def test_single_command_and_bench_all_build_the_same_task(task, tmp_path, runner_calls):
    calls = runner_calls
    shared = ["--model", "emt", "--results-dir", str(tmp_path), "--limit", "1", "--fresh", "--no-progress"]
    single = {"md": ["--time", "40fs", "--frame-interval", "5"], "diatomics": []}[task]
    result = CliRunner().invoke(app, ["bench", task, *shared, *single])
    assert result.exit_code == 0, result.output
    suite.run_all(suite.AllOptions(model="emt", limit=1, tasks=(task,), results_dir=tmp_path, fresh=True,
                                   progress=False))
    (from_command, command_opts), (from_all, all_opts) = calls
    assert contract.protocol_config(from_command) == contract.protocol_config(from_all)  # each resumes the other's store
    assert command_opts == all_opts  # --fresh, --limit, the folder: one RunOptions either way


def test_kappa_compares_with_the_model_s_published_entry_unless_told(tmp_path):
    pytest.importorskip("phono3py")
    from geodite.tasks.kappa import KappaTask

    assert suite.make_task("kappa", "chgnet").compare_with == KappaTask.published_key_for("chgnet")
    assert KappaTask.published_key_for("chgnet") is not None
    other = KappaTask.published_key_for("mace-mp-0")
    assert suite.make_task("kappa", "chgnet", compare_with=other).compare_with == other


def test_run_options_takes_the_runner_fields_and_ignores_the_rest():
    opts = suite.run_options({"model": "emt", "slurm_config": Path("c.yaml"), "as_json": True, "workers": 3})
    assert opts == runner.RunOptions(model="emt", slurm_config="c.yaml", workers=3)


def test_one_task_table():
    """suite.TASKS is the one task table (main had three: suite.TASKS, suite.RUNNER_TASKS and a stale
    tasks.TASKS): each runner task's class is found from it and carries its name, speed has none, and
    ``bench all`` and the report take their task names and order from it."""
    import importlib.util

    import geodite.tasks
    from geodite import report

    assert not hasattr(geodite.tasks, "TASKS") and not hasattr(suite, "RUNNER_TASKS")
    assert list(suite.TASKS) == ["discovery", "kappa", "diatomics", "md", "speed"]
    assert suite.runner_tasks() == ["discovery", "kappa", "diatomics", "md"]
    for name in suite.runner_tasks():
        if name != "kappa" or importlib.util.find_spec("phono3py"):
            assert suite.task_defaults(name)["name"] == name
    with pytest.raises(ValueError, match="not a runner task"):
        suite.task_class("speed")
    assert suite.AllOptions().tasks == tuple(suite.TASKS) and list(report.TASKS) == list(suite.TASKS)
