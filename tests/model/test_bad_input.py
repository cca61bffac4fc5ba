"""Structures the model cannot evaluate get a clear error naming them; the rest of a batch still runs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk
from typer.testing import CliRunner

from geodite.calculator import DeviceError, Evaluator, GeoditeCalculator
from geodite.cli.main import app
from geodite.graph import StructureError
from geodite.registry import resolve
from tests.conftest import DATA


def good() -> Atoms:
    atoms = bulk("NaCl", "rocksalt", a=5.64)
    atoms.info["name"] = "good-nacl"
    return atoms


def bad_structures() -> dict[str, tuple[Atoms, str]]:
    unknown = Atoms("Fm2", positions=[[0, 0, 0], [0, 0, 2.5]])  # Z = 100: beyond the embedding table
    no_e0 = Atoms("Po2", positions=[[0, 0, 0], [0, 0, 2.5]])  # no isolated-atom energy in the table
    nan = bulk("Si", "diamond", a=5.43)
    nan.positions[1, 0] = np.nan
    overlap = Atoms("Cu2", positions=[[0, 0, 0], [0, 0, 1e-5]])
    singular = Atoms("Cu", positions=[[0, 0, 0]], cell=[[3, 0, 0], [6, 0, 0], [0, 0, 3]], pbc=True)
    return {
        "unknown element": (unknown, "unsupported element"),
        "no e0": (no_e0, "unsupported element"),
        "nan": (nan, "non-finite"),
        "overlap": (overlap, "overlap"),
        "singular cell": (singular, "singular cell"),
        "empty": (Atoms(), "empty"),
    }


@pytest.mark.parametrize("case", list(bad_structures()))
def test_clear_error_and_batch_survives(small_model, case):
    atoms, message = bad_structures()[case]
    atoms.info["name"] = f"bad-{case}"
    evaluator = Evaluator(small_model, dtype="float64")
    first, broken, last = evaluator.evaluate([good(), atoms, good()])
    assert first.ok and last.ok
    assert first.energy == pytest.approx(last.energy)
    assert not broken.ok
    assert message in broken.error
    assert f"bad-{case}" in broken.error and "structure 1" in broken.error


def test_calculator_raises_structure_error(small_model):
    atoms, _ = bad_structures()["overlap"]
    atoms.calc = GeoditeCalculator(small_model)
    with pytest.raises(StructureError, match="overlap"):
        atoms.get_potential_energy()


def test_unsupported_element_names_the_elements_covered(small_model):
    """Es (Z 99) is below the embedding table's Z < 100 but has no isolated-atom energy: the message says which
    elements the model does cover, not "Z < 100"."""
    einsteinium = Atoms("Es2", positions=[[0, 0, 0], [0, 0, 2.5]])
    broken = Evaluator(small_model, dtype="float64").evaluate([einsteinium])[0]
    assert "unsupported element(s) Es (Z 99)" in broken.error
    assert "the model covers H–Bi, Ac–Pu (Z 1–83, 89–94)" in broken.error


@pytest.mark.skipif(torch.cuda.is_available(), reason="the refusal of CUDA on a machine without it")
def test_device_without_cuda_is_one_clear_error(small_model, tmp_path):
    with pytest.raises(DeviceError, match="device 'cuda': CUDA is not available here"):
        Evaluator(small_model, device="cuda")
    with pytest.raises(DeviceError, match="unknown device 'gpu'"):
        GeoditeCalculator(small_model, device="gpu")
    with pytest.raises(DeviceError, match="CUDA is not available"):
        resolve("emt").load(device="cuda:1")
    result = CliRunner().invoke(app, ["eval", "--model", str(DATA / "geodite_small_checkpoint.pt"), "--data",
                                      str(DATA / "geodite_small_cases.extxyz"), "--device", "cuda",
                                      "--results-dir", str(tmp_path)])
    assert result.exit_code == 2 and "CUDA is not available" in result.output
    assert "Traceback" not in result.output and not (tmp_path / "eval").exists()
