"""The record of a training run's validations: metrics.csv (a row per validation), optional TensorBoard
scalars, and the row as a table on the console."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Callable

from rich.table import Table

METRICS_FILE = "metrics.csv"
#: the columns of metrics.csv, in order (a run resumed under an older layout keeps its file's columns)
METRICS_COLUMNS = ["epoch", "step", "train_loss", "valid_loss", "valid_energy_mae_mev_atom", "valid_force_mae_mev_a",
                   "valid_stress_mae_mev_a3", "raw_valid_energy_mae_mev_atom", "raw_valid_force_mae_mev_a",
                   "raw_valid_stress_mae_mev_a3", "train_energy_mae_mev_atom", "train_force_mae_mev_a",
                   "train_stress_mae_mev_a3", "lr", "epoch_seconds"]


class MetricsLog:
    """Appends validation rows to ``out_dir``/metrics.csv; with ``tensorboard``, writes them and the training
    loss and LR as TensorBoard scalars too (under ``out_dir``/tensorboard)."""

    def __init__(self, out_dir: Path, tensorboard: bool, log: Callable[[str], None]):
        self.path = out_dir / METRICS_FILE
        self.writer = None
        if tensorboard:
            try:
                # deferred: tensorboard is an optional dependency, imported only by runs that ask for it
                from torch.utils.tensorboard import SummaryWriter

                self.writer = SummaryWriter(str(out_dir / "tensorboard"))
            except ImportError:
                log("tensorboard not installed; logging to CSV only")

    def scalars(self, values: dict[str, float], step: int) -> None:
        """TensorBoard scalars {tag: value} at optimiser step ``step`` (nothing without TensorBoard)."""
        if self.writer:
            for tag, value in values.items():
                self.writer.add_scalar(tag, value, step)

    def append(self, metrics: dict, step: int) -> list[str]:
        """Append ``metrics`` as a row of metrics.csv (and as ``epoch/<column>`` scalars); returns the columns."""
        columns = METRICS_COLUMNS
        new = not self.path.exists()
        if not new:
            with open(self.path, newline="") as handle:
                columns = next(csv.reader(handle), columns)
        with open(self.path, "a", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore")
            if new:
                writer.writeheader()
            writer.writerow(metrics)
        self.scalars({f"epoch/{key}": metrics[key] for key in columns[2:] if key in metrics}, step)
        return columns

    def close(self) -> None:
        if self.writer:
            self.writer.close()


def metrics_table(metrics: dict, columns: list[str]) -> Table:
    """One validation row as a table titled by its epoch (floats to 4 significant digits)."""
    table = Table(title=f"epoch {metrics['epoch']}", show_header=True)
    for key in columns:
        table.add_column(key.replace("valid_", "").replace("_", " "))
    table.add_row(*[f"{metrics.get(k, float('nan')):.4g}" if isinstance(metrics.get(k), float)
                    else str(metrics.get(k)) for k in columns])
    return table
