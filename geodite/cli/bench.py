"""`geodite bench ...` and `geodite models`: parse arguments, call library functions.

Every bench command takes ``--json``: the final summary as one JSON object on stdout;
progress and logs go to stderr.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from geodite.cli import common as o

bench_app = typer.Typer(help="Benchmarks (Matbench Discovery, CPS, ...).", no_args_is_help=True)
from geodite.cli.common import print_summary


@bench_app.command("discovery")
def discovery_command(
    mode: Annotated[str, typer.Option(
        help="full (Matbench Discovery files), offline (shipped 1k WBM subset) or auto (full if present)")] = "auto",
    data_dir: Annotated[Optional[Path], typer.Option(help="directory with local copies of the full data files")] = None,
    download: Annotated[bool, typer.Option(help="in full mode, download missing files to the cache")] = True,
    offline_data: Annotated[Optional[Path], typer.Option(
        help="offline mode: WBM json.gz (default: shipped 1k subset)")] = None,
    fmax: Annotated[float, typer.Option(callback=o.positive, help="force convergence (eV/Å)")] = 0.05,
    steps: Annotated[int, typer.Option(min=1, help="max optimizer steps")] = 500,
    optimizer: Annotated[str, typer.Option(help="ASE optimizer")] = "FIRE",
    engine: Annotated[str, typer.Option(
        callback=o.one_of("batched", "ase"),
        help="batched (one model call per step for all structures in flight) or ase (one structure at a time); "
             "same physics")] = "batched",
    max_atoms: Annotated[Optional[int], typer.Option(
        min=1, help="batched engine: atoms in flight per worker (default 512 on CPU, 8192 on CUDA)")] = None,
    rattle: Annotated[float, typer.Option(
        callback=o.non_negative, help="offline mode: rattle σ (Å) of the start structure")] = 0.05,
    strain: Annotated[float, typer.Option(
        callback=o.non_negative, help="offline mode: max strain component of the start structure")] = 0.03,
    seed: Annotated[int, typer.Option(help="offline mode: perturbation seed")] = 0,
    model: o.Model = "geodite", limit: o.Limit = None, workers: o.Workers = 1, threads: o.Threads = None,
    scheduler: o.Scheduler = None, slurm_config: o.SlurmConfig = None, device: o.Device = "cpu",
    dtype: o.Dtype = "float32", results_dir: o.ResultsDir = Path("results"), retry_failed: o.RetryFailed = False,
    fresh: o.Fresh = False, progress: o.Progress = True, plots: o.Plots = True, as_json: o.Json = False,
) -> None:
    """Matbench Discovery: relax, formation energy, hull distance, F1/DAF/MAE/RMSD."""
    settings = dict(
        mode=mode, data_dir=str(data_dir) if data_dir else None,
        offline_path=str(offline_data) if offline_data else None, download=download, fmax=fmax, steps=steps,
        optimizer=optimizer, rattle=rattle, strain=strain, seed=seed, engine=engine, max_atoms=max_atoms,
    )
    o.run_bench("discovery", settings, **o.shared(locals()))


@bench_app.command("cps")
def cps_command(
    model: str = typer.Option("geodite", "--model", "-m"),
    results_dir: Path = typer.Option(Path("results")),
    as_json: bool = typer.Option(False, "--json", help="print the result as one JSON object on stdout"),
) -> None:
    """Combined performance score from the latest discovery (F1, RMSD) and kappa (κ_SRME) results."""
    from geodite.registry import model_label
    from geodite.tasks.cps import cps_summary

    summary = cps_summary(model_label(model), results_dir)
    print_summary(summary, as_json, f"CPS — {model}")


def models_command(
    as_json: bool = typer.Option(False, "--json", help="print the list as JSON on stdout"),
) -> None:
    """List the models of the registry and whether each can be used here."""
    from geodite.registry import list_models

    rows = list_models()
    if as_json:
        sys.stdout.write(json.dumps(rows) + "\n")
        return
    table = Table(title="Geodite model registry (--model NAME or a checkpoint path)")
    for col in ("name", "available", "energy convention", "extra", "description"):
        table.add_column(col)
    for r in rows:
        avail = "[green]yes[/green]" if r["available"] else "[red]no[/red]"
        extra = escape(f"geodite[{r['extra']}]") if r["extra"] else ""
        table.add_row(r["name"], avail, r["energy_convention"], extra, r["description"])
    Console().print(table)
