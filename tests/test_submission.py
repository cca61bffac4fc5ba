"""Submission files (geodite.submission) read back the way Matbench Discovery's loaders read them
(commit 2c7f9fc: data.load_df_wbm_with_preds / glob_to_df, scripts/analyze_geo_opt.py,
phonons.read_kappa_json + metrics.phonons, metrics.diatomics.DiatomicCurves.from_dict)."""

import gzip
import hashlib
import json

import numpy as np
import pandas as pd
import pytest
import yaml
from pymatgen.core import Lattice, Structure

from geodite.submission import submission_dir, write_diatomics, write_discovery, write_kappa, write_submission

DATE = "2026-11-30"


def rocksalt(a: float) -> Structure:
    return Structure.from_spacegroup("Fm-3m", Lattice.cubic(a), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])


@pytest.fixture
def folder(tmp_path):
    discovery = pd.DataFrame({
        "key": ["wbm-1-1", "wbm-1-2", "wbm-1-3"], "material_id": ["wbm-1-1", "wbm-1-2", "wbm-1-3"],
        "status": ["ok", "ok", "failed"], "e_form_pred": [-1.2, -0.4, np.nan], "e_form_pred_mp2020": [-1.3, -0.5, np.nan],
        "energy_pred": [-10.0, -20.0, np.nan], "converged": [True, False, None], "n_steps": [12, 500, None],
        "structure_pred": [json.dumps(rocksalt(5.6).as_dict()), json.dumps(rocksalt(5.7).as_dict()), None],
    })  # fmt: skip
    summary = {"subset": "offline-wbm-1k (perturbed DFT structures)", "e_form_MAE_1k": 0.1, "RMSD": 0.02,
               "n_sym_ops_mae_1e-2": 0.0, "symmetry_match_1e-2": 1.0, "n_structures_1e-2": 2}  # fmt: skip
    written = write_submission(write_discovery, discovery, summary, tmp_path, "mymodel", DATE)
    kappa = pd.DataFrame({
        "key": ["mp-1", "mp-2"], "material_id": ["mp-1", "mp-2"], "status": ["ok", "ok"],
        "kappa_tensor": [[2.0, 2.0, 2.0, 0.0, 0.0, 0.0], np.nan], "mode_kappa": [[[1.0, 2.0], [3.0, 2.0]], np.nan],
        "q_weights": [[1.0, 3.0], np.nan], "imaginary_modes": [False, True], "spg_initial": [225, 225],
        "spg_relaxed": [225, 225],
    })  # fmt: skip
    written += write_submission(write_kappa, kappa, {"kappa_SRME": 1.2, "failure_rate": 0.5}, tmp_path, "mymodel", DATE)
    r = np.geomspace(0.1, 6.0, 119)
    dimers = pd.DataFrame({
        "element": ["H", "O", "Po"], "status": ["ok", "ok", "failed"], "error": [None, None, "no e0"],
        "distances": [r.tolist(), r[5:].tolist(), None], "energies": [(1 / r).tolist(), (2 / r[5:]).tolist(), None],
        "bond_forces": [(1 / r**2).tolist(), (2 / r[5:] ** 2).tolist(), None],
        "forces": [H_FORCES(r).tolist(), None, None],  # O: a row written before Cartesian forces were stored
    })  # fmt: skip
    written += write_submission(write_diatomics, dimers, {"tortuosity": 1.0, "CDS": 0.42, "run_time_sec": 3.2}, tmp_path,
                                "mymodel", DATE)  # fmt: skip
    assert write_submission(None, dimers, {}, tmp_path, "mymodel", DATE) == []  # a task without a submission format
    folder = submission_dir(tmp_path, "mymodel")
    assert {p.parent for p in written} == {folder}
    return folder


def test_discovery_csv_as_mbd_reads_it(folder):
    df = pd.read_csv(folder / f"{DATE}-discovery.csv.gz").set_index("material_id")
    preds = df["e_form_per_atom"]  # load_df_wbm_with_preds
    assert preds.to_dict() == {"wbm-1-1": -1.3, "wbm-1-2": -0.5}  # MP2020-corrected, failed rows left out
    assert (df["e_form_per_atom_mymodel"] == preds).all()


def test_geo_opt_jsonl_as_mbd_reads_it(folder):
    df = pd.read_json(folder / f"{DATE}-geo-opt.jsonl.gz", lines=True)
    assert {"material_id", "structure", "energy", "converged", "n_steps"} <= set(df)
    structures = {m: Structure.from_dict(s) for m, s in df.set_index("material_id")["structure"].items()}
    assert structures["wbm-1-2"].lattice.a == pytest.approx(5.7)


def test_kappa_json_as_mbd_reads_it(folder):
    df = pd.read_json(folder / f"{DATE}-phonons-kappa-103.json.gz").set_index("material_id")
    row = df.loc["mp-1"]
    assert np.asarray(row["kappa_tot_rta"], float).shape == (1, 6)  # one temperature, Voigt
    assert np.asarray(row["kappa_tot_rta"], float)[:, :3].mean(axis=-1) == pytest.approx([2.0])
    assert np.asarray(row["mode_kappa_tot_avg"], float).shape == (1, 2, 2)
    assert np.sum(row["mode_weights"]) == 4.0 and not bool(row["has_imag_ph_modes"])
    assert df.loc["mp-2", "kappa_tot_rta"] is None and bool(df.loc["mp-2", "has_imag_ph_modes"])
    assert int(row["init_spg_num"]) == int(row["final_spg_num"]) == 225


def H_FORCES(r: np.ndarray) -> np.ndarray:  # noqa: N802 - a constant of the fixture
    """Cartesian forces of the H curve whose two atoms are not opposite (bond force 1/r², atom 0 with an offset
    and a y part)."""
    forces = np.zeros((len(r), 2, 3))
    forces[:, 0, 0], forces[:, 1, 0], forces[:, 0, 1] = -1 / r**2 + 0.01, 1 / r**2, 0.02
    return forces


def test_diatomics_json_as_mbd_reads_it(folder):
    with gzip.open(folder / f"{DATE}-diatomics.json.gz", "rt") as handle:
        data = json.load(handle)
    grid = {float(d): i for i, d in enumerate(data["distances"])}
    assert set(data["homo-nuclear"]) == {"H-H", "O-O"}
    for label, curve in data["homo-nuclear"].items():
        positions = [grid[float(d)] for d in curve["distances"]]  # an ordered subset of the top-level grid
        assert np.all(np.diff(positions) > 0)
        forces = np.asarray(curve["forces"])
        assert forces.shape == (len(curve["energies"]), 2, 3)
        if label == "H-H":  # the calculator's forces as stored, which MBD's force_flips etc. read (forces[:, 0, 0])
            np.testing.assert_array_equal(forces, H_FORCES(np.asarray(curve["distances"])))
            continue
        bond_force = 2.0 / np.asarray(curve["distances"]) ** 2
        np.testing.assert_allclose(0.5 * (forces[:, 1, 0] - forces[:, 0, 0]), bond_force)  # F = ½(F₁ − F₀)·x̂


def test_model_yaml_blocks(folder):
    meta = yaml.safe_load((folder / "mymodel.yml").read_text())
    assert meta["model_key"] == "mymodel" and meta["date_added"] == DATE and meta["todo"]
    metrics = meta["metrics"]
    ref = metrics["discovery"]["pred_file"]
    data = (folder / ref["name"]).read_bytes()
    assert ref["size"] == len(data) and ref["md5"] == hashlib.md5(data).hexdigest()
    assert "offline" in metrics["discovery"]["note"] and metrics["discovery"]["offline"]["e_form_MAE_1k"] == 0.1
    assert metrics["geo_opt"]["symprec=1e-2"]["symmetry_match"] == 1.0
    assert metrics["geo_opt"]["symprec=1e-2"]["rmsd"] == 0.02
    assert metrics["phonons"]["kappa_103"]["κ_SRME"] == 1.2 and metrics["phonons"]["kappa_103"]["κ_failure_rate"] == 0.5
    assert metrics["diatomics"]["CDS"] == 0.42 and metrics["diatomics"]["excluded_formula_reasons"] == {"Po-Po": "no e0"}


def test_rerun_replaces_older_files(folder):
    df = pd.DataFrame({"key": ["mp-1"], "material_id": ["mp-1"], "status": ["ok"],
                       "kappa_tensor": [[1.0] * 6], "imaginary_modes": [False]})  # fmt: skip
    write_submission(write_kappa, df, {}, folder.parent.parent, "mymodel", "2026-12-01")
    assert [p.name for p in folder.glob("*kappa*")] == ["2026-12-01-phonons-kappa-103.json.gz"]
    meta = yaml.safe_load((folder / "mymodel.yml").read_text())
    assert "discovery" in meta["metrics"] and meta["metrics"]["phonons"]["kappa_103"]["pred_file"]["name"].startswith("2026-12-01")


@pytest.mark.parametrize("writer", [write_discovery, write_kappa, write_diatomics])
def test_a_run_whose_items_all_failed_writes_no_submission(tmp_path, writer):
    """Every item failed (e.g. a model without the elements): nothing to submit, and no crash on the
    absent result columns."""
    failed = pd.DataFrame({"key": ["a", "b"], "status": ["failed", "failed"], "error": ["no Mg", "no Mg"]})
    assert write_submission(writer, failed, {}, tmp_path, "mymodel", DATE) == []
    assert not submission_dir(tmp_path, "mymodel").exists()


def test_the_runner_writes_what_a_task_hook_writes_whatever_the_task_is_called(tmp_path):
    """The submission file comes from the task's ``submission`` hook, not from a table of task names (main: the
    runner dispatched on ``task.name``, so this task, named "sleep", wrote nothing)."""
    import datetime

    from geodite.tasks.runner import RunOptions, run_task
    from tests.tasks.runner_helpers import SleepTask

    class Submitting(SleepTask):
        def submission(self, df, summary, folder, model, date):
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / f"{date}-sleep.csv"
            df[["key", "index"]].to_csv(path, index=False)
            return [path], {"sleep": {"n_ok": summary["n_ok"]}}

    options = {"model": "emt", "progress": False, "plots": False}
    summary = run_task(Submitting(n=2), RunOptions(results_dir=tmp_path / "hook", **options))
    today = datetime.datetime.now(datetime.UTC).date().isoformat()
    folder = submission_dir(tmp_path / "hook", "emt")
    assert summary["submission_files"] == [str(folder / f"{today}-sleep.csv"), str(folder / "emt.yml")]
    assert pd.read_csv(folder / f"{today}-sleep.csv")["index"].tolist() == [0, 1]
    assert yaml.safe_load((folder / "emt.yml").read_text())["metrics"]["sleep"] == {"n_ok": 2}
    plain = run_task(SleepTask(n=1), RunOptions(results_dir=tmp_path / "plain", **options))
    assert plain["submission_files"] == [] and not (tmp_path / "plain" / "submission").exists()


def test_the_tasks_with_a_submission_format_have_the_hook():
    import importlib.util

    from geodite.tasks.suite import task_class

    names = ["discovery", "diatomics"] + (["kappa"] if importlib.util.find_spec("phono3py") else [])
    assert all(hasattr(task_class(name), "submission") for name in names)
    assert not hasattr(task_class("md"), "submission")  # MBD takes no MD submission file
