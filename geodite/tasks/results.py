"""The results writer shared by every task: per-item table and metrics table.

``results/<task>/<model>/``:
  rows.parquet, rows.csv        one row per item (from the store, in item order)
  metrics.json                  run summary + metrics (what ``--json`` prints)
  metrics.parquet/.csv/.md      the same as a one-row table (metric → value for .md)
  *.png                         task plots
  store/                        the crash-safe per-item store (not committed)
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd

from geodite.tasks.store import jsonable


def task_dir(results_dir: str | Path, task: str, model: str) -> Path:
    return Path(results_dir) / task / model


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _flat_table(df: pd.DataFrame) -> pd.DataFrame:
    """Nested values (dicts/lists, e.g. structures) as JSON strings so parquet/CSV accept them."""
    out = df.copy()
    for col in out.columns:
        if out[col].map(lambda v: isinstance(v, dict | list)).any():
            out[col] = out[col].map(lambda v: json.dumps(jsonable(v)) if isinstance(v, dict | list) else v)
    return out


def write_rows(df: pd.DataFrame, out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    flat = _flat_table(df)
    paths = [out_dir / "rows.parquet", out_dir / "rows.csv"]
    flat.to_parquet(paths[0], index=False)
    flat.to_csv(paths[1], index=False)
    return paths


def metrics_markdown(summary: dict, title: str | None = None) -> str:
    lines = [f"# {title}", ""] if title else []
    lines += ["| metric | value |", "|---|---|"]
    for key, val in summary.items():
        if isinstance(val, dict | list):
            continue
        if isinstance(val, float):
            val = f"{val:.4g}"
        lines.append(f"| {key} | {'' if val is None else val} |")
    return "\n".join(lines) + "\n"


def table_markdown(table: pd.DataFrame, float_format: str = "{:.4g}") -> str:
    """A DataFrame as a GitHub markdown table (floats with ``float_format``, NaN as an empty cell)."""
    def cell(value) -> str:
        if isinstance(value, float):
            return "" if np.isnan(value) else float_format.format(value)
        return str(value).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(map(cell, table.columns)) + " |", "|" + "---|" * len(table.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join(lines) + "\n"


def write_metrics(summary: dict, out_dir: Path, title: str | None = None) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    clean = jsonable(summary)
    scalars = {k: v for k, v in clean.items() if not isinstance(v, dict | list)}
    paths = [out_dir / f"metrics.{ext}" for ext in ("json", "parquet", "csv", "md")]
    _atomic_write_text(paths[0], json.dumps(clean, indent=1) + "\n")
    table = pd.DataFrame([scalars])
    table.to_parquet(paths[1], index=False)
    table.to_csv(paths[2], index=False)
    _atomic_write_text(paths[3], metrics_markdown(scalars, title))
    return paths


def read_metrics(results_dir: str | Path, task: str, model: str) -> dict | None:
    """The latest ``metrics.json`` of ``task`` for ``model``, or None."""
    path = task_dir(results_dir, task, model) / "metrics.json"
    if not path.is_file():
        return None
    return json.loads(path.read_text())
