"""A tiny task for the runner's store, lock and worker-lifetime tests, and a command line to run it in a
separate process (``python -m tests.tasks.runner_helpers RESULTS [--n N] [--seconds S] [--workers W]
[--fresh] [--pid-dir DIR] [--gate FILE]``; prints the summary as JSON, exits 2 with one line on a store
error)."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from geodite.tasks.contract import PROTOCOL

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class SleepTask:
    """``n`` items that each sleep ``seconds`` (s) and return their index and the pid that ran them; with
    ``pid_dir``, each item leaves an empty file named after that pid; with ``gate``, every item but the first
    waits until the file ``gate`` exists (so a test can act while the run is surely live)."""

    n: int = field(default=4, metadata=PROTOCOL)
    seconds: float = 0.0
    pid_dir: str | None = None
    gate: str | None = None
    name: str = "sleep"

    def items(self) -> list[dict]:
        return [{"key": f"item{i:03d}", "index": i} for i in range(self.n)]

    def run_item(self, item: dict, ctx) -> dict:
        if self.pid_dir:
            Path(self.pid_dir, str(os.getpid())).touch()
        while self.gate and item["index"] > 0 and not Path(self.gate).exists():
            time.sleep(0.05)
        time.sleep(self.seconds)
        return {"index": item["index"], "pid": os.getpid()}

    def metrics(self, df: pd.DataFrame, model: str) -> dict:
        return {"n_ok": int((df["status"] == "ok").sum()) if len(df) else 0}

    def plots(self, df: pd.DataFrame, out_dir: Path, model: str) -> list[Path]:
        return []


def start_run(results: Path, *args: str) -> subprocess.Popen:
    """:func:`main` in a process of its own (this checkout's code), stdout and stderr piped."""
    env = os.environ | {"PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "tests.tasks.runner_helpers", str(results), *args], cwd=ROOT,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def main(argv: list[str] | None = None) -> int:
    from geodite.tasks.runner import RunOptions, run_task
    from geodite.tasks.store import StoreError

    parser = argparse.ArgumentParser()
    parser.add_argument("results")
    parser.add_argument("--n", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=0.0)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--fresh", action="store_true")
    parser.add_argument("--pid-dir")
    parser.add_argument("--gate")
    args = parser.parse_args(argv)
    task = SleepTask(n=args.n, seconds=args.seconds, pid_dir=args.pid_dir, gate=args.gate)
    options = RunOptions(model="emt", workers=args.workers, threads=1, results_dir=args.results, fresh=args.fresh,
                         progress=False, plots=False)
    try:
        summary = run_task(task, options)
    except StoreError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(json.dumps({k: summary[k] for k in ("n_items", "n_skipped", "n_computed", "n_failed", "n_ok")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
