"""Trainer inputs that must not be trusted: checkpoints never run code, config values are checked at load,
and the metrics of an epoch interrupted and resumed are those of an uninterrupted run."""

import math
import os
import random
import re

import numpy as np
import pytest
import torch
import yaml
from typer.testing import CliRunner

from geodite.cli.main import app
from geodite.train.config import ConfigError, TrainConfig
from geodite.train.state import STATE_FILE, ResumeError, rng_state, set_rng_state
from geodite.train.trainer import Trainer
from train_helpers import tiny_config


class ShellCommand:
    """Unpickled, this runs ``touch MARKER``."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_exploit_is_real(tmp_path):
    """The planted file below does run its command when unpickled without restrictions."""
    marker = tmp_path / "ran"
    torch.save({"format": "x", "model": ShellCommand(marker)}, tmp_path / "evil.pt")
    torch.load(tmp_path / "evil.pt", weights_only=False)
    assert marker.exists()


def test_malicious_checkpoint_is_refused_and_nothing_runs(tmp_path, mptrj10):
    marker = tmp_path / "ran"
    out = tmp_path / "run"
    out.mkdir()
    torch.save({"format": "geodite-train-state-v2", "model": ShellCommand(marker)}, out / STATE_FILE)
    config = tiny_config(out, [mptrj10])
    with pytest.raises(ResumeError, match=f"refused to load .*{STATE_FILE}.*system.*start afresh") as refusal:
        Trainer(TrainConfig.from_dict(config))
    assert "\n" not in str(refusal.value)
    assert not marker.exists()

    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    code, output = _cli_train(tmp_path / "config.yaml")
    assert code == 2 and "refused to load" in output and "Traceback" not in output
    assert not marker.exists()


def test_checkpoint_holds_only_tensors_and_plain_data(tmp_path, mptrj10):
    """Every run writes checkpoint.pt in the weights-only format: a normal run resumes (none is refused)."""
    config = tiny_config(tmp_path, [mptrj10], run=dict(epochs=1, keep_best=True))
    Trainer(TrainConfig.from_dict(config)).train()
    state = torch.load(tmp_path / STATE_FILE, weights_only=True)
    assert state["format"] == "geodite-train-state-v2" and state["epoch"] == 1
    torch.load(tmp_path / "best_ema.pt", weights_only=True)
    assert Trainer(TrainConfig.from_dict(config)).epoch == 1


def test_rng_state_round_trip():
    """torch, numpy (including a cached Gaussian) and python generators continue exactly after a restore."""
    torch.manual_seed(1)
    np.random.seed(2)
    random.seed(3)
    np.random.standard_normal()  # leaves a cached Gaussian (has_gauss = 1)
    state = rng_state()
    expected = (torch.rand(3), np.random.standard_normal(3), random.random())
    torch.manual_seed(9)
    np.random.seed(9)
    random.seed(9)
    set_rng_state(state)
    again = (torch.rand(3), np.random.standard_normal(3), random.random())
    assert torch.equal(expected[0], again[0]) and np.array_equal(expected[1], again[1]) and expected[2] == again[2]


@pytest.mark.parametrize("section, key, value, message", [
    ("run", "epochs", -1, "run.epochs: -1 is not >= 1"),
    ("run", "epochs", 0, "run.epochs: 0 is not >= 1"),
    ("optim", "lr", "abc", "optim.lr: expected a finite number, got 'abc'"),
    ("optim", "lr", -1e-3, "optim.lr: -0.001 is not > 0"),
    ("data", "batch_size", 2.5, "data.batch_size: expected a whole number, got 2.5"),
    ("model", "num_heads", 3, "model.num_heads: 3 does not divide model.num_channels 8"),
    ("loss", "weights", [1, 1], "loss.weights: expected 3 values"),
    ("optim", "scheduler", "cosine", "optim.scheduler: 'cosine' is not one of"),
    ("loss", "function", "l1", "loss.function: 'l1' is not one of huber, mse"),
    ("loss", "e0", "teacher", "loss.e0: 'teacher' is not one of model, fit, isolated"),
    ("loss", "e0_tolerance", 0.0, "loss.e0_tolerance: 0.0 is not > 0"),
    ("run", "tensorboard", "yes", "run.tensorboard: expected true or false, got 'yes'"),
    ("run", "device", "gpu", "run.device: unknown device 'gpu'"),
    ("data", "train", "frames.db", "data.train: expected a list, got 'frames.db'"),
])
def test_bad_config_value_is_refused_at_load(tmp_path, section, key, value, message):
    config = tiny_config(tmp_path, ["frames.db"], **{section: {key: value}})
    with pytest.raises(ConfigError, match=re.escape(message)):
        TrainConfig.from_dict(config)


def test_yaml_float_without_decimal_point_is_a_number(tmp_path):
    """YAML 1.1 reads 1e-4 as a string: accepted as the number it is."""
    config = TrainConfig.from_dict(yaml.safe_load("optim:\n  lr: 1e-4\n  lr_start: 3\n"))
    assert config.optim.lr == 1e-4 and config.optim.lr_start == 3.0 and isinstance(config.optim.lr_start, float)


def test_cli_refuses_bad_config_with_exit_2_and_one_line(tmp_path, mptrj10):
    for values, expected in [({"run": {"epochs": -1}}, "run.epochs: -1"), ({"optim": {"lr": "abc"}}, "optim.lr")]:
        config = tiny_config(tmp_path / "run", [mptrj10], **values)
        (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
        code, output = _cli_train(tmp_path / "config.yaml")
        assert code == 2 and expected in output and "Traceback" not in output, output
        assert not (tmp_path / "run" / "model.pt").exists()
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(tiny_config(tmp_path / "run", [mptrj10])))
    code, output = _cli_train(tmp_path / "config.yaml", "--epochs", "-1")
    assert code == 2 and "run.epochs: -1" in output


def _cli_train(config_path, *options) -> tuple[int, str]:
    """Exit code and output of `geodite train`, the output unwrapped from its box (one line)."""
    result = CliRunner().invoke(app, ["train", str(config_path), *options])
    return result.exit_code, re.sub(r"[\s│╭╮╰╯─]+", " ", result.output)


def _history(trainer: Trainer) -> list[tuple]:
    return [(row["epoch"], row["step"], row["train_loss"], row["valid_loss"]) for row in trainer.history]


def test_resume_mid_epoch_gives_the_uninterrupted_metrics(tmp_path, mptrj10):
    """Stopped after 3 of an epoch's 8 steps and resumed: the epoch's train_loss covers all 8 steps."""
    def config(out, **run):
        return TrainConfig.from_dict(tiny_config(out, [mptrj10], data=dict(batch_size=1),
                                                 run=dict(epochs=2, checkpoint_every=100, **run)))

    reference = Trainer(config(tmp_path / "ref"))
    reference.train()
    assert reference.steps_per_epoch == 8

    stopped = Trainer(config(tmp_path / "resumed", max_steps=3))
    stopped.train()
    assert (stopped.step, stopped.epoch, stopped.batch_in_epoch) == (3, 0, 3)
    resumed = Trainer(config(tmp_path / "resumed"))
    assert len(resumed.epoch_losses) == 3
    resumed.train()
    assert _history(resumed) == _history(reference)
    assert all(math.isfinite(row[2]) for row in _history(resumed))


def test_killed_during_epoch_end_validation_keeps_the_epoch_loss(tmp_path, mptrj10, monkeypatch):
    """Killed after the epoch's last checkpoint, in its validation: the resumed epoch reports its loss (not NaN)."""
    def config(out):
        return TrainConfig.from_dict(tiny_config(out, [mptrj10], data=dict(batch_size=1),
                                                 run=dict(epochs=1, checkpoint_every=8)))

    reference = Trainer(config(tmp_path / "ref"))
    reference.train()

    killed = Trainer(config(tmp_path / "killed"))

    def kill(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(killed, "validate", kill)
    with pytest.raises(KeyboardInterrupt):
        killed.train()
    resumed = Trainer(config(tmp_path / "killed"))
    assert (resumed.step, resumed.batch_in_epoch) == (8, 8)
    resumed.train()
    assert _history(resumed) == _history(reference)
