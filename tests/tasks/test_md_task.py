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
    assert parse_time_fs("2ps") == 2000 and parse_time_fs("1 ns") == 1e6 and parse_time_fs("500fs") == 500
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


def resumed_and_straight(tmp_path, system, make_calculator, **protocol) -> tuple[list, list]:
    """Frames of a run stopped after half its time and resumed, and of the same run uninterrupted."""
    from geodite.tasks.md import simulate

    whole = MDTask(time_fs=protocol.pop("time_fs"), **protocol)
    half = MDTask(time_fs=whole.time_fs / 2, **protocol)
    straight = simulate(system, make_calculator(), whole, tmp_path / "straight.traj")
    simulate(system, make_calculator(), half, tmp_path / "split.traj")
    resumed = simulate(system, make_calculator(), whole, tmp_path / "split.traj")
    return resumed["frames"], straight["frames"]


@pytest.mark.parametrize("thermostat", ["nose-hoover-chain", "langevin"])
def test_resumed_run_continues_the_same_trajectory_bit_for_bit(tmp_path, emt_reference, thermostat):
    """A run stopped after 10 frames and resumed ends where an uninterrupted run ends, to the last bit: the
    frames carry positions and momenta (float64), the thermostat file the chain's η and p_η, and both runs
    start every frame with a fresh calculator state (EMT's neighbour list) and Langevin noise seeded by the
    step. Before, the resumed run was 4e-16 Å (Nosé–Hoover) and 0.08 Å (Langevin) away after one frame."""
    _, (system,) = load_reference_set(emt_reference)
    resumed, straight = resumed_and_straight(tmp_path, system, EMT, time_fs=400, frame_interval=10,
                                             thermostat=thermostat)
    assert len(resumed) == len(straight) == 21
    for mine, theirs in zip(resumed, straight, strict=True):
        np.testing.assert_array_equal(mine.positions, theirs.positions)
        np.testing.assert_array_equal(mine.get_momenta(), theirs.get_momenta())


class Killed(Exception):
    """Stands for a SIGKILL at one point of a run."""


@pytest.mark.parametrize("dies_in", ["save_thermostat", "_append"])
def test_a_run_killed_between_a_frame_and_its_thermostat_state_resumes_bit_for_bit(tmp_path, emt_reference,
                                                                                   monkeypatch, dies_in):
    """Killed after the 11th frame's chain state but before the frame (or the other way round): the resumed run
    still continues the uninterrupted trajectory. Before, a kill after the frame and before its state
    restarted the chain at rest."""
    from geodite.tasks import md

    _, (system,) = load_reference_set(emt_reference)
    task = MDTask(time_fs=400, frame_interval=10)
    straight = md.simulate(system, EMT(), task, tmp_path / "straight.traj")
    real = getattr(md, dies_in)
    calls = []

    def dying(*args):
        calls.append(args)
        if len(calls) == 11:  # half way
            raise Killed
        return real(*args)

    monkeypatch.setattr(md, dies_in, dying)
    with pytest.raises(Killed):
        md.simulate(system, EMT(), task, tmp_path / "split.traj")
    monkeypatch.setattr(md, dies_in, real)
    resumed = md.simulate(system, EMT(), task, tmp_path / "split.traj")
    np.testing.assert_array_equal(resumed["frames"][-1].positions, straight["frames"][-1].positions)
    np.testing.assert_array_equal(resumed["frames"][-1].get_momenta(), straight["frames"][-1].get_momenta())


def test_resumed_geodite_run_with_a_neighbour_skin_is_bit_identical(tmp_path):
    """The benchmark's case: a Geodite model in float32 reusing its neighbour list with a skin. A list built
    earlier holds the same pairs in another order than one built at the resume point, and float32 force sums
    then round differently (8e-7 Å after five frames before the fix)."""
    from geodite.calculator import GeoditeCalculator

    folder = tmp_path / "reference"
    folder.mkdir()
    write(folder / "si.extxyz", [bulk("Si", "diamond", a=5.43, cubic=True)])
    (folder / "manifest.json").write_text(json.dumps({"name": "si", "systems": [
        {"name": "Si8", "trajectory": "si.extxyz", "format": "extxyz", "temperature_K": 300, "timestep_fs": 1.0,
         "frame_interval_steps": 5}]}))
    _, (system,) = load_reference_set(folder)
    checkpoint = Path(__file__).parents[1] / "data" / "geodite_small_checkpoint.pt"
    resumed, straight = resumed_and_straight(
        tmp_path, system, lambda: GeoditeCalculator(str(checkpoint), dtype="float32", skin=1.0),
        time_fs=20, timestep_fs=1.0, frame_interval=5)
    np.testing.assert_array_equal(resumed[-1].positions, straight[-1].positions)
    np.testing.assert_array_equal(resumed[-1].get_momenta(), straight[-1].get_momenta())
