"""The batched relaxation engine: a relaxed batch equals the same structures relaxed alone and ASE's loop."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase.build import bulk

from geodite.calculator import Evaluator, GeoditeCalculator
from geodite.graph import StructureError
from geodite.relax import RelaxSettings, relax_structures

RELAXED = RelaxSettings(fmax=0.02)


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


def test_batch_equals_one_at_a_time(small_model):
    """The batched engine: a relaxed batch equals the same structures relaxed alone, and ASE's own loop
    (same FIRE steps, float64 round-off), with in-flight refilling (a 4-atom budget swaps structures in)."""
    structures = perturbed_crystals()
    calc = GeoditeCalculator(small_model, dtype="float64")
    together = relax_structures(structures, calc, RELAXED, engine="batched", atoms_in_flight=64)
    refilled = relax_structures(structures, calc, RELAXED, engine="batched", atoms_in_flight=4)
    alone = [relax_structures([atoms], calc, RELAXED, engine="batched")[0] for atoms in structures]
    ase = relax_structures(structures, calc, RELAXED, engine="ase")
    for atoms, batch, swap, one, reference in zip(structures, together, refilled, alone, ase):
        assert batch.converged and batch.fmax_final < 0.02 and batch.atoms.calc is None
        assert batch.atoms.info["name"] == atoms.info["name"]
        for other in (swap, one, reference):
            assert other.n_steps == batch.n_steps
            assert other.energy == pytest.approx(batch.energy, abs=1e-9)
            np.testing.assert_allclose(other.atoms.positions, batch.atoms.positions, atol=1e-9)
            np.testing.assert_allclose(other.atoms.cell.array, batch.atoms.cell.array, atol=1e-9)
    assert len({r.n_steps for r in together}) > 1  # structures left the batch at different steps
    # the returned energy belongs to the returned geometry
    check = together[2].atoms.copy()
    check.calc = calc
    assert check.get_potential_energy() == pytest.approx(together[2].energy, abs=1e-9)


def test_batched_step_limit_and_errors(small_model):
    from geodite.relax import relax_in_flight

    structures = perturbed_crystals()
    evaluator = Evaluator(small_model, dtype="float64")
    calc = GeoditeCalculator(evaluator)
    results = relax_structures(structures, calc, RelaxSettings(steps=3), engine="batched")
    assert [r.n_steps for r in results] == [3] * len(structures) and not any(r.converged for r in results)
    first = relax_structures(structures[:1], calc, RELAXED, engine="batched")[0]
    (again,) = relax_structures([first.atoms], calc, RELAXED, engine="batched")
    assert again.converged and again.n_steps == 0  # checked before the first step, as ASE
    unknown = bulk("Og", "fcc", a=5.0)  # an element the model has no embedding for
    finished = dict(relax_in_flight(enumerate([structures[0], unknown, structures[1]]), evaluator.evaluate))
    assert isinstance(finished[1], str) and "Og" in finished[1]
    assert finished[0].converged and finished[2].converged  # the others are unaffected
    with pytest.raises(StructureError):
        relax_structures([unknown], calc, engine="batched")


def test_discovery_engines_agree(tmp_path):
    """DiscoveryTask's batched and ase engines on three offline WBM items (small model, float64): same rows;
    the engine is not part of the protocol, so either resumes the other's store."""
    import gzip
    import json
    from pathlib import Path

    import pandas as pd

    from geodite.tasks.discovery import DiscoveryTask
    from geodite.tasks.contract import protocol_config
    from geodite.tasks.runner import RunOptions, run_task

    data = Path(__file__).parent / "data"
    with gzip.open(data / "wbm-random-60.json.gz", "rt") as fh:
        records = json.load(fh)[:3]
    path = tmp_path / "wbm3.json.gz"
    with gzip.open(path, "wt") as fh:
        json.dump(records, fh)
    model = str(data / "geodite_small_checkpoint.pt")
    with pytest.raises(ValueError, match="engine"):
        DiscoveryTask(mode="offline", offline_path=str(path), engine="jax")
    tasks = {engine: DiscoveryTask(mode="offline", offline_path=str(path), engine=engine) for engine in ("batched", "ase")}
    assert protocol_config(tasks["batched"]) == protocol_config(tasks["ase"])
    rows = {}
    for engine, task in tasks.items():
        opts = RunOptions(model=model, results_dir=tmp_path / engine, progress=False, plots=False,
                          dtype="float64", threads=1)
        summary = run_task(task, opts, log=lambda m: None)
        assert summary["n_failed"] == 0
        rows[engine] = pd.read_parquet(Path(summary["results_dir"]) / "rows.parquet").set_index("key")
    batched, ase = rows["batched"], rows["ase"]
    assert batched["converged"].all() and list(batched["n_steps"]) == list(ase["n_steps"])
    np.testing.assert_allclose(batched["energy_pred"], ase["energy_pred"], rtol=0, atol=1e-8)
    np.testing.assert_allclose(batched["rmsd"], ase["rmsd"], atol=1e-6)
    # a store of one engine is resumed by the other: nothing to compute
    again = run_task(tasks["ase"], RunOptions(model=model, results_dir=tmp_path / "batched", progress=False,
                                               plots=False, dtype="float64", threads=1), log=lambda m: None)
    assert (again["n_skipped"], again["n_computed"]) == (3, 0)
