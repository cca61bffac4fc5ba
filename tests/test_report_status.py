"""`geodite report`: nothing to report is an error (exit 2), and partial results are called partial with their
counts, not "not run"."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from geodite import report as rep
from geodite.cli.main import app
from geodite.tasks.store import ResultStore

runner = CliRunner()


def flat(output: str) -> str:
    return " ".join(output.split())


def finished(root: Path, task: str, label: str, n_items: int, n_failed: int = 0) -> None:
    """metrics.json of a run that finished."""
    out = root / task / label
    out.mkdir(parents=True)
    (out / "metrics.json").write_text(json.dumps({"task": task, "model": label, "n_items": n_items,
                                                  "n_failed": n_failed, "wall_s": 1.0, "MAE": 0.1}))


def interrupted(root: Path, task: str, label: str, n_stored: int) -> None:
    """The store of a run killed after ``n_stored`` items: rows, no metrics.json."""
    with ResultStore(root / task / label / "store") as store:
        for index in range(n_stored):
            store.append({"key": f"item-{index}", "status": "ok", "value": float(index)})


def report(root: Path, *extra: str):
    return runner.invoke(app, ["report", "--model", "geodite", "--results-dir", str(root), "--json", *extra])


def test_missing_results_folder_is_an_error(tmp_path):
    result = report(tmp_path / "no-such-folder")
    assert result.exit_code == 2
    assert "no results folder" in flat(result.output) and "Traceback" not in result.output
    assert not (tmp_path / "no-such-folder").exists()


def test_a_model_without_results_is_an_error(tmp_path):
    """A misspelt model name used to write an empty report and exit 0."""
    finished(tmp_path, "discovery", "geodite", 50)
    result = runner.invoke(app, ["report", "--model", "geodlte", "--results-dir", str(tmp_path)])
    assert result.exit_code == 2
    assert "nothing to report for geodlte" in flat(result.output)
    assert not (tmp_path / "geodlte").exists()
    result = runner.invoke(app, ["report", "--models", "geodite,geodlte", "--results-dir", str(tmp_path)])
    assert result.exit_code == 2 and "nothing to report for geodlte" in flat(result.output)


def test_partial_tasks_are_labelled_with_their_counts(tmp_path):
    finished(tmp_path, "discovery", "geodite", 50, n_failed=3)
    interrupted(tmp_path, "diatomics", "geodite", 3)
    result = report(tmp_path)
    assert result.exit_code == 0, result.output
    written = json.loads(result.stdout.strip().splitlines()[-1])
    status = {task: by_model["geodite"] for task, by_model in written["status"].items()}
    assert status["discovery"] == "partial: 47 of 50 ok (3 failed)"
    assert status["diatomics"].startswith("partial: 3 items stored, the run did not finish")
    assert status["kappa"] == status["md"] == "not run"
    output = flat(result.output)
    assert "diatomics — geodite: partial: 3 items stored" in output
    assert "discovery — geodite: partial: 47 of 50 ok" in output
    markdown = Path(written["markdown"]).read_text()
    assert "**geodite**: diatomics partial: 3 items stored" in markdown
    assert "**geodite**: diatomics not run" not in markdown
    assert "| diatomics | partial: 3 items stored" in markdown  # the provenance table's status column


def test_status_label():
    ok = rep.TaskResult("md", "geodite", metrics={"n_items": 6, "n_failed": 0})
    assert rep.status_label(ok) == "ok"
    assert rep.status_label(rep.TaskResult("md", "geodite", reason="not run (no results in x)")) == "not run"


def test_the_report_shows_everything_stored_not_the_last_run(tmp_path):
    """The README's walk: a wider run, then a narrower one (--elements, --limit) reusing stored rows; the
    metrics files and the report still cover every stored item, and the narrower run says what it covered."""
    bench = ["bench", "diatomics", "--model", "emt", "--results-dir", str(tmp_path), "--no-progress", "--no-plots"]
    assert runner.invoke(app, [*bench, "--elements", "H,N,O,Cu"]).exit_code == 0
    narrower = runner.invoke(app, [*bench, "--elements", "H,N", "--limit", "1", "--json"])
    assert narrower.exit_code == 0, narrower.output
    summary = json.loads(narrower.stdout.strip().splitlines()[-1])
    assert (summary["n_items"], summary["n_scored"]) == (4, 4)  # main: (1, 1), the last run's
    assert summary["n_run_items"] == 1
    assert "the summary covers all 4 items stored" in flat(narrower.output)
    result = runner.invoke(app, ["report", "--model", "emt", "--results-dir", str(tmp_path), "--json"])
    assert result.exit_code == 0, result.output
    markdown = Path(json.loads(result.stdout.strip().splitlines()[-1])["markdown"]).read_text()
    assert "| n_items | 4 |" in markdown and "| n_scored | 4 |" in markdown


def test_rows_stored_after_the_metrics_are_not_hidden(tmp_path):
    """A later run that stored rows but did not finish: the report says the metrics cover fewer items."""
    finished(tmp_path, "discovery", "geodite", 2)
    interrupted(tmp_path, "discovery", "geodite", 5)
    status = json.loads(report(tmp_path).stdout.strip().splitlines()[-1])["status"]["discovery"]["geodite"]
    assert status.startswith("partial: 5 items stored, the metrics cover 2")
