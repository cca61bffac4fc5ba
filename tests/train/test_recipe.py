"""The distillation recipe: e0 at the teacher's isolated-atom limit, energy_shift 0 (dimers approach 2·e0),
the check that refuses a model whose isolated atoms disagree with the data, EMA warm-up, MSE/Huber, raw metrics."""

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator
from ase.db import connect

from geodite.train.config import TrainConfig
from geodite.train.optim import EMA, elementwise_loss
from geodite.train.pools import boxed
from geodite.train.references import isolated_limit_mismatches
from geodite.train.trainer import Trainer
from train_helpers import tiny_config

ELEMENTS = (13, 29)  # Al, Cu: EMT has both


def _write_emt_labels(path, with_isolated: bool = True) -> dict[int, float]:
    """Rattled Al/Cu crystals, dimers and (``with_isolated``) single atoms labelled by ASE's EMT; returns
    EMT's isolated-atom energy per element (eV)."""
    rng = np.random.default_rng(0)
    frames, isolated = [], {}
    for z in ELEMENTS:
        atom = boxed([z])
        atom.calc = EMT()
        isolated[z] = atom.get_potential_energy()
        if with_isolated:
            frames.append((f"atom-{z}/isolated", atom))
        for k, d in enumerate((2.2, 2.6, 3.0, 3.5)):
            frames.append((f"dimer-{z}/{k}", boxed([z, z], d)))
    # one-atom crystal cells first: they are single-atom frames but not isolated atoms (their images are ~2.5 Å
    # away), and must not set e0
    frames = [(f"element-{z}/relaxed", bulk("Cu" if z == 29 else "Al", "fcc", a=3.6 if z == 29 else 4.05))
              for z in ELEMENTS] + frames
    for k in range(8):
        crystal = bulk("Cu" if k % 2 else "Al", "fcc", a=3.6 if k % 2 else 4.05, cubic=True)
        if k >= 4:
            crystal.numbers[::2] = 13 if k % 2 else 29
        crystal.positions += rng.normal(0, 0.08, crystal.positions.shape)
        frames.append((f"crystal-{k}/rattle", crystal))
    with connect(str(path)) as db:
        for uid, atoms in frames:
            atoms.calc = EMT()
            labelled = Atoms(atoms.numbers, positions=atoms.positions, cell=atoms.cell, pbc=True)
            labelled.calc = SinglePointCalculator(labelled, energy=atoms.get_potential_energy(),
                                                  forces=atoms.get_forces(), stress=atoms.get_stress())
            db.write(labelled, uid=uid)
    return isolated


def _config(tmp_path, db, **loss):
    return tiny_config(tmp_path, [db], data=dict(valid_fraction=0.0, batch_size=4),
                       loss={"weights": [1.0, 1.0, 0.0], "e0": "isolated", "function": "mse", **loss},
                       optim=dict(warmup_steps=0, lr=3e-3), run=dict(epochs=4, checkpoint_every=0))


def test_trained_dimers_approach_twice_the_isolated_atom_energy(tmp_path):
    """e0 = the data's single-atom energies and energy_shift 0: after training, every supported element's
    dimer reaches 2·e0 at the cutoff, continuously (no step, no spurious force near the cutoff), and Al/Cu
    dimers end exactly at twice the teacher's isolated-atom energy."""
    db = tmp_path / "labels.db"
    isolated = _write_emt_labels(db)
    trainer = Trainer(TrainConfig.from_dict(_config(tmp_path / "run", db)))
    trainer.train()
    model = trainer.ema.model_copy(trainer.model).double().eval()
    assert float(model.energy_shift) == 0.0
    for z, energy in isolated.items():
        assert float(model.e0[z]) == pytest.approx(energy, abs=1e-5)  # float32 training
    from geodite.calculator import GeoditeCalculator

    calc = GeoditeCalculator(model=model, dtype="float64")
    cutoff = model.cutoff
    supported = [z for z in range(1, 95) if float(model.e0[z]) != 0.0]
    assert len(supported) > 80
    for z in supported:
        limit = 2 * float(model.e0[z])
        energies, forces = [], []
        for d in (cutoff - 0.2, cutoff - 0.02, cutoff - 1e-3, cutoff + 0.5):
            atoms = boxed([z, z], d)
            atoms.calc = calc
            energies.append(atoms.get_potential_energy() - limit)
            forces.append(np.abs(atoms.get_forces()).max())
        assert energies[-1] == pytest.approx(0.0, abs=1e-9) and forces[-1] == pytest.approx(0.0, abs=1e-9)
        # the approach is smooth: the gap closes towards the cutoff without a jump
        assert abs(energies[2]) < 1e-4 and abs(energies[1]) <= abs(energies[0]) + 1e-6
        assert forces[2] < 1e-2, f"Z={z}: force {forces[2]} eV/Å just inside the cutoff"


def test_e0_disagreeing_with_the_data_at_the_isolated_limit_is_refused(tmp_path):
    """The bug of v4–v6: least-squares e0 (several eV below the isolated atoms) is refused when the data
    holds single-atom frames, and the mismatch names the element."""
    db = tmp_path / "labels.db"
    _write_emt_labels(db)
    with pytest.raises(ValueError, match="isolated atoms disagree.*(Al|Cu)"):
        Trainer(TrainConfig.from_dict(_config(tmp_path / "fit", db, e0="fit")))
    # the model's MPtrj PBE e0 is not EMT's either
    with pytest.raises(ValueError, match="isolated atoms disagree"):
        Trainer(TrainConfig.from_dict(_config(tmp_path / "model", db, e0="model")))
    e0 = np.zeros(100)
    e0[29] = -1.0
    assert isolated_limit_mismatches(e0, {29: -1.02}, tolerance=0.05) == []
    assert isolated_limit_mismatches(e0, {29: -1.2}, tolerance=0.05) == ["Cu: model -1.000 eV, data -1.200 eV"]


def test_fitted_e0_without_isolated_frames_is_warned_about(tmp_path):
    db = tmp_path / "labels.db"
    _write_emt_labels(db, with_isolated=False)
    messages = []

    class Console:
        def print(self, message):
            messages.append(str(message))

    Trainer(TrainConfig.from_dict(_config(tmp_path / "fit", db, e0="fit")), console=Console())
    assert any("warning: e0 fitted by least squares" in m for m in messages)
    with pytest.raises(ValueError, match="needs single-atom frames"):
        Trainer(TrainConfig.from_dict(_config(tmp_path / "iso", db)))


def test_ema_warmup_follows_early_weights_and_resumes():
    lin = torch.nn.Linear(2, 1)
    ema = EMA(lin, decay=0.995)
    assert ema.current_decay() == pytest.approx(0.1)  # (1 + 0)/(10 + 0)
    with torch.no_grad():
        lin.weight.fill_(1.0)
    ema.update(lin)
    assert torch.allclose(ema.shadow["weight"], torch.full_like(lin.weight, 1.0), atol=0.1 * 2)
    for _ in range(5000):
        ema.update(lin)
    assert ema.current_decay() == 0.995
    other = EMA(torch.nn.Linear(2, 1), decay=0.995)
    other.load_state_dict(ema.state_dict())
    assert other.updates == ema.updates and other.current_decay() == 0.995
    plain = EMA(lin, decay=0.995, warmup=False)
    assert plain.current_decay() == 0.995


def test_mse_and_huber_losses():
    pred, true = torch.tensor([0.0, 0.005, 1.0]), torch.zeros(3)
    huber = elementwise_loss(pred, true, "huber", 0.01)
    mse = elementwise_loss(pred, true, "mse", 0.01)
    assert torch.allclose(mse, 0.5 * pred ** 2)
    assert huber[1] == pytest.approx(mse[1]) and huber[2] == pytest.approx(0.01 * (1.0 - 0.005))
    with pytest.raises(ValueError, match="unknown loss function"):
        elementwise_loss(pred, true, "l3", 0.01)


def test_raw_weight_metrics_are_logged_beside_ema_ones(tmp_path, mptrj10):
    config = tiny_config(tmp_path, [mptrj10], optim=dict(warmup_steps=0, lr=3e-3, ema_decay=0.999))
    trainer = Trainer(TrainConfig.from_dict(config))
    metrics = trainer.train()
    header = (tmp_path / "metrics.csv").read_text().splitlines()[0].split(",")
    assert {"raw_valid_force_mae_mev_a", "valid_force_mae_mev_a"} <= set(header)
    # different weights, different errors (the EMA lags the raw weights)
    assert metrics["raw_valid_force_mae_mev_a"] != metrics["valid_force_mae_mev_a"]


def test_cli_train_refuses_the_mismatch_with_exit_code_2(tmp_path):
    import typer
    import yaml
    from typer.testing import CliRunner

    from geodite.cli.train import train_command

    db = tmp_path / "labels.db"
    _write_emt_labels(db)
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(_config(tmp_path / "run", db, e0="fit")))
    app = typer.Typer()
    app.command("train")(train_command)
    app.command("other")(lambda: None)
    result = CliRunner().invoke(app, ["train", str(path)])
    assert result.exit_code == 2 and "isolated" in result.output and "Traceback" not in result.output
