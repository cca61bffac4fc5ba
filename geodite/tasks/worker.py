"""What runs inside a worker, whichever executor (:mod:`geodite.tasks.executors`) started it.

* :class:`ModelSetup`: what a worker builds its model from (the model's handle, device, dtype, atoms per model
  call);
* :func:`get_context_for`: the worker's model context, built once per process and cached;
* :func:`iter_chunk` / :func:`run_chunk`: a task run over one chunk of items, one row per item (an item's
  or a batch's exception becomes failed rows; only a model that cannot be built raises).
"""

from __future__ import annotations

import contextlib
import dataclasses
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from geodite.calculator import ATOMS_PER_CALL
from geodite.registry import ModelHandle, resolve
from geodite.tasks.contract import Task, WorkerContext, failed_row, item_rows


@dataclass(frozen=True)
class ModelSetup:
    """What a worker builds its model from: the model's handle (resolved once, in the run's process; it pickles
    to pool and Dask workers), the device, the dtype and, for Geodite, ``atoms_per_call``: the most atoms one
    model call takes, given to the Evaluator when it is built. Other calculators evaluate one structure at a
    time whatever it says."""

    handle: ModelHandle
    device: str = "cpu"
    dtype: str = "float32"
    atoms_per_call: int = ATOMS_PER_CALL


_WORKER_CTX: dict[ModelSetup, WorkerContext] = {}


def get_context_for(setup: ModelSetup | str) -> WorkerContext:
    """The (cached, one per process) model context of ``setup`` (a bare model name: resolved, CPU, float32)."""
    setup = ModelSetup(resolve(setup)) if isinstance(setup, str) else setup
    if setup not in _WORKER_CTX:
        calculator = setup.handle.load(device=setup.device, dtype=setup.dtype, atoms_per_call=setup.atoms_per_call)
        _WORKER_CTX[setup] = WorkerContext(setup.handle, calculator, device=setup.device)
    return _WORKER_CTX[setup]


def iter_chunk(task: Task, items: list[dict], setup: ModelSetup, scratch: Path | None = None,
               note: Callable[[str], None] | None = None) -> Iterator[dict]:
    """Run ``task`` on a chunk of items in this process, yielding each row as it finishes (any order);
    ``note`` hears how far a long item has got (:attr:`WorkerContext.note`).

    ``item_wall_s`` (s) of a row is the task's own charge where it gives one (a batch task sharing a model call
    among its items, e.g. diatomics), else the time since the previous row of the chunk. An exception escaping
    ``run_batch`` fails the items it had not finished; only a model that cannot be built raises."""
    with contextlib.redirect_stdout(sys.stderr):  # stdout is reserved for --json
        ctx = dataclasses.replace(get_context_for(setup), scratch=scratch)
        if note is not None:
            ctx.note = note
        pending = {item["key"] for item in items}
        last = time.perf_counter()
        try:
            rows = task.run_batch(items, ctx) if hasattr(task, "run_batch") else item_rows(task.run_item, items, ctx)
            for row in rows:
                row = dict(row)
                row.setdefault("status", "ok")
                pending.discard(row["key"])
                now = time.perf_counter()
                row.setdefault("item_wall_s", now - last)
                last = now
                yield row
        except Exception as exc:  # noqa: BLE001 - the batch failed: its unfinished items fail with it
            for key in [item["key"] for item in items if item["key"] in pending]:
                yield failed_row(key, exc) | {"item_wall_s": 0.0}


def run_chunk(task: Task, items: list[dict], setup: ModelSetup, scratch: Path | None = None) -> list[dict]:
    """:func:`iter_chunk` as a list (what a pool or Dask worker returns)."""
    return list(iter_chunk(task, items, setup, scratch))
