"""Two training runs side by side at every step both have validated (issue #27: the v8 student without (A) and
with (B) the teacher's per-atom energies as an auxiliary target): EMA validation energy (meV/atom), force (meV/Å)
and stress (meV/Å³) MAE, and the EMA errors on the fixed training subset (energy, force), from each run's
metrics.csv (:mod:`geodite.train.metrics_log`).

    python benchmarks/v8_ab.py /work/train-runs/v8/run-a/metrics.csv /work/train-runs/v8/run-b/metrics.csv

B − A < 0 is B better. The validation loss is not compared: B's includes the per-atom energy term.
"""

from __future__ import annotations

import argparse

import pandas as pd

#: (column of metrics.csv, its heading here)
COLUMNS = [("valid_energy_mae_mev_atom", "vE"), ("valid_force_mae_mev_a", "vF"), ("valid_stress_mae_mev_a3", "vS"),
           ("train_energy_mae_mev_atom", "tE"), ("train_force_mae_mev_a", "tF")]


def side_by_side(a: pd.DataFrame, b: pd.DataFrame, names: tuple[str, str] = ("A", "B")) -> pd.DataFrame:
    """One row per step both runs validated (the last row of a step, if a run validated it twice): each metric of
    :data:`COLUMNS` for run A, run B and B − A."""
    keep = ["step"] + [column for column, _ in COLUMNS]
    a, b = (frame[keep].drop_duplicates("step", keep="last") for frame in (a, b))
    both = a.merge(b, on="step", how="inner", suffixes=("_a", "_b")).set_index("step")
    table = pd.DataFrame(index=both.index)
    for column, heading in COLUMNS:
        table[f"{heading} {names[0]}"] = both[f"{column}_a"]
        table[f"{heading} {names[1]}"] = both[f"{column}_b"]
        table[f"{heading} Δ"] = both[f"{column}_b"] - both[f"{column}_a"]
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_a", help="metrics.csv of run A")
    parser.add_argument("run_b", help="metrics.csv of run B")
    args = parser.parse_args()
    table = side_by_side(pd.read_csv(args.run_a), pd.read_csv(args.run_b))
    print("EMA weights; v = validation split, t = training subset; E meV/atom, F meV/Å, S meV/Å³; Δ = B − A")
    print(table.to_string(float_format=lambda x: f"{x:.1f}") if len(table) else "no step validated by both runs yet")


if __name__ == "__main__":
    main()
