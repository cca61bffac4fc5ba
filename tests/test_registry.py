from __future__ import annotations

import dataclasses
import json

import pytest
import typer
from typer.testing import CliRunner

from geodite import registry
from geodite.registry import (
    MP2020_CORRECTED,
    UNCORRECTED,
    ModelNotAvailableError,
    get_calculator,
    get_spec,
    list_models,
    model_label,
)


def test_names_and_conventions():
    names = [m["name"] for m in list_models()]
    assert names[:2] == ["geodite", "geodite-mp"]
    assert {"sevennet-0", "chgnet", "mace-mp-0", "emt"} <= set(names)
    assert get_spec("chgnet").energy_convention == MP2020_CORRECTED
    for name in ("geodite", "geodite-mp", "sevennet-0", "mace-mp-0", "emt"):
        assert get_spec(name).energy_convention == UNCORRECTED
    assert registry.DEFAULT_MODEL == "geodite"


def test_emt_calculator():
    from ase.build import bulk

    atoms = bulk("Cu", "fcc", a=3.6)
    atoms.calc = get_calculator("emt")
    assert abs(atoms.get_potential_energy()) < 1.0


def test_unknown_name():
    with pytest.raises(KeyError, match="unknown model"):
        get_spec("no-such-model")


def test_checkpoint_path_entry(tmp_path):
    path = tmp_path / "my-run" / "best.pt"
    spec = get_spec(str(path))
    assert spec.path == str(path) and spec.energy_convention == UNCORRECTED
    assert model_label(str(path)) == "best"
    assert model_label("geodite-mp") == "geodite-mp"


def test_missing_extra_message(monkeypatch):
    fake = dataclasses.replace(registry.REGISTRY["chgnet"], requires=("surely_not_installed_pkg",))
    monkeypatch.setitem(registry.REGISTRY, "chgnet", fake)
    assert not fake.available()
    with pytest.raises(ModelNotAvailableError, match=r"pip install 'geodite\[chgnet\]'"):
        get_calculator("chgnet")


def test_geodite_goes_through_calculator(monkeypatch):
    """Geodite names and paths are built by geodite.calculator.GeoditeCalculator."""
    seen = {}

    class Fake:
        def __init__(self, model, device, dtype, **kw):
            seen.update(model=model, device=device, dtype=dtype)

    monkeypatch.setattr(registry, "GeoditeCalculator", Fake)
    get_calculator("geodite-mp", device="cpu", dtype="float64")
    assert seen == {"model": "geodite-mp", "device": "cpu", "dtype": "float64"}


def test_models_command():
    from geodite.cli.main import models_command

    app = typer.Typer()
    app.command()(models_command)
    res = CliRunner().invoke(app, ["--json"])
    assert res.exit_code == 0, res.output
    rows = {r["name"]: r for r in json.loads(res.stdout)}
    assert rows["emt"]["available"] is True
    res = CliRunner().invoke(app, [])
    assert res.exit_code == 0 and "emt" in res.output
