"""The Dask path for real: a `dask scheduler` process and two `dask worker` processes on 127.0.0.1, the CLI's
`--scheduler ADDRESS`, and one worker killed (SIGKILL) while it computes an item. The run must complete with
every item computed once, and its store must equal a local run's."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

distributed = pytest.importorskip("distributed")

from distributed.diagnostics.plugin import WorkerPlugin  # noqa: E402

from geodite.cli.main import app  # noqa: E402
from geodite.registry import model_label  # noqa: E402
from geodite.tasks.store import ResultStore  # noqa: E402
from tests.conftest import DATA  # noqa: E402
from tests.rows import assert_rows_close  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
SMALL = str(DATA / "geodite_small_checkpoint.pt")
ELEMENTS = ["H", "C", "N", "O", "F", "Na", "Mg", "Si"]
TIMING = ("item_wall_s",)  # the only fields that may differ between two runs of the same items


class DieOnNthTask(WorkerPlugin):
    """Kills (SIGKILL) the worker named ``victim`` as it starts its ``nth`` task: a worker lost mid-run, with
    results already delivered and one item in flight. Other workers ignore it."""

    def __init__(self, victim: str, nth: int):
        self.victim, self.nth, self.started, self.worker_name = victim, nth, 0, None

    def setup(self, worker) -> None:
        self.worker_name = worker.name

    def transition(self, key, start, finish, **kwargs) -> None:
        if self.worker_name == self.victim and finish == "executing":
            self.started += 1
            if self.started == self.nth:
                os.kill(os.getpid(), signal.SIGKILL)


def _dask(*args: str, log: Path) -> subprocess.Popen:
    """`dask ARGS` as a process of its own (one thread per worker, the repo importable for pickled tasks)."""
    env = os.environ | {"PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
                        "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "dask", *args], env=env, cwd=ROOT, stdout=log.open("w"),
                            stderr=subprocess.STDOUT)


@pytest.fixture
def cluster(tmp_path):
    """{"address", "workers": {name: Popen}}: a scheduler and two single-threaded workers, no nannies (a killed
    worker stays dead), torn down afterwards."""
    from distributed import Client

    scheduler_file = tmp_path / "scheduler.json"
    procs = [_dask("scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                   "--scheduler-file", str(scheduler_file), log=tmp_path / "scheduler.log")]
    try:
        deadline = time.monotonic() + 60
        while not scheduler_file.exists():
            assert procs[0].poll() is None and time.monotonic() < deadline, (tmp_path / "scheduler.log").read_text()
            time.sleep(0.1)
        time.sleep(0.2)  # the file is written, not necessarily flushed
        address = json.loads(scheduler_file.read_text())["address"]
        workers = {}
        for name in ("victim", "survivor"):
            workers[name] = _dask("worker", address, "--name", name, "--nthreads", "1", "--no-nanny",
                                  "--no-dashboard", "--local-directory", str(tmp_path / name),
                                  log=tmp_path / f"{name}.log")
            procs.append(workers[name])
        with Client(address, timeout=60) as client:
            client.wait_for_workers(2, timeout=120)
        yield {"address": address, "workers": workers}
    finally:
        for proc in reversed(procs):
            proc.kill()
            proc.wait(timeout=30)


def _rows(results_dir: Path) -> dict[str, dict]:
    store = ResultStore(results_dir / "diatomics" / model_label(SMALL) / "store")
    return {key: {k: v for k, v in row.items() if k not in TIMING} for key, row in store.read_rows().items()}


def _bench(*args: str) -> dict:
    result = CliRunner().invoke(app, ["bench", "diatomics", "--model", SMALL, "--elements", ",".join(ELEMENTS),
                                      "--dtype", "float64", "--no-progress", "--no-plots", "--json", *args])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_scheduler_and_worker_processes_survive_a_killed_worker(cluster, tmp_path):
    from distributed import Client

    with Client(cluster["address"], timeout=60) as client:
        # its first task: a worker is sure to start that one; a second may never come when the other worker,
        # warmed up sooner on a loaded machine, takes the rest (CI saw the victim finish alive)
        client.register_plugin(DieOnNthTask("victim", nth=1), name="die-on-nth-task")

    summary = _bench("--scheduler", cluster["address"], "--results-dir", str(tmp_path / "dask"))

    victim = cluster["workers"]["victim"]
    assert victim.wait(timeout=60) == -signal.SIGKILL  # it did die mid-run ...
    assert cluster["workers"]["survivor"].poll() is None  # ... and the other one carried the run
    assert (summary["n_items"], summary["n_computed"], summary["n_failed"]) == (len(ELEMENTS), len(ELEMENTS), 0)

    local = _bench("--threads", "1", "--results-dir", str(tmp_path / "local"))
    assert local["n_failed"] == 0
    dask_rows, local_rows = _rows(tmp_path / "dask"), _rows(tmp_path / "local")
    assert sorted(dask_rows) == sorted(ELEMENTS)  # nothing lost
    # same numbers: the cluster's chunks batch fewer dimer curves per model call than the local run's one chunk,
    # so they agree to float64 round-off (as in test_diatomics_task), not bit for bit
    assert_rows_close(dask_rows, local_rows)
