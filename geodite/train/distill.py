"""Distillation: label a structure pool (:mod:`geodite.train.pools`) with a teacher potential, split the
labels by material, train a Geodite on them (``geodite distill CONFIG.yaml``; configs/distill.yaml is the
current recipe).

Labels go to an ASE database (SQLite; each row written in its own transaction, keyed by ``uid``), so a
killed labelling run resumes where it stopped: rows already present are skipped. ``mptrj-random-1k.xyz`` is
the held-out test set and is never read here.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Callable

import numpy as np
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator

from geodite.data.mptrj import row_atoms, write_row
from geodite.train.pools import RELAX_SUFFIX, START_SUFFIX, min_distance_ok

#: labelling drops single-point frames whose largest teacher force exceeds this (eV/Å; dimers are kept)
MAX_FORCE = 50.0
#: teacher relaxation: FIRE steps, and the steps whose frames are labelled (the last one also on convergence)
RELAX_STEPS = 16
RELAX_KEEP = (0, 3, 8, 16)
#: v8 trajectories (MPtrj's way, :func:`label_trajectories`): at most this many FIRE steps; the frames at these
#: steps (denser early, where the structure moves most), the converged or last one, then perturbations
TRAJECTORY_STEPS = 60
TRAJECTORY_KEEP = (0, 1, 2, 3, 4, 5, 6, 8, 10, 12, 15, 18, 21, 25, 30, 35, 40, 45, 50, 55, 60)
#: perturbations of a relaxed end point: (rattle σ Å, largest symmetric strain component) per copy
END_PERTURBATIONS = ((0.01, 0.0), (0.03, 0.0), (0.06, 0.0), (0.01, 0.01), (0.02, 0.03))
#: a relaxation converges when every force (and the Fréchet-filtered stress) is below this, eV/Å
FMAX = 0.05


# ------------------------------------------------------------------------------------------- teachers


def make_teacher(name: str, device: str = "cpu"):
    """An ASE calculator for the teacher, from the model registry ('sevennet-0' or 'sevennet-l3i5').

    Labels must be in Geodite's energy convention, MPtrj's *uncorrected* energies; a teacher that predicts
    another convention (CHGNet: MP2020-corrected) is refused, since its energies would teach the offset.
    """
    from geodite.registry import UNCORRECTED, resolve

    handle = resolve(name.lower())
    if handle.energy_convention != UNCORRECTED:
        raise ValueError(f"teacher {name!r} predicts {handle.energy_convention} energies; labels must be "
                         f"{UNCORRECTED} (MPtrj convention): use sevennet-0 or sevennet-l3i5")
    handle.require()
    return handle.load(device=device)


def label_structures(
    structures: list[tuple[str, Atoms]],
    db_path: str | Path,
    calculator,
    teacher: str,
    limit: int | None = None,
    log: Callable[[str], None] = print,
    time_budget_s: float | None = None,
    max_force: float | None = None,
) -> int:
    """Label each (uid, atoms) with the teacher's energy (eV), forces (eV/Å), stress (eV/Å³, ASE sign) and
    append to the ASE database at ``db_path``; uids already there are skipped (resumable). Returns the
    number of rows in the database at the end. With ``max_force``, frames whose largest teacher force norm
    exceeds it (eV/Å) are not written (and are evaluated again by a rerun)."""
    from ase.db import connect

    db = connect(str(db_path))
    done = {row.uid for row in db.select(columns=["key_value_pairs"]) if "uid" in row.key_value_pairs} if Path(
        db_path).exists() else set()
    todo = [(uid, atoms) for uid, atoms in structures if uid not in done]
    if limit is not None:
        todo = todo[: max(0, limit - len(done))]
    start, atoms_done, frames_done = time.perf_counter(), 0, 0
    for uid, atoms in todo:
        if time_budget_s is not None and time.perf_counter() - start > time_budget_s:
            log(f"time budget reached after {frames_done} new frames")
            break
        work = atoms.copy()
        work.calc = calculator
        try:
            energy = float(work.get_potential_energy())
            forces = np.asarray(work.get_forces(), dtype=np.float64)
            stress = np.asarray(work.get_stress(voigt=False), dtype=np.float64)
        except Exception as error:  # a teacher that cannot evaluate a structure: skip it, say so
            log(f"skip {uid}: {error}")
            continue
        if not (np.isfinite(energy) and np.isfinite(forces).all() and np.isfinite(stress).all()):
            log(f"skip {uid}: non-finite teacher output")
            continue
        if max_force is not None and np.linalg.norm(forces, axis=1).max() > max_force:
            continue
        labelled = Atoms(atoms.numbers, positions=atoms.positions, cell=atoms.cell.array, pbc=atoms.pbc)
        from ase.stress import full_3x3_to_voigt_6_stress

        per_atom = work.calc.results.get("energies")
        labelled.calc = SinglePointCalculator(labelled, energy=energy, forces=forces,
                                              stress=full_3x3_to_voigt_6_stress(stress),
                                              **({} if per_atom is None else {"energies": np.asarray(per_atom)}))
        write_row(db, labelled, uid=uid, group=uid.split("/")[0].split("-")[0], teacher=teacher)
        frames_done += 1
        atoms_done += len(atoms)
        if frames_done % 100 == 0:
            elapsed = time.perf_counter() - start
            log(f"labelled {frames_done}/{len(todo)} new frames, {atoms_done} atoms, "
                f"{frames_done / elapsed:.2f} frames/s, {atoms_done / elapsed:.1f} atoms/s")
    elapsed = time.perf_counter() - start
    if frames_done:
        log(f"labelled {frames_done} frames ({atoms_done} atoms) in {elapsed:.0f} s: "
            f"{frames_done / elapsed:.2f} frames/s, {atoms_done / elapsed:.1f} atoms/s")
    return db.count()


def label_relaxations(
    structures: list[tuple[str, Atoms]],
    db_path: str | Path,
    calculator,
    teacher: str,
    steps: int = RELAX_STEPS,
    keep: tuple[int, ...] = RELAX_KEEP,
    max_force: float | None = MAX_FORCE,
    log: Callable[[str], None] = print,
) -> int:
    """Relax each (uid, atoms) with the teacher (ASE FIRE on a FrechetCellFilter, positions and cell) for at
    most ``steps`` steps and label the frames at the ``keep`` steps — and the last frame when it converges
    (fmax 0.05 eV/Å) earlier — as ``<material>/relax-<step>`` (material = the uid before "/"). A structure's
    frames are written in one transaction, so a killed run resumes at the first structure without frames.
    Frames with a force above ``max_force`` (eV/Å) or with atoms closer than half their covalent-radius sum
    are dropped. Returns the number of rows in the database."""
    from ase.db import connect
    from ase.filters import FrechetCellFilter
    from ase.optimize import FIRE
    from ase.stress import full_3x3_to_voigt_6_stress

    db = connect(str(db_path))
    done = {row.uid.split("/")[0] for row in db.select(columns=["key_value_pairs"])
            if "uid" in row.key_value_pairs} if Path(db_path).exists() else set()
    todo = [(uid.split("/")[0], atoms) for uid, atoms in structures if uid.split("/")[0] not in done]
    start, evaluations = time.perf_counter(), 0
    for count, (material, atoms) in enumerate(todo, 1):
        work = atoms.copy()
        work.calc = calculator
        frames = []
        try:
            optimiser = FIRE(FrechetCellFilter(work), logfile=None)
            for step, converged in enumerate(optimiser.irun(fmax=0.05, steps=steps)):
                evaluations += 1
                if step in keep or converged:
                    results = work.calc.results
                    forces = np.asarray(results["forces"], dtype=np.float64)
                    stress = np.asarray(results["stress"], dtype=np.float64)
                    frame = Atoms(work.numbers, positions=work.positions, cell=work.cell.array, pbc=True)
                    if (np.isfinite(forces).all() and np.isfinite(stress).all()
                            and (max_force is None or np.linalg.norm(forces, axis=1).max() <= max_force)
                            and min_distance_ok(frame)):
                        stress6 = stress if stress.shape == (6,) else full_3x3_to_voigt_6_stress(stress)
                        frame.calc = SinglePointCalculator(frame, energy=float(results["energy"]),
                                                           forces=forces, stress=stress6)
                        frames.append((f"{material}/relax-{step}", frame))
        except Exception as error:  # a teacher or optimiser failure on one structure: skip it, say so
            log(f"skip {material}: {error}")
            continue
        with db:
            for uid, frame in frames:
                db.write(frame, uid=uid, group=material.split("-")[0], teacher=teacher)
        if count % 20 == 0:
            elapsed = time.perf_counter() - start
            log(f"relaxed {count}/{len(todo)} structures, {evaluations} teacher calls in {elapsed:.0f} s")
    return db.count()


def _labelled_frame(atoms: Atoms, results: dict) -> Atoms | None:
    """A copy of ``atoms`` (periodic) carrying the teacher's ``results`` — energy (eV), forces (eV/Å), stress
    (eV/Å³, Voigt) and per-atom energies (eV) where the teacher gives them — or None if any is not finite."""
    from ase.stress import full_3x3_to_voigt_6_stress

    energy = float(results["energy"])
    forces = np.asarray(results["forces"], dtype=np.float64)
    stress = np.asarray(results["stress"], dtype=np.float64)
    stress = stress if stress.shape == (6,) else full_3x3_to_voigt_6_stress(stress)
    extra = {}
    if results.get("energies") is not None:
        extra["energies"] = np.asarray(results["energies"], dtype=np.float64)
    if not (np.isfinite(energy) and np.isfinite(forces).all() and np.isfinite(stress).all()
            and all(np.isfinite(v).all() for v in extra.values())):
        return None
    frame = Atoms(atoms.numbers, positions=atoms.positions, cell=atoms.cell.array, pbc=True)
    frame.calc = SinglePointCalculator(frame, energy=energy, forces=forces, stress=stress, **extra)
    return frame


def material_seed(material: str, seed: int) -> list[int]:
    """The seed of a material's perturbations: (pool seed, CRC-32 of its name) — independent of order and
    shard."""
    import zlib

    return [int(seed), zlib.crc32(material.encode())]


def relaxation_frames(atoms: Atoms, calculator, steps: int = TRAJECTORY_STEPS, keep: tuple[int, ...] = TRAJECTORY_KEEP,
                      fmax: float = FMAX) -> tuple[list[tuple[int, Atoms]], Atoms]:
    """Relax ``atoms`` with the teacher (ASE FIRE on a FrechetCellFilter: positions and cell) for at most
    ``steps`` steps; (step, labelled frame) at the ``keep`` steps and at the last step (converged or not),
    and the final structure."""
    from ase.filters import FrechetCellFilter
    from ase.optimize import FIRE

    work = atoms.copy()
    work.calc = calculator
    frames: list[tuple[int, Atoms]] = []
    last = None
    optimiser = FIRE(FrechetCellFilter(work), logfile=None)
    for step, converged in enumerate(optimiser.irun(fmax=fmax, steps=steps)):
        frame = _labelled_frame(work, work.calc.results)
        last = (step, frame)
        if frame is not None and (step in keep or converged):
            frames.append((step, frame))
    if last is not None and last[1] is not None and (not frames or frames[-1][0] != last[0]):
        frames.append(last)
    final = Atoms(work.numbers, positions=work.positions, cell=work.cell.array, pbc=True)
    return frames, final


def perturbed_frames(end: Atoms, calculator, rng: np.random.Generator,
                     perturbations: tuple[tuple[float, float], ...] = END_PERTURBATIONS) -> list[tuple[int, Atoms]]:
    """(k, labelled frame) of the teacher on ``perturbations`` of a relaxed ``end`` point (rattle σ Å, strain:
    :func:`geodite.train.pools.rattle_strain`)."""
    from geodite.train.pools import rattle_strain

    out = []
    for k, (sigma, strain) in enumerate(perturbations):
        work = rattle_strain(end, rng, sigma, strain)
        work.calc = calculator
        work.get_potential_energy()
        frame = _labelled_frame(work, work.calc.results)
        if frame is not None:
            out.append((k, frame))
    return out


def label_trajectories(
    structures: list[tuple[str, Atoms]],
    db_path: str | Path,
    calculator,
    teacher: str,
    seed: int = 0,
    steps: int = TRAJECTORY_STEPS,
    keep: tuple[int, ...] = TRAJECTORY_KEEP,
    perturbations: tuple[tuple[float, float], ...] = END_PERTURBATIONS,
    max_force: float | None = MAX_FORCE,
    log: Callable[[str], None] = print,
) -> int:
    """Label each (uid, start) MPtrj's way: the teacher's relaxation trajectory
    (:func:`relaxation_frames`: ``<material>/relax-<step>``) and ``perturbations`` of its end point
    (:func:`perturbed_frames`, generator :func:`material_seed`: ``<material>/end-<k>``), with the teacher's
    per-atom energies. Frames with a force above ``max_force`` eV/Å or atoms closer than half their
    covalent-radius sum are dropped. A material's frames are written in one transaction, so a killed run
    resumes at the first material without frames. A material that gives no frame (the teacher fails, or every
    frame is dropped: a start the teacher blows up) is listed with the reason in :func:`unlabelled_path` and
    not relabelled by a later run (delete the list to retry). Returns the number of rows in the database."""
    from ase.db import connect

    from geodite.threads import limit_blas_threads

    db = connect(str(db_path))
    done = {_material(row.uid) for row in db.select(columns=["key_value_pairs"])
            if "uid" in row.key_value_pairs} if Path(db_path).exists() else set()
    failed = read_unlabelled(db_path)
    todo = [(_material(uid), atoms) for uid, atoms in structures if _material(uid) not in done]
    skipped = sum(material in failed for material, _ in todo)
    if skipped:
        log(f"not relabelling {skipped} materials that gave no frame before ({unlabelled_path(db_path)})")
        todo = [(material, atoms) for material, atoms in todo if material not in failed]
    with limit_blas_threads(1):  # the cell filter's 3×3 matrix functions: BLAS threads only contend
        return _label_trajectories(todo, db, db_path, calculator, teacher, seed, steps, keep, perturbations,
                                   max_force, log)


def unlabelled_path(db_path: str | Path) -> Path:
    """The list of materials that gave no frame beside a label database (``labels-0.db.unlabelled``): one
    ``material<TAB>reason`` line each."""
    return Path(f"{db_path}.unlabelled")


def read_unlabelled(source: str | Path) -> dict[str, str]:
    """{material: reason} of the materials that gave no frame, listed beside a label database
    (:func:`unlabelled_path`) or beside exported shards (``<prefix>.unlabelled`` in their folder, written by
    :func:`export_labels`); empty when there is no list."""
    source = Path(source)
    path = source.parent / f"{source.name.rsplit('-', 1)[0]}.unlabelled" if is_exported(source) \
        else unlabelled_path(source)
    if not path.exists():
        return {}
    lines = (line.split("\t", 1) for line in path.read_text().splitlines() if line.strip())
    return {parts[0]: parts[1] if len(parts) > 1 else "" for parts in lines}


def _add_unlabelled(db_path: str | Path, materials: dict[str, str]) -> None:
    """Append ``materials`` ({material: reason}) not listed yet to the list beside ``db_path``."""
    new = {m: why for m, why in materials.items() if m not in read_unlabelled(db_path)}
    if new:
        with unlabelled_path(db_path).open("a") as out:
            out.writelines(f"{m}\t{why}\n" for m, why in new.items())


def _label_trajectories(todo, db, db_path, calculator, teacher, seed, steps, keep, perturbations, max_force,
                        log) -> int:
    def give_up(material: str, reason: str) -> None:
        log(f"skip {material}: {reason}")
        _add_unlabelled(db_path, {material: " ".join(reason.split())})

    start, frames_done, atoms_done = time.perf_counter(), 0, 0
    for count, (material, atoms) in enumerate(todo, 1):
        try:
            path, end = relaxation_frames(atoms, calculator, steps, keep)
            frames = [(f"{material}/relax-{step}", frame) for step, frame in path]
            rng = np.random.default_rng(material_seed(material, seed))
            frames += [(f"{material}/end-{k}", frame) for k, frame in perturbed_frames(end, calculator, rng, perturbations)]
        except Exception as error:  # a teacher or optimiser failure on one structure: skip it, say so
            give_up(material, f"{type(error).__name__}: {error}")
            continue
        kept = [(uid, f) for uid, f in frames if min_distance_ok(f)
                and (max_force is None or np.linalg.norm(f.get_forces(), axis=1).max() <= max_force)]
        if not kept:
            give_up(material, f"all {len(frames)} frames dropped (a force above {max_force} eV/Å or atoms "
                              f"overlapping)")
        frames = kept
        with db:
            for uid, frame in frames:
                write_row(db, frame, uid=uid, group=material.split("-")[0], teacher=teacher)
        frames_done += len(frames)
        atoms_done += sum(len(f) for _, f in frames)
        if count % 10 == 0 or count == len(todo):
            elapsed = time.perf_counter() - start
            log(f"trajectories {count}/{len(todo)}: {frames_done} frames ({atoms_done} atoms) in {elapsed:.0f} s, "
                f"{frames_done / elapsed:.3f} frames/s")
    return db.count()


def is_exported(path: str | Path) -> bool:
    """Whether ``path`` is an exported label shard (extended XYZ, optionally xz/gz-compressed), not a database."""
    return ".extxyz" in Path(path).name


def read_label_rows(source: str | Path):
    """(uid, group, teacher, labelled Atoms) of a label database or an exported shard (:func:`export_labels`)."""
    if is_exported(source):
        from ase.io import read

        for atoms in read(str(source), index=":", format="extxyz"):
            yield atoms.info.get("uid"), atoms.info.get("group"), atoms.info.get("teacher"), atoms
        return
    from ase.db import connect

    for row in connect(str(source)).select():
        yield row.get("uid"), row.get("group"), row.get("teacher"), row_atoms(row)


def copy_labels(source_db: str | Path, target_db: str | Path, uids: set[str], max_force: float | None = None,
                log: Callable[[str], None] = print) -> int:
    """Copy rows of ``source_db`` (a database or an exported shard) whose uid is in ``uids`` (and largest force
    ≤ ``max_force``) into ``target_db`` when absent there: reuse of earlier teacher labels. Returns the number
    copied."""
    from ase.db import connect

    target = connect(str(target_db))
    have = {row.uid for row in target.select(columns=["key_value_pairs"]) if "uid" in row.key_value_pairs} \
        if Path(target_db).exists() else set()
    copied = 0
    with target:
        for uid, group, teacher, atoms in read_label_rows(source_db):
            if uid not in uids or uid in have:
                continue
            if max_force is not None and np.linalg.norm(atoms.get_forces(), axis=1).max() > max_force:
                continue
            write_row(target, atoms, uid=uid, group=group, teacher=teacher)
            copied += 1
    log(f"copied {copied} labelled rows from {source_db}")
    return copied


def export_labels(sources: list[str | Path], out_dir: str | Path, pool: str, seed: int,
                  frames_per_file: int = 8000, prefix: str = "labels",
                  log: Callable[[str], None] = print) -> list[Path]:
    """Write the rows of the label databases ``sources`` (in order, each by row id) as xz-compressed extended
    XYZ shards ``<prefix>-NNN.extxyz.xz`` of ``frames_per_file`` frames in ``out_dir``: positions, cell, the
    teacher's energy, forces, stress and per-atom energies, and ``uid``/``group``/``teacher``/``pool``/
    ``pool_seed`` in each frame's info, and the sources' lists of materials that gave no frame as
    ``<prefix>.unlabelled`` (:func:`read_unlabelled`). Earlier shards of that prefix are replaced. Logs how many
    frames it wrote (a labeller may still be adding rows to the sources) and returns the shards."""
    import lzma

    from ase.io import write

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for old in [*out_dir.glob(f"{prefix}-*.extxyz.xz"), out_dir / f"{prefix}.unlabelled"]:
        old.unlink(missing_ok=True)
    unlabelled = {m: why for source in sources for m, why in read_unlabelled(source).items()}
    if unlabelled:
        (out_dir / f"{prefix}.unlabelled").write_text("".join(f"{m}\t{why}\n" for m, why in unlabelled.items()))
    frames = []
    for source in sources:
        for uid, group, teacher, atoms in read_label_rows(source):
            atoms.info.update(uid=uid, group=group, teacher=teacher, pool=pool, pool_seed=int(seed))
            frames.append(atoms)
    files = []
    for index, first in enumerate(range(0, len(frames), frames_per_file)):
        path = out_dir / f"{prefix}-{index:03d}.extxyz.xz"
        with lzma.open(path, "wt", preset=9) as handle:
            write(handle, frames[first:first + frames_per_file], format="extxyz")
        files.append(path)
    log(f"exported {len(frames)} frames of {len(sources)} databases into {len(files)} shards in {out_dir}")
    return files


def _material(uid: str) -> str:
    return uid.split("/")[0]


def split_labels(sources: list[str | Path], train_db: str | Path, valid_db: str | Path, fraction: float = 0.05,
                 seed: int = 0, previous: str | Path | None = None, previous_fraction: float = 0.05,
                 previous_seed: int = 0, previous_split: tuple[str | Path, str | Path] | None = None,
                 valid_list: list[str] | None = None, log: Callable[[str], None] = print) -> tuple[int, int]:
    """Split labelled rows by material (the uid before "/") into a training and a validation ASE database,
    per-atom energies kept (:func:`write_row`); a uid present in several sources is written once (first source
    wins). Returns (train, valid) rows.

    With ``previous`` (the label database an earlier model was trained on with the trainer's own
    ``valid_fraction=previous_fraction, split_seed=previous_seed`` split), that split is kept: its validation
    materials stay in validation and its training materials in training, so a model fine-tuned from the
    earlier one is still validated only on materials it never saw. Of the materials not in ``previous``
    (sorted by id), ``round(fraction × count)`` drawn with ``numpy.random.default_rng(seed)`` go to
    validation. ``previous_split`` (the (training, validation) databases of an earlier ``split_labels``) keeps
    that split the same way. ``valid_list`` (material names, :func:`read_valid_materials`) decides the whole
    split instead: the materials it names are held out, every other one trains."""
    from ase.db import connect

    from geodite.data.dataset import valid_materials

    def materials(db: str | Path) -> set[str]:
        return {_material(row.uid) for row in connect(str(db)).select()}

    held_out: set[str] = set()
    known: set[str] = set()
    if previous is not None:
        order = list(dict.fromkeys(_material(row.uid) for row in connect(str(previous)).select()))
        mask = valid_materials(len(order), previous_fraction, previous_seed)
        held_out = {m for m, v in zip(order, mask) if v}
        known = set(order)
    if previous_split is not None:
        held_out |= materials(previous_split[1])
        known |= materials(previous_split[0]) | materials(previous_split[1])
    rows, seen = [], set()
    for source in sources:
        for row in connect(str(source)).select():
            if row.uid not in seen:
                seen.add(row.uid)
                rows.append(row)
    # single atoms are the isolated-atom reference (e0), not a material to validate on: always trained on
    references = {_material(row.uid) for row in rows if row.natoms == 1}
    new = sorted({_material(row.uid) for row in rows} - known - references)
    if valid_list is not None:
        held_out, new = set(valid_list), []
    if new and fraction > 0:
        count = min(max(int(round(fraction * len(new))), 1), len(new))
        held_out |= set(np.random.default_rng(seed).choice(new, count, replace=False))
    counts = [0, 0]
    with connect(str(train_db)) as train, connect(str(valid_db)) as valid:
        for row in rows:
            is_valid = _material(row.uid) in held_out
            keys = {key: row.get(key) for key in ("group", "teacher") if row.get(key) is not None}
            write_row(valid if is_valid else train, row_atoms(row), uid=row.uid, **keys)
            counts[is_valid] += 1
    log(f"split {len(rows)} labelled frames: {counts[0]} training, {counts[1]} validation "
        f"({len(held_out & {_material(r.uid) for r in rows})} validation materials, {len(new)} new materials)")
    return counts[0], counts[1]


def pool_seed_of(db_path: str | Path) -> int | None:
    """The pool seed recorded in a label database (None for a new or empty one; 0 for databases written
    before seeds were recorded, which were all seed 0)."""
    from ase.db import connect

    if not Path(db_path).exists():
        return None
    if is_exported(db_path):
        for _, _, _, atoms in read_label_rows(db_path):
            return int(atoms.info["pool_seed"])
        return None
    db = connect(str(db_path))
    return int(db.metadata.get("pool_seed", 0)) if db.count() else None


class PoolSeedError(ValueError):
    """A label database holds labels of another pool seed than the pool being labelled."""


def check_pool_seed(db_path: str | Path, reuse: list[str | Path], seed: int) -> None:
    """Labels are matched by uid, and a pool's uids do not carry its seed (``mild-0`` of seed 1 is another
    geometry than ``mild-0`` of seed 0): refuse (:class:`PoolSeedError`) a label database or a ``reuse``
    source of another seed, and record ``seed`` in a new ``db_path``."""
    from ase.db import connect

    target = pool_seed_of(db_path)
    for path, role, recorded in [(db_path, "label database", target)] + [
            (r, "--reuse database", pool_seed_of(r)) for r in reuse]:
        if recorded is not None and recorded != seed:
            raise PoolSeedError(f"{role} {path} holds labels of pool seed {recorded}, not {seed}: its uids "
                                f"name other structures; label seed {seed} into a new database without "
                                f"--reuse")
    if target is None:
        db = connect(str(db_path))
        db.metadata = {**db.metadata, "pool_seed": int(seed)}


def label_pool(pool: list[tuple[str, Atoms]], db_path: str | Path, teacher: str, calculator=None,
               reuse: list[str | Path] = (), limit: int | None = None, max_force: float | None = MAX_FORCE,
               log: Callable[[str], None] = print, seed: int = 0) -> int:
    """Label a pool (built with ``seed``; :func:`check_pool_seed`) into ``db_path`` (resumable): copy rows of
    the ``reuse`` databases or exported shards that belong to the pool (whole relaxations included), then
    label the dimers and heteronuclear pairs (no force cap: they teach the short range), the single-point
    structures (frames above ``max_force`` eV/Å dropped; at most ``limit``), relax the :data:`RELAX_SUFFIX`
    structures with the teacher (:func:`label_relaxations`) and label the :data:`START_SUFFIX` ones MPtrj's
    way (:func:`label_trajectories`). Returns the row count."""
    check_pool_seed(db_path, list(reuse), seed)
    starts = [(uid, a) for uid, a in pool if uid.endswith(START_SUFFIX)]
    relax = [(uid, a) for uid, a in pool if uid.endswith(RELAX_SUFFIX)]
    dimers = [(uid, a) for uid, a in pool if uid.startswith(("dimer-", "pair-"))]
    single = [(uid, a) for uid, a in pool if not uid.endswith((RELAX_SUFFIX, START_SUFFIX))
              and not uid.startswith(("dimer-", "pair-"))]
    relaxed_frames = {f"{_material(uid)}/relax-{step}" for uid, _ in relax for step in range(RELAX_STEPS + 1)}
    trajectory_frames = {f"{_material(uid)}/{kind}-{k}" for uid, _ in starts
                         for kind, n in (("relax", TRAJECTORY_STEPS + 1), ("end", len(END_PERTURBATIONS)))
                         for k in range(n)}
    for source in reuse:
        copy_labels(source, db_path, {uid for uid, _ in single}, max_force, log)
        copy_labels(source, db_path, {uid for uid, _ in dimers}, None, log)
        copy_labels(source, db_path, relaxed_frames | trajectory_frames, None, log)  # whole relaxations
        _add_unlabelled(db_path, read_unlabelled(source))  # starts that gave no frame are not tried again
    calculator = calculator if calculator is not None else make_teacher(teacher)
    label_structures(dimers, db_path, calculator, teacher, log=log)
    count = label_structures(single, db_path, calculator, teacher, limit=limit, log=log, max_force=max_force)
    if relax:
        count = label_relaxations(relax, db_path, calculator, teacher, max_force=max_force, log=log)
    if starts:
        count = label_trajectories(starts, db_path, calculator, teacher, seed=seed, max_force=max_force, log=log)
    return count


# ------------------------------------------------------------------------------------- the distill config


@dataclass
class DistillSection:
    """The ``distill:`` section of a distillation config (the rest is a training config): which pool, which
    teacher, where the labels go (``labels_dir``: ``labels-<shard>.db``, then ``train.db``/``valid.db``)."""

    teacher: str = "sevennet-0"
    pool: str = "v7"
    seed: int = 0
    labels_dir: str = "runs/distill/labels"
    max_force: float | None = MAX_FORCE  # eV/Å; None: keep every frame (the v1 pool)
    valid_fraction: float = 0.05
    split_seed: int = 0
    # a text file naming the validation materials (one per line): it decides the split instead of
    # valid_fraction/split_seed, so that a split made from growing labels can be made again from the export
    valid_materials: str | None = None

    def shard_db(self, shard: int) -> Path:
        return Path(self.labels_dir) / f"labels-{shard}.db"

    def split_dbs(self) -> tuple[Path, Path]:
        return Path(self.labels_dir) / "train.db", Path(self.labels_dir) / "valid.db"


def read_distill_config(values: dict) -> tuple[DistillSection, dict]:
    """Split a distillation config into its ``distill:`` section and the training config; the training data
    default to the split's train.db/valid.db. Unknown ``distill`` keys raise ValueError."""
    values = dict(values)
    given = dict(values.pop("distill", None) or {})
    known = {f.name for f in fields(DistillSection)}
    if set(given) - known:
        raise ValueError(f"unknown keys in [distill]: {sorted(set(given) - known)}")
    section = DistillSection(**given)
    data = dict(values.get("data") or {})
    train_db, valid_db = section.split_dbs()
    data.setdefault("train", [str(train_db)])
    data.setdefault("valid", [str(valid_db)])
    values["data"] = data
    return section, values


def label_shard(section: DistillSection, shard: int = 0, shards: int = 1, data_root: str | Path | None = None,
                reuse: list[str | Path] = (), calculator=None, device: str = "cpu",
                log: Callable[[str], None] = print) -> int:
    """Label every ``shards``-th structure of the pool from the ``shard``-th into ``labels-<shard>.db``
    (resumable; shards run side by side, one process per core). Returns the row count."""
    from geodite.train.pools import build_pool

    pool = build_pool(section.pool, data_root, seed=section.seed)[shard::shards]
    log(f"pool {section.pool} (shard {shard}/{shards}): {len(pool)} structures, {sum(len(a) for _, a in pool)} atoms")
    db = section.shard_db(shard)
    db.parent.mkdir(parents=True, exist_ok=True)
    calculator = calculator if calculator is not None else make_teacher(section.teacher, device)
    return label_pool(pool, db, section.teacher, calculator, reuse=reuse, max_force=section.max_force, log=log,
                      seed=section.seed)


def export_shards(section: DistillSection, out_dir: str | Path, log: Callable[[str], None] = print) -> list[Path]:
    """Export every ``labels-*.db`` of ``labels_dir`` as compressed shards in ``out_dir``
    (:func:`export_labels`), so that a later labelling resumes from them (``--reuse``)."""
    shards = sorted(Path(section.labels_dir).glob("labels-*.db"))
    if not shards:
        raise FileNotFoundError(f"no labels-*.db in {section.labels_dir}: label first")
    return export_labels(shards, out_dir, pool=section.pool, seed=section.seed, log=log)


def split_shards(section: DistillSection, log: Callable[[str], None] = print) -> tuple[int, int]:
    """Split all ``labels-*.db`` of ``labels_dir`` by material into train.db/valid.db (refused if they exist:
    a second split would append duplicates)."""
    train_db, valid_db = section.split_dbs()
    if train_db.exists() or valid_db.exists():
        raise FileExistsError(f"{train_db.parent} already holds a split (train.db/valid.db): remove both to redo it")
    shards = sorted(Path(section.labels_dir).glob("labels-*.db"))
    if not shards:
        raise FileNotFoundError(f"no labels-*.db in {section.labels_dir}: label first")
    listed = None if section.valid_materials is None else read_valid_materials(section.valid_materials)
    return split_labels(shards, train_db, valid_db, fraction=section.valid_fraction, seed=section.split_seed,
                        valid_list=listed, log=log)


def read_valid_materials(path: str | Path) -> list[str]:
    """The material names of a validation list (one per line; blank lines and ``#`` comments ignored)."""
    names = [line.split("#", 1)[0].strip() for line in Path(path).read_text().splitlines()]
    return [name for name in names if name]


def write_valid_materials(valid_db: str | Path, path: str | Path, header: str = "") -> int:
    """Write the materials of a validation database (sorted) as a list for ``valid_materials``; returns how
    many."""
    from ase.db import connect

    names = sorted({_material(row.uid) for row in connect(str(valid_db)).select()})
    comment = "".join(f"# {line}\n" for line in header.splitlines())
    Path(path).write_text(comment + "".join(f"{name}\n" for name in names))
    return len(names)
