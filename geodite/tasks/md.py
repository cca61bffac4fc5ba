"""NVT molecular dynamics on solid electrolytes, scored by RDF overlap with AIMD (docs/benchmarks.md §4).

Protocol per system: seeded Maxwell–Boltzmann velocities at the reference temperature, ASE
Nosé–Hoover-chain NVT (or Langevin), 2 fs steps (for Geodite, the systems of a chunk run together, one
model call per step for all: :mod:`geodite.lockstep`), a frame every ``frame_interval`` steps appended to a
trajectory file in the runner's scratch folder as the run goes (a killed run resumes from its last
frame), neighbour lists reused with a skin. The run stops early, and the system scores 0 overlap,
when it becomes unstable:
* collapse: any pair closer than 0.5 Å;
* flying apart: an atom with no neighbour within 5 Å;
* temperature runaway: instantaneous T above 2 × the target;
* energy drift: potential energy per atom more than 1 eV above its starting value.
After discarding the first ``equilibration`` fraction of frames, g(r) per element pair and pooled
(200 bins, N(N − 1) normalisation, r up to half the shortest lattice vector) are compared with the
AIMD reference: overlap = 1 − ½∫|g_ref − g_pred| dr / ½∫(g_ref + g_pred) dr (1 = identical).
``rdf_error`` is Matbench Discovery's (``evaluate_md_system``): both trajectories from t = 0 cut to the
same simulated time, pooled g(r) with N² normalisation and 500 bins, then
100·min(1, ∫|g_ref − g_pred| dr / ∫|g_ref − 1| dr). Li tracer diffusion coefficients
(Einstein relation, cm²/s) of model and AIMD are reported when both trajectories allow. The scoring functions
are :mod:`geodite.metrics.md`'s; :func:`score` hands them a run's frames and its reference.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import vesin
from ase import Atoms, units
from ase.io import Trajectory

from geodite.data.md_reference import ReferenceSystem, load_reference_set
from geodite.lockstep import run_in_lockstep
from geodite.metrics import md as md_metrics
from geodite.metrics.rdf import max_rdf_radius
from geodite.tasks.contract import PROTOCOL, failed_row, item_rows

COLLAPSE_DISTANCE = 0.5  # Å
ISOLATION_DISTANCE = 5.0  # Å
MAX_TEMPERATURE_RATIO = 2.0
MAX_ENERGY_RISE_PER_ATOM = 1.0  # eV


def parse_time_fs(text: str) -> float:
    """'2ps', '1 ns', '500fs' -> femtoseconds (> 0). The unit is required: a bare '0.05' could mean any."""
    match = re.fullmatch(r"\s*([0-9.eE+-]+)\s*(fs|ps|ns)\s*", str(text))
    try:
        value = float(match.group(1)) if match else None
    except ValueError:
        value = None
    if value is None:
        raise ValueError(f"cannot read a time from {text!r}: give a number and a unit, e.g. 2ps, 1ns, 500fs")
    if not value > 0:
        raise ValueError(f"the simulated time must be > 0, got {text!r}")
    return value * {"fs": 1.0, "ps": 1e3, "ns": 1e6}[match.group(2)]


def instability(atoms: Atoms, start_energy_per_atom: float, temperature_K: float) -> str | None:
    """Why a frame is unstable (see the module docstring), or None."""
    periodic = bool(atoms.pbc.any())
    box = atoms.cell.array if periodic else np.zeros((3, 3))
    (receivers,) = vesin.NeighborList(cutoff=ISOLATION_DISTANCE, full_list=True).compute(
        atoms.positions, box, periodic, quantities="i"
    )
    if len(np.unique(receivers)) < len(atoms):
        return f"an atom has no neighbour within {ISOLATION_DISTANCE} Å (flying apart)"
    (distances,) = vesin.NeighborList(cutoff=COLLAPSE_DISTANCE, full_list=False).compute(
        atoms.positions, box, periodic, quantities="d"
    )
    if len(distances):
        return f"atoms collapsed (pair at {distances.min():.2f} Å < {COLLAPSE_DISTANCE} Å)"
    temperature = atoms.get_temperature()
    if temperature > MAX_TEMPERATURE_RATIO * temperature_K:
        return f"temperature ran away ({temperature:.0f} K > {MAX_TEMPERATURE_RATIO} × {temperature_K:.0f} K)"
    rise = atoms.get_potential_energy() / len(atoms) - start_energy_per_atom
    if rise > MAX_ENERGY_RISE_PER_ATOM:
        return f"potential energy rose {rise:.2f} eV/atom (drift)"
    return None


def frame_arrays(frames: list[Atoms]) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Frames as the arrays :mod:`geodite.metrics.md` scores: positions (T, N, 3) Å, cells (T, 3, 3) Å, symbols."""
    return (np.stack([f.positions for f in frames]), np.stack([f.cell.array for f in frames]),
            frames[0].get_chemical_symbols())


def make_dynamics(atoms: Atoms, thermostat: str, timestep_fs: float, temperature_K: float, seed: int):
    if thermostat == "nose-hoover-chain":
        from ase.md.nose_hoover_chain import NoseHooverChainNVT

        return NoseHooverChainNVT(atoms, timestep_fs * units.fs, temperature_K=temperature_K,
                                  tdamp=100 * timestep_fs * units.fs)
    if thermostat == "langevin":
        from ase.md.langevin import Langevin

        return Langevin(atoms, timestep_fs * units.fs, temperature_K=temperature_K, friction=0.01 / units.fs,
                        rng=np.random.default_rng(seed))
    raise ValueError(f"unknown thermostat {thermostat!r}: nose-hoover-chain or langevin")


@dataclass
class MDTask:
    """One item per reference system: an NVT run, its stability and its RDF overlap with AIMD."""

    time_fs: float = field(default=1e6, metadata=PROTOCOL)  # 1 ns, as in the paper
    timestep_fs: float = field(default=2.0, metadata=PROTOCOL)
    frame_interval: int = field(default=50, metadata=PROTOCOL)  # steps between saved frames
    thermostat: str = field(default="nose-hoover-chain", metadata=PROTOCOL)
    seed: int = field(default=0, metadata=PROTOCOL)
    skin: float = 1.0  # Å, neighbour-list reuse (same results)
    equilibration: float = field(default=0.2, metadata=PROTOCOL)  # fraction of model frames discarded before the RDF
    reference: str | None = None  # reference-set folder (default: shipped argyrodites)
    systems: list[str] = field(default_factory=list)
    name: str = "md"

    def __post_init__(self) -> None:
        self._manifest, all_systems = load_reference_set(self.reference)
        unknown = set(self.systems) - {s.name for s in all_systems}
        if unknown:
            raise ValueError(f"unknown system(s) {sorted(unknown)}; the set has {[s.name for s in all_systems]}")
        self._systems = {s.name: s for s in all_systems if not self.systems or s.name in self.systems}

    def protocol_extras(self) -> dict:
        return {"reference": self._manifest.get("name")}

    def items(self) -> list[dict]:
        return [{"key": name, "system": name} for name in self._systems]

    def run_item(self, item: dict, ctx) -> dict:
        """One system alone (any ASE calculator): frames go to the runner's scratch folder,
        ``<system>.traj``; the store's protocol check keeps runs of other settings apart."""
        return self._row(item, ctx.md_calculator(self.skin), ctx)

    def run_batch(self, items: list[dict], ctx) -> Iterator[dict]:
        """All systems of the chunk at once for Geodite: each runs the same ASE integrator as alone, in
        lockstep with the others so that one Evaluator call per MD step serves them all
        (:func:`geodite.lockstep.run_in_lockstep`); ``lockstep_systems`` in the rows says how many ran
        together (their ``ns_per_day`` is each one's share). Other calculators: one system after the other."""
        if ctx.evaluator is None:
            yield from item_rows(self.run_item, items, ctx)
            return
        results = run_in_lockstep(ctx.evaluator, items, lambda item, calculator: self._row(item, calculator, ctx),
                                  skin=self.skin)
        for item, result in results:
            if isinstance(result, BaseException):
                yield failed_row(item["key"], result)
            else:
                yield result | {"key": item["key"], "lockstep_systems": len(items)}

    def _row(self, item: dict, calculator, ctx) -> dict:
        system = self._systems[item["system"]]
        run = simulate(system, calculator, self, Path(ctx.scratch) / f"{system.name}.traj")
        row = run | score(system, run.pop("frames"), self)
        return row | md_metrics.unstable_overlap(row["stable"], row["rdf_overlap"])

    def metrics(self, df: pd.DataFrame, model: str) -> dict:
        return md_metrics.md_summary(df)

    def plots(self, df: pd.DataFrame, out_dir: Path, model: str) -> list[Path]:
        return [plot_rdfs(row, out_dir, model) for _, row in df.iterrows() if row.get("status") == "ok"]


def simulate(system: ReferenceSystem, calculator, task: MDTask, path: Path) -> dict:
    """Run (or resume) the NVT trajectory of one system; frames are appended to ``path`` as they come."""
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution, Stationary

    total_steps = int(round(task.time_fs / task.timestep_fs))
    frames = _read_trajectory(path)
    if frames:
        atoms = frames[-1].copy()
        steps_done = (len(frames) - 1) * task.frame_interval
    else:
        atoms = system.start_structure()
        MaxwellBoltzmannDistribution(atoms, temperature_K=system.temperature_K, rng=np.random.default_rng(task.seed))
        Stationary(atoms)
        steps_done = 0
    atoms.calc = calculator
    calculator.reset()  # nothing cached from another system or run
    start_energy = (frames[0].get_potential_energy() if frames else atoms.get_potential_energy()) / len(atoms)
    if not frames:
        _append(path, atoms)
        frames.append(atoms.copy())
    dynamics = make_dynamics(atoms, task.thermostat, task.timestep_fs, system.temperature_K, task.seed)
    restore_thermostat(dynamics, path, len(frames))
    reason = None
    wall = 0.0
    steps_run = 0
    while steps_done < total_steps and reason is None:
        restart_point(dynamics, task.seed, steps_done)
        chunk = min(task.frame_interval, total_steps - steps_done)
        begin = time.perf_counter()
        dynamics.run(chunk)
        wall += time.perf_counter() - begin
        steps_done += chunk
        steps_run += chunk
        save_thermostat(dynamics, path, len(frames) + 1)  # before the frame: see save_thermostat
        _append(path, atoms)
        frames.append(_snapshot(atoms))
        reason = instability(atoms, start_energy, system.temperature_K)
    steps_per_s = steps_run / wall if wall > 0 else None
    return {
        "frames": frames,
        "stable": reason is None,
        "instability": reason,
        "time_ps": steps_done * task.timestep_fs / 1e3,
        "stable_time_ps": steps_done * task.timestep_fs / 1e3 if reason is None else
        (steps_done - task.frame_interval) * task.timestep_fs / 1e3,
        "n_atoms": len(atoms),
        "steps_per_s": steps_per_s,
        "ns_per_day": steps_per_s * task.timestep_fs * 86400 / 1e6 if steps_per_s else None,
    }


def restart_point(dynamics, seed: int, steps_done: int) -> None:
    """Start the next frame's steps from the state a run resumed at this frame starts from, so that a resumed
    run continues bit for bit the trajectory an uninterrupted one follows: the calculator forgets what it
    cached (results and neighbour lists, whose order, and so the round-off of the force sums, depends on
    where they were built), and Langevin's noise comes from a generator seeded by (seed, step). Costs one
    force call per frame (2 % at 50 steps a frame)."""
    dynamics.atoms.calc.reset()
    if isinstance(getattr(dynamics, "rng", None), np.random.Generator):
        dynamics.rng = np.random.default_rng((seed, steps_done))


def _thermostat_file(path: Path) -> Path:
    return path.with_name(path.stem + ".thermostat.npz")


def save_thermostat(dynamics, path: Path, frames: int) -> None:
    """Keep the Nosé–Hoover chain's variables (η, p_η; ASE keeps them on ``dynamics._thermostat``) as they are
    after ``frames`` trajectory frames, with those after ``frames`` − 1 (saved the time before). The frames
    hold positions and momenta (float64), so with these and :func:`restart_point` a resumed run continues the
    very trajectory an uninterrupted one follows. Saved before the frame is appended, so that whenever the
    run is killed, the file holds the state of the trajectory's last whole frame. (Langevin has no such
    state; its noise is reseeded at every frame.)"""
    chain = getattr(dynamics, "_thermostat", None)
    if chain is None:
        return
    target = _thermostat_file(path)
    previous = _saved_chain(target, frames - 1)
    earlier = {} if previous is None else {"previous_eta": previous[0], "previous_p_eta": previous[1]}
    tmp = target.with_name(f".{target.name}.tmp")
    with open(tmp, "wb") as handle:
        np.savez(handle, frames=frames, eta=chain._eta, p_eta=chain._p_eta, **earlier)
    os.replace(tmp, target)


def _saved_chain(target: Path, frames: int) -> tuple[np.ndarray, np.ndarray] | None:
    """(η, p_η) saved in ``target`` for the state after ``frames`` frames, or None."""
    if not target.exists():
        return None
    with np.load(target) as saved:
        if int(saved["frames"]) == frames:
            return saved["eta"], saved["p_eta"]
        if int(saved["frames"]) == frames + 1 and "previous_eta" in saved:
            return saved["previous_eta"], saved["previous_p_eta"]
    return None


def restore_thermostat(dynamics, path: Path, frames: int) -> bool:
    """Put back the chain's variables saved after ``frames`` frames (also when the run was killed after saving
    the next frame's state and before writing that frame); False (chain starts at rest) when there are none."""
    chain = getattr(dynamics, "_thermostat", None)
    saved = None if chain is None else _saved_chain(_thermostat_file(path), frames)
    if saved is None:
        return False
    chain._eta[:], chain._p_eta[:] = saved
    return True


def _snapshot(atoms: Atoms) -> Atoms:
    copy = atoms.copy()
    copy.calc = None
    return copy


def _append(path: Path, atoms: Atoms) -> None:
    with Trajectory(str(path), "a") as trajectory:
        trajectory.write(atoms)


def _read_trajectory(path: Path) -> list[Atoms]:
    if not path.exists():
        return []
    try:
        with Trajectory(str(path)) as trajectory:
            return [atoms for atoms in trajectory]
    except Exception:  # a frame cut short by a kill: keep what is readable
        frames = []
        with Trajectory(str(path)) as trajectory:
            for index in range(len(trajectory)):
                try:
                    frames.append(trajectory[index])
                except Exception:
                    break
        return frames


def score(system: ReferenceSystem, frames: list[Atoms], task: MDTask) -> dict:
    """The scores of a run's ``frames`` against ``system``'s AIMD reference (:mod:`geodite.metrics.md`): the RDF
    overlap of the frames after the first ``task.equilibration`` fraction (g(r) up to half the shortest lattice
    vector, or the precomputed reference's range), MBD's rdf_error of the whole run (None when the reference has
    no frames, only a precomputed g(r)), the Li diffusion of model and reference."""
    reference = system.precomputed_rdf()
    if reference is None:
        reference = md_metrics.rdf_table(*frame_arrays(system.frames()), max_rdf_radius(frames[0].cell.array))
    first = int(task.equilibration * len(frames))
    kept = frames[first:] if len(frames) - first >= 2 else frames
    model = md_metrics.rdf_table(*frame_arrays(kept), float(reference["r"].max()) + 1e-9)
    frame_fs = task.frame_interval * task.timestep_fs
    rdf_error = None
    if system.frames() and system.frame_interval_fs:
        ref_positions, ref_cells, _ = frame_arrays(system.frames())
        positions, cells, _ = frame_arrays(frames)
        rdf_error = md_metrics.matched_rdf_error(ref_positions, ref_cells, system.frame_interval_fs, positions, cells,
                                                 frame_fs)
    scores = md_metrics.rdf_scores(reference, model)
    row = {"rdf_overlap": scores.pop("rdf_overlap"), "rdf_error": rdf_error} | scores
    row["li_diffusion_cm2_s"] = _li_diffusion(frames[first:], frame_fs)
    if system.frames() and system.frame_interval_fs:
        row["li_diffusion_reference_cm2_s"] = _li_diffusion(system.frames(), system.frame_interval_fs)
    return row


def _li_diffusion(frames: list[Atoms], interval_fs: float) -> float | None:
    positions, _, symbols = frame_arrays(frames)
    return md_metrics.li_diffusion(positions, frames[0].cell.array, symbols, interval_fs)


def plot_rdfs(row: pd.Series, out_dir: Path, model: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.plot(row["rdf_r"], row["rdf_reference"], "k--", lw=1, label="AIMD")
    ax.plot(row["rdf_r"], row["rdf_model"], lw=1.2, label=model)
    ax.set_xlabel("r (Å)")
    ax.set_ylabel("g(r), all pairs")
    ax.set_title(f"{row['key']}: overlap {row['rdf_overlap']:.3f}, {row['time_ps']:.1f} ps")
    ax.legend()
    fig.tight_layout()
    path = out_dir / f"rdf-{row['key']}.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
