"""The torch-sim relaxation backend against ASE (the batched engine: tests/test_relax_batched.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase.build import bulk
from ase.calculators.emt import EMT

from geodite.calculator import Evaluator, GeoditeCalculator
from geodite.relax import RelaxSettings, relax_structures

from tests.test_relax_batched import _one_thread, perturbed_crystals  # noqa: F401 - fixture and structures

torch_sim = pytest.importorskip("torch_sim")

from geodite.torchsim import GeoditeTorchSimModel, relax_structures_torchsim  # noqa: E402


def test_torchsim_model_matches_evaluator(small_model, small_cases):
    structures = [a for a in small_cases if a.pbc.all()][:3] + perturbed_crystals()
    expected = Evaluator(small_model, dtype="float64").evaluate(structures)
    model = GeoditeTorchSimModel(small_model, dtype=torch.float64)
    state = torch_sim.io.atoms_to_state(structures, torch.device("cpu"), torch.float64)
    out = model(state)
    assert out["energy"].shape == (len(structures),) and out["stress"].shape == (len(structures), 3, 3)
    offsets = np.cumsum([0] + [len(a) for a in structures])
    for k, pred in enumerate(expected):
        assert pred.ok
        np.testing.assert_allclose(out["energy"][k].item(), pred.energy, rtol=0, atol=1e-8)
        np.testing.assert_allclose(out["forces"][offsets[k] : offsets[k + 1]].numpy(), pred.forces, atol=1e-8)
        np.testing.assert_allclose(out["stress"][k].numpy(), pred.stress, atol=1e-8)
    # the caller's model is untouched and the state is not mutated (torch-sim's own contract check)
    assert next(small_model.parameters()).dtype == torch.float64
    from torch_sim.models.interface import validate_model_outputs

    validate_model_outputs(model, torch.device("cpu"), torch.float64)


def test_torchsim_stress_sign_is_ase(small_model):
    """Compressed cell → negative (compressive) diagonal stress, in both the model and ASE."""
    atoms = bulk("Cu", "fcc", a=3.2)
    model = GeoditeTorchSimModel(small_model, dtype=torch.float64)
    state = torch_sim.io.atoms_to_state([atoms], torch.device("cpu"), torch.float64)
    stress = model(state)["stress"][0].numpy()
    atoms.calc = GeoditeCalculator(small_model, dtype="float64")
    np.testing.assert_allclose(stress, atoms.get_stress(voigt=False), atol=1e-10)
    assert np.trace(stress) < 0


def test_backends_agree(small_model):
    structures = perturbed_crystals()
    # fmax 0.02: at 0.05 the two can stop ~1e-3 eV/atom apart on the small model's flat MgO landscape
    calc = GeoditeCalculator(small_model, dtype="float64")
    settings = RelaxSettings(fmax=0.02)
    ase_results = relax_structures(structures, calc, settings, engine="ase")
    ts_results = relax_structures_torchsim(structures, small_model, settings, dtype="float64",
                                           atoms_in_flight=4)  # two structures per batch: in-flight swapping
    for atoms, a, t in zip(structures, ase_results, ts_results):
        assert a.converged and t.converged
        assert a.fmax_final < 0.02 and t.fmax_final < 0.02
        assert abs(a.energy - t.energy) / len(atoms) < 1e-3
        assert 0 < t.n_steps <= 500
        assert t.atoms.get_chemical_formula() == atoms.get_chemical_formula() and t.atoms.calc is None
        assert t.atoms.info["name"] == atoms.info["name"]
        assert abs(t.atoms.get_volume() / a.atoms.get_volume() - 1) < 0.02
        # the returned energy belongs to the returned geometry
        atoms_copy = t.atoms.copy()
        atoms_copy.calc = GeoditeCalculator(small_model, dtype="float64")
        assert abs(atoms_copy.get_potential_energy() - t.energy) < 1e-8
    assert sum(a.n_steps == t.n_steps for a, t in zip(ase_results, ts_results)) >= 2  # same FIRE, same steps
    # the torch-sim backend also takes the GeoditeCalculator (its Evaluator)
    (again,) = relax_structures_torchsim(structures[:1], calc, settings)
    assert again.energy == pytest.approx(ts_results[0].energy, abs=1e-10)
    assert again.n_steps == ts_results[0].n_steps


def test_torchsim_step_limit_and_inputs(small_model):
    structures = perturbed_crystals()
    evaluator = Evaluator(small_model, dtype="float64")
    results = relax_structures_torchsim(structures, evaluator, RelaxSettings(steps=3))
    assert [r.n_steps for r in results] == [3] * len(structures)
    assert not any(r.converged for r in results)
    # already relaxed: converged before the first step, as ASE
    first = relax_structures_torchsim(structures[:1], small_model, dtype="float64")[0]
    again = relax_structures_torchsim([first.atoms], small_model, dtype="float64")[0]
    assert first.converged and again.converged and again.n_steps == 0
    assert abs(again.energy - first.energy) < 1e-10
    with pytest.raises(NotImplementedError, match="Geodite models only"):
        relax_structures_torchsim(structures[:1], EMT())
    with pytest.raises(NotImplementedError, match="Geodite models only"):
        relax_structures_torchsim(structures[:1], "emt")  # a name: resolve it first (geodite.registry)
    with pytest.raises(NotImplementedError, match="FIRE"):
        relax_structures_torchsim(structures[:1], small_model, RelaxSettings(optimizer="BFGS"))
    with pytest.raises(ValueError, match="unknown relaxation engine"):
        relax_structures(structures[:1], EMT(), engine="torch-sim")
    assert relax_structures_torchsim([], small_model) == []
