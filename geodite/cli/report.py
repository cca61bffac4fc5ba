"""`geodite report`: tables, figures and provenance of stored results. Parsing only: the work is
:func:`geodite.report.write_report`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from geodite.cli.common import RUN_DEFAULTS, Json, ResultsDir, fail, split_names, stderr
from geodite.report import write_report


def report_command(
    models: Annotated[str, typer.Option(
        "--models", "--model", "-m", help="comma-separated models, side by side (e.g. geodite,chgnet)")
    ] = RUN_DEFAULTS["model"],
    results_dir: ResultsDir = RUN_DEFAULTS["results_dir"],
    out: Annotated[Optional[Path], typer.Option(help="output folder (default results/<model>/, or results/<a>_vs_<b>/)")] = None,
    embed: Annotated[bool, typer.Option(help="embed the figures in the HTML (base64); else link them relatively")] = True,
    as_json: Json = False,
) -> None:
    """Write report.md and a self-contained report.html: every task's tables and figures, CPS, the published
    table beside ours (marked as published), and provenance (versions, checksums, hardware, wall times)."""
    try:
        written = write_report(split_names(models), results_dir, out, embed=embed)
    except (ValueError, KeyError, OSError) as error:
        fail(str(error), as_json)
    if as_json:
        sys.stdout.write(json.dumps(written) + "\n")
    for task, by_model in written["status"].items():
        for label, status in by_model.items():
            if status != "ok":
                stderr.print(f"[yellow]{task} — {label}:[/yellow] {status}")
    stderr.print(f"wrote {written['markdown']} and {written['html']} ({written['figures']} figures)")
