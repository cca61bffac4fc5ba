"""One runner for every benchmark task.

A task (:class:`~geodite.tasks.contract.Task`, the contract in :mod:`geodite.tasks.contract`) is a
protocol over items producing one row per item, then metrics over the rows. The runner owns everything else:

* the model: resolved once per run (:func:`geodite.registry.resolve`), its handle sent to the workers, each of
  which loads it once (:func:`get_context_for`); tasks evaluate structures through
  :meth:`~geodite.tasks.contract.WorkerContext.evaluate` (batched for Geodite, a loop for any other ASE calculator);
* batches: a task with ``run_batch(items, ctx)`` gets chunks of items and yields their rows as
  they finish (a relaxation keeps a budget of atoms in flight); other tasks get ``run_item``
  one item at a time;
* the protocol: dataclass fields marked ``field(metadata=PROTOCOL)`` (plus the task's optional
  ``protocol_extras()``, e.g. data-file hashes) and the model's weights and dtype are hashed into the
  store's config (:func:`protocol_config`, :func:`model_protocol`); a store of another protocol is refused;
* the task's scratch folder (``<results>/<task>/<model>/scratch``, e.g. MD trajectories), handed
  to workers as ``ctx.scratch``; ``--fresh`` empties it together with the stored rows;
* parallelism: in-process (``workers=1``), a local process pool (``workers=N``, spawn
  start method, ``max(1, cores // N)`` threads per worker via torch and OMP/MKL env), or
  Dask (``scheduler=ADDRESS`` of an existing cluster, or ``slurm_config=YAML`` for a
  dask-jobqueue SLURMCluster);
* resumption: each finished row is appended at once to a :class:`ResultStore` (in process as
  the task yields it; from pool or Dask workers when their chunk returns); items already in the
  store are skipped (failed ones too, unless ``retry_failed``);
* one writer per results folder: a run holds its :class:`RunLock` throughout, and ``fresh``
  discards the stored rows and the scratch folder only while holding it;
* worker processes die with the run (:func:`die_with_parent`), even when it is killed;
* failures: an exception in an item becomes a row with ``status="failed"`` and ``error``; an
  exception escaping ``run_batch`` fails the items of the chunk it had not finished;
* progress (rich, on stderr); the per-item table, metrics files and plots over every stored row
  (:func:`stored_frame`), whatever this run's ``limit`` or selection.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import pandas as pd
import yaml
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

from geodite.calculator import ATOMS_PER_CALL
from geodite.registry import ModelHandle, resolve
from geodite.submission import write_submission
from geodite.tasks.contract import (UNSUPPORTED, Task, WorkerContext, failed_row, item_rows, model_protocol,
                                     protocol_config)
from geodite.tasks.lifetime import die_with_parent
from geodite.tasks.lock import RunLock
from geodite.tasks.results import task_dir, write_metrics, write_rows
from geodite.tasks.store import ResultStore
from geodite.threads import (
    THREAD_ENV,
    limit_blas_threads,
    set_threads,
    set_torch_threads,
    thread_env,
    threads_per_worker,
)

# --------------------------------------------------------------------------- worker side

@dataclass(frozen=True)
class ModelSetup:
    """What a worker builds its model from: the model's handle (resolved once, in the run's process; it pickles),
    the device, the dtype and, for Geodite, ``atoms_per_call``: the most atoms one model call takes (the
    Evaluator's, set when it is built). Other calculators evaluate one structure at a time whatever it says."""

    handle: ModelHandle
    device: str = "cpu"
    dtype: str = "float32"
    atoms_per_call: int = ATOMS_PER_CALL


_WORKER_CTX: dict[ModelSetup, WorkerContext] = {}


def get_context_for(setup: ModelSetup | str) -> WorkerContext:
    """The (cached, one per process) model context of ``setup`` (a bare model name: CPU, float32)."""
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


def _pool_init(n_threads: int, parent_pid: int) -> None:
    die_with_parent(parent_pid)
    set_threads(n_threads)


_DASK_THREADS_SET = False


def _dask_run_chunk(task: Task, items: list[dict], setup: ModelSetup, scratch) -> list[dict]:
    global _DASK_THREADS_SET
    if not _DASK_THREADS_SET:  # once per worker process: BLAS to 1 thread (torch keeps dask's setting)
        limit_blas_threads(1)
        _DASK_THREADS_SET = True
    return run_chunk(task, items, setup, scratch)


# --------------------------------------------------------------------------- executors


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


def _iter_local(task, parts, setup: ModelSetup, workers, n_threads, scratch, note=None) -> Iterable[dict]:
    if workers <= 1:
        for part in parts:
            yield from iter_chunk(task, part, setup, scratch, note)
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
            it = iter(parts)
            # keep a bounded queue so a kill loses little queued work and memory stays flat
            for part in it:
                pending.add(pool.submit(run_chunk, task, part, setup, scratch))
                if len(pending) >= 2 * workers:
                    break
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for fut in done:
                    yield from fut.result()
                    nxt = next(it, None)
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


def _iter_dask(task, parts, setup: ModelSetup, client, scratch) -> Iterable[dict]:
    from dask.distributed import as_completed

    futures = [
        client.submit(_dask_run_chunk, task, part, setup, scratch,
                      key=f"{task.name}-{part[0]['key']}-{len(part)}", pure=False)
        for part in parts
    ]
    for fut in as_completed(futures):
        yield from fut.result()


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
    chunk_items: int | None = None  # items per chunk of a run_batch task (see chunks())
    batch_atoms: int | None = None  # Geodite: atoms per model call (ModelSetup.atoms_per_call); None: ATOMS_PER_CALL


class _RateColumn(ProgressColumn):
    """Items per hour in a rich progress bar."""

    def render(self, task) -> Text:
        speed = task.finished_speed or task.speed
        if not speed:
            return Text("? it/h", style="progress.data.speed")
        return Text(f"{speed * 3600:,.0f} it/h", style="progress.data.speed")


def _progress(enabled: bool, total: int, done: int, description: str):
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        _RateColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        TextColumn("{task.fields[failed]} failed"),
        TextColumn("[dim]{task.fields[stage]}"),
        console=Console(stderr=True),
        disable=not enabled,
    )
    tid = progress.add_task(description, total=total, completed=done, failed=0, stage="")
    return progress, tid


def stored_frame(rows: dict[str, dict], order: list[str]) -> pd.DataFrame:
    """Every stored row (``key`` → row, all of one protocol, in store order) as the table the metrics are
    computed from: in the task's item ``order`` when it lists them all, else (rows of an earlier, wider
    selection such as more ``--elements``) in store order, so the table does not depend on this run's selection;
    the traceback column is left in the store."""
    keys = [k for k in order if k in rows] if set(rows) <= set(order) else list(rows)
    df = pd.DataFrame([rows[k] for k in keys]) if keys else pd.DataFrame(columns=["key", "status"])
    return df.drop(columns=["traceback"], errors="ignore")


def run_scope(n_stored: int, n_run: int, n_task: int, limit: int | None) -> str:
    """One line saying what a summary covers (every stored item of the protocol) and what this run asked for."""
    asked = (f"the first {n_run} of the task's {n_task} items (--limit {limit})" if limit is not None and n_run < n_task
             else f"{n_run} items")
    return f"the summary covers all {n_stored} items stored under this protocol; this run: {asked}"


def failure_reasons(df: pd.DataFrame, shown: int = 3) -> list[str]:
    """The most common errors of the failed rows, most frequent first, as "N× error" (at most ``shown``)."""
    if not len(df):
        return []
    failed = df[~df["status"].isin(["ok", UNSUPPORTED])]
    errors = failed["error"] if "error" in failed else pd.Series(None, index=failed.index, dtype=object)
    counts = errors.fillna("no error recorded").astype(str).value_counts()
    return [f"{n}× {error}" for error, n in counts.head(shown).items()]


def run_task(task: Task, opts: RunOptions, client=None, log=None) -> dict:
    """Run ``task`` for ``opts.model``; returns the summary (what ``--json`` prints). The metrics, table, files
    and plots cover every item stored under the task's protocol, not only this run's (``--limit``, a narrower
    selection): a run over a subset never replaces a fuller summary; ``scope`` says what each covers."""
    log = log or (lambda msg: print(msg, file=sys.stderr))
    t0 = time.perf_counter()
    handle = resolve(opts.model)  # the one resolution of the run: KeyError for an unknown name, at once
    handle.require()  # ModelNotAvailableError: a missing optional package, or no trained weights
    out_dir = task_dir(opts.results_dir, task.name, handle.label)
    store = ResultStore(out_dir / "store")
    with RunLock(store.lock_path, out_dir, log):
        return _run_locked(task, opts, client, log, handle, store, t0)


def _run_locked(task: Task, opts: RunOptions, client, log, handle: ModelHandle, store: ResultStore,
                t0: float) -> dict:
    """The run itself, once the results folder is held."""
    label = handle.label
    out_dir = store.dir.parent
    scratch = out_dir / "scratch"  # the task's resumable state besides the store (MD trajectories)
    if opts.fresh:
        store.discard()
        shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True, exist_ok=True)
    config = protocol_config(task) | model_protocol(handle, opts.dtype)
    discarded = store.check_or_write_meta(
        {"task": task.name, "model": opts.model, "energy_convention": handle.energy_convention}, config
    )
    if discarded:
        log(discarded)
    damaged = store.set_aside_bad_lines()
    if damaged:
        log(damaged)
    task_items = task.items()
    task_keys = [it["key"] for it in task_items]
    if len(set(task_keys)) != len(task_keys):
        raise ValueError(f"task {task.name} produced duplicate item keys")
    items = task_items if opts.limit is None else task_items[: opts.limit]
    keys = task_keys[: len(items)]
    done = store.done_keys(retry_failed=opts.retry_failed) & set(keys)
    todo = [it for it in items if it["key"] not in done]
    log(f"{task.name} / {label}: {len(items)} items, {len(done)} already done, {len(todo)} to compute")

    n_computed = n_failed_now = 0
    progress, tid = _progress(opts.progress, len(items), len(done), f"{task.name}:{label}")
    own_client = None
    n_threads = opts.threads or threads_per_worker(opts.workers)
    setup = ModelSetup(handle, opts.device, opts.dtype, opts.batch_atoms or ATOMS_PER_CALL)
    use_dask = bool(opts.scheduler or opts.slurm_config or client is not None)
    in_process = bool(todo) and not use_dask and opts.workers <= 1
    torch_threads = set_torch_threads(n_threads) if in_process else None
    t_loop = time.perf_counter()
    try:
        if in_process:
            with contextlib.redirect_stdout(sys.stderr):
                get_context_for(setup)  # build the model once, up front
            t_loop = time.perf_counter()
        with store, progress, limit_blas_threads(1):
            if use_dask:
                if client is None:
                    client = own_client = dask_client(opts.scheduler, opts.slurm_config, opts.workers)
                # chunks enough to keep every worker of the cluster busy (not one chunk for a whole cluster)
                n_workers = max(opts.workers, len(client.scheduler_info().get("workers", {})))
                parts = chunks(task, todo, n_workers, opts.chunk_items)
                rows = _iter_dask(task, parts, setup, client, scratch)
            else:
                parts = chunks(task, todo, 1 if in_process else opts.workers, opts.chunk_items)
                rows = _iter_local(task, parts, setup, opts.workers, n_threads, scratch,
                                   note=lambda text: progress.update(tid, stage=text))
            for row in rows:
                store.append(row)
                n_computed += 1
                n_failed_now += row.get("status") not in ("ok", UNSUPPORTED)
                progress.update(tid, advance=1, failed=n_failed_now, stage="")
    finally:
        if own_client is not None:
            own_client.close()
        if torch_threads is not None:
            set_torch_threads(torch_threads)  # restore the caller's setting
    loop_s = time.perf_counter() - t_loop
    compute_s = time.perf_counter() - t0

    df = stored_frame(store.read_rows(), task_keys)
    metrics = task.metrics(df, opts.model)
    n_failed = int((~df["status"].isin(["ok", UNSUPPORTED])).sum()) if len(df) else 0
    unsupported = df.loc[df["status"] == UNSUPPORTED, "key"].tolist() if len(df) else []
    scope = run_scope(len(df), len(items), len(task_items), opts.limit)
    if len(df) != len(items):
        log(f"{task.name} / {label}: {scope}")
    summary = {
        "task": task.name,
        "model": opts.model,
        "energy_convention": handle.energy_convention,
        "n_items": len(df),
        "n_failed": n_failed,
        "scope": scope,
        "n_run_items": len(items),
        "n_skipped": len(done),
        "n_computed": n_computed,
        "n_unsupported": len(unsupported),
        "wall_s": round(compute_s, 3),
        "items_per_hour": round(3600 * n_computed / loop_s, 1) if n_computed and loop_s > 0 else None,
        "workers": opts.workers,
        "threads_per_worker": n_threads,
        **metrics,
        "config": config,
        "results_dir": str(out_dir),
        "failure_reasons": failure_reasons(df),
        "unsupported": unsupported,
    }
    try:
        summary["submission_files"] = [str(p) for p in write_submission(task.name, df, summary, opts.results_dir,
                                                                        label)]
    except (KeyError, TypeError, ValueError) as exc:  # odd stored rows must not lose the tables and metrics
        log(f"submission files not written: {type(exc).__name__}: {exc}")
    write_rows(df, out_dir)
    write_metrics(summary, out_dir, title=f"{task.name} — {label}")
    if opts.plots and len(df):
        try:
            summary["plots"] = [str(p) for p in task.plots(df, out_dir, opts.model)]
        except Exception as exc:  # noqa: BLE001 - plots must not lose the results
            log(f"plotting failed: {exc}")
    return summary
