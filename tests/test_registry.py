from __future__ import annotations

import dataclasses
import hashlib
import json
import pickle
import shutil
from pathlib import Path

import pytest
import torch
import typer
from ase.build import bulk
from typer.testing import CliRunner

from geodite import registry
from geodite.calculator import ATOMS_PER_CALL, GeoditeCalculator
from geodite.checkpoints import load_model
from geodite.export import load_exported
from geodite.registry import (
    MP2020_CORRECTED,
    UNCORRECTED,
    ModelNotAvailableError,
    list_models,
    model_label,
    resolve,
)

SMALL = Path(__file__).parent / "data" / "geodite_small_checkpoint.pt"
SHIPPED = Path(registry.__file__).parent / "weights" / "geodite-distilled.pt"
ARCHITECTURES = ("geodite-published", "geodite-published-python", "geodite-published-aoti",
                 "geodite-published-aoti-plain", "mace-mp-0-medium")


def _copy(source: Path, destination: Path) -> str:
    destination.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(source, destination)
    return str(destination)


def test_names_and_conventions():
    names = [m["name"] for m in list_models()]
    assert names[:2] == ["geodite", "geodite-mp"]
    assert {"sevennet-0", "chgnet", "mace-mp-0", "emt"} <= set(names)
    assert resolve("chgnet").energy_convention == MP2020_CORRECTED
    for name in ("geodite", "geodite-mp", "sevennet-0", "mace-mp-0", "emt"):
        handle = resolve(name)
        assert handle.energy_convention == UNCORRECTED and handle.name == handle.label == name and handle.trained
    assert registry.DEFAULT_MODEL == "geodite"


def test_emt_calculator():
    atoms = bulk("Cu", "fcc", a=3.6)
    atoms.calc = resolve("emt").load()
    assert abs(atoms.get_potential_energy()) < 1.0


def test_an_unknown_name_is_one_line_naming_the_choices():
    with pytest.raises(KeyError, match="unknown model") as raised:
        resolve("no-such-model")
    message = str(raised.value)
    assert "\n" not in message
    for choice in ("geodite", "geodite-mp", "chgnet", "emt", "geodite-published", "checkpoint path", ".pt2"):
        assert choice in message


def test_a_checkpoint_path_resolves_to_a_geodite_entry_labelled_by_its_hash(tmp_path):
    path = _copy(SMALL, tmp_path / "my-run" / "best.pt")
    handle = resolve(path)
    digest = hashlib.sha256(SMALL.read_bytes()).hexdigest()
    assert handle.name == path and handle.label == "best-" + digest[:8] == model_label(path)
    assert handle.energy_convention == UNCORRECTED and handle.checkpoint == path and handle.trained
    assert handle.weights_identity() == {"weights_sha256": digest}
    calculator = handle.load(dtype="float64", atoms_per_call=7)
    assert isinstance(calculator, GeoditeCalculator) and calculator.evaluator.atoms_per_call == 7
    assert model_label("geodite-mp") == "geodite-mp"
    with pytest.raises(KeyError, match="no checkpoint at"):
        resolve(str(tmp_path / "gone.pt"))
    with pytest.raises(KeyError, match="no checkpoint at"):
        model_label(str(tmp_path / "gone.pt"))
    assert model_label("best-1a2b3c4d") == "best-1a2b3c4d"  # a results label stands for itself (report, cps)


def test_an_exported_package_resolves_to_an_entry_that_loads_the_package(tmp_path):
    """A ``.pt2`` path: labelled and identified by its file's hash like a checkpoint, loaded by load_exported
    (the loading itself: tests/export/test_export.py, slow)."""
    path = tmp_path / "geodite-float64.pt2"
    path.write_bytes(b"not really a package")
    handle = resolve(str(path))
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert handle.label == "geodite-float64-" + digest[:8] and handle.model_loader is load_exported
    assert handle.weights_identity() == {"weights_sha256": digest} and "package" in handle.description


def test_checkpoint_labels_are_unique_per_weights(tmp_path):
    """A user's geodite.pt never files its results under the shipped model's label; two checkpoints whose names
    clean up alike get two labels unless their weights are the same file content."""
    users = _copy(SMALL, tmp_path / "geodite.pt")
    assert resolve(users).label != "geodite" and resolve(users).label.startswith("geodite-")
    first, second = _copy(SMALL, tmp_path / "my model.pt"), _copy(SHIPPED, tmp_path / "my_model.pt")
    assert resolve(first).label != resolve(second).label
    same = _copy(SMALL, tmp_path / "elsewhere" / "my model.pt")
    assert resolve(same).label == resolve(first).label


def test_weights_identity_fixes_every_models_weights(tmp_path, monkeypatch):
    """The store's protocol gets the checkpoint's sha256 for every Geodite entry, geodite-mp's cached download
    included, and the package version for peers whose weights come with their package (the same dicts as before
    the handle, so stores written then are accepted)."""
    monkeypatch.setenv("GEODITE_CACHE_DIR", str(tmp_path))
    from geodite.data.downloads import cache_dir

    _copy(SMALL, cache_dir() / "Geodite-MP.ckpt")
    expected = hashlib.sha256(SMALL.read_bytes()).hexdigest()
    assert resolve("geodite-mp").weights_identity() == {"weights_sha256": expected}
    shipped = hashlib.sha256(SHIPPED.read_bytes()).hexdigest()
    assert resolve("geodite").weights_identity() == {"weights_sha256": shipped}
    assert resolve("emt").weights_identity()["weights_package"].startswith("ase ")


def test_a_handle_pickles_and_keys_a_cache(tmp_path):
    """Handles travel to pool and Dask workers (pickle) and key the workers' model cache (equal, same hash)."""
    path = _copy(SMALL, tmp_path / "best.pt")
    for handle in (resolve(path), resolve("geodite"), resolve("chgnet"), resolve("geodite-published-aoti")):
        again = pickle.loads(pickle.dumps(handle))
        assert again == handle and hash(again) == hash(handle)
    assert resolve(path) == resolve(path)


def test_missing_extra_message(monkeypatch):
    fake = dataclasses.replace(registry.REGISTRY["chgnet"], requires=("surely_not_installed_pkg",))
    monkeypatch.setitem(registry.REGISTRY, "chgnet", fake)
    assert not fake.available()
    with pytest.raises(ModelNotAvailableError, match=r"pip install 'geodite\[chgnet\]'"):
        resolve("chgnet").load()


def test_geodite_entries_load_their_checkpoint_behind_an_evaluator(monkeypatch):
    """A Geodite name loads its checkpoint (load_model) into a GeoditeCalculator whose Evaluator takes
    atoms_per_call atoms a call, set when it is built (default ATOMS_PER_CALL)."""
    seen = {}

    def fake_load(name):
        seen["checkpoint"] = name
        return load_model(SMALL)

    monkeypatch.setattr(registry, "REGISTRY", registry.REGISTRY | {
        "geodite-mp": dataclasses.replace(registry.REGISTRY["geodite-mp"], model_loader=fake_load)})
    calculator = resolve("geodite-mp").load(device="cpu", dtype="float64")
    assert seen == {"checkpoint": "geodite-mp"} and calculator.evaluator.atoms_per_call == ATOMS_PER_CALL
    assert calculator.evaluator.dtype == torch.float64


def test_the_speed_architectures_are_untrained_registry_entries():
    """bench speed's architectures resolve like any name, load (Geodite's: the published size, seeded weights), are
    listed apart from the trained models, and refuse to file results."""
    assert [row["name"] for row in list_models(trained=False)] == list(ARCHITECTURES)
    assert not set(ARCHITECTURES) & {row["name"] for row in list_models()}
    for name in ARCHITECTURES:
        assert not resolve(name).trained and resolve(name).label == name
    published = resolve("geodite-published")
    model = published.load_model()
    assert (model.config.num_channels, model.config.num_layers) == (192, 4)
    assert all(a.equal(b) for a, b in zip(published.load_model().parameters(), model.parameters()))  # seeded
    atoms = bulk("Si", "diamond", a=5.43)
    atoms.calc = published.load(dtype="float64")
    energy = atoms.get_potential_energy()
    atoms.calc = resolve("geodite-published-python").load(dtype="float64")
    assert isinstance(atoms.calc, registry.ReferenceKernelsCalculator)
    assert atoms.get_potential_energy() == pytest.approx(energy, abs=1e-8)
    with pytest.raises(ModelNotAvailableError, match="no trained weights"):
        published.require()
    with pytest.raises(ValueError, match="not a Geodite model"):
        resolve("emt").load_model()


def test_models_command():
    from geodite.cli.main import models_command

    app = typer.Typer()
    app.command()(models_command)
    res = CliRunner().invoke(app, ["--json"])
    assert res.exit_code == 0, res.output
    rows = {r["name"]: r for r in json.loads(res.stdout)}
    assert rows["emt"]["available"] is True and "geodite-published" not in rows
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


def test_an_untrained_architecture_files_no_results(tmp_path):
    """`bench diatomics --model geodite-published` refuses in one line (exit 2) before any work."""
    from geodite.cli.main import app

    result = CliRunner().invoke(app, ["bench", "diatomics", "--model", "geodite-published", "--elements", "H",
                                      "--results-dir", str(tmp_path), "--no-progress"])
    assert result.exit_code == 2 and "no trained weights" in result.output
    assert not (tmp_path / "diatomics").exists()
