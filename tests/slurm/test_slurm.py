"""The SLURM path for real (marker `slurm`, `make test-slurm`; root and Debian's slurm-wlm + munge needed):
munged, slurmctld and slurmd start on this machine from the minimal ``slurm.conf.in`` beside this file,
`geodite bench diatomics --slurm-config FILE` runs its items in 2 SLURM jobs through dask-jobqueue's
SLURMCluster, and its rows must equal a local run's. The daemons are stopped afterwards."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from string import Template

import pytest
import yaml

from geodite.tasks.store import ResultStore
from tests.rows import assert_rows_close

pytestmark = pytest.mark.slurm

HERE = Path(__file__).parent
ROOT = HERE.parents[1]
DAEMONS = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scancel", "sinfo")
ELEMENTS = "H,C,O,Si,Fe"
TIMING = ("item_wall_s",)  # the only fields that may differ between two runs of the same items


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait(condition, what: str, logs: list[Path], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            tails = "\n".join(f"--- {p}\n{p.read_text()[-2000:]}" for p in logs if p.exists())
            pytest.fail(f"{what} did not happen within {timeout:.0f} s\n{tails}")
        time.sleep(0.3)


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    """A running one-node cluster: yields the environment (SLURM_CONF) in which sbatch & co. reach it."""
    missing = [name for name in DAEMONS if shutil.which(name) is None]
    if missing or os.geteuid() != 0:
        pytest.fail(f"needs root and Debian's slurm-wlm + munge (missing: {', '.join(missing) or 'root'}); "
                    "`make test-slurm` installs them")
    root = tmp_path_factory.mktemp("slurm")
    for sub in ("state", "spool"):
        (root / sub).mkdir()
    key = root / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o600)
    conf = root / "slurm.conf"
    conf.write_text(Template((HERE / "slurm.conf.in").read_text()).substitute(
        host=socket.gethostname().split(".")[0], root=root, ctld_port=_free_port(), slurmd_port=_free_port(),
        cpus=os.cpu_count(), memory_mb=int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**20 * 0.9)))
    env = os.environ | {"SLURM_CONF": str(conf)}

    def start(*cmd: str, log: str) -> subprocess.Popen:
        return subprocess.Popen(cmd, env=env, stdout=(root / log).open("w"), stderr=subprocess.STDOUT)

    logs = [root / name for name in ("munged.out", "slurmctld.out", "slurmd.out", "slurmctld.log", "slurmd.log")]
    daemons = [start("munged", "--foreground", "--force", f"--key-file={key}", f"--socket={root / 'munge.sock'}",
                     f"--pid-file={root / 'munged.pid'}", f"--seed-file={root / 'munged.seed'}", log="munged.out")]
    try:
        _wait((root / "munge.sock").exists, "munged's socket", logs)
        daemons.append(start("slurmctld", "-D", "-i", "-f", str(conf), log="slurmctld.out"))
        daemons.append(start("slurmd", "-D", "-f", str(conf), log="slurmd.out"))

        def node_idle() -> bool:
            states = subprocess.run(["sinfo", "-h", "-o", "%t"], env=env, capture_output=True, text=True).stdout
            return states.strip() == "idle"

        _wait(node_idle, "the node becoming idle", logs)
        yield {"env": env, "root": root}
    finally:
        subprocess.run(["scancel", "--user", "root"], env=env, capture_output=True)
        for daemon in reversed(daemons):
            daemon.terminate()
            try:
                daemon.wait(timeout=30)
            except subprocess.TimeoutExpired:
                daemon.kill()
                daemon.wait()


def _bench(env: dict, results_dir: Path, *args: str) -> dict:
    env = env | {"PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, "-m", "geodite", "bench", "diatomics", "--elements", ELEMENTS,
                           "--results-dir", str(results_dir), "--dtype", "float64", "--no-progress", "--no-plots",
                           "--json", *args],
                          env=env, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def _rows(results_dir: Path) -> dict[str, dict]:
    store = ResultStore(results_dir / "diatomics" / "geodite" / "store")
    return {key: {k: v for k, v in row.items() if k not in TIMING} for key, row in store.read_rows().items()}


def test_diatomics_in_two_slurm_jobs_equals_a_local_run(slurm, tmp_path):
    env, root = slurm["env"], slurm["root"]
    jobs = tmp_path / "jobs"
    config = {  # the keyword arguments of dask_jobqueue.SLURMCluster, plus the number of jobs
        "queue": "debug", "cores": 1, "processes": 1, "memory": "2GB", "walltime": "00:15:00", "jobs": 2,
        "python": sys.executable, "log_directory": str(jobs), "local_directory": str(tmp_path / "dask"),
        "scheduler_options": {"host": "127.0.0.1", "dashboard_address": None},
    }
    slurm_yaml = tmp_path / "slurm.yaml"
    slurm_yaml.write_text(yaml.safe_dump(config))

    summary = _bench(env, tmp_path / "slurm", "--slurm-config", str(slurm_yaml))
    n = len(ELEMENTS.split(","))
    assert (summary["n_items"], summary["n_computed"], summary["n_failed"]) == (n, n, 0)

    # the items ran in two SLURM jobs: the controller allocated two, each started a Dask worker
    allocated = [line for line in (root / "slurmctld.log").read_text().splitlines() if "sched: Allocate JobId=" in line]
    assert len(allocated) == 2, allocated
    worker_logs = sorted(jobs.glob("*.err"))
    assert len(worker_logs) == 2 and all("Start worker" in p.read_text() for p in worker_logs), worker_logs
    _wait(lambda: subprocess.run(["squeue", "-h"], env=env, capture_output=True, text=True).stdout.strip() == "",
          "the jobs ending with the run", [root / "slurmctld.log"])

    local = _bench(env, tmp_path / "local", "--threads", "1")
    assert local["n_failed"] == 0
    assert_rows_close(_rows(tmp_path / "slurm"), _rows(tmp_path / "local"))  # chunked apart: equal to round-off
