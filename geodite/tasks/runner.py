"""One runner for every benchmark task.

A task (see :class:`Task`) is a protocol over items producing one row per item, then
metrics over the rows. The runner owns everything else:

* the model: built once per worker from :mod:`geodite.registry`;
* parallelism: in-process (``workers=1``), a local process pool (``workers=N``, spawn
  start method, ``max(1, cores // N)`` threads per worker via torch and OMP/MKL env), or
  Dask (``scheduler=ADDRESS`` of an existing cluster, or ``slurm_config=YAML`` for a
  dask-jobqueue SLURMCluster);
* resumption: each finished row is appended at once to a :class:`ResultStore`; items
  already in the store are skipped (failed ones too, unless ``retry_failed``);
* one writer per results folder: a run holds its :class:`RunLock` throughout, and ``fresh``
  discards the stored rows (and the task's ``fresh_paths()``, if it has them) only while holding it;
* worker processes die with the run (:func:`die_with_parent`), even when it is killed;
* failures: an exception in an item becomes a row with ``status="failed"`` and ``error``;
* progress (rich, on stderr), the per-item table, metrics files and plots.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import time
import traceback
from collections.abc import Iterable
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import pandas as pd

from geodite.tasks.lifetime import die_with_parent
from geodite.tasks.lock import RunLock
from geodite.tasks.results import task_dir, write_metrics, write_rows
from geodite.tasks.store import ResultStore

THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


@dataclass
class WorkerContext:
    """What a task's ``run_item`` gets: the model name, its registry entry and calculator."""

    model: str
    spec: Any
    calculator: Any
    device: str = "cpu"
    cache: dict = field(default_factory=dict)


@runtime_checkable
class Task(Protocol):
    name: str

    def config(self) -> dict: ...  # protocol parameters (JSON-able); a change invalidates the store

    def items(self) -> list[dict]: ...  # each with a unique str "key"

    def run_item(self, item: dict, ctx: WorkerContext) -> dict: ...  # one result row

    def metrics(self, df: pd.DataFrame, model: str) -> dict: ...  # rows -> metrics

    def plots(self, df: pd.DataFrame, out_dir: Path, model: str) -> list[Path]: ...

    # optional: ``fresh_paths() -> list[Path]``, resumable state besides the store (deleted by ``fresh``)


# --------------------------------------------------------------------------- worker side

_WORKER_CTX: dict[tuple, WorkerContext] = {}


def threads_per_worker(workers: int, cores: int | None = None) -> int:
    if cores is None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, (cores or 1) // max(1, workers))


def thread_env(n: int) -> dict[str, str]:
    """Thread settings for a worker: ``n`` OpenMP/MKL threads for the model (torch), one
    OpenBLAS thread for numpy/scipy (ASE optimisers and pymatgen work on 3×3 matrices, where
    BLAS threads only add contention: on 2 busy cores an EMT cell relaxation took 8.3 s
    with 2 OpenBLAS threads and 0.24 s with 1)."""
    return {"OMP_NUM_THREADS": str(n), "MKL_NUM_THREADS": str(n), "OPENBLAS_NUM_THREADS": "1"}


def limit_blas_threads(n: int = 1):
    """Context manager limiting numpy/scipy BLAS threads (no-op without threadpoolctl)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(limits=n, user_api="blas")


def set_threads(n: int) -> None:
    """Per-process thread settings of a worker (see :func:`thread_env`)."""
    os.environ.update(thread_env(n))
    limit_blas_threads(1)  # stays in effect (not used as a context manager)
    if "torch" in sys.modules:  # else torch reads OMP_NUM_THREADS when the model imports it
        sys.modules["torch"].set_num_threads(n)


def _set_torch_threads(n: int) -> int | None:
    """Set torch's intra-op threads, returning the previous value (None without torch)."""
    try:
        import torch
    except ImportError:
        return None
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    return old


def get_context_for(model: str, device: str = "cpu", dtype: str = "float32") -> WorkerContext:
    """The (cached, one per process) model context."""
    key = (model, device, dtype)
    if key not in _WORKER_CTX:
        from geodite.registry import get_spec

        spec = get_spec(model)
        calc = spec.make_calculator(device=device, dtype=dtype)
        _WORKER_CTX[key] = WorkerContext(model=model, spec=spec, calculator=calc, device=device)
    return _WORKER_CTX[key]


def run_one(task: Task, item: dict, model: str, device: str = "cpu", dtype: str = "float32") -> dict:
    """Run ``task`` on one item; errors of the item become a failed row (``status``,
    ``error``, ``traceback``); only a model that cannot be built raises."""
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(sys.stderr):  # stdout is reserved for --json
        ctx = get_context_for(model, device, dtype)  # a model that cannot be built stops the run
        try:
            row = dict(task.run_item(item, ctx))
            row.setdefault("status", "ok")
        except Exception as exc:  # noqa: BLE001 - a failing item must not stop the run
            row = {
                "status": "failed",
                "error": f"{type(exc).__name__}: {exc}",
                "traceback": traceback.format_exc(limit=5),
            }
    row["key"] = item["key"]
    row["item_wall_s"] = time.perf_counter() - t0
    return row


def _pool_init(n_threads: int, parent_pid: int) -> None:
    die_with_parent(parent_pid)
    set_threads(n_threads)


_DASK_THREADS_SET = False


def _dask_run_one(task: Task, item: dict, model: str, device: str, dtype: str) -> dict:
    global _DASK_THREADS_SET
    if not _DASK_THREADS_SET:  # once per worker process: BLAS to 1 thread (torch keeps dask's setting)
        limit_blas_threads(1)
        _DASK_THREADS_SET = True
    return run_one(task, item, model, device, dtype)


# --------------------------------------------------------------------------- executors


def _iter_local(task, items, model, device, dtype, workers, n_threads) -> Iterable[dict]:
    if workers <= 1:
        for item in items:
            yield run_one(task, item, model, device, dtype)
        return
    # children inherit the environment at spawn: set thread env before they import torch
    saved = {v: os.environ.get(v) for v in THREAD_ENV}
    os.environ.update(thread_env(n_threads))
    try:
        with ProcessPoolExecutor(
            max_workers=workers, mp_context=get_context("spawn"), initializer=_pool_init,
            initargs=(n_threads, os.getpid()),
        ) as pool:
            pending = set()
            it = iter(items)
            # keep a bounded queue so a kill loses little queued work and memory stays flat
            for item in it:
                pending.add(pool.submit(run_one, task, item, model, device, dtype))
                if len(pending) >= 2 * workers:
                    break
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for fut in done:
                    yield fut.result()
                    nxt = next(it, None)
                    if nxt is not None:
                        pending.add(pool.submit(run_one, task, nxt, model, device, dtype))
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
    import yaml

    cfg = yaml.safe_load(Path(slurm_config).read_text()) or {}
    jobs = int(cfg.pop("jobs", workers))
    cluster = SLURMCluster(**cfg)
    cluster.scale(jobs=jobs)
    return Client(cluster)


def _iter_dask(task, items, model, device, dtype, client) -> Iterable[dict]:
    from dask.distributed import as_completed

    futures = [
        client.submit(_dask_run_one, task, item, model, device, dtype, key=f"{task.name}-{item['key']}", pure=False)
        for item in items
    ]
    for fut in as_completed(futures):
        yield fut.result()


# --------------------------------------------------------------------------- the run


@dataclass
class RunOptions:
    model: str = "geodite"
    workers: int = 1
    threads: int | None = None  # per worker; default max(1, cores // workers)
    scheduler: str | None = None
    slurm_config: str | None = None
    device: str = "cpu"
    dtype: str = "float32"
    results_dir: str | Path = "results"
    limit: int | None = None
    retry_failed: bool = False
    fresh: bool = False
    progress: bool = True
    plots: bool = True


def _progress(enabled: bool, total: int, done: int, description: str):
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        ProgressColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )
    from rich.text import Text

    class RateColumn(ProgressColumn):
        def render(self, task):
            speed = task.finished_speed or task.speed
            if not speed:
                return Text("? it/h", style="progress.data.speed")
            return Text(f"{speed * 3600:,.0f} it/h", style="progress.data.speed")

    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        RateColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        TextColumn("{task.fields[failed]} failed"),
        console=Console(stderr=True),
        disable=not enabled,
    )
    tid = progress.add_task(description, total=total, completed=done, failed=0)
    return progress, tid


def _weights_identity(spec) -> dict:
    """For a Geodite checkpoint file here ('geodite', a path): its sha256, so a store of results made with other
    weights under the same name (e.g. after the shipped checkpoint changed) is refused, not silently resumed.
    The published 'geodite-mp' file is fixed by its name; peers' weights come with their packages."""
    if spec.checkpoint is None or spec.checkpoint == "geodite-mp":
        return {}
    from geodite.checkpoints import file_sha256, resolve_model_path

    return {"weights_sha256": file_sha256(resolve_model_path(spec.checkpoint))}


def run_task(task: Task, opts: RunOptions, client=None, log=None) -> dict:
    """Run ``task`` for ``opts.model``; returns the summary (what ``--json`` prints)."""
    from geodite.registry import get_spec, model_label

    log = log or (lambda msg: print(msg, file=sys.stderr))
    t0 = time.perf_counter()
    spec = get_spec(opts.model)  # fail fast on unknown names
    label = model_label(opts.model)
    if not spec.available():
        from geodite.registry import ModelNotAvailableError

        raise ModelNotAvailableError(spec.missing_message())
    out_dir = task_dir(opts.results_dir, task.name, label)
    store = ResultStore(out_dir / "store")
    with RunLock(store.lock_path, out_dir, log):
        return _run_locked(task, opts, client, log, spec, store, t0)


def _discard(store: ResultStore, task: Task) -> None:
    """``fresh``: delete the stored rows and the task's other resumable state (call it holding the lock)."""
    store.discard()
    for path in map(Path, getattr(task, "fresh_paths", list)()):
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)


def _run_locked(task: Task, opts: RunOptions, client, log, spec, store: ResultStore, t0: float) -> dict:
    """The run itself, once the results folder is held."""
    from geodite.registry import model_label

    label = model_label(opts.model)
    out_dir = store.dir.parent
    if opts.fresh:
        _discard(store, task)
    config = task.config() | _weights_identity(spec)
    store.check_or_write_meta(
        {"task": task.name, "model": opts.model, "energy_convention": spec.energy_convention}, config
    )
    damaged = store.set_aside_bad_lines()
    if damaged:
        log(damaged)
    items = task.items()
    if opts.limit is not None:
        items = items[: opts.limit]
    keys = [it["key"] for it in items]
    if len(set(keys)) != len(keys):
        raise ValueError(f"task {task.name} produced duplicate item keys")
    done = store.done_keys(retry_failed=opts.retry_failed) & set(keys)
    todo = [it for it in items if it["key"] not in done]
    log(f"{task.name} / {label}: {len(items)} items, {len(done)} already done, {len(todo)} to compute")

    n_computed = n_failed_now = 0
    progress, tid = _progress(opts.progress, len(items), len(done), f"{task.name}:{label}")
    own_client = None
    n_threads = opts.threads or threads_per_worker(opts.workers)
    use_dask = bool(opts.scheduler or opts.slurm_config or client is not None)
    in_process = bool(todo) and not use_dask and opts.workers <= 1
    torch_threads = _set_torch_threads(n_threads) if in_process else None
    t_loop = time.perf_counter()
    try:
        if in_process:
            with contextlib.redirect_stdout(sys.stderr):
                get_context_for(opts.model, opts.device, opts.dtype)  # build the model once, up front
            t_loop = time.perf_counter()
        with store, progress, limit_blas_threads(1):
            if use_dask:
                if client is None:
                    client = own_client = dask_client(opts.scheduler, opts.slurm_config, opts.workers)
                rows = _iter_dask(task, todo, opts.model, opts.device, opts.dtype, client)
            else:
                rows = _iter_local(task, todo, opts.model, opts.device, opts.dtype, opts.workers, n_threads)
            for row in rows:
                store.append(row)
                n_computed += 1
                n_failed_now += row.get("status") != "ok"
                progress.update(tid, advance=1, failed=n_failed_now)
    finally:
        if own_client is not None:
            own_client.close()
        if torch_threads is not None:
            _set_torch_threads(torch_threads)  # restore the caller's setting
    loop_s = time.perf_counter() - t_loop
    compute_s = time.perf_counter() - t0

    all_rows = store.read_rows()
    df = pd.DataFrame([all_rows[k] for k in keys if k in all_rows])
    if df.empty:
        df = pd.DataFrame(columns=["key", "status"])
    df = df.drop(columns=["traceback"], errors="ignore")  # kept in the store only
    metrics = task.metrics(df, opts.model)
    n_failed = int((df["status"] != "ok").sum()) if len(df) else 0
    summary = {
        "task": task.name,
        "model": opts.model,
        "energy_convention": spec.energy_convention,
        "n_items": len(items),
        "n_skipped": len(done),
        "n_computed": n_computed,
        "n_failed": n_failed,
        "wall_s": round(compute_s, 3),
        "items_per_hour": round(3600 * n_computed / loop_s, 1) if n_computed and loop_s > 0 else None,
        "workers": opts.workers,
        "threads_per_worker": n_threads,
        **metrics,
        "config": config,
        "results_dir": str(out_dir),
    }
    write_rows(df, out_dir)
    write_metrics(summary, out_dir, title=f"{task.name} — {label}")
    if opts.plots and len(df):
        try:
            summary["plots"] = [str(p) for p in task.plots(df, out_dir, opts.model)]
        except Exception as exc:  # noqa: BLE001 - plots must not lose the results
            log(f"plotting failed: {exc}")
    return summary
