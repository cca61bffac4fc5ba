"""`geodite bench diatomics` and `geodite bench md`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from geodite.cli import common as o


def diatomics_command(
    protocol: Annotated[str, typer.Option(help="mbd (Matbench Discovery) or arena (MLIP Arena)")] = "mbd",
    elements: Annotated[Optional[str], typer.Option(help="comma-separated symbols (default: H…U)")] = None,
    model: o.Model = "geodite", limit: o.Limit = None, workers: o.Workers = 1, threads: o.Threads = None,
    scheduler: o.Scheduler = None,
    slurm_config: o.SlurmConfig = None, device: o.Device = "cpu", dtype: o.Dtype = "float32",
    results_dir: o.ResultsDir = Path("results"), retry_failed: o.RetryFailed = False, fresh: o.Fresh = False,
    progress: o.Progress = True, plots: o.Plots = True, as_json: o.Json = False,
) -> None:
    """Homonuclear dimer curves: smoothness and PBE-relative accuracy, one item per element."""
    from geodite.tasks.diatomics import DiatomicsTask

    symbols = [s.strip() for s in elements.split(",") if s.strip()] if elements else []
    o.run_bench(
        lambda: DiatomicsTask(protocol=protocol, elements=symbols),
        **o.shared(locals()),
    )


def md_command(
    time: Annotated[str, typer.Option(help="simulated time per system, e.g. 2ps, 1ns")] = "1ns",
    timestep: Annotated[float, typer.Option(help="time step (fs)")] = 2.0,
    frame_interval: Annotated[int, typer.Option(help="steps between saved frames")] = 50,
    thermostat: Annotated[str, typer.Option(help="nose-hoover-chain or langevin")] = "nose-hoover-chain",
    seed: Annotated[int, typer.Option(help="seed of the Maxwell–Boltzmann start")] = 0,
    reference: Annotated[Optional[Path], typer.Option(help="reference-set folder (default: shipped argyrodites)")] = None,
    systems: Annotated[Optional[str], typer.Option(help="comma-separated system names (default: all)")] = None,
    model: o.Model = "geodite", limit: o.Limit = None, workers: o.Workers = 1, threads: o.Threads = None,
    scheduler: o.Scheduler = None,
    slurm_config: o.SlurmConfig = None, device: o.Device = "cpu", dtype: o.Dtype = "float32",
    results_dir: o.ResultsDir = Path("results"), retry_failed: o.RetryFailed = False, fresh: o.Fresh = False,
    progress: o.Progress = True, plots: o.Plots = True, as_json: o.Json = False,
) -> None:
    """NVT MD on solid electrolytes: stability and RDF overlap with AIMD, one item per system."""
    from geodite.tasks.md import MDTask, parse_time_fs

    names = [s.strip() for s in systems.split(",") if s.strip()] if systems else []
    o.run_bench(
        lambda: MDTask(time_fs=parse_time_fs(time), timestep_fs=timestep, frame_interval=frame_interval,
                       thermostat=thermostat, seed=seed, reference=str(reference) if reference else None,
                       systems=names),
        **o.shared(locals()),
    )


def speed_command(
    models: Annotated[str, typer.Option(help="comma-separated registry names or architectures")] = ",".join(
        ("geodite-published", "geodite", "sevennet-0", "chgnet", "mace-mp-0-medium")),
    sizes: Annotated[str, typer.Option(help="comma-separated atom counts (up to 10000)")] = "64,216,1000",
    structure: Annotated[str, typer.Option(help="si (diamond) or oxide (SrTiO3 perovskite)")] = "si",
    repeats: Annotated[int, typer.Option(help="interleaved repetitions (min and median reported)")] = 5,
    threads: Annotated[int, typer.Option(help="torch threads (fixed for all models)")] = 2,
    memory: Annotated[bool, typer.Option(help="measure peak memory in child processes")] = True,
    device: o.Device = "cpu", dtype: o.Dtype = "float32", results_dir: o.ResultsDir = Path("results"),
    as_json: o.Json = False,
) -> None:
    """Time energy+forces+stress per call for Geodite and its peers, side by side, interleaved."""
    from geodite.tasks.speed import SpeedOptions, run_speed

    options = SpeedOptions(
        models=tuple(m.strip() for m in models.split(",") if m.strip()),
        sizes=tuple(int(n) for n in sizes.split(",") if n.strip()), structure=structure, repeats=repeats,
        threads=threads, device=device, dtype=dtype, memory=memory,
    )
    try:
        summary = run_speed(options, results_dir / "speed" / f"{structure}-{device}", log=o.stderr.print)
    except ValueError as error:
        o.fail(str(error), as_json)
    o.print_speed(summary, as_json)
