"""Options every `geodite bench` command shares, declared once, and the one way a command runs a task."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Callable, Optional

import typer
from rich.console import Console
from rich.table import Table

stderr = Console(stderr=True)


def fail(message: str, as_json: bool, code: int = 2) -> None:
    """Report an error (and, with --json, an {"error": ...} object on stdout), then exit with ``code``."""
    stderr.print(f"[red]error:[/red] {message}")
    if as_json:
        sys.stdout.write(json.dumps({"error": message}) + "\n")
    raise typer.Exit(code)


def print_summary(summary: dict, as_json: bool, title: str) -> None:
    """The summary as a table (on stderr when --json puts the JSON object on stdout)."""
    from geodite.tasks.store import jsonable

    if as_json:
        sys.stdout.write(json.dumps(jsonable(summary)) + "\n")
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, val in summary.items():
        if isinstance(val, dict | list) or key in {"task", "model", "results_dir"}:
            continue
        if isinstance(val, float):
            val = f"{val:.4g}"
        table.add_row(key, "—" if val is None else str(val))
    (stderr if as_json else Console()).print(table)


def positive(value: float | None) -> float | None:
    """Option callback: refuse a number ≤ 0 (a tolerance, a time step, a temperature); None passes."""
    if value is not None and not value > 0:
        raise typer.BadParameter(f"must be > 0, got {value}")
    return value


def non_negative(value: float | None) -> float | None:
    """Option callback: refuse a number < 0 (an amplitude that may be switched off with 0); None passes."""
    if value is not None and not value >= 0:
        raise typer.BadParameter(f"must be ≥ 0, got {value}")
    return value


def one_of(*choices: str) -> Callable[[str | None], str | None]:
    """Option callback: the value must be one of ``choices`` (None passes)."""
    def check(value: str | None) -> str | None:
        if value is not None and value not in choices:
            raise typer.BadParameter(f"{value!r} is not one of {', '.join(choices)}")
        return value

    return check


def check_device(value: str) -> str:
    """Option callback: cpu, cuda or cuda:N, and CUDA only where torch can use it (geodite.calculator.torch_device)."""
    if value == "cpu":
        return value
    from geodite.calculator import DeviceError, torch_device

    try:
        torch_device(value)
    except DeviceError as error:
        raise typer.BadParameter(str(error)) from None
    return value


def check_time(value: str | None) -> str | None:
    """Option callback: a simulated time with its unit (2ps, 1ns, 500fs), > 0; None passes."""
    from geodite.tasks.md import parse_time_fs

    if value is not None:
        try:
            parse_time_fs(value)
        except ValueError as error:
            raise typer.BadParameter(str(error)) from None
    return value


def parse_ints(text: str | None, what: str, n: int | None = 3, low: int = 1, high: int | None = None) -> list[int] | None:
    """'2,2,2' / '2x2x2' / '2 2 2' → [2, 2, 2] (``n`` of them when given, each in [low, high]); None for an
    empty value. Raises ``typer.BadParameter`` (exit code 2) naming ``what``."""
    if text is None or not text.strip():
        return None
    try:
        vals = [int(x) for x in text.replace("x", ",").replace(" ", ",").split(",") if x]
    except ValueError:
        raise typer.BadParameter(f"{what}: expected integers like 2,2,2, got {text!r}") from None
    if n is not None and len(vals) != n:
        raise typer.BadParameter(f"{what}: expected {n} integers, got {text!r}")
    out_of_range = [v for v in vals if v < low or (high is not None and v > high)]
    if out_of_range:
        bounds = f"between {low} and {high}" if high is not None else f"≥ {low}"
        raise typer.BadParameter(f"{what}: every value must be {bounds}, got {out_of_range[0]}")
    return vals


#: ``--limit`` means the same in every command: the first N items (N ≥ 1); without it, all items.
LIMIT_HELP = "only the first N items (N ≥ 1; default: all)"

Model = Annotated[str, typer.Option("--model", "-m", help="registry name (see `geodite models`) or checkpoint path")]
Limit = Annotated[Optional[int], typer.Option(min=1, help=LIMIT_HELP)]
Workers = Annotated[int, typer.Option(min=1, help="local worker processes (one model each)")]
Threads = Annotated[Optional[int], typer.Option(
    min=1, help="torch threads per worker (default: max(1, cores // workers))")]
Scheduler = Annotated[Optional[str], typer.Option(help="address of an existing Dask scheduler")]
SlurmConfig = Annotated[Optional[Path], typer.Option(
    exists=True, dir_okay=False, help="YAML of dask_jobqueue.SLURMCluster kwargs (+ jobs: N)")]
Device = Annotated[str, typer.Option(callback=check_device, help="cpu, cuda or cuda:N")]
Dtype = Annotated[str, typer.Option(callback=one_of("float32", "float64"), help="float32 or float64")]
ResultsDir = Annotated[Path, typer.Option(file_okay=False, help="results root: <root>/<task>/<model>/")]
RetryFailed = Annotated[bool, typer.Option(help="recompute items that failed in an earlier run")]
Fresh = Annotated[bool, typer.Option(help="discard stored results of this task and model")]
Progress = Annotated[bool, typer.Option(help="show a progress bar on stderr")]
Plots = Annotated[bool, typer.Option(help="write PNG plots")]
Json = Annotated[bool, typer.Option("--json", help="print the summary as one JSON object on stdout")]


SHARED = ("model", "limit", "workers", "threads", "scheduler", "slurm_config", "device", "dtype", "results_dir",
          "retry_failed", "fresh", "progress", "plots", "as_json")


def shared(arguments: dict) -> dict:
    """The shared options out of a command's ``locals()``, for ``run_bench(name, settings, **shared(locals()))``."""
    return {name: arguments[name] for name in SHARED}


def run_bench(task_name: str, settings: dict, **shared_options) -> dict:
    """Build the task ``task_name`` with ``settings`` (constructor arguments over the defaults of
    :func:`geodite.tasks.suite.make_task`), run it on the shared runner with the command's shared options
    (see :data:`SHARED`), print the summary (JSON on stdout with --json)."""
    from geodite.data.downloads import DataUnavailableError
    from geodite.registry import ModelNotAvailableError
    from geodite.tasks.runner import run_task
    from geodite.tasks.store import ConfigMismatchError
    from geodite.tasks.suite import TaskNotRun, make_task, run_options

    model, as_json = shared_options["model"], shared_options["as_json"]
    try:
        task = make_task(task_name, model, **settings)
        if getattr(task, "mode", None) == "offline" and settings.get("mode", "auto") == "auto":
            stderr.print(f"[yellow]{OFFLINE_NOTES[task_name]}[/yellow]")
        summary = run_task(task, run_options(shared_options), log=lambda message: stderr.print(message))
    except (DataUnavailableError, ModelNotAvailableError, ConfigMismatchError, TaskNotRun, FileNotFoundError,
            KeyError, ValueError, RuntimeError) as error:
        fail(str(error).strip("'\""), as_json)
    print_summary(summary, as_json, f"{summary['task']} — {model} ({summary['n_items']} items)")
    stderr.print(f"results: {summary['results_dir']}")
    return summary


#: What a command prints when ``--mode auto`` found no full data and fell back to the offline set.
OFFLINE_NOTES = {
    "discovery": "full Matbench Discovery data not found; running the offline WBM subset (perturbed DFT "
                 "structures; no hull distances, so no F1/DAF). Use --mode full to download.",
    "kappa": "phononDB structure files not found: running the offline set (prototype structures built from the "
             "shipped table; κ_SRE/κ_SRD against the DFT κ; κ_SRME needs the mode-resolved reference and is "
             "reported as null). Use --mode full to download.",
}


def print_speed(summary: dict, as_json: bool) -> None:
    """The speed table (model × size); with --json, the summary {"rows": [...], ...} on stdout."""
    from geodite.tasks.store import jsonable

    if as_json:
        sys.stdout.write(json.dumps(jsonable(summary)) + "\n")
    table = Table(title=f"speed — {summary['machine']}, {summary['threads']} threads, {summary['dtype']}")
    for column in ("model", "atoms", "μs/atom-step (median)", "min", "atom-steps/s", "peak MB", "Geodite ×"):
        table.add_column(column, justify="right" if column != "model" else "left")
    for row in summary["rows"]:
        def fmt(key, spec):
            value = row.get(key)
            return "—" if value is None else format(value, spec)

        table.add_row(row["model"], str(row["n_atoms"]), fmt("us_per_atom_step", ".0f"),
                      fmt("us_per_atom_step_min", ".0f"), fmt("atom_steps_per_s", ".0f"), fmt("peak_mem_mb", ".0f"),
                      fmt("geodite-published_speedup", ".2f") if not row.get("error") else row["error"][:40])
    (stderr if as_json else Console()).print(table)
    stderr.print(f"results: {summary['results_dir']}")
