"""The MD task: reference-set format, a short NVT run scored against its own potential, kill and resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from ase import units
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.io import write
from ase.md.langevin import Langevin
from ase.md.velocitydistribution import MaxwellBoltzmannDistribution

from geodite.data.md_reference import load_reference_set
from geodite.tasks.md import MDTask, instability, parse_time_fs
from geodite.tasks.runner import RunOptions, run_task


@pytest.fixture(scope="module")
def emt_reference(tmp_path_factory) -> Path:
    """A reference set whose 'AIMD' is EMT itself: the model run must then overlap it closely."""
    folder = tmp_path_factory.mktemp("reference")
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True).repeat(2)
    atoms.calc = EMT()
    MaxwellBoltzmannDistribution(atoms, temperature_K=600, rng=np.random.default_rng(1))
    dynamics = Langevin(atoms, 2 * units.fs, temperature_K=600, friction=0.02 / units.fs, rng=np.random.default_rng(2))
    frames = []
    for _ in range(40):
        dynamics.run(10)
        frames.append(atoms.copy())
    write(folder / "cu.extxyz", frames)
    manifest = {"name": "emt-cu", "systems": [{"name": "Cu32", "trajectory": "cu.extxyz", "format": "extxyz",
                                              "temperature_K": 600, "timestep_fs": 2.0, "frame_interval_steps": 10}]}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


def test_time_parsing():
    assert parse_time_fs("2ps") == 2000 and parse_time_fs("1 ns") == 1e6 and parse_time_fs("500") == 500
    with pytest.raises(ValueError):
        parse_time_fs("two picoseconds")


def test_shipped_reference_set_is_complete():
    manifest, systems = load_reference_set()
    assert len(systems) == 6 and all(s.temperature_K == 500 for s in systems)
    assert "diffusion_analysis.py" in manifest["temperature_source"]
    frames = systems[0].frames()
    assert len(frames) == 140 and len(frames[0]) == 416


def test_instability_detects_collapse():
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True)
    atoms.calc = EMT()
    start = atoms.get_potential_energy() / len(atoms)
    assert instability(atoms, start, 300) is None
    atoms.positions[1] = atoms.positions[0] + [0.3, 0, 0]
    assert "collapsed" in instability(atoms, start, 300)


def test_short_run_overlaps_its_own_potential(tmp_path, emt_reference):
    task = MDTask(time_fs=400, frame_interval=10, reference=str(emt_reference))
    summary = run_task(task, RunOptions(model="emt", results_dir=tmp_path, progress=False))
    assert summary["n_failed"] == 0 and summary["n_stable"] == 1
    assert summary["mean_rdf_overlap"] > 0.85
    assert (tmp_path / "md" / "emt" / "rdf-Cu32.png").exists()


SCRIPT = """
import sys
from geodite.tasks.md import MDTask
from geodite.tasks.runner import RunOptions, run_task
task = MDTask(time_fs=4000, frame_interval=5, reference=sys.argv[1])
run_task(task, RunOptions(model="emt", results_dir=sys.argv[2], progress=False))
"""


def test_killed_run_resumes_from_its_last_frame(tmp_path, emt_reference):
    trajectories = tmp_path / "md" / "emt" / "scratch"  # the runner's scratch folder of the task
    args = [sys.executable, "-c", SCRIPT, str(emt_reference), str(tmp_path)]
    process = subprocess.Popen(args, env=os.environ | {"OMP_NUM_THREADS": "1"})
    deadline = time.time() + 120
    while time.time() < deadline:
        files = list(trajectories.glob("*.traj"))
        if files and files[0].stat().st_size > 20_000:
            break
        time.sleep(0.2)
    process.send_signal(signal.SIGKILL)
    process.wait()
    from ase.io import Trajectory

    (path,) = trajectories.glob("*.traj")
    with Trajectory(str(path)) as trajectory:
        frames_before = len(trajectory)
    assert 1 < frames_before < 401
    subprocess.run(args, check=True, env=os.environ | {"OMP_NUM_THREADS": "1"})
    with Trajectory(str(path)) as trajectory:
        assert len(trajectory) == 4000 // (2 * 5) + 1  # every frame once: resumed, not restarted
    rows = (tmp_path / "md" / "emt" / "store" / "rows.jsonl").read_text().splitlines()
    assert len(rows) == 1 and json.loads(rows[0])["time_ps"] == pytest.approx(4.0)


def test_resumed_nose_hoover_run_continues_the_same_trajectory(tmp_path, emt_reference):
    """A run stopped after 20 frames and resumed ends where an uninterrupted run ends: the frames carry
    positions and momenta, the thermostat file the chain's η and p_η."""
    from geodite.tasks.md import simulate

    _, (system,) = load_reference_set(emt_reference)
    whole = MDTask(time_fs=400, frame_interval=10)
    half = MDTask(time_fs=200, frame_interval=10)
    straight = simulate(system, EMT(), whole, tmp_path / "straight.traj")
    simulate(system, EMT(), half, tmp_path / "split.traj")
    resumed = simulate(system, EMT(), whole, tmp_path / "split.traj")
    assert len(resumed["frames"]) == len(straight["frames"]) == 21
    np.testing.assert_allclose(resumed["frames"][-1].positions, straight["frames"][-1].positions, atol=1e-10)
    np.testing.assert_allclose(resumed["frames"][-1].get_momenta(), straight["frames"][-1].get_momenta(),
                               atol=1e-10)
