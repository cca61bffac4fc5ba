"""One writer per results folder: a second run (with or without --fresh) under a live run is refused, naming
the live run, and loses nothing of it; a killed run's lock is taken over with a note."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from geodite.tasks.lock import RunLock, StoreLockedError
from geodite.tasks.runner import RunOptions, run_task
from geodite.tasks.store import ResultStore
from tests.tasks.runner_helpers import SleepTask, start_run

def _wait_for_rows(store: ResultStore, proc: subprocess.Popen, n: int = 1, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while len(store.read_rows()) < n:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the run wrote no row in time"
        time.sleep(0.05)


def _options(results: Path, **kwargs) -> RunOptions:
    return RunOptions(model="emt", results_dir=results, progress=False, plots=False, **kwargs)


def test_fresh_under_a_live_run_is_refused_and_loses_nothing(tmp_path):
    """The issue's scenario: a second run with --fresh while the first is writing."""
    results, gate = tmp_path / "results", tmp_path / "gate"
    store = ResultStore(results / "sleep" / "emt" / "store")
    first = start_run(results, "--n", "12", "--gate", str(gate))
    try:
        _wait_for_rows(store, first)
        for fresh in (False, True):  # in this process: neither recomputes beside it nor deletes under it
            with pytest.raises(StoreLockedError, match=f"pid {first.pid} ") as refused:
                run_task(SleepTask(n=12), _options(results, fresh=fresh))
            assert str(store.dir.parent) in str(refused.value)
        second = start_run(results, "--n", "12", "--fresh")  # and as its own process
        out, err = second.communicate(timeout=300)
        assert second.returncode == 2, (out, err)
        assert f"pid {first.pid} " in err and "in use by another run" in err and "Traceback" not in err
        assert len(store.read_rows()) >= 1  # nothing was deleted under the live run
    finally:
        gate.touch()
        out, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    assert json.loads(out) == {"n_items": 12, "n_skipped": 0, "n_computed": 12, "n_failed": 0, "n_ok": 12}
    table = pd.read_csv(results / "sleep" / "emt" / "rows.csv")
    assert sorted(table["index"]) == list(range(12)) and set(table["pid"]) == {first.pid}
    assert store.lock_path.read_text() == ""  # released cleanly


def test_lock_of_a_killed_run_is_taken_over_with_a_note(tmp_path):
    results = tmp_path / "results"
    store = ResultStore(results / "sleep" / "emt" / "store")
    killed = start_run(results, "--n", "6", "--gate", str(tmp_path / "never"))
    _wait_for_rows(store, killed)
    killed.send_signal(signal.SIGKILL)
    killed.wait(timeout=60)
    assert str(killed.pid) in store.lock_path.read_text()  # the file still names it; the kernel freed the lock
    messages = []
    summary = run_task(SleepTask(n=6), _options(results), log=messages.append)
    notes = [m for m in messages if "taking over" in m]
    assert len(notes) == 1 and f"pid {killed.pid} " in notes[0]
    assert (summary["n_skipped"], summary["n_computed"], summary["n_ok"]) == (1, 5, 6)


def test_bench_command_refuses_a_held_folder_in_one_line(tmp_path):
    from geodite.cli.main import app

    out_dir = tmp_path / "diatomics" / "emt"
    with RunLock(ResultStore(out_dir / "store").lock_path, out_dir, log=print):
        result = CliRunner().invoke(app, ["bench", "diatomics", "--elements", "H", "--model", "emt",
                                          "--results-dir", str(tmp_path), "--fresh", "--no-progress"])
    assert result.exit_code == 2, result.output
    assert f"pid {os.getpid()} " in result.output and str(out_dir) in result.output.replace("\n", "")
    assert "Traceback" not in result.output
    assert not (out_dir / "metrics.json").exists()


@pytest.mark.parametrize("content", ["", '{"pid": 999999999, "host": "%s"}'])
def test_a_holder_that_has_not_yet_written_its_name_is_still_a_holder(tmp_path, content):
    """Between taking the flock and writing its name, the new holder's file is empty or still names the dead
    run before it; a second run must be refused all the same (the flock decides, not the file)."""
    import socket

    path = tmp_path / "run.lock"
    path.write_text(content % socket.gethostname() if content else "")
    with open(path, "rb+") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)
        with pytest.raises(StoreLockedError, match="a process that is just starting"):
            RunLock(path, tmp_path, log=print).acquire()
