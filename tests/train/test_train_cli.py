"""`geodite train` as a user meets it: a one-line refusal for a missing data file or an unusable checkpoint to
fine-tune from, and, once trained, the steps done and the files written."""

from __future__ import annotations

import yaml
from typer.testing import CliRunner

from geodite.cli.main import app
from tests.train.train_helpers import MPTRJ_10_DB, tiny_config

runner = CliRunner(env={"COLUMNS": "400"})  # long tmp paths must not be wrapped mid-word


def _write(tmp_path, config: dict):
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _one_line_refusal(result, *needles: str) -> None:
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    text = " ".join(result.output.replace("│", " ").split())
    assert "Traceback" not in text and all(needle in text for needle in needles), text


def test_a_missing_training_data_file_is_one_line(tmp_path):
    missing = tmp_path / "nope.extxyz"
    result = runner.invoke(app, ["train", str(_write(tmp_path, tiny_config(tmp_path / "run", [missing])))])
    _one_line_refusal(result, "training data not found", "nope.extxyz")


def test_finetuning_from_an_unreadable_checkpoint_is_one_line(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"garbage")
    config = _write(tmp_path, tiny_config(tmp_path / "run", [MPTRJ_10_DB]))
    result = runner.invoke(app, ["train", str(config), "--finetune", str(bad)])
    _one_line_refusal(result, "refused to load", "bad.pt")


def test_a_finished_run_says_how_many_steps_and_where_the_model_is(tmp_path):
    out = tmp_path / "run"
    config = tiny_config(out, [MPTRJ_10_DB], run={"epochs": 1})
    result = runner.invoke(app, ["train", str(_write(tmp_path, config))])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "trained 4 steps (1 epochs)" in text and "validation MAE: energy" in text
    assert f"model: {out / 'model.pt'}" in text and (out / "model.pt").is_file()
