"""Relaxation backends: ASE (any calculator) and torch-sim (batched, Geodite models)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase.build import bulk
from ase.calculators.emt import EMT

from geodite.calculator import Evaluator, GeoditeCalculator
from geodite.relax import relax_structures

torch_sim = pytest.importorskip("torch_sim")

from geodite.torchsim import GeoditeTorchSimModel  # noqa: E402


@pytest.fixture(autouse=True)
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def perturbed_crystals() -> list:
    """Four small strained and rattled crystals (2 atoms each; the small test model has a very flat
    landscape for some others, e.g. diamond Si, where the two FIRE variants end in different minima)."""
    rng = np.random.default_rng(0)
    structures = [
        bulk("NaCl", "rocksalt", a=5.6),
        bulk("Cu", "fcc", a=3.6).repeat((2, 1, 1)),
        bulk("MgO", "rocksalt", a=4.2),
        bulk("LiF", "rocksalt", a=4.0),
    ]
    for k, atoms in enumerate(structures):
        atoms.set_cell(atoms.cell.array @ (np.eye(3) + rng.uniform(-0.03, 0.03, (3, 3))), scale_atoms=True)
        atoms.rattle(0.05, seed=k)
        atoms.info["name"] = f"crystal{k}"
    return structures


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
    ase_results = relax_structures(structures, calc, fmax=0.02, backend="ase")
    ts_results = relax_structures(structures, small_model, fmax=0.02, backend="torch-sim", dtype="float64",
                                  max_batch_atoms=4)  # two structures per batch: in-flight swapping
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
    # the ASE backend also takes a bare Geodite (wrapped in a GeoditeCalculator)
    (again,) = relax_structures(structures[:1], small_model, fmax=0.02, backend="ase", dtype="float64")
    assert again.energy == pytest.approx(ase_results[0].energy, abs=1e-10)
    assert again.n_steps == ase_results[0].n_steps


def test_torchsim_step_limit_and_inputs(small_model):
    structures = perturbed_crystals()
    evaluator = Evaluator(small_model, dtype="float64")
    results = relax_structures(structures, evaluator, steps=3, backend="torch-sim")
    assert [r.n_steps for r in results] == [3] * len(structures)
    assert not any(r.converged for r in results)
    # already relaxed: converged before the first step, as ASE
    first = relax_structures(structures[:1], small_model, backend="torch-sim", dtype="float64")[0]
    again = relax_structures([first.atoms], small_model, backend="torch-sim", dtype="float64")[0]
    assert first.converged and again.converged and again.n_steps == 0
    assert abs(again.energy - first.energy) < 1e-10
    with pytest.raises(NotImplementedError, match="Geodite models only"):
        relax_structures(structures[:1], EMT(), backend="torch-sim")
    with pytest.raises(NotImplementedError, match="Geodite models only"):
        relax_structures(structures[:1], "emt", backend="torch-sim")
    with pytest.raises(NotImplementedError, match="FIRE"):
        relax_structures(structures[:1], small_model, optimizer="BFGS", backend="torch-sim")
    with pytest.raises(ValueError, match="unknown relaxation backend"):
        relax_structures(structures[:1], EMT(), backend="jax")
    assert relax_structures([], small_model, backend="torch-sim") == []


def test_discovery_task_relax_backend(tmp_path):
    """DiscoveryTask(relax_backend="torch-sim") on two offline WBM items: same rows as ASE (small model)."""
    import gzip
    import json
    from pathlib import Path

    from geodite.tasks.discovery import DiscoveryTask
    from geodite.tasks.runner import RunOptions, run_task

    data = Path(__file__).parent / "data"
    with gzip.open(data / "wbm-random-60.json.gz", "rt") as fh:
        records = json.load(fh)[:2]
    path = tmp_path / "wbm2.json.gz"
    with gzip.open(path, "wt") as fh:
        json.dump(records, fh)
    model = str(data / "geodite_small_checkpoint.pt")
    default = DiscoveryTask(mode="offline", offline_path=str(path))
    assert "relax_backend" not in default.config()  # stores written before the option stay valid
    with pytest.raises(ValueError, match="relax_backend"):
        DiscoveryTask(mode="offline", offline_path=str(path), relax_backend="jax")
    rows = {}
    for backend in ("ase", "torch-sim"):
        task = DiscoveryTask(mode="offline", offline_path=str(path), relax_backend=backend)
        opts = RunOptions(model=model, results_dir=tmp_path / backend, progress=False, plots=False,
                          dtype="float64", threads=1)
        summary = run_task(task, opts, log=lambda m: None)
        assert summary["n_failed"] == 0
        assert (summary["config"].get("relax_backend") == "torch-sim") == (backend == "torch-sim")
        import pandas as pd

        rows[backend] = pd.read_parquet(Path(summary["results_dir"]) / "rows.parquet").set_index("key")
    ase, tsim = rows["ase"], rows["torch-sim"]
    assert tsim["converged"].all() and ase["converged"].all()
    np.testing.assert_allclose(tsim["e_form_pred"], ase["e_form_pred"], atol=1e-3)
