from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
from pathlib import Path

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


SMALL = Path(__file__).parent / "data" / "geodite_small_checkpoint.pt"
SHIPPED = Path(registry.__file__).parent / "weights" / "geodite-distilled.pt"


def _copy(source: Path, destination: Path) -> str:
    destination.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(source, destination)
    return str(destination)


def test_checkpoint_path_entry(tmp_path):
    path = _copy(SMALL, tmp_path / "my-run" / "best.pt")
    spec = get_spec(path)
    assert spec.path == path and spec.energy_convention == UNCORRECTED
    assert model_label(path) == "best-" + hashlib.sha256(SMALL.read_bytes()).hexdigest()[:8]
    assert model_label("geodite-mp") == "geodite-mp"
    with pytest.raises(KeyError, match="no checkpoint at"):
        model_label(str(tmp_path / "gone.pt"))


def test_checkpoint_labels_are_unique_per_weights(tmp_path):
    """A user's geodite.pt never files its results under the shipped model's label; two checkpoints whose names
    clean up alike get two labels unless their weights are the same file content."""
    users = _copy(SMALL, tmp_path / "geodite.pt")
    assert model_label(users) != "geodite" and model_label(users).startswith("geodite-")
    first, second = _copy(SMALL, tmp_path / "my model.pt"), _copy(SHIPPED, tmp_path / "my_model.pt")
    assert model_label(first) != model_label(second)
    same = _copy(SMALL, tmp_path / "elsewhere" / "my model.pt")
    assert model_label(same) == model_label(first)


def test_weights_identity_fixes_every_models_weights(tmp_path, monkeypatch):
    """The store's protocol gets the checkpoint's sha256 for every Geodite entry, geodite-mp's cached download
    included, and the package version for peers whose weights come with their package."""
    monkeypatch.setenv("GEODITE_CACHE_DIR", str(tmp_path))
    from geodite.data.downloads import cache_dir

    _copy(SMALL, cache_dir() / "Geodite-MP.ckpt")
    expected = hashlib.sha256(SMALL.read_bytes()).hexdigest()
    assert get_spec("geodite-mp").weights_identity() == {"weights_sha256": expected}
    shipped = hashlib.sha256(SHIPPED.read_bytes()).hexdigest()
    assert get_spec("geodite").weights_identity() == {"weights_sha256": shipped}
    assert get_spec("emt").weights_identity()["weights_package"].startswith("ase ")


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


def test_a_missing_checkpoint_has_no_label_one_line(tmp_path):
    """Nothing to label without the file: `bench cps` and `report` say so in one line (exit 2)."""
    from geodite.cli.main import app

    for command in (["bench", "cps"], ["report"]):
        result = CliRunner().invoke(app, [*command, "--model", str(tmp_path / "gone.pt"), "--results-dir",
                                          str(tmp_path)])
        assert result.exit_code == 2 and "no checkpoint at" in result.output
        assert "Traceback" not in result.output
