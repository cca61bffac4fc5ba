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
from geodite.cli.common import print_summary, stderr


@bench_app.command("discovery")
def discovery_command(
    mode: Annotated[str, typer.Option(
        help="full (Matbench Discovery files), offline (shipped 1k WBM subset) or auto (full if present)")] = "auto",
    data_dir: Annotated[Optional[Path], typer.Option(help="directory with local copies of the full data files")] = None,
    download: Annotated[bool, typer.Option(help="in full mode, download missing files to the cache")] = True,
    offline_data: Annotated[Optional[Path], typer.Option(
        help="offline mode: WBM json.gz (default: shipped 1k subset)")] = None,
    fmax: Annotated[float, typer.Option(help="force convergence (eV/Å)")] = 0.05,
    steps: Annotated[int, typer.Option(help="max optimizer steps")] = 500,
    optimizer: Annotated[str, typer.Option(help="ASE optimizer")] = "FIRE",
    engine: Annotated[str, typer.Option(
        help="batched (one model call per step for all structures in flight) or ase (one structure at a time); "
             "same physics")] = "batched",
    max_atoms: Annotated[Optional[int], typer.Option(
        help="batched engine: atoms in flight per worker (default 512 on CPU, 8192 on CUDA)")] = None,
    rattle: Annotated[float, typer.Option(help="offline mode: rattle σ (Å) of the start structure")] = 0.05,
    strain: Annotated[float, typer.Option(help="offline mode: max strain component of the start structure")] = 0.03,
    seed: Annotated[int, typer.Option(help="offline mode: perturbation seed")] = 0,
    model: o.Model = "geodite", limit: o.Limit = None, workers: o.Workers = 1, threads: o.Threads = None,
    scheduler: o.Scheduler = None, slurm_config: o.SlurmConfig = None, device: o.Device = "cpu",
    dtype: o.Dtype = "float32", results_dir: o.ResultsDir = Path("results"), retry_failed: o.RetryFailed = False,
    fresh: o.Fresh = False, progress: o.Progress = True, plots: o.Plots = True, as_json: o.Json = False,
) -> None:
    """Matbench Discovery: relax, formation energy, hull distance, F1/DAF/MAE/RMSD."""
    from geodite.tasks.discovery import DiscoveryTask

    def make_task() -> DiscoveryTask:
        task = DiscoveryTask(
            mode=mode, data_dir=str(data_dir) if data_dir else None,
            offline_path=str(offline_data) if offline_data else None, download=download, fmax=fmax, steps=steps,
            optimizer=optimizer, rattle=rattle, strain=strain, seed=seed, engine=engine,
            max_atoms=max_atoms,
        )
        if task.mode == "offline" and mode == "auto":
            stderr.print(
                "[yellow]full Matbench Discovery data not found; running the offline WBM subset "
                "(perturbed DFT structures; no hull distances, so no F1/DAF). Use --mode full to download.[/yellow]"
            )
        return task

    o.run_bench(
        make_task, **o.shared(locals()),
    )


KAPPA_KEYS = ("kappa_SRME", "κ_SRME", "SRME")


@bench_app.command("cps")
def cps_command(
    model: str = typer.Option("geodite", "--model", "-m"),
    results_dir: Path = typer.Option(Path("results")),
    as_json: bool = typer.Option(False, "--json", help="print the result as one JSON object on stdout"),
) -> None:
    """Combined performance score from the latest discovery (F1, RMSD) and kappa (κ_SRME) results."""
    from geodite.registry import model_label

    summary = cps_summary(model_label(model), results_dir)
    print_summary(summary, as_json, f"CPS — {model}")


def cps_summary(model: str, results_dir: Path | str = "results") -> dict:
    """{model, CPS (or None), reason, F1, kappa_SRME, RMSD, sources} from results/<task>/<model>/metrics.json."""
    from geodite.metrics.cps import cps_or_reason
    from geodite.tasks.results import read_metrics, task_dir

    disc = read_metrics(results_dir, "discovery", model) or {}
    kappa = read_metrics(results_dir, "kappa", model) or {}
    f1, rmsd = disc.get("F1"), disc.get("RMSD")
    srme = next((kappa[k] for k in KAPPA_KEYS if kappa.get(k) is not None), None)
    reasons = []
    if not disc:
        reasons.append(f"no discovery results in {task_dir(results_dir, 'discovery', model)}")
    elif f1 is None:
        reasons.append("discovery results have no F1 (the offline subset has no hull distances; run --mode full)")
    if not kappa:
        reasons.append(f"no kappa results in {task_dir(results_dir, 'kappa', model)}")
    value, reason = cps_or_reason(f1, srme, rmsd)
    if value is None and not reasons:
        reasons.append(reason)
    return {
        "model": model,
        "CPS": value,
        "reason": "; ".join(reasons) if value is None else None,
        "F1": f1,
        "kappa_SRME": srme,
        "RMSD": rmsd,
    }


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
