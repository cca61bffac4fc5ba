"""The runner with a damaged store: refuses rows it cannot attribute, recomputes items whose lines were bad,
and discards (``fresh``) everything a task can resume from, under its lock."""

from __future__ import annotations

import pandas as pd
import pytest

from geodite.tasks.runner import RunOptions, run_task
from geodite.tasks.store import ResultStore, StoreMetaError
from tests.tasks.runner_helpers import SleepTask


def _options(tmp_path, **kwargs) -> RunOptions:
    return RunOptions(model="emt", results_dir=tmp_path, progress=False, plots=False, **kwargs)


def _store(tmp_path) -> ResultStore:
    return ResultStore(tmp_path / "sleep" / "emt" / "store")


def test_rows_without_meta_are_not_reused_under_another_protocol(tmp_path):
    run_task(SleepTask(n=3), _options(tmp_path))
    _store(tmp_path).meta_path.unlink()
    with pytest.raises(StoreMetaError, match="--fresh"):
        run_task(SleepTask(n=5), _options(tmp_path))  # another configuration: the 3 rows must not count
    summary = run_task(SleepTask(n=5), _options(tmp_path, fresh=True))
    assert (summary["n_skipped"], summary["n_computed"]) == (0, 5)


def test_bad_store_lines_are_set_aside_and_their_items_recomputed(tmp_path):
    run_task(SleepTask(n=4), _options(tmp_path))
    store = _store(tmp_path)
    lines = store.rows_path.read_bytes().splitlines(keepends=True)
    lines[1] = b'{"index": 1}\n'  # valid JSON, not a row
    lines[2] = b'{"key": "item002", "status": "ok", "note": "\xe9"}\n'  # latin-1, not UTF-8
    store.rows_path.write_bytes(b"".join(lines))
    messages = []
    summary = run_task(SleepTask(n=4), _options(tmp_path), log=messages.append)
    report = [m for m in messages if str(store.rows_path) in m]
    assert len(report) == 1 and "line 2: not a result row" in report[0] and "line 3: not UTF-8" in report[0]
    assert (summary["n_skipped"], summary["n_computed"], summary["n_ok"]) == (2, 2, 4)
    assert store.corrupt_path.read_bytes() == lines[1] + lines[2]
    table = pd.read_csv(tmp_path / "sleep" / "emt" / "rows.csv")
    assert sorted(table["index"]) == [0, 1, 2, 3]


def test_fresh_discards_the_tasks_other_resumable_state(tmp_path):
    scratch = tmp_path / "sleep" / "emt" / "scratch"  # the runner's scratch folder of the task (MD: trajectories)
    scratch.mkdir(parents=True)
    (scratch / "old.traj").write_text("frames of the earlier run")
    run_task(SleepTask(n=2), _options(tmp_path))
    assert (scratch / "old.traj").exists()  # kept without fresh: a run resumes from it
    summary = run_task(SleepTask(n=2), _options(tmp_path, fresh=True))
    assert not (scratch / "old.traj").exists() and summary["n_computed"] == 2
