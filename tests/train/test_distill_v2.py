"""v2 distillation recipe: force cap and label reuse, mid-epoch validation, best-validation export."""

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.calculators.lj import LennardJones

from geodite.train.distill import copy_labels, label_structures
from geodite.train.config import TrainConfig
from geodite.train.state import BEST_FILE
from geodite.train.trainer import Trainer
from train_helpers import tiny_config


def _pairs():
    out = []
    for k, d in enumerate((1.2, 2.0, 3.0)):
        atoms = Atoms("Si2", positions=[[0, 0, 0], [d, 0, 0]], cell=np.eye(3) * 8.0, pbc=True)
        out.append((f"pair-{k}/d", atoms))
    return out


def test_max_force_drops_frames_and_copy_labels_reuses(tmp_path):
    calc = LennardJones(sigma=2.0, epsilon=0.01, rc=4.0)
    db = tmp_path / "a.db"
    assert label_structures(_pairs(), db, calc, "lj", log=lambda s: None) == 3
    forces = {}
    from ase.db import connect

    for row in connect(str(db)).select():
        forces[row.uid] = np.linalg.norm(row.forces, axis=1).max()
    cap = sorted(forces.values())[1] + 1e-9  # keeps two of three
    capped = tmp_path / "b.db"
    assert label_structures(_pairs(), capped, calc, "lj", log=lambda s: None, max_force=cap) == 2
    reused = tmp_path / "c.db"
    n = copy_labels(db, reused, {"pair-0/d", "pair-1/d", "pair-2/d"}, max_force=cap, log=lambda s: None)
    assert n == 2 and connect(str(reused)).count() == 2
    assert copy_labels(db, reused, {"pair-0/d", "pair-1/d", "pair-2/d"}, log=lambda s: None) == 1


def test_valid_every_and_keep_best_export(tmp_path, mptrj10):
    config = tiny_config(tmp_path, [mptrj10], run=dict(epochs=2, valid_every=2, keep_best=True),
                         optim=dict(warmup_steps=0, lr=3e-3))
    trainer = Trainer(TrainConfig.from_dict(config))
    trainer.train()
    rows = (tmp_path / "metrics.csv").read_text().strip().splitlines()
    assert len(rows) > 1 + 2  # mid-epoch validations besides the two epoch ends
    best = torch.load(tmp_path / BEST_FILE, weights_only=False)
    forces = [h["valid_force_mae_mev_a"] for h in trainer.history]
    assert best["metrics"]["valid_force_mae_mev_a"] == min(forces) == trainer.best_valid
    from geodite.checkpoints import load_model

    model = load_model(str(tmp_path / "model.pt"))
    assert model.metadata["trained_steps"] == best["step"]
    for key, value in best["model"].items():
        assert torch.allclose(model.state_dict()[key].float(), value.float())


def test_validation_only_every_n_steps(tmp_path, mptrj10):
    """valid_each_epoch false: validations at multiples of valid_every and once at the end, none at epoch ends."""
    config = tiny_config(tmp_path, [mptrj10], run=dict(epochs=3, valid_every=4, valid_each_epoch=False),
                         optim=dict(warmup_steps=0, lr=3e-3))
    trainer = Trainer(TrainConfig.from_dict(config))
    trainer.train()
    steps = [h["step"] for h in trainer.history]
    assert steps == sorted(set(steps)) and steps[-1] == trainer.step
    assert all(step % 4 == 0 for step in steps[:-1]) and len(steps) == trainer.step // 4 + (trainer.step % 4 > 0)
    with pytest.raises(ValueError, match="plateau"):
        Trainer(TrainConfig.from_dict(config | {"optim": dict(scheduler="plateau")}))
