"""One runner for every benchmark task: the run's bookkeeping.

A task (:class:`~geodite.tasks.contract.Task`, the contract in :mod:`geodite.tasks.contract`) is a
protocol over items producing one row per item, then metrics over the rows. :func:`run_task` owns the run:

* the options (:class:`RunOptions`) and the model: its name resolved once (:func:`geodite.registry.resolve`:
  label, weights identity, loader), before anything is written; the workers get the handle
  (:class:`~geodite.tasks.worker.ModelSetup`);
* one writer per results folder: a run holds its :class:`~geodite.tasks.lock.RunLock` throughout, and
  ``fresh`` discards the stored rows and the scratch folder only while holding it;
* the protocol: dataclass fields marked ``field(metadata=PROTOCOL)`` (plus the task's optional
  ``protocol_extras()``, e.g. data-file hashes) and the model's weights and dtype are hashed into the
  store's config (:func:`~geodite.tasks.contract.protocol_config`,
  :func:`~geodite.tasks.contract.model_protocol`); a store of another protocol is refused;
* the task's scratch folder (``<results>/<task>/<model>/scratch``, e.g. MD trajectories), handed
  to workers as ``ctx.scratch``; ``--fresh`` empties it together with the stored rows;
* resumption: each finished row is appended at once to a :class:`~geodite.tasks.store.ResultStore` (in
  process as the task yields it; from pool or Dask workers when their chunk returns); items already in the
  store are skipped (failed ones too, unless ``retry_failed``);
* progress (rich, on stderr); the per-item table, metrics files, the task's submission files (its optional
  ``submission`` hook) and plots over every stored row (:func:`stored_frame`), whatever this run's ``limit``
  or selection.

Where the items are computed (this process, a local process pool, Dask, SLURM) is an executor's
(:mod:`geodite.tasks.executors`, chosen by :func:`~geodite.tasks.executors.executor_for`); what a worker
does with a chunk (model built once per process from :mod:`geodite.registry`, ``run_batch`` or
``run_item``, failures as rows) is :mod:`geodite.tasks.worker`'s.
"""

from __future__ import annotations

import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
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
from geodite.tasks.contract import UNSUPPORTED, Task, model_protocol, protocol_config
from geodite.tasks.executors import executor_for
from geodite.tasks.lock import RunLock
from geodite.tasks.results import task_dir, write_metrics, write_rows
from geodite.tasks.store import ResultStore
from geodite.tasks.worker import ModelSetup
from geodite.threads import limit_blas_threads, threads_per_worker

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
    chunk_items: int | None = None  # items per chunk of a run_batch task (see executors.chunks())
    atoms_per_call: int = ATOMS_PER_CALL  # Geodite: the most atoms one model call takes (`--batch-atoms`)


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
    n_threads = opts.threads or threads_per_worker(opts.workers)
    setup = ModelSetup(handle, opts.device, opts.dtype, opts.atoms_per_call)
    executor = executor_for(opts.workers, n_threads, opts.chunk_items, opts.scheduler, opts.slurm_config, client)
    t_loop = time.perf_counter()
    with executor:
        if todo:
            executor.prepare(setup)  # in process: threads and the model, built once up front
            t_loop = time.perf_counter()
        with store, progress, limit_blas_threads(1):
            for row in executor.rows(task, todo, setup, scratch, note=lambda text: progress.update(tid, stage=text)):
                store.append(row)
                n_computed += 1
                n_failed_now += row.get("status") not in ("ok", UNSUPPORTED)
                progress.update(tid, advance=1, failed=n_failed_now, stage="")
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
    hook = getattr(task, "submission", None)  # the task's own submission format; tasks without one write nothing
    try:
        summary["submission_files"] = [str(p) for p in write_submission(hook, df, summary, opts.results_dir, label)]
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
