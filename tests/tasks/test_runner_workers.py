"""Worker processes die with their run: after SIGKILL of a ``--workers 2`` run none is left holding memory."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.tasks.runner_helpers import ROOT, start_run


def _alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie waiting for its new parent to reap it counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state not in ("Z", "X")


def _wait(condition, timeout_s: float, interval_s: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(interval_s)
    return True


def test_workers_die_with_a_killed_run(tmp_path):
    pids = tmp_path / "pids"
    pids.mkdir()
    run = start_run(tmp_path / "results", "--workers", "2", "--n", "8", "--seconds", "600", "--pid-dir", str(pids))
    try:
        assert _wait(lambda: len(list(pids.iterdir())) == 2, timeout_s=240), run.poll() or "no two workers started"
        workers = [int(p.name) for p in pids.iterdir()]
        assert run.pid not in workers and all(map(_alive, workers))
        run.send_signal(signal.SIGKILL)
        run.wait(timeout=60)
        assert _wait(lambda: not any(map(_alive, workers)), timeout_s=10), [w for w in workers if _alive(w)]
    finally:
        run.kill()
        for name in os.listdir(pids):
            if _alive(int(name)):
                os.kill(int(name), signal.SIGKILL)  # never leave them behind, even when the test fails


@pytest.mark.parametrize(("parent", "code"), [("real", 0), ("already gone", 1)])
def test_a_worker_whose_parent_is_already_gone_exits_at_once(parent, code):
    """The parent can die before the death signal is armed; the worker must notice that too."""
    offset = 0 if parent == "real" else 1
    script = f"import os; from geodite.tasks.lifetime import die_with_parent; die_with_parent(os.getppid() + {offset})"
    done = subprocess.run([sys.executable, "-c", script], env=os.environ | {"PYTHONPATH": str(ROOT)}, timeout=120)
    assert done.returncode == code


def test_the_watchdog_used_without_prctl_ends_an_orphan():
    """Off Linux a thread polls the parent's pid: a middle process starts a child that watches it (by pid, so a
    middle that dies first is noticed too), prints the child's pid, and is killed; the child must end."""
    child = "import sys; from geodite.tasks.lifetime import _watch_parent; _watch_parent(int(sys.argv[1]), 0.1)"
    middle = (f"import os, subprocess, sys, time; c = subprocess.Popen([sys.executable, '-c', {child!r}, "
              "str(os.getpid())]); print(c.pid, flush=True); time.sleep(600)")
    proc = subprocess.Popen([sys.executable, "-c", middle], env=os.environ | {"PYTHONPATH": str(ROOT)},
                            stdout=subprocess.PIPE, text=True)
    watcher = int(proc.stdout.readline())
    try:
        assert _alive(watcher)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
        assert _wait(lambda: not _alive(watcher), timeout_s=30)
    finally:
        proc.kill()
        if _alive(watcher):
            os.kill(watcher, signal.SIGKILL)
