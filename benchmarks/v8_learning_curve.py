"""How the v8 student's held-out error falls with the number of training materials (issue #27): the limit that
labelling more of the pool would lift, measured.

    python benchmarks/v8_learning_curve.py subsets TRAIN_DB CONFIG OUT_DIR --fractions 0.25 0.5
    geodite distill OUT_DIR/distill-v8-m25.yaml --stage train          # one per fraction, then
    python benchmarks/v8_learning_curve.py table OUT_DIR/m25/metrics.csv OUT_DIR/m50/metrics.csv RUN_A/metrics.csv

``subsets`` draws ``fraction`` of the training materials of TRAIN_DB (the material is the uid before "/";
``numpy.random.default_rng(seed)`` over the sorted materials, nested: the 25 % draw is inside the 50 % one) and
writes OUT_DIR/train-mNN.db with those materials' frames plus every single-atom and heteronuclear-pair frame (the
isolated-atom references and the short range every run keeps), and OUT_DIR/distill-v8-mNN.yaml: CONFIG with
that training database, the same validation database, schedule and seed, and ``run.out_dir`` OUT_DIR/mNN.
``table`` prints, per run, its number of training materials and frames beside the EMA validation errors at each
step it validated (metrics.csv, :mod:`geodite.train.metrics_log`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

#: uid prefixes of frames every subset keeps (isolated atoms, heteronuclear pairs): not materials
REFERENCE_PREFIXES = ("atom-", "pair-")


def material(uid: str) -> str:
    return uid.split("/")[0]


def nested_draws(materials: list[str], fractions: list[float], seed: int) -> dict[float, set[str]]:
    """For each fraction, round(fraction × count) of ``materials``: prefixes of one permutation, so that a smaller
    draw lies inside every larger one."""
    order = np.random.default_rng(seed).permutation(sorted(materials))
    return {fraction: set(order[: int(round(fraction * len(order)))]) for fraction in fractions}


def write_subsets(train_db: Path, config: Path, out_dir: Path, fractions: list[float], seed: int) -> None:
    from ase.db import connect

    from geodite.data.mptrj import row_atoms, write_row

    rows = list(connect(str(train_db)).select())
    materials = sorted({material(row.uid) for row in rows if not row.uid.startswith(REFERENCE_PREFIXES)})
    values = yaml.safe_load(config.read_text())
    valid = values.get("data", {}).get("valid") or [str(Path(values["distill"]["labels_dir"]) / "valid.db")]
    out_dir.mkdir(parents=True, exist_ok=True)
    for fraction, chosen in nested_draws(materials, fractions, seed).items():
        tag = f"m{round(100 * fraction)}"
        db_path = out_dir / f"train-{tag}.db"
        if db_path.exists():
            raise FileExistsError(f"{db_path} exists: remove it to draw again")
        frames = 0
        with connect(str(db_path)) as db:
            for row in rows:
                if row.uid.startswith(REFERENCE_PREFIXES) or material(row.uid) in chosen:
                    keys = {key: row.get(key) for key in ("group", "teacher") if row.get(key) is not None}
                    write_row(db, row_atoms(row), uid=row.uid, **keys)
                    frames += 1
        run = {**values, "data": {**values.get("data", {}), "train": [str(db_path)], "valid": valid},
               "run": {**values["run"], "out_dir": str(out_dir / tag)}}
        (out_dir / f"distill-v8-{tag}.yaml").write_text(yaml.safe_dump(run, sort_keys=False))
        print(f"{tag}: {len(chosen)} of {len(materials)} materials, {frames} frames -> {db_path}")


def table(metrics: list[Path]) -> pd.DataFrame:
    """EMA validation errors of each run (rows: run, step)."""
    columns = {"valid_energy_mae_mev_atom": "E meV/atom", "valid_force_mae_mev_a": "F meV/Å",
               "train_force_mae_mev_a": "train F meV/Å"}
    frames = []
    for path in metrics:
        frame = pd.read_csv(path).drop_duplicates("step", keep="last")
        frame = frame[["step", *columns]].rename(columns=columns)
        frame.insert(0, "run", path.parent.name)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True).round(1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    subsets = commands.add_parser("subsets")
    subsets.add_argument("train_db", type=Path)
    subsets.add_argument("config", type=Path)
    subsets.add_argument("out_dir", type=Path)
    subsets.add_argument("--fractions", type=float, nargs="+", default=[0.25, 0.5])
    subsets.add_argument("--seed", type=int, default=27)
    shown = commands.add_parser("table")
    shown.add_argument("metrics", type=Path, nargs="+")
    args = parser.parse_args()
    if args.command == "subsets":
        write_subsets(args.train_db, args.config, args.out_dir, args.fractions, args.seed)
    else:
        print(table(args.metrics).to_string(index=False))


if __name__ == "__main__":
    main()
