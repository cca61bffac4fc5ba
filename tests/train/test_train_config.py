"""The training config: the shipped YAML files load and round-trip, the model section is the network's
GeoditeConfig, "published" normalisation is the alias of "model", bad files give one-line errors."""

import re
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from geodite.cli.main import app
from geodite.model import GeoditeConfig
from geodite.train.config import ARCHITECTURE_KEYS, ConfigError, TrainConfig
from geodite.train.distill import read_distill_config
from geodite.train.trainer import Trainer
from train_helpers import tiny_config

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "configs").rglob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda path: path.name)
def test_shipped_configs_load_and_round_trip(path):
    """Each YAML's model keys land in the embedded GeoditeConfig; to_dict gives back the keys it was read from."""
    values = yaml.safe_load(path.read_text())
    if "distill" in values:
        values = read_distill_config(values)[1]
    config = TrainConfig.from_dict(values)
    assert isinstance(config.model.architecture, GeoditeConfig)
    for key, value in values.get("model", {}).items():
        assert config.to_dict()["model"][key] == value
        if key in ARCHITECTURE_KEYS:
            assert getattr(config.model.architecture, key) == value
    assert TrainConfig.from_dict(config.to_dict()) == config
    for section, given in values.items():
        assert set(given) <= set(config.to_dict()[section])


def test_model_section_defaults_are_geodite_config_defaults():
    """Keys a config leaves out take GeoditeConfig's defaults (the published architecture), not copies of them."""
    config = TrainConfig.from_dict({"model": {"num_channels": 64, "num_heads": 4}})
    assert config.model.architecture == GeoditeConfig(num_channels=64, num_heads=4)
    assert list(config.to_dict()["model"]) == [*ARCHITECTURE_KEYS, "init_from"]
    with pytest.raises(ConfigError, match=re.escape("unknown keys in [model]: ['max_z']")):
        TrainConfig.from_dict({"model": {"max_z": 90}})  # not a training config key (as before)


def test_yaml_syntax_error_is_one_line_naming_the_file_and_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("model:\n  num_channels: 8\n bad: [1\n")
    with pytest.raises(ConfigError) as error:
        TrainConfig.from_yaml(path)
    message = str(error.value)
    assert message.startswith(f"{path}: line 3, column 2: not valid YAML") and "\n" not in message


def test_unknown_key_in_a_file_names_the_file_and_the_key(tmp_path):
    path = tmp_path / "typo.yaml"
    path.write_text("model:\n  num_channel: 8\n")
    with pytest.raises(ConfigError, match=re.escape(f"{path}: unknown keys in [model]: ['num_channel']")):
        TrainConfig.from_yaml(path)


@pytest.mark.parametrize("text, expected", [("model:\n  num_channels: 8\n bad: [1\n", "not valid YAML"),
                                            ("- model\n- run\n", "expected a mapping of sections"),
                                            ("model:\n  num_channel: 8\n", "unknown keys in [model]")])
def test_cli_refuses_a_bad_file_with_exit_2_and_no_traceback(tmp_path, text, expected):
    path = tmp_path / "config.yaml"
    path.write_text(text)
    result = CliRunner().invoke(app, ["train", str(path)])
    output = re.sub(r"[\s│╭╮╰╯─]+", " ", result.output)
    assert result.exit_code == 2 and expected in output and "Traceback" not in output, output


def test_published_normalisation_is_the_model_normalisation(tmp_path, mptrj10):
    """"published" and "model" give the model's μ_E, σ_E (the published constants for a fresh model); "data"
    gives the statistics of the training frames instead."""
    def norm(name: str):
        config = tiny_config(tmp_path / name, [mptrj10], loss=dict(normalisation=name))
        return Trainer(TrainConfig.from_dict(config)).norm

    published, model, data = norm("published"), norm("model"), norm("data")
    assert published == model
    assert (model.energy_mean, model.energy_std) == (0.0, GeoditeConfig().energy_scale)
    assert data.energy_std != model.energy_std
