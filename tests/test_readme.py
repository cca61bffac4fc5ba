"""The README's commands as a newcomer runs them: the data file it names exists, and what it says every task
command takes is what those commands take."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import typer.main

from geodite.cli.main import app

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def _options(group: str, name: str) -> set[str]:
    command = typer.main.get_command(app).commands[group].commands[name]
    return {option for param in command.params for option in param.opts}


def test_every_data_file_the_readme_evaluates_exists():
    """The README used to evaluate `frames.extxyz`, which no one has."""
    paths = set(re.findall(r"--data (\S+)", README))
    assert paths, "the README shows no geodite eval"
    for path in paths:
        if path.startswith("../shared/") and not (ROOT / "../shared").is_dir():
            pytest.skip("no ../shared beside this checkout")
        assert (ROOT / path).is_file(), path


def test_the_readme_lists_the_commands_that_take_workers_and_limit():
    """It said every `bench` command takes --workers and --limit; speed and cps take neither."""
    sentence = README[README.index("The task commands"):README.index("`--model`", README.index("The task commands"))]
    listed = set(re.findall(r"`bench (\w+)`", sentence))
    bench = typer.main.get_command(app).commands["bench"].commands
    taking = {name for name in bench if {"--workers", "--limit"} <= _options("bench", name)}
    assert listed == taking == {"discovery", "kappa", "diatomics", "md", "all"}
    assert "--workers" not in _options("bench", "speed") | _options("bench", "cps")
