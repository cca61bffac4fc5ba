"""The `geodite` command line: assembles the app from the command groups and holds the global commands
(`eval`, `convert`, `models`). Commands only parse arguments and call library functions.

Command groups, one module each: `geodite bench ...` (cli/bench.py), `geodite report` (cli/report.py),
`geodite train` / `distill` (cli/train.py), `geodite export` / `lammps` (cli/export.py); shared option
declarations and output helpers in cli/common.py.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import typer
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from geodite.cli.bench import bench_app
from geodite.cli.common import Device, Dtype, Limit, fail, io_error, stderr, writable_folder
from geodite.cli.export import export_command, lammps_command
from geodite.cli.report import report_command
from geodite.cli.train import distill_command, train_command

app = typer.Typer(help="Geodite: an equivariant interatomic potential and its benchmark suite.", no_args_is_help=True)


def progress_bar() -> Progress:
    """The suite's progress bar: on stderr, with count, rate and ETA."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("[cyan]{task.fields[rate]}"),
        TimeRemainingColumn(),
        console=stderr,
    )


@app.command("eval")
def eval_command(
    data: Path = typer.Option(..., "--data", help="extxyz file or ASE database with reference energies/forces/stresses"),
    models: list[str] = typer.Option(["geodite"], "--model", help="registry name (geodite, geodite-mp, sevennet-0, "
                                     "chgnet, ...) or a checkpoint path; repeat to compare several"),
    device: Device = "cpu",
    dtype: Dtype = "float64",
    limit: Limit = None,
    results_dir: Path = typer.Option(Path("results"), file_okay=False, callback=writable_folder,
                                     help="where the per-structure tables and the comparison go"),
    as_json: bool = typer.Option(False, "--json", help="print each summary as one JSON object on stdout"),
) -> None:
    """Errors of models against the reference energies, forces and stresses in a data file.

    Results are filed under KEY = the data file's name and the start of its sha256 (files of one name with
    other contents never mix): RESULTS_DIR/eval/MODEL/KEY.csv (per structure) and .summary.json per model,
    and RESULTS_DIR/eval/KEY.md/.csv: every model evaluated on this file so far, side by side. A frame that
    cannot be read is a failed row; the readable ones are evaluated.
    """
    from geodite.checkpoints import CheckpointError
    from geodite.evaluate import DataFileError, MixedDataError, UnreadableFrame, data_key, evaluate_structures
    from geodite.evaluate import MIN_ELEMENT_ATOMS, RELAXED_MAX_FORCE, read_structures, summarise, write_comparison
    from geodite.evaluate import write_model_results
    from geodite.registry import ModelNotAvailableError, resolve

    try:
        structures = read_structures(data)[:limit]
        handles = [resolve(model) for model in models]
    except (DataFileError, KeyError) as error:
        fail(str(error).strip("'\""), as_json)
    key, sha256 = data_key(data)
    unreadable = [frame for frame in structures if isinstance(frame, UnreadableFrame)]
    if unreadable:
        stderr.print(f"[yellow]{len(unreadable)} of {len(structures)} frames of {data} could not be read; "
                     f"they are failed rows, the rest is evaluated[/yellow]")
    for model, handle in zip(models, handles):
        try:
            handle.require()
            calculator = handle.load(device=device, dtype=dtype)
        except (FileNotFoundError, CheckpointError, ValueError, ModelNotAvailableError) as error:
            fail(str(error), as_json)
        start = time.perf_counter()
        with progress_bar() as bar:
            task = bar.add_task(f"eval {handle.label} on {data.name}", total=len(structures), rate="")

            def advance(n: int) -> None:
                done = bar.tasks[0].completed + n
                bar.update(task, advance=n, rate=f"{done / (time.perf_counter() - start):.1f} structures/s")

            table = evaluate_structures(calculator, structures, progress=advance)
        summary = summarise(table) | {"model": model, "energy_convention": handle.energy_convention,
                                      "data": str(data.resolve()), "data_sha256": sha256,
                                      "n_unreadable": len(unreadable), "wall_s": round(time.perf_counter() - start, 3)}
        try:
            table_path = write_model_results(table, summary, results_dir, handle.label, key)
        except OSError as error:
            fail(f"cannot write the results of {model} ({io_error(error)})", as_json, code=1)
        for error in table["error"].dropna():
            stderr.print(f"[yellow]skipped[/yellow] {error}")
        nonfinite = table.dropna(subset=["nonfinite_reference"])
        if len(nonfinite):
            listed = ", ".join(f"structure {row.index} ({row.nonfinite_reference})" for row in nonfinite.head(5).itertuples())
            more = f" and {len(nonfinite) - 5} more" if len(nonfinite) > 5 else ""
            stderr.print(f"[yellow]{len(nonfinite)} structure(s) with a NaN or infinite reference, left out of that "
                         f"error:[/yellow] {listed}{more}")
        if as_json:
            sys.stdout.write(json.dumps(summary) + "\n")
        else:
            shown = Table(title=f"{model} on {data.name} ({summary['n_structures']} structures)")
            shown.add_column("quantity")
            shown.add_column("MAE")
            shown.add_column("RMSE")
            for name, unit in (("energy_per_atom", "eV/atom"), ("forces", "eV/Å"), ("stress", "eV/Å³")):
                mae, rmse = summary[f"{name}_mae"], summary[f"{name}_rmse"]
                shown.add_row(f"{name} ({unit})", "—" if mae is None else f"{mae:.3e}",
                              "—" if rmse is None else f"{rmse:.3e}")
            Console().print(shown)
            if summary["n_relaxed"]:
                stderr.print(f"relaxed frames (largest reference force < {RELAXED_MAX_FORCE} eV/Å): "
                             f"{summary['n_relaxed']}, force MAE {1000 * summary['relaxed_forces_mae']:.1f} meV/Å "
                             f"(zero forces {1000 * summary['relaxed_zero_forces_mae']:.1f})")
            if summary["elements_worse_than_zero"]:
                stderr.print(f"elements (≥ {MIN_ELEMENT_ATOMS} atoms) with a force MAE above zero forces': "
                             f"{' '.join(summary['elements_worse_than_zero'])}")
        stderr.print(f"per-structure table: {table_path}; per element, parity and periodic-table figures beside it")
    try:
        path, rows = write_comparison(results_dir, key, data.name)
    except MixedDataError as error:
        fail(str(error), as_json)
    except OSError as error:
        fail(f"cannot write the comparison ({io_error(error)})", as_json, code=1)
    stderr.print(f"comparison of {rows} models: {path}")


@app.command("convert")
def convert_command(
    source: Path = typer.Argument(..., help="an upstream state dict or Lightning checkpoint (e.g. Geodite-MP.ckpt)"),
    destination: Path = typer.Argument(..., help="where to write the Geodite checkpoint"),
    num_heads: int = typer.Option(0, min=0, help="attention heads, if the source does not record them (0: infer)"),
) -> None:
    """Convert upstream Geodite weights into this package's checkpoint format (no code is run)."""
    from geodite.checkpoints import CheckpointError, load_checkpoint, save_checkpoint

    try:
        model = load_checkpoint(source, num_heads=num_heads or None)
    except CheckpointError as error:
        fail(str(error), as_json=False)
    save_checkpoint(model, destination, metadata={"converted_from": source.name})
    stderr.print(f"wrote {destination} ({model.config})")


def models_command(
    as_json: bool = typer.Option(False, "--json", help="print the list as JSON on stdout"),
) -> None:
    """List the models of the registry and whether each can be used here."""
    from geodite.registry import list_models

    rows = list_models()
    if as_json:
        sys.stdout.write(json.dumps(rows) + "\n")
        return
    table = Table(title="Geodite model registry (--model NAME or a checkpoint path)", box=box.SIMPLE_HEAD,
                  show_lines=False)
    table.add_column("name", no_wrap=True)
    table.add_column("here", no_wrap=True)
    table.add_column("energies", no_wrap=True)
    table.add_column("description", ratio=1)
    for row in rows:
        here = "[green]yes[/green]" if row["available"] else "[red]no[/red]"
        install = escape(f" (pip install 'geodite[{row['extra']}]')") if row["extra"] and not row["available"] else ""
        table.add_row(row["name"], here, row["energy_convention"], escape(row["description"]) + install)
    Console().print(table)
    stderr.print("energies: uncorrected DFT (PBE) or MP2020-corrected; `make peers` installs the peers")
    stderr.print("untrained architectures, timed by `geodite bench speed` only: "
                 + ", ".join(row["name"] for row in list_models(trained=False)))


app.add_typer(bench_app, name="bench")
app.command("models")(models_command)
app.command("report")(report_command)
app.command("train")(train_command)
app.command("distill")(distill_command)
app.command("export")(export_command)
app.command("lammps")(lammps_command)
