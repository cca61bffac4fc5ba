"""The runner's batch contract: run_batch chunks, rows appended as they finish, protocol fields, scratch folder."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from ase.build import bulk

from geodite.tasks.contract import PROTOCOL, WorkerContext, protocol_config
from geodite.tasks.executors import chunks
from geodite.tasks.runner import RunOptions, run_task
from geodite.tasks.store import ConfigMismatchError


@dataclass
class CountingTask:
    """Evaluates a Cu cell per item through ctx.evaluate; run_batch does the whole chunk in one call and
    fails (as a whole) on an item named "boom" after yielding the rows before it."""

    scale: float = field(default=1.0, metadata=PROTOCOL)
    n_items: int = 5
    name: str = "counting"
    calls: list = field(default_factory=list)

    def items(self) -> list[dict]:
        return [{"key": f"i{k}", "a": 3.5 + 0.05 * k} for k in range(self.n_items)]

    def run_batch(self, items, ctx):
        structures = [bulk("Cu", "fcc", a=item["a"] * self.scale) for item in items]
        predictions = ctx.evaluate(structures)
        (ctx.scratch / "seen.txt").open("a").write(f"{len(items)}\n")
        for item, prediction in zip(items, predictions):
            if item["key"] == "boom":
                raise RuntimeError("the whole batch broke")
            yield {"key": item["key"], "energy": prediction.energy, "stress_xx": prediction.stress[0, 0]}

    def metrics(self, df, model):
        return {"n_rows": len(df)}

    def plots(self, df, out_dir, model):
        return []


def _rows(results: Path) -> pd.DataFrame:
    return pd.read_csv(results / "counting" / "emt" / "rows.csv").set_index("key")


def test_protocol_config_hashes_marked_fields_only():
    task = CountingTask(scale=1.1, n_items=3)
    assert protocol_config(task) == {"scale": 1.1}  # n_items, name: not protocol


def test_chunks_and_one_call_per_chunk(tmp_path):
    task = CountingTask()
    assert [len(c) for c in chunks(task, task.items(), workers=1)] == [5]
    assert [len(c) for c in chunks(task, task.items(), workers=1, chunk_items=2)] == [2, 2, 1]
    summary = run_task(task, RunOptions(model="emt", results_dir=tmp_path, progress=False, chunk_items=2))
    assert (summary["n_computed"], summary["n_failed"]) == (5, 0)
    assert (tmp_path / "counting" / "emt" / "scratch" / "seen.txt").read_text().split() == ["2", "2", "1"]
    # the same numbers as the ASE calculator one structure at a time
    for key, row in _rows(tmp_path).iterrows():
        atoms = bulk("Cu", "fcc", a=3.5 + 0.05 * int(key[1:]))
        atoms.calc = _emt()
        assert row["energy"] == pytest.approx(atoms.get_potential_energy(), abs=1e-10)
    # a changed protocol field is refused; --fresh discards rows and the scratch folder
    with pytest.raises(ConfigMismatchError):
        run_task(CountingTask(scale=1.01), RunOptions(model="emt", results_dir=tmp_path, progress=False))
    run_task(CountingTask(scale=1.01, n_items=1), RunOptions(model="emt", results_dir=tmp_path, progress=False,
                                                             fresh=True))
    assert (tmp_path / "counting" / "emt" / "scratch" / "seen.txt").read_text().split() == ["1"]


def test_a_failing_batch_fails_only_its_unfinished_items(tmp_path):
    class Boom(CountingTask):
        def items(self):
            items = super().items()
            items[2]["key"] = "boom"
            return items

    summary = run_task(Boom(), RunOptions(model="emt", results_dir=tmp_path, progress=False))
    assert (summary["n_computed"], summary["n_failed"]) == (5, 3)
    store = tmp_path / "counting" / "emt" / "store" / "rows.jsonl"
    rows = [json.loads(line) for line in store.read_text().splitlines()]
    assert [r["status"] for r in rows] == ["ok", "ok", "failed", "failed", "failed"]  # each appended as it came
    assert all("the whole batch broke" in r["error"] for r in rows[2:])
    # a rerun with retry_failed (items i0…i4, no "boom") recomputes the failed i3, i4 and the new i2
    again = run_task(CountingTask(), RunOptions(model="emt", results_dir=tmp_path, progress=False,
                                                retry_failed=True))
    assert (again["n_skipped"], again["n_computed"]) == (2, 3)


def test_evaluate_loops_an_ase_calculator_and_reports_errors():
    ctx = WorkerContext(None, _emt())
    good, bad = ctx.evaluate([bulk("Cu", "fcc", a=3.6), bulk("Si", "diamond", a=5.43)])
    assert good.ok and good.forces.shape == (1, 3) and good.stress.shape == (3, 3)
    assert np.allclose(good.forces, 0, atol=1e-10)
    assert not bad.ok and "EMT" in bad.error and "Si" in bad.error


def _emt():
    from ase.calculators.emt import EMT

    return EMT()


def test_evaluate_with_progress_makes_the_evaluator_s_own_calls(small_model):
    """WorkerContext.evaluate(progress=...) reports after each model call and returns what one call returns."""
    from ase.build import bulk

    from geodite.calculator import GeoditeCalculator
    from geodite.tasks.contract import WorkerContext, model_calls

    structures = [bulk("Cu", "fcc", a=3.6 + 0.01 * k, cubic=True).repeat((k % 3) + 1) for k in range(7)]
    calculator = GeoditeCalculator(small_model, dtype="float64", atoms_per_call=40)
    assert [sum(len(a) for a in call) for call in model_calls(structures, 40)] == [36, 108, 36, 108, 4]
    ctx = WorkerContext(handle=None, calculator=calculator)
    done: list[int] = []
    with_progress = ctx.evaluate(structures, progress=done.append)
    plain = ctx.evaluate(structures)
    assert done == [2, 3, 5, 6, 7]
    assert [p.energy for p in with_progress] == [p.energy for p in plain]
