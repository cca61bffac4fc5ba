"""Where a run's items are computed: the executors of :func:`geodite.tasks.runner.run_task`.

An executor is a context manager (what it sets up is undone on exit, whatever happens) with two methods:
``prepare(setup)``, called before the timed loop of a run that has items to compute, and
``rows(task, items, setup, scratch, note)``, which splits the items into chunks (:func:`chunks`), has each
chunk run by :func:`geodite.tasks.worker.iter_chunk` somewhere and yields the rows as they come back.

* :class:`InProcess` (``workers=1``): this process; ``prepare`` sets torch's threads and builds the model
  once, up front; ``note`` reaches the progress bar;
* :class:`LocalPool` (``workers=N``): a spawned process pool, ``n_threads`` threads per worker (torch and the
  OMP/MKL environment), workers dying with the run (:func:`~geodite.tasks.lifetime.die_with_parent`), a
  bounded queue of chunks;
* :class:`DaskCluster`: a given dask.distributed Client, an existing scheduler (``scheduler=ADDRESS``) or a
  dask-jobqueue SLURMCluster (``slurm_config=YAML``, :func:`dask_client`), started on first use and closed on
  exit when the executor started it.

:func:`executor_for` picks one from a run's options. The run's bookkeeping (store, lock, progress, summary)
is :mod:`geodite.tasks.runner`'s; what a worker does with a chunk is :mod:`geodite.tasks.worker`'s.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from multiprocessing import get_context
from pathlib import Path

import yaml

from geodite.tasks.contract import Task
from geodite.tasks.lifetime import die_with_parent
from geodite.tasks.worker import ModelSetup, get_context_for, iter_chunk, run_chunk
from geodite.threads import THREAD_ENV, limit_blas_threads, set_threads, set_torch_threads, thread_env

Note = Callable[[str], None]


def chunks(task: Task, items: list[dict], workers: int, chunk_items: int | None = None) -> list[list[dict]]:
    """Items split into the chunks handed to workers: one item each for ``run_item`` tasks; for
    ``run_batch`` tasks ``chunk_items`` each (default: all items in one process, else enough chunks
    to keep ``workers`` busy, at most 256 items each)."""
    if not hasattr(task, "run_batch"):
        size = 1
    elif chunk_items:
        size = chunk_items
    elif workers <= 1:
        size = max(1, len(items))
    else:
        size = max(1, min(256, -(-len(items) // (4 * workers))))
    return [items[i : i + size] for i in range(0, len(items), size)]


class Executor:
    """The executors' common interface (see the module docstring); entering and ``prepare`` do nothing here."""

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc_info) -> None:
        return None

    def prepare(self, setup: ModelSetup) -> None:
        """What a run with items to compute sets up before its timed loop."""

    def rows(self, task: Task, items: list[dict], setup: ModelSetup, scratch: Path,
             note: Note | None = None) -> Iterator[dict]:
        raise NotImplementedError


class InProcess(Executor):
    """Every chunk in this process, torch at ``n_threads`` threads for the run (restored on exit)."""

    def __init__(self, n_threads: int, chunk_items: int | None = None) -> None:
        self.n_threads = n_threads
        self.chunk_items = chunk_items
        self._saved_threads: int | None = None

    def prepare(self, setup: ModelSetup) -> None:
        """Torch's threads, then the model, built once up front (so that a run's rate does not count it)."""
        self._saved_threads = set_torch_threads(self.n_threads)
        with contextlib.redirect_stdout(sys.stderr):
            get_context_for(setup)

    def __exit__(self, *exc_info) -> None:
        if self._saved_threads is not None:
            set_torch_threads(self._saved_threads)  # restore the caller's setting
            self._saved_threads = None

    def rows(self, task: Task, items: list[dict], setup: ModelSetup, scratch: Path,
             note: Note | None = None) -> Iterator[dict]:
        for part in chunks(task, items, 1, self.chunk_items):
            yield from iter_chunk(task, part, setup, scratch, note)


def _pool_init(n_threads: int, parent_pid: int) -> None:
    die_with_parent(parent_pid)
    set_threads(n_threads)


class LocalPool(Executor):
    """Chunks in ``workers`` spawned processes of ``n_threads`` threads each; at most 2 × ``workers`` chunks
    queued at a time, so that a kill loses little queued work and memory stays flat."""

    def __init__(self, workers: int, n_threads: int, chunk_items: int | None = None) -> None:
        self.workers = workers
        self.n_threads = n_threads
        self.chunk_items = chunk_items

    def rows(self, task: Task, items: list[dict], setup: ModelSetup, scratch: Path,
             note: Note | None = None) -> Iterator[dict]:
        parts = iter(chunks(task, items, self.workers, self.chunk_items))
        # children inherit the environment at spawn: set thread env before they import torch
        saved = {v: os.environ.get(v) for v in THREAD_ENV}
        os.environ.update(thread_env(self.n_threads))
        try:
            with ProcessPoolExecutor(
                max_workers=self.workers, mp_context=get_context("spawn"), initializer=_pool_init,
                initargs=(self.n_threads, os.getpid()),
            ) as pool:
                pending = set()
                for part in parts:
                    pending.add(pool.submit(run_chunk, task, part, setup, scratch))
                    if len(pending) >= 2 * self.workers:
                        break
                while pending:
                    done, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for fut in done:
                        yield from fut.result()
                        nxt = next(parts, None)
                        if nxt is not None:
                            pending.add(pool.submit(run_chunk, task, nxt, setup, scratch))
        finally:
            for var, val in saved.items():
                if val is None:
                    os.environ.pop(var, None)
                else:
                    os.environ[var] = val


def dask_client(scheduler: str | None = None, slurm_config: str | Path | None = None, workers: int = 1):
    """A dask.distributed Client: connect to ``scheduler`` or start a SLURMCluster from a YAML
    file of ``dask_jobqueue.SLURMCluster`` keyword arguments (plus optional ``jobs: N``)."""
    try:
        from dask.distributed import Client
    except ImportError as exc:
        raise RuntimeError(
            "Dask is not installed; install it with: pip install 'geodite[dask]' "
            "(dask[distributed] and dask-jobqueue)"
        ) from exc
    if scheduler:
        return Client(scheduler)
    try:
        from dask_jobqueue import SLURMCluster
    except ImportError as exc:
        raise RuntimeError("dask-jobqueue is not installed: pip install 'geodite[dask]'") from exc
    cfg = yaml.safe_load(Path(slurm_config).read_text()) or {}
    jobs = int(cfg.pop("jobs", workers))
    cluster = SLURMCluster(**cfg)
    cluster.scale(jobs=jobs)
    return Client(cluster)


_DASK_THREADS_SET = False


def _dask_run_chunk(task: Task, items: list[dict], setup: ModelSetup, scratch) -> list[dict]:
    global _DASK_THREADS_SET
    if not _DASK_THREADS_SET:  # once per worker process: BLAS to 1 thread (torch keeps dask's setting)
        limit_blas_threads(1)
        _DASK_THREADS_SET = True
    return run_chunk(task, items, setup, scratch)


class DaskCluster(Executor):
    """Chunks on a Dask cluster: ``client``, else one started on first use from ``scheduler`` or
    ``slurm_config`` (:func:`dask_client`) and closed on exit. Enough chunks to keep every worker of the
    cluster busy (at least ``workers``), not one chunk for a whole cluster."""

    def __init__(self, workers: int, chunk_items: int | None = None, scheduler: str | None = None,
                 slurm_config: str | Path | None = None, client=None) -> None:
        self.workers = workers
        self.chunk_items = chunk_items
        self.scheduler = scheduler
        self.slurm_config = slurm_config
        self.client = client
        self._own_client = None

    def __exit__(self, *exc_info) -> None:
        if self._own_client is not None:
            self._own_client.close()
            self._own_client = None

    def rows(self, task: Task, items: list[dict], setup: ModelSetup, scratch: Path,
             note: Note | None = None) -> Iterator[dict]:
        from dask.distributed import as_completed

        if self.client is None:
            self.client = self._own_client = dask_client(self.scheduler, self.slurm_config, self.workers)
        n_workers = max(self.workers, len(self.client.scheduler_info().get("workers", {})))
        futures = [
            self.client.submit(_dask_run_chunk, task, part, setup, scratch,
                               key=f"{task.name}-{part[0]['key']}-{len(part)}", pure=False)
            for part in chunks(task, items, n_workers, self.chunk_items)
        ]
        for fut in as_completed(futures):
            yield from fut.result()


def executor_for(workers: int, n_threads: int, chunk_items: int | None = None, scheduler: str | None = None,
                 slurm_config: str | Path | None = None, client=None) -> Executor:
    """Dask when given a client, a scheduler address or a SLURM configuration; else a local pool for
    ``workers`` > 1; else this process."""
    if scheduler or slurm_config or client is not None:
        return DaskCluster(workers, chunk_items, scheduler, slurm_config, client)
    if workers > 1:
        return LocalPool(workers, n_threads, chunk_items)
    return InProcess(n_threads, chunk_items)
