"""The runner with a damaged store: refuses rows it cannot attribute, recomputes items whose lines were bad,
and discards (``fresh``) everything a task can resume from, under its lock; what a summary covers (everything
stored) and what the protocol holds besides the task's (the model's weights and dtype)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

import geodite
from geodite.tasks.runner import RunOptions, run_task
from geodite.tasks.store import ConfigMismatchError, ResultStore, StoreMetaError
from tests.conftest import DATA
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


def test_a_limited_run_summarises_everything_stored(tmp_path):
    """--limit 3 after --limit 6 reuses 3 stored rows; its summary, metrics files and table still cover all 6
    stored items (a subset run never replaces a fuller summary) and it says what it covered."""
    run_task(SleepTask(n=10), _options(tmp_path, limit=6))
    messages = []
    summary = run_task(SleepTask(n=10), _options(tmp_path, limit=3), log=messages.append)
    assert (summary["n_items"], summary["n_ok"]) == (6, 6)  # main: (3, 3), the last run's
    assert summary["n_run_items"] == 3
    assert (summary["n_skipped"], summary["n_computed"]) == (3, 0)
    assert "all 6 items stored" in summary["scope"] and "the first 3 of the task's 10 items" in summary["scope"]
    assert summary["scope"] in "\n".join(messages)
    out = tmp_path / "sleep" / "emt"
    assert json.loads((out / "metrics.json").read_text())["n_items"] == 6
    assert list(pd.read_csv(out / "rows.csv")["index"]) == [0, 1, 2, 3, 4, 5]


def test_dtype_and_weights_are_part_of_the_protocol(tmp_path):
    """Rows made in float32 are not reused by a float64 run: refused in one line naming what differs."""
    run_task(SleepTask(n=2), _options(tmp_path, dtype="float32"))
    with pytest.raises(ConfigMismatchError) as refused:
        run_task(SleepTask(n=2), _options(tmp_path, dtype="float64"))
    message = str(refused.value)
    assert "dtype float32 → float64" in message and "\n" not in message and "--fresh" in message
    stored = json.loads(_store(tmp_path).meta_path.read_text())["config"]
    assert stored["dtype"] == "float32" and stored["weights_package"].startswith("ase ")


def test_swapped_geodite_mp_weights_are_not_reused(tmp_path, monkeypatch):
    """geodite-mp (a cached download) is keyed by its weights' sha256 like every checkpoint: after the cached
    file changes, the stored rows are refused, not reused."""
    from geodite.data.downloads import cache_dir

    monkeypatch.setenv("GEODITE_CACHE_DIR", str(tmp_path / "cache"))
    cached = cache_dir() / "Geodite-MP.ckpt"
    cached.parent.mkdir(parents=True)
    shutil.copy(DATA / "geodite_small_checkpoint.pt", cached)
    options = RunOptions(model="geodite-mp", results_dir=tmp_path, progress=False, plots=False)
    run_task(SleepTask(n=1), options)
    shutil.copy(Path(geodite.__file__).parent / "weights" / "geodite-distilled.pt", cached)
    with pytest.raises(ConfigMismatchError, match="weights_sha256"):
        run_task(SleepTask(n=1), options)


def test_the_stored_table_does_not_depend_on_this_runs_selection():
    """In item order when the task lists every stored key, else in store order (never this run's selection
    first), and without the tracebacks the store keeps."""
    from geodite.tasks.runner import stored_frame

    rows = {k: {"key": k, "status": "ok", "traceback": "..."} for k in ("b", "a", "c")}  # store order
    assert list(stored_frame(rows, ["c", "b", "a", "d"])["key"]) == ["c", "b", "a"]
    assert list(stored_frame(rows, ["c", "a"])["key"]) == ["b", "a", "c"]
    assert "traceback" not in stored_frame(rows, [])
    assert list(stored_frame({}, ["a"]).columns) == ["key", "status"]
