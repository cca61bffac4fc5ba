"""`geodite train CONFIG.yaml` and `geodite distill`: the Typer commands (registered in geodite.cli.main)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def train_command(
    config: Path = typer.Argument(..., exists=True, dir_okay=False, help="training config (YAML)"),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help="folder with local copies of the data "
                                            "(e.g. MPtrj_2022.9_full.json); missing named sets are downloaded there"),
    out_dir: Optional[Path] = typer.Option(None, "--out-dir", help="override run.out_dir"),
    epochs: Optional[int] = typer.Option(None, "--epochs", help="override run.epochs"),
    finetune: Optional[str] = typer.Option(None, "--finetune", help="fine-tune from this checkpoint (path, "
                                           "'geodite' or 'geodite-mp') with the fine-tuning recipe: LR 3e-5, "
                                           "ReduceLROnPlateau, E:F:S = 1:5:1"),
) -> None:
    """Train (or resume) a Geodite. Under torchrun, runs DistributedDataParallel (NCCL on GPU, gloo on CPU).

    Rerunning the same command after an interruption resumes from OUT_DIR/checkpoint.pt.
    """
    from rich.console import Console

    from geodite.checkpoints import CheckpointError
    from geodite.train.config import FINETUNE_DEFAULTS, ConfigError, TrainConfig, read_yaml
    from geodite.train.trainer import Trainer

    try:
        values = read_yaml(config)
    except ConfigError as error:  # not YAML, or not a mapping of sections
        raise typer.BadParameter(str(error)) from None
    if finetune:
        for section, overrides in FINETUNE_DEFAULTS.items():
            values.setdefault(section, {})
            values[section] = {**values[section], **overrides}
        values.setdefault("model", {})["init_from"] = finetune
    values.setdefault("data", {})
    values.setdefault("run", {})
    if data_dir is not None:
        values["data"]["data_dir"] = str(data_dir)
    if out_dir is not None:
        values["run"]["out_dir"] = str(out_dir)
    if epochs is not None:
        values["run"]["epochs"] = epochs
    try:
        trainer = Trainer(TrainConfig.from_dict(values), console=Console())
    except (ValueError, OSError, CheckpointError) as error:
        # a bad config value, e0 and the data disagree at the isolated-atom limit, a missing data file, an
        # out_dir that cannot be written, a checkpoint (--finetune, model.init_from) that cannot be used
        raise typer.BadParameter(str(error)) from None
    metrics = trainer.train()
    if trainer.model_path is not None:
        Console().print(training_summary(metrics, trainer.model_path, trainer.out_dir))


def training_summary(metrics: dict, model_path: Path, out_dir: Path) -> str:
    """What a finished `geodite train` says: steps and epochs done, the validation errors of the last
    validation (meV/atom, meV/Å, meV/Å³), and the files written."""
    done = f"trained {metrics.get('step', 0)} steps ({metrics.get('epoch', -1) + 1} epochs)" if metrics else \
        "no training step was due (the run had already finished)"
    errors = [f"{name} {metrics[key]:.4g} {unit}" for key, name, unit in (
        ("valid_energy_mae_mev_atom", "energy", "meV/atom"), ("valid_force_mae_mev_a", "forces", "meV/Å"),
        ("valid_stress_mae_mev_a3", "stress", "meV/Å³")) if isinstance(metrics.get(key), float)]
    lines = [done + (f"; validation MAE: {', '.join(errors)}" if errors else ""),
             f"model: {model_path} (use it with --model {model_path})",
             f"resume state and metrics: {out_dir / 'checkpoint.pt'}, {out_dir / 'metrics.csv'}"]
    return "\n".join(lines)


DISTILL_STAGES = ("label", "export", "split", "train", "all")


def distill_command(
    config: Path = typer.Argument(..., exists=True, dir_okay=False, help="distillation config (YAML): a "
                                  "`distill:` section (teacher, pool, labels_dir, split) and a training config; "
                                  "configs/distill.yaml is the current recipe"),
    stage: str = typer.Option("all", "--stage", help="label (the pool, resumable), split (labels by material "
                              "into train.db/valid.db), train (resumable), or all three; export (the "
                              "labels as compressed shards in --labels-out, to resume from with --reuse)"),
    shard: str = typer.Option("0/1", "--shard", help="i/n: label every n-th structure from the i-th into "
                              "labels-i.db (run n side by side, one thread each)"),
    data_root: Optional[Path] = typer.Option(None, "--data-root", help="the shared real-data folder "
                                             "(default ../shared/data)"),
    reuse: list[Path] = typer.Option([], "--reuse", help="earlier label databases or exported shards "
                                     "(.extxyz.xz) of the same pool seed whose rows are copied instead of "
                                     "relabelled (repeatable)"),
    device: str = typer.Option("cpu", "--device", help="teacher device"),
    threads: int = typer.Option(1, "--threads", help="torch threads of the teacher"),
    export: Optional[Path] = typer.Option(None, "--export", help="also write the trained (EMA) model here"),
    labels_out: Optional[Path] = typer.Option(None, "--labels-out", help="--stage export: the folder of the "
                                              "shards (default data/distill/<pool>)"),
) -> None:
    """Distil a Geodite from a teacher: label a structure pool (WBM/MP-derived crystals, molecules, salts
    relaxed by the teacher, dimers, isolated atoms; geodite.train.pools), split the labels by material, train.
    Every stage resumes where it stopped. Never touches the mptrj-random-1k test set."""
    import torch
    from rich.console import Console

    from geodite.train.config import TrainConfig, read_yaml
    from geodite.train.distill import PoolSeedError, export_shards, label_shard, read_distill_config, split_shards
    from geodite.train.trainer import Trainer

    console = Console()
    if stage not in DISTILL_STAGES:
        raise typer.BadParameter(f"unknown stage {stage!r}; one of {', '.join(DISTILL_STAGES)}")
    parts = shard.split("/")
    if len(parts) != 2 or not all(p.isdigit() for p in parts) or not int(parts[0]) < int(parts[1]):
        raise typer.BadParameter(f"--shard {shard!r}: expected i/n with 0 <= i < n")
    index, count = int(parts[0]), int(parts[1])
    if stage == "all" and count > 1:
        raise typer.BadParameter("--shard labels one part: use it with --stage label")
    try:
        section, values = read_distill_config(read_yaml(config))
        if stage in ("label", "all"):
            torch.set_num_threads(threads)
            rows = label_shard(section, index, count, data_root, reuse=reuse, device=device, log=console.print)
            console.print(f"{rows} labelled frames in {section.shard_db(index)}")
        if stage == "export":
            export_shards(section, labels_out or Path("data") / "distill" / section.pool, log=console.print)
        if stage in ("split", "all"):
            split_shards(section, log=console.print)
    except (PoolSeedError, FileExistsError, FileNotFoundError, ValueError) as error:
        raise typer.BadParameter(str(error)) from None
    if stage not in ("train", "all"):
        return
    try:
        trainer = Trainer(TrainConfig.from_dict(values), console=console)
    except ValueError as error:  # e.g. e0 and the data disagree at the isolated-atom limit
        raise typer.BadParameter(str(error)) from None
    trainer.train()
    if export is not None and trainer.rank == 0:
        trainer.export_model(export, metadata={"teacher": section.teacher, "pool": section.pool,
                                               "description": f"Geodite distilled from {section.teacher}"})
        console.print(f"wrote {export}")
