"""Simulations in lockstep (geodite.lockstep): each follows the trajectory it follows alone, with one model
call per step for all of them; members that end or fail do not hold the others up."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from ase import Atoms, units
from ase.build import bulk
from ase.io import write
from ase.md.nose_hoover_chain import NoseHooverChainNVT
from ase.md.velocitydistribution import MaxwellBoltzmannDistribution

from geodite.calculator import ATOMS_PER_CALL, Evaluator, GeoditeCalculator
from geodite.checkpoints import load_model
from geodite.lockstep import run_in_lockstep
from geodite.tasks.md import MDTask
from geodite.tasks.runner import RunOptions, run_task

CHECKPOINT = Path(__file__).parent / "data" / "geodite_small_checkpoint.pt"


def systems() -> list[Atoms]:
    """Three cells of different sizes and elements, with seeded 600 K velocities."""
    cells = [bulk("Si", "diamond", a=5.43, cubic=True), bulk("NaCl", "rocksalt", a=5.64, cubic=True).repeat((2, 1, 1)),
             bulk("Cu", "fcc", a=3.6, cubic=True)]
    for seed, atoms in enumerate(cells):
        MaxwellBoltzmannDistribution(atoms, temperature_K=600, rng=np.random.default_rng(seed))
    return cells


def nvt(atoms: Atoms, calculator, steps: int) -> Atoms:
    """``steps`` steps of ASE's Nosé–Hoover chain (the MD task's thermostat), 1 fs."""
    atoms = atoms.copy()
    atoms.calc = calculator
    NoseHooverChainNVT(atoms, 1 * units.fs, temperature_K=600, tdamp=100 * units.fs).run(steps)
    return atoms


@pytest.fixture(scope="module")
def evaluator() -> Evaluator:
    return Evaluator(load_model(CHECKPOINT), dtype="float64")


def test_lockstep_trajectories_equal_the_runs_alone_with_one_model_call_per_step(evaluator):
    steps = [12, 6, 9]  # members leave at different times
    alone = [nvt(atoms, GeoditeCalculator(evaluator, skin=1.0), n) for atoms, n in zip(systems(), steps)]
    calls = []
    original = evaluator.evaluate

    def counting(structures, *args, **kwargs):
        calls.append(len(structures))
        return original(structures, *args, **kwargs)

    evaluator.evaluate = counting
    try:
        jobs = list(zip(systems(), steps))
        together = dict((id(job), atoms) for job, atoms in run_in_lockstep(
            evaluator, jobs, lambda job, calculator: nvt(job[0], calculator, job[1]), skin=1.0))
    finally:
        del evaluator.evaluate
    for job, reference in zip(jobs, alone):
        mine = together[id(job)]
        np.testing.assert_allclose(mine.positions, reference.positions, rtol=0, atol=1e-10)
        np.testing.assert_allclose(mine.get_momenta(), reference.get_momenta(), rtol=0, atol=1e-10)
    # one call per step for all members still running: 12 steps + the first forces, not 27 + 3
    assert len(calls) == max(steps) + 1
    assert calls[:7] == [3] * 7 and calls[7:10] == [2] * 3 and calls[10:] == [1] * 3


def test_a_failing_member_leaves_and_the_others_finish(evaluator):
    broken = bulk("Si", "diamond", a=5.43, cubic=True)
    broken.positions[1] = broken.positions[0]  # overlapping atoms: the model refuses this structure
    jobs = [systems()[0], broken, systems()[2]]
    results = dict((id(job), result) for job, result in run_in_lockstep(
        evaluator, jobs, lambda atoms, calculator: nvt(atoms, calculator, 5)))
    assert isinstance(results[id(broken)], Exception) and "overlap" in str(results[id(broken)])
    for job in (jobs[0], jobs[2]):
        reference = nvt(job, GeoditeCalculator(evaluator), 5)
        np.testing.assert_allclose(results[id(job)].positions, reference.positions, rtol=0, atol=1e-10)


def test_md_task_runs_a_chunk_in_lockstep_with_the_rows_of_runs_alone(tmp_path):
    """The task's batched path (two systems of a chunk together) gives the rows of the one-at-a-time path."""
    folder = tmp_path / "reference"
    folder.mkdir()
    entries = []
    for name, atoms in (("Si8", bulk("Si", "diamond", a=5.43, cubic=True)),
                        ("NaCl8", bulk("NaCl", "rocksalt", a=5.64, cubic=True))):
        write(folder / f"{name}.extxyz", [atoms])
        entries.append({"name": name, "trajectory": f"{name}.extxyz", "format": "extxyz", "temperature_K": 300,
                        "timestep_fs": 1.0, "frame_interval_steps": 5})
    (folder / "manifest.json").write_text(json.dumps({"name": "two", "systems": entries}))
    rows = {}
    for chunk_items in (1, 2):
        task = MDTask(time_fs=20, timestep_fs=1.0, frame_interval=5, reference=str(folder))
        results = tmp_path / f"chunk{chunk_items}"
        run_task(task, RunOptions(model=str(CHECKPOINT), dtype="float64", results_dir=results, progress=False,
                                  plots=False, chunk_items=chunk_items))
        (rows_file,) = results.glob("md/*/store/rows.jsonl")
        rows[chunk_items] = {row["key"]: row for row in map(json.loads, rows_file.read_text().splitlines())}
    assert set(rows[2]) == {"Si8", "NaCl8"}
    for key, row in rows[2].items():
        assert row["status"] == "ok" and row["lockstep_systems"] == 2 and rows[1][key]["lockstep_systems"] == 1
        assert row["rdf_overlap"] == pytest.approx(rows[1][key]["rdf_overlap"], abs=1e-9)


def test_batch_atoms_sets_the_atoms_per_model_call_of_the_worker_model(monkeypatch):
    """``--batch-atoms`` reaches the Evaluator when it is built (never set afterwards): with 1, each structure gets
    its own model call; without it, ATOMS_PER_CALL."""
    from geodite.registry import resolve
    from geodite.tasks import worker
    from geodite.tasks.worker import ModelSetup, get_context_for

    built = []
    construct = Evaluator.__init__

    def spy(self, *args, **kwargs):
        construct(self, *args, **kwargs)
        built.append(self.atoms_per_call)

    monkeypatch.setattr(Evaluator, "__init__", spy)
    monkeypatch.setattr(worker, "_WORKER_CTX", {})
    handle = resolve(str(CHECKPOINT))
    ctx = get_context_for(ModelSetup(handle, dtype="float64", atoms_per_call=1))
    assert built == [1] and ctx.evaluator.atoms_per_call == 1
    assert get_context_for(ModelSetup(handle, dtype="float64")).evaluator.atoms_per_call == ATOMS_PER_CALL
    assert built == [1, ATOMS_PER_CALL]
    calls = []
    original = ctx.evaluator.model.forward
    ctx.evaluator.model.forward = lambda graph, **kw: calls.append(int(graph.batch.max()) + 1) or original(graph, **kw)
    try:
        ctx.evaluate(systems())
    finally:
        del ctx.evaluator.model.forward
    assert calls == [1, 1, 1]


def test_stopping_the_iteration_ends_the_waiting_members(evaluator):
    """An interrupt (the consumer stops after the first result) wakes the members waiting for the others'
    forces and ends their threads instead of leaving them blocked."""
    import threading

    results = run_in_lockstep(evaluator, list(zip(systems(), [2, 400, 400])),
                              lambda job, calculator: nvt(job[0], calculator, job[1]))
    first, _ = next(results)
    assert first[1] == 2
    closer = threading.Thread(target=results.close)
    closer.start()
    closer.join(timeout=60)
    assert not closer.is_alive()
    assert not [t for t in threading.enumerate() if t.name.startswith("lockstep")]
