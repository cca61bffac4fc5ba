"""The diatomics task: protocols, batched vs point-by-point evaluation, metrics and outputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from ase.calculators.calculator import Calculator, all_changes

from geodite.calculator import GeoditeCalculator
from geodite.metrics.diatomics_scores import diatomics_summary
from geodite.tasks.diatomics import DiatomicsTask, curve_arrays, dimer, distances_for, pbe_reference
from geodite.tasks.contract import WorkerContext
from geodite.tasks.runner import RunOptions, run_task
from tests.conftest import DATA


class PointByPoint(Calculator):
    """Wraps a calculator and hides its batched evaluator, to force the plain ASE path."""

    implemented_properties = ["energy", "forces"]

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def calculate(self, atoms=None, properties=None, system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        atoms = self.atoms.copy()
        atoms.calc = self.inner
        self.results = {"energy": atoms.get_potential_energy(), "forces": atoms.get_forces()}


def test_protocol_grids():
    assert len(distances_for("O", "mbd")) == 119 and distances_for("O", "mbd")[0] == pytest.approx(0.1)
    arena = distances_for("O", "arena")
    assert np.allclose(np.diff(arena), 0.01) and arena[0] == pytest.approx(0.9 * 0.66)
    assert dimer("O", 1.2, "mbd").pbc.all() and not dimer("O", 1.2, "arena").pbc.any()


def test_batched_curve_equals_point_by_point(small_model):
    calc = GeoditeCalculator(small_model, dtype="float64")
    structures = [dimer("N", r, "mbd") for r in distances_for("N", "mbd")[::10]]
    r = distances_for("N", "mbd")[::10]
    e_batched, f_batched = curve_arrays(WorkerContext(None, calc).evaluate(structures, compute_stress=False), r)
    single = WorkerContext(None, PointByPoint(calc)).evaluate(structures, compute_stress=False)
    e_single, f_single = curve_arrays(single, r)
    np.testing.assert_allclose(e_batched, e_single, atol=1e-9)
    np.testing.assert_allclose(f_batched, f_single, atol=1e-9)


def test_run_writes_rows_metrics_and_figures(tmp_path):
    task = DiatomicsTask(elements=["H", "O", "Po"])
    summary = run_task(task, RunOptions(model=str(DATA / "geodite_small_checkpoint.pt"), results_dir=tmp_path,
                                        progress=False))
    assert summary["n_items"] == 3 and summary["n_failed"] == 0  # Po: no isolated-atom energy in the model,
    assert summary["unsupported"] == ["Po"]  # which is not a failure of the model
    assert summary["n_scored"] == 2
    for key in ("force_flips", "tortuosity", "pbe_energy_mae", "pbe_bond_length_error"):
        assert summary[key] is not None
    out = Path(summary["results_dir"])
    assert (out / "diatomics-curves.png").exists() and (out / "diatomics-wall.png").exists()


def test_one_call_for_all_elements_equals_one_element_at_a_time(tmp_path):
    """run_batch evaluates all curves of a chunk in one call; the rows equal those of one element per chunk."""
    import pandas as pd

    model = str(DATA / "geodite_small_checkpoint.pt")
    tables = {}
    for chunk in (None, 1):
        opts = RunOptions(model=model, results_dir=tmp_path / str(chunk), progress=False, plots=False,
                          dtype="float64", chunk_items=chunk)
        summary = run_task(DiatomicsTask(elements=["H", "C", "Po", "Cu"]), opts)
        assert summary["unsupported"] == ["Po"]  # Po (no isolated-atom energy): the others are unaffected
        assert summary["n_scored"] == 3
        tables[chunk] = pd.read_parquet(Path(summary["results_dir"]) / "rows.parquet").drop(columns=["item_wall_s"])
    curves = ["distances", "energies", "bond_forces", "forces"]

    def dense(value) -> np.ndarray:  # parquet gives nested lists back as object arrays of arrays
        return np.asarray(json.loads(json.dumps(value, default=lambda a: a.tolist())), float)

    for column in curves:  # float64 round-off of a different batch: equal to 1e-9
        for batched, single in zip(tables[None][column], tables[1][column]):
            if isinstance(batched, np.ndarray):
                np.testing.assert_allclose(dense(batched), dense(single), rtol=1e-9, atol=1e-9)
    pd.testing.assert_frame_equal(tables[None].drop(columns=curves), tables[1].drop(columns=curves), rtol=1e-7)


def test_summary_skips_mbd_excluded_elements():
    import pandas as pd

    df = pd.DataFrame({"element": ["H", "Rn"], "status": ["ok", "ok"], "tortuosity": [1.0, 9.0]})
    assert diatomics_summary(df, "mbd", pbe_reference())["tortuosity"] == 1.0
    assert diatomics_summary(df, "arena", pbe_reference())["tortuosity"] == 5.0


def test_summary_means_skip_non_finite_values_as_mbd():
    """MBD's write_metrics_to_yaml averages each metric over the elements with a finite value."""
    import pandas as pd

    df = pd.DataFrame({"element": ["H", "He", "Li"], "status": ["ok"] * 3, "tortuosity": [1.0, np.inf, np.nan],
                       "energy_jump": [np.nan, np.nan, np.nan]})  # fmt: skip
    summary = diatomics_summary(df, "arena", pbe_reference())
    assert summary["tortuosity"] == 1.0 and summary["energy_jump"] is None


def test_unknown_protocol_or_element():
    with pytest.raises(ValueError, match="protocol"):
        DiatomicsTask(protocol="nope")
    with pytest.raises(ValueError, match="Xx"):
        DiatomicsTask(elements=["Xx"])


def test_results_of_other_weights_at_the_same_path_are_not_resumed(tmp_path):
    """A checkpoint's label carries its weights' hash: after the weights at a path change, a run files its rows
    under a new label and computes them; the old weights' results stay as they were."""
    import shutil

    import torch

    from geodite.checkpoints import load_model, save_checkpoint

    path = tmp_path / "model.pt"
    shutil.copy(DATA / "geodite_small_checkpoint.pt", path)
    opts = RunOptions(model=str(path), results_dir=tmp_path / "results", progress=False, plots=False)
    first = run_task(DiatomicsTask(elements=["H"]), opts)
    model = load_model(str(path))
    with torch.no_grad():
        next(model.parameters()).add_(0.01)
    save_checkpoint(model, path)
    second = run_task(DiatomicsTask(elements=["H"]), opts)
    assert (second["n_skipped"], second["n_computed"]) == (0, 1)
    assert second["results_dir"] != first["results_dir"]
    assert second["config"]["weights_sha256"] != first["config"]["weights_sha256"]
    assert json.loads((Path(first["results_dir"]) / "metrics.json").read_text())["config"] == first["config"]


def test_run_time_is_charged_per_curve_whatever_the_chunking(monkeypatch):
    """A chunk's one model call is shared among its elements by their points: every row carries its own share
    (not the chunk's first), so the same rows give the same run time and CDS however they were chunked.
    The clock is a counter that the model call advances by 1 s per dimer, so the shares are exact."""
    import time

    import pandas as pd

    from geodite.registry import resolve
    from geodite.tasks import worker

    clock = {"now": 0.0}
    monkeypatch.setattr(time, "perf_counter", lambda: clock["now"])
    context = worker.get_context_for("emt")

    class Clocked(WorkerContext):
        def evaluate(self, structures, compute_stress=True):
            clock["now"] += len(structures)
            return super().evaluate(structures, compute_stress)

    setup = worker.ModelSetup(resolve("emt"))
    monkeypatch.setitem(worker._WORKER_CTX, setup, Clocked(**{f: getattr(context, f) for f in
                                                             ("handle", "calculator", "device")}))
    task = DiatomicsTask(elements=["H", "N", "O", "Cu"])
    items = {item["key"]: item for item in task.items()}
    tables = {}
    for chunking in ((("H", "N", "O", "Cu"),), (("Cu",), ("O", "N"), ("H",))):
        rows = [row for chunk in chunking for row in worker.iter_chunk(task, [items[k] for k in chunk], setup)]
        tables[chunking] = pd.DataFrame(rows).set_index("key").sort_index()
    one, three = tables.values()
    points = len(distances_for("H", "mbd"))
    assert (one["item_wall_s"] == points).all() and (three["item_wall_s"] == points).all()
    subset = ["N", "O", "Cu"]  # what a summary over these rows says must not depend on how they were computed
    summaries = [diatomics_summary(table.loc[subset].reset_index(), "mbd", pbe_reference()) for table in (one, three)]
    assert summaries[0]["run_time_sec"] == summaries[1]["run_time_sec"] == 3 * points
    assert summaries[0]["CDS"] is not None and summaries[0]["CDS"] == summaries[1]["CDS"]
