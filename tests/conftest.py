"""Shared test fixtures: the small golden fixture's model (float64) and structures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from ase.io import read

from geodite.checkpoints import load_checkpoint

DATA = Path(__file__).parent / "data"
SHARED = Path(__file__).resolve().parents[1].parent / "shared"


@pytest.fixture(scope="session")
def small_config() -> dict:
    return json.loads((DATA / "geodite_small_config.json").read_text())


@pytest.fixture(scope="session")
def small_model():
    """The upstream small reference model (16 channels, 2 layers, 2 heads, 5 Å) in float64, eval mode."""
    return load_checkpoint(DATA / "geodite_small_checkpoint.pt").eval()


@pytest.fixture(scope="session")
def small_cases() -> list:
    return read(DATA / "geodite_small_cases.extxyz", index=":")


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)


@pytest.fixture
def runner_calls(monkeypatch) -> list[tuple]:
    """The runner replaced by a recorder of (task, options), wherever a command or `bench all` reaches it."""
    from geodite.tasks import runner, suite

    calls: list[tuple] = []

    def record(task, opts, client=None, log=None):
        calls.append((task, opts))
        return {"task": task.name, "model": opts.model, "n_items": 0, "results_dir": str(opts.results_dir)}

    monkeypatch.setattr(runner, "run_task", record)
    monkeypatch.setattr(suite, "run_task", record)
    return calls
