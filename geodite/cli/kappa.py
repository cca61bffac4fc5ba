"""`geodite bench kappa`: κ_SRME thermal conductivity (phono3py) on the shared runner.

Register with ``bench_app.command("kappa")(kappa_command)``. Parsing only: the protocol is
:class:`geodite.tasks.kappa.KappaTask`, the run :func:`geodite.cli.common.run_bench`
(→ :func:`geodite.tasks.runner.run_task`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from geodite.cli import common as o


def kappa_command(
    mode: Annotated[str, typer.Option(
        help="full (MBD phononDB structures + mode-resolved DFT reference), offline (prototype structures "
        "built from the shipped 103-material table; κ_SRE/κ_SRD, no κ_SRME) or auto (full if present)")] = "auto",
    data_dir: Annotated[Optional[Path], typer.Option(help="directory with local copies of the MBD phonon files")] = None,
    download: Annotated[bool, typer.Option(help="in full mode, download missing files to the cache")] = True,
    materials: Annotated[Optional[str], typer.Option(help="comma-separated material ids or formulas")] = None,
    space_groups: Annotated[Optional[str], typer.Option(help="comma-separated space groups to keep (225,216,186)")] = None,
    fmax: Annotated[float, typer.Option(callback=o.positive, help="relaxation force convergence (eV/Å)")] = 1e-4,
    steps: Annotated[int, typer.Option(min=1, help="max relaxation steps")] = 300,
    displacement: Annotated[float, typer.Option(
        callback=o.positive, help="finite displacement (Å); phono3py/MBD default")] = 0.03,
    temperature: Annotated[float, typer.Option(callback=o.positive, help="temperature (K)")] = 300.0,
    symprec: Annotated[float, typer.Option(
        callback=o.positive, help="symmetry precision of the space-group check and phono3py")] = 1e-5,
    relax_symprec: Annotated[float, typer.Option(
        callback=o.positive, help="FixSymmetry precision during relaxation")] = 0.01,
    fc2_supercell: Annotated[Optional[str], typer.Option(help="override: fc2 supercell N,N,N (unit-cell multiples)")] = None,
    fc3_supercell: Annotated[Optional[str], typer.Option(help="override: fc3 supercell N,N,N")] = None,
    q_mesh: Annotated[Optional[str], typer.Option(help="override: q-point mesh N,N,N (default 19,19,19 / 19,19,15)")] = None,
    cell: Annotated[str, typer.Option(help="offline unit cell: conventional or primitive")] = "conventional",
    start_scan: Annotated[bool, typer.Option(help="offline: rescale the prototype to the model's minimum first")] = True,
    compare_with: Annotated[Optional[str], typer.Option(
        help="published model key of the shipped table to compare κ with (default: the model's, e.g. chgnet-0.3.0)")] = None,
    model: o.Model = "geodite", limit: o.Limit = None, workers: o.Workers = 1, threads: o.Threads = None,
    scheduler: o.Scheduler = None, slurm_config: o.SlurmConfig = None, device: o.Device = "cpu",
    dtype: o.Dtype = "float32", results_dir: o.ResultsDir = Path("results"), retry_failed: o.RetryFailed = False,
    fresh: o.Fresh = False, progress: o.Progress = True, plots: o.Plots = True, as_json: o.Json = False,
) -> None:
    """Thermal conductivity (κ_SRME, κ_SRE) of the 103 phononDB materials with phono3py."""
    from geodite.tasks.kappa import KappaTask

    try:
        import phono3py  # noqa: F401
    except ImportError:
        o.fail("phono3py is not installed: pip install 'geodite[phonons]'", as_json)
    fc2, fc3, mesh = (o.parse_ints(fc2_supercell, "--fc2-supercell"),
                      o.parse_ints(fc3_supercell, "--fc3-supercell"), o.parse_ints(q_mesh, "--q-mesh"))
    groups = o.parse_ints(space_groups, "--space-groups", None, high=230) or []

    def make_task() -> KappaTask:
        task = KappaTask(
            mode=mode, data_dir=str(data_dir) if data_dir else None, download=download,
            materials=[m.strip() for m in materials.split(",") if m.strip()] if materials else [],
            space_groups=groups, fmax=fmax, steps=steps, displacement=displacement, temperature=temperature,
            symprec=symprec, relax_symprec=relax_symprec, fc2_supercell=fc2, fc3_supercell=fc3, q_mesh=mesh,
            cell=cell, start_scan=start_scan, compare_with=compare_with or KappaTask.published_key_for(model),
        )
        if task.mode == "offline" and mode == "auto":
            o.stderr.print(
                "[yellow]phononDB structure files not found: running the offline set (prototype structures built "
                "from the shipped table; κ_SRE/κ_SRD against the DFT κ; κ_SRME needs the mode-resolved reference "
                "and is reported as null). Use --mode full to download.[/yellow]"
            )
        return task

    summary = o.run_bench(
        make_task, model=model, limit=limit, workers=workers, threads=threads, scheduler=scheduler,
        slurm_config=slurm_config, device=device, dtype=dtype, results_dir=results_dir, retry_failed=retry_failed,
        fresh=fresh, progress=progress, plots=plots, as_json=as_json,
    )
    if summary.get("kappa_SRME") is None and summary.get("kappa_SRME_reason"):
        o.stderr.print(f"κ_SRME unavailable: {summary['kappa_SRME_reason']}")
