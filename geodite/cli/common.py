"""What every command group shares: option declarations (each declared once), option checks, and output.

* :data:`RUN_OPTIONS` and :func:`with_run_options`: the options every runner-backed ``geodite bench``
  command takes (``--model``, ``--limit``, ``--workers``, ...), declared once here with their defaults taken
  from :class:`geodite.tasks.runner.RunOptions`; the decorator adds them to a command and hands it the
  :class:`RunOptions` they make (:func:`geodite.tasks.suite.run_options`, the one place the CLI builds it).
* ``Model``, ``Device``, ``Dtype``, ``Limit``, ``ResultsDir``, ``Json``: the same options for the other
  commands (``bench speed``, ``bench cps``, ``eval``, ``report``, ``export``).
* Checks that exit with code 2 and a one-line message (Typer callbacks, :func:`parse_ints`), and output
  (:func:`fail`, :func:`print_summary`, :func:`format_value`).
"""

from __future__ import annotations

import functools
import inspect
import json
import math
import sys
import tempfile
from dataclasses import fields
from pathlib import Path
from typing import Annotated, Any, Callable, Optional

import typer
from rich.console import Console
from rich.table import Table

from geodite.tasks import suite
from geodite.tasks.runner import RunOptions
from geodite.tasks.store import jsonable

stderr = Console(stderr=True)


def fail(message: str, as_json: bool, code: int = 2) -> None:
    """Report an error (and, with --json, an {"error": ...} object on stdout), then exit with ``code``."""
    stderr.print(f"[red]error:[/red] {message}")
    if as_json:
        sys.stdout.write(json.dumps({"error": message}) + "\n")
    raise typer.Exit(code)


def format_value(value: Any) -> str:
    """A table cell: "—" for None, 4 significant digits for a float, else the value as text."""
    if value is None:
        return "—"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def print_summary(summary: dict, as_json: bool, title: str) -> None:
    """The summary as a table (on stderr when --json puts the JSON object on stdout)."""
    if as_json:
        sys.stdout.write(json.dumps(jsonable(summary)) + "\n")
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in summary.items():
        if isinstance(value, dict | list) or key in {"task", "model", "results_dir"}:
            continue
        table.add_row(key, format_value(value))
    (stderr if as_json else Console()).print(table)


# --------------------------------------------------------------------------- checks (exit code 2)


def positive(value: float | None) -> float | None:
    """Option callback: refuse a number ≤ 0 or not finite (a tolerance, a time step, a temperature); None passes."""
    if value is not None and not (math.isfinite(value) and value > 0):
        raise typer.BadParameter(f"must be a finite number > 0, got {value}")
    return value


def non_negative(value: float | None) -> float | None:
    """Option callback: refuse a number < 0 or not finite (an amplitude that may be switched off with 0); None
    passes."""
    if value is not None and not (math.isfinite(value) and value >= 0):
        raise typer.BadParameter(f"must be a finite number ≥ 0, got {value}")
    return value


def names(value: str | None) -> str | None:
    """Option callback of a comma-separated list (elements, materials, systems, models): given, it must name
    something (``--elements ""`` is refused, not read as "all"); None (not given) passes."""
    if value is not None and not split_names(value):
        raise typer.BadParameter(f"names nothing (got {value!r}); leave the option out for the default")
    return value


def check_optimizer(value: str) -> str:
    """Option callback: the name of an ASE optimizer class (FIRE, BFGS, LBFGS, ...)."""
    from geodite.relax import optimizer_class

    try:
        optimizer_class(value)
    except ValueError as error:
        raise typer.BadParameter(str(error)) from None
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


def writable_folder(folder: Path) -> Path:
    """Option callback of a folder a command writes into (``--results-dir``): refuse, before any work, one
    where nothing can be written (read-only, not a folder), so that no computed result is lost at the end.
    Nothing is created: the folder, or its nearest existing parent, gets a temporary file."""
    existing = folder.absolute()
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise typer.BadParameter(f"{existing} is not a folder")
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as error:
        raise typer.BadParameter(f"cannot write in {existing} ({error.strerror or error}); "
                                 "choose another folder") from None
    return folder


def io_error(error: OSError) -> str:
    """An OSError (disk full, permission denied, ...) as one line: what failed, and on which file."""
    where = f": {error.filename}" if error.filename else ""
    return f"{error.strerror or type(error).__name__}{where}"


def parse_ints(text: str | None, what: str, n: int | None = 3, low: int = 1, high: int | None = None) -> list[int] | None:
    """'2,2,2' / '2x2x2' / '2 2 2' → [2, 2, 2] (``n`` of them when given, each in [low, high]); None for an
    empty value. Raises ``typer.BadParameter`` (exit code 2) naming ``what``."""
    if text is None or not text.strip():
        return None
    try:
        values = [int(x) for x in text.replace("x", ",").replace(" ", ",").split(",") if x]
    except ValueError:
        raise typer.BadParameter(f"{what}: expected integers like 2,2,2, got {text!r}") from None
    if n is not None and len(values) != n:
        raise typer.BadParameter(f"{what}: expected {n} integers, got {text!r}")
    out_of_range = [v for v in values if v < low or (high is not None and v > high)]
    if out_of_range:
        bounds = f"between {low} and {high}" if high is not None else f"≥ {low}"
        raise typer.BadParameter(f"{what}: every value must be {bounds}, got {out_of_range[0]}")
    return values


def split_names(text: str | None) -> list[str]:
    """'a, b,,c' → ['a', 'b', 'c']: a comma-separated option (models, elements, systems); [] when empty."""
    return [part.strip() for part in (text or "").split(",") if part.strip()]


# --------------------------------------------------------------------------- options, each declared once

#: ``--limit`` means the same in every command: the first N items (N ≥ 1); without it, all items.
LIMIT_HELP = "only the first N items (N ≥ 1; default: all)"

Model = Annotated[str, typer.Option(
    "--model", "-m", help="registry name (see `geodite models`), checkpoint path or exported package (FILE.pt2)")]
Limit = Annotated[Optional[int], typer.Option(min=1, help=LIMIT_HELP)]
Device = Annotated[str, typer.Option(callback=check_device, help="cpu, cuda or cuda:N")]
Dtype = Annotated[str, typer.Option(callback=one_of("float32", "float64"), help="float32 or float64")]
ResultsDir = Annotated[Path, typer.Option(file_okay=False, help="results root: <root>/<task>/<model>/")]
#: ``--results-dir`` of a command that writes results: refused before any work when nothing can be written there
WritableResultsDir = Annotated[Path, typer.Option(
    file_okay=False, callback=writable_folder, help="results root: <root>/<task>/<model>/")]
Json = Annotated[bool, typer.Option("--json", help="print the summary as one JSON object on stdout")]

#: The options every runner-backed ``geodite bench`` command takes, in the order ``--help`` lists them; each
#: is a field of :class:`RunOptions`, whose default it has (:data:`RUN_DEFAULTS`).
RUN_OPTIONS: dict[str, Any] = {
    "model": Model,
    "limit": Limit,
    "workers": Annotated[int, typer.Option(min=1, help="local worker processes (one model each)")],
    "threads": Annotated[Optional[int], typer.Option(
        min=1, help="torch threads per worker (default: max(1, cores // workers))")],
    "scheduler": Annotated[Optional[str], typer.Option(help="address of an existing Dask scheduler")],
    "slurm_config": Annotated[Optional[Path], typer.Option(
        exists=True, dir_okay=False, help="YAML of dask_jobqueue.SLURMCluster kwargs (+ jobs: N)")],
    "device": Device,
    "dtype": Dtype,
    "atoms_per_call": Annotated[int, typer.Option(
        "--batch-atoms", min=1, help="Geodite: atoms per model call, the most atoms one forward pass takes "
        "(1 = one structure a call)")],
    "results_dir": WritableResultsDir,
    "retry_failed": Annotated[bool, typer.Option(help="recompute items that failed in an earlier run")],
    "fresh": Annotated[bool, typer.Option(help="discard stored results of this task and model")],
    "progress": Annotated[bool, typer.Option(help="show a progress bar on stderr")],
    "plots": Annotated[bool, typer.Option(help="write PNG plots")],
}
RUN_DEFAULTS: dict[str, Any] = {f.name: f.default for f in fields(RunOptions)}
RUN_DEFAULTS["results_dir"] = Path(RUN_DEFAULTS["results_dir"])


def with_run_options(*, without: tuple[str, ...] = ()) -> Callable[[Callable], Callable]:
    """Decorator of a runner-backed command ``def command(<its own options>, *, run: RunOptions, ...)``.

    In the signature Typer reads, ``run`` becomes the options of :data:`RUN_OPTIONS` (all but ``without``),
    in their order and with :data:`RUN_DEFAULTS`; a parameter of the same name that the command declares
    itself (e.g. ``--limit`` with its own help) takes the shared one's place. The command is called with
    ``run`` = the :class:`RunOptions` those values make (:func:`geodite.tasks.suite.run_options`); options
    left out keep RunOptions' defaults.
    """
    def decorate(command: Callable) -> Callable:
        own = inspect.signature(command, eval_str=True).parameters
        names = list(own)
        at = names.index("run")
        shared = [own[name] if name in own else inspect.Parameter(
            name, inspect.Parameter.KEYWORD_ONLY, annotation=annotation, default=RUN_DEFAULTS[name])
            for name, annotation in RUN_OPTIONS.items() if name not in without]
        parameters = [own[name] for name in names[:at] if name not in RUN_OPTIONS] + shared + [
            own[name] for name in names[at + 1:] if name not in RUN_OPTIONS]
        parameters = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in parameters]
        shared_names = [p.name for p in shared]

        @functools.wraps(command)
        def run_command(**values: Any) -> Any:
            settings = {name: values.pop(name) for name in shared_names}
            return command(**values, run=suite.run_options(settings))

        run_command.__signature__ = inspect.Signature(parameters, return_annotation=None)
        run_command.__annotations__ = {p.name: p.annotation for p in parameters}
        return run_command

    return decorate
