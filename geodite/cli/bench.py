"""`geodite bench ...`: one command per benchmark, `bench cps` and `bench all`. Parsing only.

The runner-backed commands (discovery, kappa, diatomics, md) take the shared run options
(:func:`geodite.cli.common.with_run_options`) and their task's own settings, whose defaults are the task's
(:func:`geodite.tasks.suite.task_defaults`); :func:`run_bench` builds the task
(:func:`geodite.tasks.suite.make_task`) and runs it (:func:`geodite.tasks.runner.run_task`). `bench speed`
calls :func:`geodite.tasks.speed.run_speed`, `bench all` :func:`geodite.tasks.suite.run_all`.

Every bench command takes ``--json``: the final summary as one JSON object on stdout; progress and logs go
to stderr.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich import box
from rich.console import Console
from rich.table import Table

from geodite.cli.common import (
    RUN_DEFAULTS, Device, Dtype, Json, Model, ResultsDir, WritableResultsDir, check_optimizer, fail, format_value,
    io_error, names, non_negative, one_of, parse_ints, positive, print_summary, split_names, stderr, with_run_options,
)
from geodite.data.downloads import DataUnavailableError
from geodite.metrics.diatomics_scores import MBD_SKIPPED
from geodite.registry import ModelNotAvailableError, model_label
from geodite.relax import ATOMS_IN_FLIGHT
from geodite.report import write_report
from geodite.tasks import runner, speed, suite
from geodite.tasks.cps import cps_summary
from geodite.tasks.md import parse_time_fs
from geodite.tasks.runner import RunOptions
from geodite.tasks.store import ConfigMismatchError, jsonable

bench_app = typer.Typer(help="Benchmarks (Matbench Discovery, CPS, ...).", no_args_is_help=True)

# each task's defaults, which are its options' defaults
DISCOVERY, KAPPA, DIATOMICS, MD = (
    suite.task_defaults(name) for name in ("discovery", "kappa", "diatomics", "md"))
SPEED = speed.SpeedOptions()

#: What a command prints when ``--mode auto`` found no full data and fell back to the offline set.
OFFLINE_NOTES = {
    "discovery": "full Matbench Discovery data not found; running the offline WBM subset (perturbed DFT "
                 "structures; no hull distances, so no F1/DAF). Use --mode full to download.",
    "kappa": "phononDB structure files not found: running the offline set (prototype structures built from the "
             "shipped table; κ_SRE/κ_SRD against the DFT κ; κ_SRME needs the mode-resolved reference and is "
             "reported as null). Use --mode full to download.",
}


def run_bench(task_name: str, settings: dict, run: RunOptions, as_json: bool) -> dict:
    """Build the task ``task_name`` with ``settings`` (constructor arguments over its defaults), run it with
    the command's run options, print the summary (JSON on stdout with --json). Bad input: exit code 2."""
    try:
        task = suite.make_task(task_name, run.model, **settings)
        if getattr(task, "mode", None) == "offline" and settings.get("mode", "auto") == "auto":
            stderr.print(f"[yellow]{OFFLINE_NOTES[task_name]}[/yellow]")
        summary = runner.run_task(task, run, log=lambda message: stderr.print(message))
    except (DataUnavailableError, ModelNotAvailableError, ConfigMismatchError, suite.TaskNotRun, FileNotFoundError,
            KeyError, ValueError, RuntimeError) as error:
        fail(str(error).strip("'\""), as_json)
    except OSError as error:  # disk full, a folder made read-only during the run: the stored rows are kept
        fail(f"cannot write the results ({io_error(error)}); every item finished so far is stored, and the same "
             "command resumes from there", as_json, code=1)
    print_summary(summary, as_json, f"{summary['task']} — {run.model} ({summary['n_items']} items)")
    stderr.print(f"results: {summary['results_dir']}")
    report_failures(summary)
    return summary


def report_failures(summary: dict) -> None:
    """Say why items failed (the commonest errors) and which the model does not cover; exit with code 1 when
    no item gave a result because every one failed."""
    if summary.get("unsupported"):
        stderr.print(f"{len(summary['unsupported'])} item(s) outside the model's elements, not counted as failures: "
                     f"{', '.join(map(str, summary['unsupported']))}")
    n_failed = summary.get("n_failed") or 0
    if not n_failed:
        return
    hint = ("; --retry-failed computes them again" if summary.get("n_skipped") else "")
    stderr.print(f"[yellow]{n_failed} of {summary['n_items']} item(s) failed{hint}:[/yellow]")
    for reason in summary.get("failure_reasons", []):
        stderr.print(f"  {reason}")
    if n_failed + len(summary.get("unsupported", [])) >= summary["n_items"]:
        stderr.print(f"[red]error:[/red] every item of {summary['task']} failed")
        raise typer.Exit(1)


def check_time(value: str | None) -> str | None:
    """Option callback: a simulated time with its unit (2ps, 1ns, 500fs), > 0; None passes."""
    if value is not None:
        try:
            parse_time_fs(value)
        except ValueError as error:
            raise typer.BadParameter(str(error)) from None
    return value


@bench_app.command("discovery")
@with_run_options()
def discovery_command(
    mode: Annotated[str, typer.Option(
        help="full (Matbench Discovery files), offline (shipped 1k WBM subset) or auto (full if present)")
    ] = DISCOVERY["mode"],
    data_dir: Annotated[Optional[Path], typer.Option(help="directory with local copies of the full data files")] = None,
    download: Annotated[bool, typer.Option(help="in full mode, download missing files to the cache")] = True,
    offline_data: Annotated[Optional[Path], typer.Option(
        help="offline mode: WBM json.gz (default: shipped 1k subset)")] = None,
    fmax: Annotated[float, typer.Option(callback=positive, help="force convergence (eV/Å)")] = DISCOVERY["fmax"],
    steps: Annotated[int, typer.Option(min=1, help="max optimizer steps")] = DISCOVERY["steps"],
    optimizer: Annotated[str, typer.Option(
        callback=check_optimizer, help="ASE optimizer (FIRE, BFGS, LBFGS, ...)")] = DISCOVERY["optimizer"],
    engine: Annotated[str, typer.Option(
        callback=one_of("batched", "ase"),
        help="batched (one model call per step for all structures in flight) or ase (one structure at a time); "
             "same physics")] = DISCOVERY["engine"],
    atoms_in_flight: Annotated[Optional[int], typer.Option(
        "--max-atoms", min=1, help=(
            "batched engine: atoms in flight per worker, the structures relaxing at once (default "
            f"{ATOMS_IN_FLIGHT['cpu']} on CPU, {ATOMS_IN_FLIGHT['cuda']} on CUDA; each step's model calls take "
            "--batch-atoms atoms at most)"))
    ] = DISCOVERY["atoms_in_flight"],
    rattle: Annotated[float, typer.Option(
        callback=non_negative, help="offline mode: rattle σ (Å) of the start structure")] = DISCOVERY["rattle"],
    strain: Annotated[float, typer.Option(
        callback=non_negative, help="offline mode: max strain component of the start structure")
    ] = DISCOVERY["strain"],
    seed: Annotated[int, typer.Option(help="offline mode: perturbation seed")] = DISCOVERY["seed"],
    *, run: RunOptions, as_json: Json = False,
) -> None:
    """Matbench Discovery: relax, formation energy, hull distance, F1/DAF/MAE/RMSD."""
    settings = dict(
        mode=mode, data_dir=str(data_dir) if data_dir else None,
        offline_path=str(offline_data) if offline_data else None, download=download, fmax=fmax, steps=steps,
        optimizer=optimizer, rattle=rattle, strain=strain, seed=seed, engine=engine, atoms_in_flight=atoms_in_flight,
    )
    run_bench("discovery", settings, run, as_json)


@bench_app.command("cps")
def cps_command(
    model: Model = RUN_DEFAULTS["model"], results_dir: ResultsDir = RUN_DEFAULTS["results_dir"],
    as_json: Annotated[bool, typer.Option("--json", help="print the result as one JSON object on stdout")] = False,
) -> None:
    """Combined performance score from the latest discovery (F1, RMSD) and kappa (κ_SRME) results."""
    try:
        label = model_label(model)
    except KeyError as error:  # a checkpoint path that is not a file: nothing to label
        fail(str(error).strip("'\""), as_json)
    print_summary(cps_summary(label, results_dir), as_json, f"CPS — {model}")


@bench_app.command("kappa")
@with_run_options()
def kappa_command(
    mode: Annotated[str, typer.Option(
        help="full (MBD phononDB structures + mode-resolved DFT reference), offline (prototype structures "
        "built from the shipped 103-material table; κ_SRE/κ_SRD, no κ_SRME) or auto (full if present)")
    ] = KAPPA["mode"],
    data_dir: Annotated[Optional[Path], typer.Option(help="directory with local copies of the MBD phonon files")] = None,
    download: Annotated[bool, typer.Option(help="in full mode, download missing files to the cache")] = True,
    materials: Annotated[Optional[str], typer.Option(
        callback=names, help="comma-separated material ids or formulas")] = None,
    space_groups: Annotated[Optional[str], typer.Option(
        callback=names, help="comma-separated space groups to keep (225,216,186)")] = None,
    fmax: Annotated[float, typer.Option(
        callback=positive, help="relaxation force convergence (eV/Å)")] = KAPPA["fmax"],
    steps: Annotated[int, typer.Option(min=1, help="max relaxation steps")] = KAPPA["steps"],
    displacement: Annotated[float, typer.Option(
        callback=positive, help="finite displacement (Å); phono3py/MBD default")] = KAPPA["displacement"],
    temperature: Annotated[float, typer.Option(callback=positive, help="temperature (K)")] = KAPPA["temperature"],
    symprec: Annotated[float, typer.Option(
        callback=positive, help="symmetry precision of the space-group check and phono3py")] = KAPPA["symprec"],
    relax_symprec: Annotated[float, typer.Option(
        callback=positive, help="FixSymmetry precision during relaxation")] = KAPPA["relax_symprec"],
    fc2_supercell: Annotated[Optional[str], typer.Option(help="override: fc2 supercell N,N,N (unit-cell multiples)")] = None,
    fc3_supercell: Annotated[Optional[str], typer.Option(help="override: fc3 supercell N,N,N")] = None,
    q_mesh: Annotated[Optional[str], typer.Option(help="override: q-point mesh N,N,N (default 19,19,19 / 19,19,15)")] = None,
    cell: Annotated[str, typer.Option(help="offline unit cell: conventional or primitive")] = KAPPA["cell"],
    start_scan: Annotated[bool, typer.Option(
        help="offline: rescale the prototype to the model's minimum first")] = KAPPA["start_scan"],
    compare_with: Annotated[Optional[str], typer.Option(
        help="published model key of the shipped table to compare κ with (default: the model's, e.g. chgnet-0.3.0)")
    ] = KAPPA["compare_with"],
    *, run: RunOptions, as_json: Json = False,
) -> None:
    """Thermal conductivity (κ_SRME, κ_SRE) of the 103 phononDB materials with phono3py."""
    settings = dict(
        mode=mode, data_dir=str(data_dir) if data_dir else None, download=download,
        materials=split_names(materials),
        space_groups=parse_ints(space_groups, "--space-groups", None, high=230) or [],
        fmax=fmax, steps=steps, displacement=displacement, temperature=temperature, symprec=symprec,
        relax_symprec=relax_symprec, fc2_supercell=parse_ints(fc2_supercell, "--fc2-supercell"),
        fc3_supercell=parse_ints(fc3_supercell, "--fc3-supercell"), q_mesh=parse_ints(q_mesh, "--q-mesh"),
        cell=cell, start_scan=start_scan, compare_with=compare_with,
    )
    summary = run_bench("kappa", settings, run, as_json)
    if summary.get("kappa_SRME") is None and summary.get("kappa_SRME_reason"):
        stderr.print(f"κ_SRME unavailable: {summary['kappa_SRME_reason']}")


@bench_app.command("diatomics")
@with_run_options()
def diatomics_command(
    protocol: Annotated[str, typer.Option(
        help="mbd (Matbench Discovery) or arena (MLIP Arena)")] = DIATOMICS["protocol"],
    elements: Annotated[Optional[str], typer.Option(
        callback=names, help="comma-separated symbols (default: H…U)")] = None,
    *, run: RunOptions, as_json: Json = False,
) -> None:
    """Homonuclear dimer curves: smoothness and PBE-relative accuracy, one item per element."""
    summary = run_bench("diatomics", {"protocol": protocol, "elements": split_names(elements)}, run, as_json)
    skipped_by_mbd = [symbol for symbol in summary.get("unsupported", []) if symbol in MBD_SKIPPED]
    if protocol == "mbd" and skipped_by_mbd:
        stderr.print(f"Matbench Discovery scores 87 elements, H…U without {', '.join(MBD_SKIPPED)}: "
                     f"{', '.join(skipped_by_mbd)} would not count in the CDS of any model")


@bench_app.command("md")
@with_run_options()
def md_command(
    time: Annotated[str, typer.Option(
        callback=check_time, help="simulated time per system with its unit, e.g. 2ps, 1ns, 500fs")
    ] = suite.DEFAULT_MD_TIME,
    timestep: Annotated[float, typer.Option(callback=positive, help="time step (fs)")] = MD["timestep_fs"],
    frame_interval: Annotated[int, typer.Option(min=1, help="steps between saved frames")] = MD["frame_interval"],
    thermostat: Annotated[str, typer.Option(
        callback=one_of("nose-hoover-chain", "langevin"), help="nose-hoover-chain or langevin")] = MD["thermostat"],
    seed: Annotated[int, typer.Option(help="seed of the Maxwell–Boltzmann start")] = MD["seed"],
    reference: Annotated[Optional[Path], typer.Option(help="reference-set folder (default: shipped argyrodites)")] = None,
    systems: Annotated[Optional[str], typer.Option(
        callback=names, help="comma-separated system names (default: all)")] = None,
    *, run: RunOptions, as_json: Json = False,
) -> None:
    """NVT MD on solid electrolytes: stability and RDF overlap with AIMD, one item per system."""
    if parse_time_fs(time) < timestep:
        raise typer.BadParameter(f"{time} is shorter than one {timestep} fs step: nothing would be simulated",
                                 param_hint="'--time'")
    settings = dict(time_fs=parse_time_fs(time), timestep_fs=timestep, frame_interval=frame_interval,
                    thermostat=thermostat, seed=seed, reference=str(reference) if reference else None,
                    systems=split_names(systems))
    run_bench("md", settings, run, as_json)


@bench_app.command("speed")
def speed_command(
    models: Annotated[str, typer.Option(
        callback=names, help="comma-separated models: registry names (trained, and the untrained architectures "
        "`geodite models` lists), checkpoint or package paths")] = ",".join(
        SPEED.models),
    sizes: Annotated[str, typer.Option(help=f"comma-separated atom counts (up to {speed.MAX_ATOMS})")] = ",".join(
        map(str, SPEED.sizes)),
    structure: Annotated[str, typer.Option(
        callback=one_of("si", "oxide"), help="si (diamond) or oxide (SrTiO3 perovskite)")] = SPEED.structure,
    repeats: Annotated[int, typer.Option(
        min=1, help="interleaved repetitions (min and median reported)")] = SPEED.repeats,
    threads: Annotated[int, typer.Option(min=1, help="torch threads (fixed for all models)")] = SPEED.threads,
    memory: Annotated[bool, typer.Option(help="measure peak memory in child processes")] = SPEED.memory,
    allocator: Annotated[str, typer.Option(
        callback=one_of(*speed.ALLOCATORS), help="retain: the timing process keeps freed memory (no page faults "
        "that depend on which model ran before); system: glibc's defaults")] = SPEED.allocator,
    device: Device = SPEED.device, dtype: Dtype = SPEED.dtype,
    results_dir: WritableResultsDir = RUN_DEFAULTS["results_dir"], as_json: Json = False,
) -> None:
    """Time energy+forces+stress per call for Geodite and its peers, side by side, interleaved."""
    options = speed.SpeedOptions(
        models=tuple(split_names(models)),
        sizes=tuple(parse_ints(sizes, "--sizes", None, high=speed.MAX_ATOMS) or ()),
        structure=structure, repeats=repeats, threads=threads, device=device, dtype=dtype, memory=memory,
        allocator=allocator,
    )
    try:
        summary = speed.run_speed(options, results_dir / "speed" / f"{structure}-{device}", log=stderr.print)
    except ValueError as error:
        fail(str(error), as_json)
    except OSError as error:
        fail(f"cannot write the speed results ({io_error(error)})", as_json, code=1)
    print_speed(summary, as_json)


def print_speed(summary: dict, as_json: bool) -> None:
    """The speed table (model × size; narrow enough for 80 columns), each model's error below it once; with
    --json, the summary {"rows": [...], ...} on stdout. Exit code 1 when no model could be timed."""
    if as_json:
        sys.stdout.write(json.dumps(jsonable(summary)) + "\n")
    allocator = f", {summary['allocator']} allocator" if summary.get("allocator") else ""
    table = Table(title=f"speed — {summary['threads']} threads, {summary['dtype']}{allocator}", box=box.SIMPLE_HEAD,
                  caption=summary["machine"])
    name_width = min(24, max((len(row["model"]) for row in summary["rows"]), default=5))  # unfolded up to 24
    for column in ("model", "atoms", "μs/atom-\nstep", "min", "atom-\nsteps/s", "peak\nMB", "×\nGeodite"):
        table.add_column(column, justify="left" if column == "model" else "right",
                         no_wrap=column != "model", overflow="fold",
                         min_width=name_width if column == "model" else None)
    errors: dict[str, str] = {}
    for row in summary["rows"]:
        def cell(key: str, spec: str) -> str:
            value = row.get(key)
            return "—" if value is None else format(value, spec)

        if row.get("error"):
            errors.setdefault(row["model"], row["error"])
        table.add_row(row["model"], str(row["n_atoms"]), cell("us_per_atom_step", ".0f"),
                      cell("us_per_atom_step_min", ".0f"), cell("atom_steps_per_s", ".0f"),
                      cell("peak_mem_mb", ".0f"), "failed" if row.get("error") else
                      cell("geodite-published_speedup", ".2f"))
    (stderr if as_json else Console()).print(table)
    stderr.print("μs/atom-step: median (and min) over repetitions; × Geodite: how many times faster Geodite at the "
                 "published size is")
    for model, error in errors.items():
        stderr.print(f"[yellow]{model}:[/yellow] {error}")
    stderr.print(f"results: {summary['results_dir']}")
    if summary["rows"] and all(row.get("error") for row in summary["rows"]):
        stderr.print("[red]error:[/red] no model could be timed")
        raise typer.Exit(1)


@bench_app.command("all")
@with_run_options(without=("scheduler", "slurm_config"))
def all_command(
    tasks: Annotated[str, typer.Option(
        callback=names, help=f"comma-separated subset of {','.join(suite.TASKS)}")] = ",".join(
        suite.TASKS),
    md_time: Annotated[Optional[str], typer.Option(
        callback=check_time,
        help=f"MD simulated time per system (default {suite.DEFAULT_MD_TIME}; quick: {suite.QUICK_MD_TIME})")] = None,
    speed_sizes: Annotated[Optional[str], typer.Option(help=(
        f"speed: atom counts (default {','.join(map(str, speed.DEFAULT_SIZES))}; "
        f"quick: {','.join(map(str, suite.QUICK_SPEED_SIZES))})"))] = None,
    speed_models: Annotated[Optional[str], typer.Option(
        callback=names, help="speed: models timed side by side (default: the model and its peers; quick: the model)")] = None,
    report: Annotated[bool, typer.Option(help="write results/<model>/report.md and report.html at the end")] = True,
    limit: Annotated[Optional[int], typer.Option(min=1, help=(
        f"quick mode: first N items (N ≥ 1) of discovery/kappa/diatomics/md, {suite.QUICK_MD_TIME} MD, small kappa "
        f"cells, speed at {','.join(map(str, suite.QUICK_SPEED_SIZES))} atoms"))] = None,
    *, run: RunOptions, as_json: Json = False,
) -> None:
    """Run discovery, kappa, diatomics, MD and speed for a model (resuming), then CPS and the report.

    A task that fails does not stop the others; the exit status is 1 when any task failed.
    """
    sizes = parse_ints(speed_sizes, "--speed-sizes", None, high=speed.MAX_ATOMS)
    try:
        options = suite.all_options(run, tasks=tuple(split_names(tasks)), md_time=md_time,
                                    speed_sizes=tuple(sizes) if sizes else None,
                                    speed_models=tuple(split_names(speed_models)) or None)
    except ValueError as error:
        fail(str(error), as_json)
    summary = suite.run_all(options, log=stderr.print)
    if report:
        try:
            summary["report"] = write_report([run.model], run.results_dir)
        except Exception as error:  # noqa: BLE001 - the runs' results are kept whatever the report does
            summary["report"] = {"error": f"{type(error).__name__}: {error}"}
    if as_json:
        sys.stdout.write(json.dumps(jsonable(summary)) + "\n")
    quick = f" (quick: --limit {run.limit})" if run.limit is not None else ""
    table = Table(title=f"geodite bench all — {run.model}{quick}")
    for column in ("task", "status", "wall s", "items", "note"):
        table.add_column(column)
    for name, result in summary["tasks"].items():
        note = result.get("error") or result.get("reason") or result.get("results_dir", "")
        table.add_row(name, result["status"], format_value(result.get("wall_s")),
                      format_value(result.get("n_items")), str(note)[:90])
    cps = summary["cps"]
    table.add_row("cps", "ok" if cps["CPS"] is not None else "null", "", "",
                  format_value(cps["CPS"]) if cps["CPS"] is not None else (cps["reason"] or "")[:90])
    (stderr if as_json else Console()).print(table)
    if "report" in summary and "html" in summary["report"]:
        stderr.print(f"report: {summary['report']['markdown']}, {summary['report']['html']}")
    if any(result["status"] == "failed" for result in summary["tasks"].values()):
        raise typer.Exit(1)
