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
    import yaml
    from rich.console import Console

    from geodite.train.trainer import FINETUNE_DEFAULTS, TrainConfig, Trainer

    values = yaml.safe_load(config.read_text()) or {}
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
    except ValueError as error:  # a bad config value, or e0 and the data disagree at the isolated-atom limit
        raise typer.BadParameter(str(error)) from None
    metrics = trainer.train()
    if metrics:
        Console().print(f"final: {metrics}")


def distill_command(
    teacher: str = typer.Option("sevennet-0", "--teacher", help="sevennet-0 or sevennet-l3i5 (a registry model "
                                "that predicts uncorrected MPtrj energies)"),
    labels: Path = typer.Option(Path("runs/distill/labels.db"), "--labels", help="ASE database of teacher "
                                "labels (appended to; a rerun resumes)"),
    config: Optional[Path] = typer.Option(None, "--config", help="training config (YAML); its data.train is "
                                          "set to the labels"),
    data_root: Optional[Path] = typer.Option(None, "--data-root", help="the shared real-data folder "
                                             "(default ../shared/data)"),
    pool_name: str = typer.Option("v6", "--pool",
                                  help="structure pool: v1, v2, v5 or v6 (the shipped model's; see "
                                  "geodite.train.distill)"),
    seed: int = typer.Option(0, "--seed", help="seed of the structure pool (rattles, strains)"),
    reuse: list[Path] = typer.Option([], "--reuse", help="earlier label databases whose rows for this pool "
                                     "are copied instead of relabelled (repeatable)"),
    limit: Optional[int] = typer.Option(None, "--limit", help="label at most this many structures"),
    label_only: bool = typer.Option(False, "--label-only", help="label, do not train"),
    train_only: bool = typer.Option(False, "--train-only", help="train on existing labels"),
    export: Optional[Path] = typer.Option(None, "--export", help="also write the trained (EMA) model here"),
    device: str = typer.Option("cpu", "--device", help="teacher device"),
) -> None:
    """Label WBM/MP/MPtrj-derived structures (rattled, strained, supercells, dimers; in pools v5 and v6 also
    molecules, molecular salts relaxed by the teacher) with a teacher potential, then train a Geodite on the
    labels.
    Never touches the mptrj-random-1k test set."""
    import yaml
    from rich.console import Console

    from geodite.train.distill import MAX_FORCE_V2, POOLS, PoolSeedError, label_pool, make_teacher

    console = Console()
    labels.parent.mkdir(parents=True, exist_ok=True)
    if not train_only:
        if pool_name not in POOLS:
            raise typer.BadParameter(f"unknown pool {pool_name!r}; one of {', '.join(sorted(POOLS))}")
        pool = POOLS[pool_name](data_root, seed=seed)
        console.print(f"structure pool {pool_name}: {len(pool)} structures")
        try:
            count = label_pool(pool, labels, teacher, make_teacher(teacher, device), reuse=reuse, limit=limit,
                               max_force=None if pool_name == "v1" else MAX_FORCE_V2, log=console.print,
                               seed=seed)
        except PoolSeedError as error:
            raise typer.BadParameter(str(error)) from None
        console.print(f"{count} labelled structures in {labels}")
    if label_only:
        return
    from geodite.train.trainer import TrainConfig, Trainer

    values = yaml.safe_load(config.read_text()) if config else {}
    data = values.setdefault("data", {})
    if not data.get("train"):
        data["train"] = [str(labels)]
    trainer = Trainer(TrainConfig.from_dict(values), console=console)
    trainer.train()
    if export is not None and trainer.rank == 0:
        trainer.export_model(export, metadata={"teacher": teacher, "labels": str(labels),
                                               "description": f"Geodite distilled from {teacher}"})
        console.print(f"wrote {export}")
