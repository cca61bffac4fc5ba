"""`geodite bench all` (every benchmark for one model) and `geodite report` (tables + figures + provenance).

Parsing only: the work is :func:`geodite.report.run_all` and :func:`geodite.report.write_report`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from geodite.cli import common as o
from geodite.cli.bench_tasks import SPEED_MAX_ATOMS


def _csv(text: str | None) -> list[str]:
    return [part.strip() for part in (text or "").split(",") if part.strip()]


def all_command(
    tasks: Annotated[str, typer.Option(help="comma-separated subset of discovery,kappa,diatomics,md,speed")] = (
        "discovery,kappa,diatomics,md,speed"),
    md_time: Annotated[Optional[str], typer.Option(
        callback=o.check_time, help="MD simulated time per system (default 1ns; quick: 40fs)")] = None,
    speed_sizes: Annotated[Optional[str], typer.Option(help="speed: atom counts (default 64,216,1000; quick: 64)")] = None,
    speed_models: Annotated[Optional[str], typer.Option(
        help="speed: models timed side by side (default: the model and its peers; quick: the model)")] = None,
    report: Annotated[bool, typer.Option(help="write results/<model>/report.md and report.html at the end")] = True,
    model: o.Model = "geodite",
    limit: Annotated[Optional[int], typer.Option(min=1, help=(
        "quick mode: first N items (N ≥ 1) of discovery/kappa/diatomics/md, 40 fs MD, small kappa cells, "
        "speed at 64 atoms"))] = None,
    workers: o.Workers = 1, threads: o.Threads = None, device: o.Device = "cpu", dtype: o.Dtype = "float32",
    results_dir: o.ResultsDir = Path("results"), retry_failed: o.RetryFailed = False, fresh: o.Fresh = False,
    progress: o.Progress = True, plots: o.Plots = True, as_json: o.Json = False,
) -> None:
    """Run discovery, kappa, diatomics, MD and speed for a model (resuming), then CPS and the report.

    A task that fails does not stop the others; the exit status is 1 when any task failed.
    """
    from geodite.report import AllOptions, run_all, write_report

    sizes = o.parse_ints(speed_sizes, "--speed-sizes", None, high=SPEED_MAX_ATOMS)
    try:
        options = AllOptions(
            model=model, limit=limit, tasks=tuple(_csv(tasks)), results_dir=results_dir, device=device, dtype=dtype,
            workers=workers, threads=threads, retry_failed=retry_failed, fresh=fresh, progress=progress, plots=plots,
            md_time=md_time, speed_sizes=tuple(sizes) if sizes else None,
            speed_models=tuple(_csv(speed_models)) or None,
        )
    except ValueError as error:
        o.fail(str(error), as_json)
    summary = run_all(options, log=o.stderr.print)
    if report:
        try:
            summary["report"] = write_report([model], results_dir)
        except Exception as error:  # noqa: BLE001 - the runs' results are kept whatever the report does
            summary["report"] = {"error": f"{type(error).__name__}: {error}"}
    if as_json:
        from geodite.tasks.store import jsonable

        sys.stdout.write(json.dumps(jsonable(summary)) + "\n")
    table = Table(title=f"geodite bench all — {model}" + (f" (quick: --limit {limit})" if limit is not None else ""))
    for column in ("task", "status", "wall s", "items", "note"):
        table.add_column(column)
    for name, result in summary["tasks"].items():
        note = result.get("error") or result.get("reason") or result.get("results_dir", "")
        table.add_row(name, result["status"], o_fmt(result.get("wall_s")), o_fmt(result.get("n_items")), str(note)[:90])
    cps = summary["cps"]
    table.add_row("cps", "ok" if cps["CPS"] is not None else "null", "", "",
                  o_fmt(cps["CPS"]) if cps["CPS"] is not None else (cps["reason"] or "")[:90])
    (o.stderr if as_json else Console()).print(table)
    if "report" in summary and "html" in summary["report"]:
        o.stderr.print(f"report: {summary['report']['markdown']}, {summary['report']['html']}")
    if any(r["status"] == "failed" for r in summary["tasks"].values()):
        raise typer.Exit(1)


def o_fmt(value) -> str:
    if value is None:
        return "—"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def report_command(
    models: Annotated[str, typer.Option("--models", "--model", "-m",
                                        help="comma-separated models, side by side (e.g. geodite,chgnet)")] = "geodite",
    results_dir: o.ResultsDir = Path("results"),
    out: Annotated[Optional[Path], typer.Option(help="output folder (default results/<model>/, or results/<a>_vs_<b>/)")] = None,
    embed: Annotated[bool, typer.Option(help="embed the figures in the HTML (base64); else link them relatively")] = True,
    as_json: o.Json = False,
) -> None:
    """Write report.md and a self-contained report.html: every task's tables and figures, CPS, the published
    table beside ours (marked as published), and provenance (versions, checksums, hardware, wall times)."""
    from geodite.report import write_report

    try:
        written = write_report(_csv(models), results_dir, out, embed=embed)
    except (ValueError, KeyError, OSError) as error:
        o.fail(str(error), as_json)
    if as_json:
        sys.stdout.write(json.dumps(written) + "\n")
    for task, by_model in written["status"].items():
        for label, status in by_model.items():
            if status != "ok":
                o.stderr.print(f"[yellow]{task} — {label}:[/yellow] {status}")
    o.stderr.print(f"wrote {written['markdown']} and {written['html']} ({written['figures']} figures)")
