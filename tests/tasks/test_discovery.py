from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pymatgen.core import Structure
from typer.testing import CliRunner

from geodite.data import wbm as wbm_data
from geodite.tasks.discovery import DiscoveryTask, structure_rmsd
from geodite.tasks.runner import RunOptions, run_task

ROOT = Path(__file__).resolve().parents[2]
TIMING = ["item_wall_s", "relax_s"]  # wall-clock columns: the only ones allowed to differ between runs


def _table(results_dir: Path) -> pd.DataFrame:
    df = pd.read_parquet(results_dir / "discovery" / "emt" / "rows.parquet")
    return df.drop(columns=TIMING, errors="ignore")


def _run(path, results_dir, **kw) -> dict:
    task = DiscoveryTask(mode="offline", offline_path=str(path))
    return run_task(task, RunOptions(model="emt", results_dir=results_dir, progress=False, **kw), log=lambda m: None)


@pytest.fixture(scope="module")
def reference(wbm5_path, tmp_path_factory):
    """An uninterrupted sequential EMT run on the 5 materials (through the CLI, --json)."""
    from geodite.cli.bench import bench_app

    out = tmp_path_factory.mktemp("ref")
    res = CliRunner().invoke(
        bench_app,
        ["discovery", "--model", "emt", "--offline-data", str(wbm5_path), "--results-dir", str(out), "--json",
         "--no-progress"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout.strip().splitlines()[-1])
    return out, summary


def test_refs_reproduce_file_formation_energies(wbm60):
    """MBD's MP refs reproduce the file's own formation energies except for Bi/Br/I/O/Yb materials."""
    from pymatgen.core import Structure

    refs = wbm_data.mp_elemental_ref_energies()
    odd = {"Bi", "Br", "I", "O", "Yb"}
    for rec in wbm60:
        comp = Structure.from_dict(rec["structure"]).composition  # "formula" is the reduced formula
        err = wbm_data.formation_energy_per_atom(rec["energy"], comp, refs) - rec["formation_energy_per_atom"]
        if not odd & {str(el) for el in comp}:
            assert abs(err) < 2e-4, (rec["material_id"], err)  # refs are rounded to 1e-4 eV/atom, as MBD


def test_perturbation_is_seeded(wbm60):
    from pymatgen.core import Structure
    from pymatgen.io.ase import AseAtomsAdaptor

    atoms = AseAtomsAdaptor.get_atoms(Structure.from_dict(wbm60[1]["structure"]))
    seed = wbm_data.item_seed(wbm60[1]["material_id"], 0)
    a, b = wbm_data.perturb_atoms(atoms, seed), wbm_data.perturb_atoms(atoms, seed)
    assert np.array_equal(a.positions, b.positions) and np.array_equal(a.cell.array, b.cell.array)
    assert not np.allclose(a.positions, atoms.positions)
    assert wbm_data.item_seed("wbm-1-1", 0) != wbm_data.item_seed("wbm-1-2", 0)


def test_emt_run_summary_and_outputs(reference):
    out, s = reference
    for key in ("n_items", "n_skipped", "n_computed", "n_failed", "wall_s", "e_form_MAE_1k", "e_form_RMSE_1k", "e_form_R2_1k", "RMSD",
                "success_rate", "e_form_MAE_1k_mp2020_corrected"):  # fmt: skip
        assert key in s
    assert (s["n_items"], s["n_skipped"], s["n_computed"], s["n_failed"]) == (5, 0, 5, 3)
    assert s["success_rate"] == pytest.approx(0.4)
    d = out / "discovery" / "emt"
    for name in ("rows.parquet", "rows.csv", "metrics.json", "metrics.parquet", "metrics.csv", "metrics.md",
                 "parity_e_form.png", "hist_e_form_error.png"):  # fmt: skip
        assert (d / name).is_file(), name
    df = _table(out)
    assert list(df["key"]) == ["wbm-1-2478", "wbm-1-1679", "wbm-1-12782", "wbm-1-17801", "wbm-1-25229"]
    ok = df[df.status == "ok"]
    assert set(ok.formula) == {"AlPd3", "AlAg2"}
    assert (ok.rmsd < ok.rmsd_start).all()  # relaxation from the perturbed start approaches the DFT structure
    assert df.loc[df.status == "failed", "error"].str.contains("No EMT-potential").all()
    # failed relaxations count as unmatched (1.0) in the mean RMSD
    assert s["RMSD"] == pytest.approx((ok.rmsd.sum() + 3) / 5)


def test_rerun_skips_everything(reference, wbm5_path):
    out, _ = reference
    s = _run(wbm5_path, out)
    assert (s["n_skipped"], s["n_computed"]) == (5, 0)


def test_sigkill_then_restart_gives_the_same_table(reference, wbm5_path, tmp_path):
    """Kill a run with SIGKILL mid-way; the restart skips finished items and ends with the same table."""
    script = textwrap.dedent(
        """
        import sys, time
        from geodite.tasks.discovery import DiscoveryTask
        from geodite.tasks.runner import RunOptions, run_task

        class SlowTask(DiscoveryTask):  # same protocol and config, just slower per item
            def run_item(self, item, ctx):
                time.sleep(0.7)
                return super().run_item(item, ctx)

        run_task(SlowTask(mode="offline", offline_path=sys.argv[1], engine="ase"),
                 RunOptions(model="emt", results_dir=sys.argv[2], progress=False))
        """
    )
    rows = tmp_path / "discovery" / "emt" / "store" / "rows.jsonl"
    proc = subprocess.Popen(
        [sys.executable, "-c", script, str(wbm5_path), str(tmp_path)], cwd=ROOT,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.time() + 60
        while time.time() < deadline:
            if rows.exists() and rows.read_text().count("\n") >= 2:
                break
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    n_done = rows.read_text().count("\n")
    assert 2 <= n_done < 5

    s = _run(wbm5_path, tmp_path)
    assert (s["n_skipped"], s["n_computed"]) == (n_done, 5 - n_done)
    # the killed run relaxed with the ASE engine, the restart and the reference with the batched one (the engine
    # is not protocol: either resumes the other's store); their relaxed structures agree to round-off, so they
    # are compared as numbers, not as JSON text
    got, ref = _table(tmp_path), _table(reference[0])
    pd.testing.assert_frame_equal(got.drop(columns="structure_pred"), ref.drop(columns="structure_pred"))
    for ours, theirs in zip(got["structure_pred"], ref["structure_pred"], strict=True):
        assert pd.isna(ours) == pd.isna(theirs)  # failed items have none
        if pd.isna(ours):
            continue
        a, b = (Structure.from_dict(json.loads(text)) for text in (ours, theirs))
        assert a.species == b.species
        np.testing.assert_allclose(a.lattice.matrix, b.lattice.matrix, atol=1e-9)
        np.testing.assert_allclose(a.cart_coords, b.cart_coords, atol=1e-9)


def test_local_workers_same_table(reference, wbm5_path, tmp_path):
    s = _run(wbm5_path, tmp_path, workers=2)
    assert (s["n_computed"], s["n_failed"], s["workers"]) == (5, 3, 2)
    pd.testing.assert_frame_equal(_table(tmp_path), _table(reference[0]))


def test_dask_local_cluster_same_table(reference, wbm5_path, tmp_path):
    distributed = pytest.importorskip("dask.distributed")
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as cluster:
        s = _run(wbm5_path, tmp_path, scheduler=cluster.scheduler_address)
    assert (s["n_computed"], s["n_failed"]) == (5, 3)
    pd.testing.assert_frame_equal(_table(tmp_path), _table(reference[0]))


def test_task_is_picklable(wbm5_path):
    import pickle

    from geodite.tasks.contract import protocol_config

    task = DiscoveryTask(mode="offline", offline_path=str(wbm5_path))
    assert protocol_config(pickle.loads(pickle.dumps(task))) == protocol_config(task)


def test_full_mode_item_with_emt(wbm60):
    """The full-data protocol on one material: initial structure → relax → MP2020 entry → E_form."""
    from pymatgen.core import Structure
    from pymatgen.entries.computed_entries import ComputedStructureEntry
    from pymatgen.io.ase import AseAtomsAdaptor

    from geodite.tasks.worker import get_context_for

    rec = wbm60[0]  # AlPd3
    s_dft = Structure.from_dict(rec["structure"])
    start = wbm_data.perturb_atoms(AseAtomsAdaptor.get_atoms(s_dft), 1)
    cse = ComputedStructureEntry(s_dft, rec["energy"], parameters={"run_type": "GGA", "is_hubbard": False,
                                                                   "hubbards": {}})  # fmt: skip
    item = {"key": rec["material_id"], "material_id": rec["material_id"],
            "initial_structure": AseAtomsAdaptor.get_structure(start).as_dict(), "cse": cse.as_dict(),
            "e_form_dft": rec["corrected_formation_energy_per_atom"], "e_above_hull_dft": 0.02,
            "unique_prototype": True}  # fmt: skip
    task = object.__new__(DiscoveryTask)
    task.__dict__.update(DiscoveryTask(mode="offline").__dict__, mode="full")
    row = task.run_item(item, get_context_for("emt"))
    assert row["converged"] and row["rmsd"] < 0.05
    refs = wbm_data.mp_elemental_ref_energies()
    # Al-Pd intermetallic: no MP2020 correction, so E_form comes straight from the EMT energy
    assert row["e_form_pred"] == pytest.approx(
        wbm_data.formation_energy_per_atom(row["energy_pred"], s_dft.composition, refs)
    )


def test_structure_rmsd_unmatched_is_one(wbm60):
    from pymatgen.core import Structure

    a, b = Structure.from_dict(wbm60[0]["structure"]), Structure.from_dict(wbm60[2]["structure"])
    assert structure_rmsd(a, a) == pytest.approx(0.0, abs=1e-8)
    assert structure_rmsd(a, b) == 1.0


def test_relax_structures_hook():
    from ase.build import bulk
    from ase.calculators.emt import EMT

    from geodite.relax import RelaxSettings, relax_structures

    atoms = bulk("Cu", "fcc", a=3.7)
    (res,) = relax_structures([atoms], EMT(), RelaxSettings(fmax=0.01, steps=200))
    assert res.converged and res.fmax_final < 0.01 and res.atoms.calc is None
    assert abs(res.atoms.cell.lengths()[0] - 3.59 / 2**0.5) < 0.02
    with pytest.raises(ValueError, match="unknown relaxation engine"):
        relax_structures([atoms], EMT(), engine="torch-sim")


def test_cps_summary(tmp_path):
    from geodite.tasks.cps import cps_summary
    from geodite.tasks.results import write_metrics

    s = cps_summary("m", tmp_path)
    assert s["CPS"] is None and "no discovery results" in s["reason"]
    write_metrics({"F1": 0.771, "RMSD": 0.086}, tmp_path / "discovery" / "m")
    s = cps_summary("m", tmp_path)
    assert s["CPS"] is None and "kappa" in s["reason"]
    write_metrics({"kappa_SRME": 0.499}, tmp_path / "kappa" / "m")
    assert cps_summary("m", tmp_path)["CPS"] == pytest.approx(0.728, abs=1e-3)
    write_metrics({"e_form_MAE_1k": 0.1, "RMSD": 0.1}, tmp_path / "discovery" / "m")  # offline subset: no F1
    s = cps_summary("m", tmp_path)
    assert s["CPS"] is None and "F1" in s["reason"]


def test_full_mode_end_to_end_with_local_files(wbm60, tmp_path):
    """--data-dir with files in MBD's layout and formats → auto picks full mode → F1 etc.

    Structures and energies are real (the 2 EMT-compatible WBM materials); the hull distances
    are made up for the test (the real WBM summary is not available offline)."""
    import gzip
    import shutil

    from pymatgen.core import Structure
    from pymatgen.entries.computed_entries import ComputedStructureEntry
    from pymatgen.io.ase import AseAtomsAdaptor

    from geodite.data.downloads import DATA_FILES

    data = tmp_path / "data"
    for sub in ("wbm", "mp"):
        (data / sub).mkdir(parents=True)
    recs = wbm60[:2]
    summary = pd.DataFrame({
        "material_id": [r["material_id"] for r in recs], "formula": [r["formula"] for r in recs],
        "e_form_per_atom_mp2020_corrected": [r["corrected_formation_energy_per_atom"] for r in recs],
        "e_above_hull_mp2020_corrected_ppd_mp": [-0.01, 0.2], "unique_prototype": [True, True],
    })  # fmt: skip
    summary.to_csv(data / DATA_FILES["wbm_summary"].path, index=False)
    with gzip.open(data / DATA_FILES["wbm_initial_structures"].path, "wt") as fh:
        for r in recs:
            start = wbm_data.perturb_atoms(AseAtomsAdaptor.get_atoms(Structure.from_dict(r["structure"])), 3)
            fh.write(json.dumps({"material_id": r["material_id"],
                                 "initial_structure": AseAtomsAdaptor.get_structure(start).as_dict()}) + "\n")
    with gzip.open(data / DATA_FILES["wbm_computed_structure_entries"].path, "wt") as fh:
        for r in recs:
            cse = ComputedStructureEntry(Structure.from_dict(r["structure"]), r["energy"], entry_id=r["material_id"],
                                         parameters={"run_type": "GGA", "is_hubbard": False, "hubbards": {}})
            fh.write(json.dumps({"material_id": r["material_id"], "computed_structure_entry": cse.as_dict()}) + "\n")
    shutil.copy(wbm_data.default_mp_refs_path(), data / DATA_FILES["mp_elemental_ref_entries"].path)

    task = DiscoveryTask(data_dir=str(data))
    assert task.mode == "full"
    s = run_task(task, RunOptions(model="emt", results_dir=tmp_path / "r", progress=False), log=lambda m: None)
    assert (s["n_items"], s["n_failed"]) == (2, 0)
    for key in ("F1", "DAF", "Precision", "Recall", "Accuracy", "MAE", "RMSE", "R2", "RMSD", "full_F1",
                "most_stable_10k_F1"):  # fmt: skip
        assert key in s
    assert "whole WBM test set" in s["DAF_prevalence_note"]  # 2 items: not MBD's prevalence
    assert 0 <= s["RMSD"] < 0.1
