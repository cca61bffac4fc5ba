"""Distillation: label structures with a teacher potential, then train a Geodite on the labels.

Structure pool (deterministic for a given seed, interleaved so a partial labelling run is balanced):

* WBM DFT-relaxed structures (``wbm/wbm-random-pbe54-equilibrium-2025.1.json.gz``): as relaxed, rattled and
  strained copies, isotropically compressed copies, small rattled supercells of tiny cells;
* WBM initial (unrelaxed) structures (``wbm/wbm-initial-1k.db``), lightly rattled;
* MP elemental ground states (``mp/MP-PBE-Element-Refs.json.gz``): as given, rattled/strained, compressed;
* the 10 MPtrj frames of ``mptrj/mptrj-10-systems.db``, rattled;
* homonuclear dimers of each of the 89 MPtrj elements at short to medium separations (short-range repulsion),
  placed in a periodic 12 Å box (wider than twice any teacher cutoff used here, so no self-interaction).

``mptrj-random-1k.xyz`` is the held-out test set and is never read here.

Labels go to an ASE database (SQLite; each row written in its own transaction, keyed by ``uid``), so a
killed labelling run resumes where it stopped: rows already present are skipped.
"""

from __future__ import annotations

import gzip
import json
import time
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator
from ase.data import atomic_numbers, covalent_radii

#: the 89 elements present in MPtrj (H–Bi without noble-gas gaps filled by Kr/Xe…, plus Ac–Pu)
MPTRJ_ELEMENTS = (
    "H He Li Be B C N O F Ne Na Mg Al Si P S Cl Ar K Ca Sc Ti V Cr Mn Fe Co Ni Cu Zn Ga Ge As Se Br Kr Rb Sr "
    "Y Zr Nb Mo Tc Ru Rh Pd Ag Cd In Sn Sb Te I Xe Cs Ba La Ce Pr Nd Pm Sm Eu Gd Tb Dy Ho Er Tm Yb Lu Hf Ta W "
    "Re Os Ir Pt Au Hg Tl Pb Bi Ac Th Pa U Np Pu"
).split()

DIMER_BOX = 12.0  # Å
MAX_ATOMS = 64


def default_data_root() -> Path:
    """The real-data folder ``../shared/data`` beside the repository (pass ``--data-dir`` elsewhere)."""
    return Path(__file__).resolve().parents[2].parent / "shared" / "data"


def _structure_to_atoms(structure_dict: dict) -> Atoms:
    from pymatgen.core import Structure
    from pymatgen.io.ase import AseAtomsAdaptor

    atoms = AseAtomsAdaptor.get_atoms(Structure.from_dict(structure_dict))
    return Atoms(atoms.numbers, positions=atoms.positions, cell=atoms.cell.array, pbc=True)


def _rattle_strain(atoms: Atoms, rng: np.random.Generator, sigma: float, strain: float) -> Atoms:
    out = atoms.copy()
    if strain > 0:
        eps = rng.uniform(-strain, strain, size=(3, 3))
        eps = 0.5 * (eps + eps.T)
        out.set_cell(out.cell.array @ (np.eye(3) + eps), scale_atoms=True)
    if sigma > 0:
        out.positions = out.positions + rng.normal(0.0, sigma, size=out.positions.shape)
    return out


def _scale(atoms: Atoms, factor: float) -> Atoms:
    out = atoms.copy()
    out.set_cell(out.cell.array * factor, scale_atoms=True)
    return out


def _small_supercell(atoms: Atoms, min_atoms: int = 8) -> Atoms:
    reps = [1, 1, 1]
    lengths = atoms.cell.lengths()
    while len(atoms) * np.prod(reps) < min_atoms:
        k = int(np.argmin([lengths[i] * reps[i] for i in range(3)]))
        reps[k] += 1
    return atoms.repeat(reps)


def _min_distance_ok(atoms: Atoms, min_factor: float = 0.5) -> bool:
    """No pair closer than ``min_factor`` × the sum of covalent radii (rattling can create overlaps)."""
    from ase.neighborlist import neighbor_list

    i, j, d = neighbor_list("ijd", atoms, 3.0)
    if len(d) == 0:
        return True
    limit = min_factor * (covalent_radii[atoms.numbers[i]] + covalent_radii[atoms.numbers[j]])
    return bool((d > np.minimum(limit, 0.9)).all())


def _wbm_relaxed(root: Path):
    """(material id, Atoms) of the DFT-relaxed WBM structures in ``root/wbm``, in file order."""
    wbm_path = root / "wbm" / "wbm-random-pbe54-equilibrium-2025.1.json.gz"
    if not wbm_path.exists():
        return
    with gzip.open(wbm_path, "rt") as handle:
        rows = json.load(handle)
    for row in rows:
        yield row["material_id"], _structure_to_atoms(row["structure"])


def _wbm_initial(root: Path):
    """(WBM id, periodic Atoms) of the WBM initial structures in ``root/wbm/wbm-initial-1k.db``, in db order."""
    initial_path = root / "wbm" / "wbm-initial-1k.db"
    if not initial_path.exists():
        return
    from ase.db import connect

    for row in connect(str(initial_path)).select():
        atoms = row.toatoms()
        yield row.get("wbm_id", row.id), Atoms(atoms.numbers, positions=atoms.positions, cell=atoms.cell.array, pbc=True)


def _elemental_references(root: Path):
    """(symbol, Atoms) of MP's elemental ground states in ``root/mp/MP-PBE-Element-Refs.json.gz`` (≤ MAX_ATOMS)."""
    refs_path = root / "mp" / "MP-PBE-Element-Refs.json.gz"
    if not refs_path.exists():
        return
    with gzip.open(refs_path, "rt") as handle:
        refs = json.load(handle)
    for symbol, entry in sorted(refs.items()):
        structures = entry["structure"] if isinstance(entry["structure"], list) else [entry["structure"]]
        atoms = _structure_to_atoms(structures[0])
        if len(atoms) <= MAX_ATOMS:
            yield symbol, atoms


def generate_structures(data_root: str | Path | None = None, seed: int = 0) -> list[tuple[str, Atoms]]:
    """The distillation pool as (uid, atoms), deterministic for ``seed``, interleaved across sources."""
    root = Path(data_root) if data_root else default_data_root()
    rng = np.random.default_rng(seed)
    groups: dict[str, list[tuple[str, Atoms]]] = {}

    def add(group: str, uid: str, atoms: Atoms) -> None:
        if 0 < len(atoms) <= MAX_ATOMS and _min_distance_ok(atoms):
            groups.setdefault(group, []).append((uid, atoms))

    for mid, atoms in _wbm_relaxed(root):
        add("wbm-relaxed", f"{mid}/relaxed", atoms)
        add("wbm-perturbed", f"{mid}/rattle-strain",
            _rattle_strain(atoms, rng, rng.uniform(0.02, 0.15), rng.uniform(0.0, 0.05)))
        if rng.random() < 0.35:
            add("wbm-compressed", f"{mid}/scale", _rattle_strain(_scale(atoms, rng.uniform(0.86, 1.06)),
                                                                  rng, 0.03, 0.0))
        if len(atoms) < 6:
            add("wbm-supercell", f"{mid}/supercell", _rattle_strain(_small_supercell(atoms), rng, 0.08, 0.02))

    for wid, atoms in _wbm_initial(root):
        add("wbm-initial", f"{wid}/initial-rattle", _rattle_strain(atoms, rng, 0.03, 0.01))

    for symbol, atoms in _elemental_references(root):
        base = _small_supercell(atoms, 4)
        add("elements", f"element-{symbol}/relaxed", atoms)
        for k in range(3):
            add("elements", f"element-{symbol}/rattle-strain-{k}",
                _rattle_strain(base, rng, rng.uniform(0.03, 0.15), rng.uniform(0.0, 0.06)))
        add("elements", f"element-{symbol}/compressed", _rattle_strain(_scale(base, rng.uniform(0.85, 0.93)),
                                                                        rng, 0.03, 0.0))
        add("elements", f"element-{symbol}/expanded", _rattle_strain(_scale(base, rng.uniform(1.04, 1.10)),
                                                                      rng, 0.03, 0.0))

    mptrj10 = root / "mptrj" / "mptrj-10-systems.db"
    if mptrj10.exists():
        from ase.db import connect

        for row in connect(str(mptrj10)).select():
            atoms = row.toatoms()
            atoms = Atoms(atoms.numbers, positions=atoms.positions, cell=atoms.cell.array, pbc=True)
            for k in range(3):
                add("mptrj10", f"mptrj10-{row.id}/rattle-{k}", _rattle_strain(atoms, rng, 0.02 + 0.04 * k, 0.02))

    for symbol in MPTRJ_ELEMENTS:
        z = atomic_numbers[symbol]
        r0 = 2 * covalent_radii[z]
        for factor in (0.6, 0.75, 0.9, 1.1, 1.4):
            d = max(factor * r0, 0.5)
            atoms = Atoms([z, z], positions=[[0, 0, 0], [d, 0, 0]], cell=np.eye(3) * DIMER_BOX, pbc=True)
            atoms.positions += DIMER_BOX / 2 - d / 2
            groups.setdefault("dimers", []).append((f"dimer-{symbol}{symbol}/{factor:.2f}", atoms))

    return _interleave(groups, rng)


def _interleave(groups: dict[str, list], rng) -> list:
    """Shuffle within each group, then round-robin in proportion to group size (a labelling stopped early
    still covers every kind of structure)."""
    order = []
    shuffled = {}
    for name in sorted(groups):
        items = groups[name]
        shuffled[name] = [items[i] for i in rng.permutation(len(items))]
        order.extend((k / len(items), name, k) for k in range(len(items)))
    return [shuffled[name][k] for _, name, k in sorted(order)]


def _supercell_to(atoms: Atoms, min_atoms: int) -> Atoms:
    """Repeat along the shortest (repeated) cell vector until at least ``min_atoms`` (≤ MAX_ATOMS if possible)."""
    out = _small_supercell(atoms, min_atoms)
    return out if len(out) <= MAX_ATOMS else atoms


def generate_structures_v2(data_root: str | Path | None = None, seed: int = 0) -> list[tuple[str, Atoms]]:
    """The "MPtrj-like" pool (v2): the v1 pool of :func:`generate_structures` (seed 0, whose labels can be
    reused) minus most dimers, plus near-equilibrium structures resembling MP relaxation-trajectory frames:

    * per WBM DFT-relaxed structure: 2 mild copies (rattle σ U(0.02, 0.1) Å, symmetric strain ≤ 3 %), in a
      supercell of ≥ 16 atoms where the cell is tiny;
    * per WBM initial structure: the structure as given (first frame of a relaxation) and 2 mild copies
      (σ U(0.02, 0.1) Å, strain ≤ 3 %, supercell ≥ 12 atoms);
    * per MP elemental reference: 4 mild copies (supercell ≥ 16 atoms).

    Of the v1 dimers only the 0.9 and 1.1 × 2 r_cov ones are kept (short-range coverage for the ZBL
    part); frames with any |F| > ``MAX_FORCE_V2`` are dropped at labelling time (``max_force``).
    """
    root = Path(data_root) if data_root else default_data_root()
    v1 = [(uid, atoms) for uid, atoms in generate_structures(root, seed=0)
          if not uid.startswith("dimer-") or uid.endswith(("/0.90", "/1.10"))]
    rng = np.random.default_rng(1000 + seed)
    groups: dict[str, list[tuple[str, Atoms]]] = {}
    _add_mild_copies(groups, root, rng, "v2", range(2), range(2), range(4), initial_as_given=True)
    # new structures interleaved (as in v1), after the v1 pool (whose labels usually exist already)
    return v1 + _interleave(groups, rng)


def _add_to_group(groups: dict[str, list[tuple[str, Atoms]]], group: str, uid: str, atoms: Atoms) -> None:
    """Append (uid, atoms) to ``groups[group]`` if it is small enough and has no overlapping atoms."""
    if 0 < len(atoms) <= MAX_ATOMS and _min_distance_ok(atoms):
        groups.setdefault(group, []).append((uid, atoms))


def _add_mild_copies(groups: dict[str, list[tuple[str, Atoms]]], root: Path, rng: np.random.Generator,
                     prefix: str, wbm_copies, initial_copies, element_copies,
                     initial_as_given: bool = False) -> None:
    """Mild copies (rattle σ U(0.02, 0.1) Å, symmetric strain ≤ 3 %), numbered by ``*_copies``: of
    each WBM relaxed structure (supercell ≥ 16 atoms), WBM initial structure (≥ 12 atoms; with
    ``initial_as_given`` also the structure itself) and MP elemental reference (≥ 16 atoms), into groups
    named ``prefix-…``."""
    def mild(atoms: Atoms) -> Atoms:
        return _rattle_strain(atoms, rng, rng.uniform(0.02, 0.1), rng.uniform(0.0, 0.03))

    for mid, atoms in _wbm_relaxed(root):
        big = _supercell_to(atoms, 16)
        for k in wbm_copies:
            _add_to_group(groups, f"{prefix}-wbm-mild", f"{mid}/mild-{k}", mild(big))
    for wid, atoms in _wbm_initial(root):
        if initial_as_given:
            _add_to_group(groups, f"{prefix}-initial", f"{wid}/initial", atoms)
        big = _supercell_to(atoms, 12)
        for k in initial_copies:
            _add_to_group(groups, f"{prefix}-initial-mild", f"{wid}/initial-mild-{k}", mild(big))
    for symbol, atoms in _elemental_references(root):
        big = _supercell_to(atoms, 16)
        for k in element_copies:
            _add_to_group(groups, f"{prefix}-elements", f"element-{symbol}/mild-{k}", mild(big))


#: v2 labelling drops frames whose largest teacher force exceeds this (eV/Å)
MAX_FORCE_V2 = 50.0

#: uid suffix of pool structures that are relaxed by the teacher (frames along the way are the labels)
RELAX_SUFFIX = "/packed"
#: teacher relaxation: FIRE steps, and the steps whose frames are labelled (the last one also on convergence)
RELAX_STEPS = 16
RELAX_KEEP = (0, 3, 8, 16)
#: dimer separations of the v5 pool, in units of 2 r_cov: the v1 ones and a finer, longer grid
DIMER_FACTORS_V5 = (0.6, 0.75, 0.9, 1.0, 1.1, 1.25, 1.4, 1.7, 2.2)


def generate_structures_v5(data_root: str | Path | None = None, seed: int = 0) -> list[tuple[str, Atoms]]:
    """The v5 pool (first trained for model v5): the v2 pool plus molecular chemistry and the dimers back.

    * homonuclear dimers of the 89 elements at :data:`DIMER_FACTORS_V5` × 2 r_cov (v2 kept only 0.9 and
      1.1, and the shipped v4 model's dimer curves regressed);
    * ASE's G2 molecules in a 12 Å box, as given and two rattled copies (σ 0.04, 0.08 Å);
    * 300 random salts of molecular/monatomic anions (:mod:`geodite.train.molecular`) and 80 random packings
      of G2 molecules, uids ending in :data:`RELAX_SUFFIX`: the teacher relaxes each for
      :data:`RELAX_STEPS` FIRE steps (cell included) and the frames at :data:`RELAX_KEEP` are labelled, as
      an MP relaxation trajectory's frames are.
    """
    from geodite.train.molecular import g2_molecules, molecular_packings, molecular_salts

    root = Path(data_root) if data_root else default_data_root()
    pool = [(uid, atoms) for uid, atoms in generate_structures_v2(root, seed) if not uid.startswith("dimer-")]
    rng = np.random.default_rng(5000 + seed)
    groups: dict[str, list[tuple[str, Atoms]]] = {}
    for symbol in MPTRJ_ELEMENTS:
        z = atomic_numbers[symbol]
        for factor in DIMER_FACTORS_V5:
            d = max(factor * 2 * covalent_radii[z], 0.5)
            atoms = Atoms([z, z], positions=[[0, 0, 0], [d, 0, 0]], cell=np.eye(3) * DIMER_BOX, pbc=True)
            atoms.positions += DIMER_BOX / 2 - d / 2
            groups.setdefault("dimers", []).append((f"dimer-{symbol}{symbol}/{factor:.2f}", atoms))
    for name, atoms in g2_molecules():
        groups.setdefault("g2", []).append((f"{name}/as-given", atoms))
        for k, sigma in enumerate((0.04, 0.08)):
            groups["g2"].append((f"{name}/rattle-{k}", _rattle_strain(atoms, rng, sigma, 0.0)))
    groups["salts"] = molecular_salts(list(MPTRJ_ELEMENTS), 300, rng)
    groups["molpacks"] = molecular_packings(80, rng)
    return pool + _interleave(groups, rng)


def generate_structures_v6(data_root: str | Path | None = None, seed: int = 0) -> list[tuple[str, Atoms]]:
    """The v6 pool: the v5 pool plus fresh draws of the same kinds (v5's validation error flattened with
    training steps, while the v5 data had cut it):

    * per WBM DFT-relaxed and WBM initial structure 2, per MP elemental reference 4 more mild copies
      (as in :func:`generate_structures_v2`, uids numbered on from v2's);
    * two more rattled copies of each G2 molecule (σ 0.06, 0.12 Å);
    * 400 more salts and 120 more molecular packings (uids numbered from 1000), relaxed by the teacher as
      in v5.
    """
    from geodite.train.molecular import g2_molecules, molecular_packings, molecular_salts

    root = Path(data_root) if data_root else default_data_root()
    pool = generate_structures_v5(root, seed)
    rng = np.random.default_rng(6000 + seed)
    groups: dict[str, list[tuple[str, Atoms]]] = {}
    _add_mild_copies(groups, root, rng, "v6", (2, 3), (2, 3), range(4, 8))
    for name, atoms in g2_molecules():
        for k, sigma in ((2, 0.06), (3, 0.12)):
            _add_to_group(groups, "v6-g2", f"{name}/rattle-{k}", _rattle_strain(atoms, rng, sigma, 0.0))
    groups["v6-salts"] = molecular_salts(list(MPTRJ_ELEMENTS), 400, rng, first_index=1000)
    groups["v6-molpacks"] = molecular_packings(120, rng, first_index=1000)
    return pool + _interleave(groups, rng)


POOLS = {"v1": generate_structures, "v2": generate_structures_v2, "v5": generate_structures_v5,
         "v6": generate_structures_v6}


# ------------------------------------------------------------------------------------------- teachers


def make_teacher(name: str, device: str = "cpu"):
    """An ASE calculator for the teacher, from the model registry ('sevennet-0' or 'sevennet-l3i5').

    Labels must be in Geodite's energy convention, MPtrj's *uncorrected* energies; a teacher that predicts
    another convention (CHGNet: MP2020-corrected) is refused, since its energies would teach the offset.
    """
    from geodite.registry import UNCORRECTED, get_spec

    spec = get_spec(name.lower())
    if spec.energy_convention != UNCORRECTED:
        raise ValueError(f"teacher {name!r} predicts {spec.energy_convention} energies; labels must be "
                         f"{UNCORRECTED} (MPtrj convention): use sevennet-0 or sevennet-l3i5")
    return spec.make_calculator(device=device)


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

        labelled.calc = SinglePointCalculator(labelled, energy=energy, forces=forces,
                                              stress=full_3x3_to_voigt_6_stress(stress))
        db.write(labelled, uid=uid, group=uid.split("/")[0].split("-")[0], teacher=teacher)
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
    max_force: float | None = MAX_FORCE_V2,
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
                            and _min_distance_ok(frame)):
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


def iter_labelled(db_path: str | Path) -> Iterator[tuple[str, Atoms]]:
    from ase.db import connect

    for row in connect(str(db_path)).select():
        yield row.get("uid", str(row.id)), row.toatoms()


def copy_labels(source_db: str | Path, target_db: str | Path, uids: set[str], max_force: float | None = None,
                log: Callable[[str], None] = print) -> int:
    """Copy rows of ``source_db`` whose uid is in ``uids`` (and largest force ≤ ``max_force``) into
    ``target_db`` when absent there: reuse of earlier teacher labels. Returns the number copied."""
    from ase.db import connect

    target = connect(str(target_db))
    have = {row.uid for row in target.select(columns=["key_value_pairs"]) if "uid" in row.key_value_pairs} \
        if Path(target_db).exists() else set()
    copied = 0
    with target:
        for row in connect(str(source_db)).select():
            uid = row.get("uid")
            if uid not in uids or uid in have:
                continue
            if max_force is not None and np.linalg.norm(row.forces, axis=1).max() > max_force:
                continue
            target.write(row.toatoms(), uid=uid, group=row.get("group"), teacher=row.get("teacher"))
            copied += 1
    log(f"copied {copied} labelled rows from {source_db}")
    return copied


def _material(uid: str) -> str:
    return uid.split("/")[0]


def split_labels(sources: list[str | Path], train_db: str | Path, valid_db: str | Path, fraction: float = 0.05,
                 seed: int = 0, previous: str | Path | None = None, previous_fraction: float = 0.05,
                 previous_seed: int = 0, previous_split: tuple[str | Path, str | Path] | None = None,
                 log: Callable[[str], None] = print) -> tuple[int, int]:
    """Split labelled rows by material (the uid before "/") into a training and a validation ASE database;
    a uid present in several sources is written once (first source wins). Returns (train, valid) rows.

    With ``previous`` (the label database an earlier model was trained on with the trainer's own
    ``valid_fraction=previous_fraction, split_seed=previous_seed`` split), that split is kept: its validation
    materials stay in validation and its training materials in training, so a model fine-tuned from the
    earlier one is still validated only on materials it never saw. Of the materials not in ``previous``
    (sorted by id), ``round(fraction × count)`` drawn with ``numpy.random.default_rng(seed)`` go to
    validation. ``previous_split`` (the (training, validation) databases of an earlier ``split_labels``) keeps
    that split the same way."""
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
    new = sorted({_material(row.uid) for row in rows} - known)
    if new and fraction > 0:
        count = min(max(int(round(fraction * len(new))), 1), len(new))
        held_out |= set(np.random.default_rng(seed).choice(new, count, replace=False))
    counts = [0, 0]
    with connect(str(train_db)) as train, connect(str(valid_db)) as valid:
        for row in rows:
            is_valid = _material(row.uid) in held_out
            keys = {key: row.get(key) for key in ("group", "teacher") if row.get(key) is not None}
            (valid if is_valid else train).write(row.toatoms(), uid=row.uid, **keys)
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
               reuse: list[str | Path] = (), limit: int | None = None, max_force: float | None = MAX_FORCE_V2,
               log: Callable[[str], None] = print, seed: int = 0) -> int:
    """Label a pool (built with ``seed``; :func:`check_pool_seed`) into ``db_path`` (resumable): copy rows of
    the ``reuse`` databases that belong to the pool (whole relaxations included), then label the dimers (no
    force cap: they teach the short range), the single-point structures (frames above ``max_force`` eV/Å
    dropped; at most ``limit``), and relax the :data:`RELAX_SUFFIX` structures with the teacher
    (:func:`label_relaxations`). Returns the row count."""
    check_pool_seed(db_path, list(reuse), seed)
    relax = [(uid, a) for uid, a in pool if uid.endswith(RELAX_SUFFIX)]
    dimers = [(uid, a) for uid, a in pool if uid.startswith("dimer-")]
    single = [(uid, a) for uid, a in pool if not uid.endswith(RELAX_SUFFIX) and not uid.startswith("dimer-")]
    relaxed_frames = {f"{_material(uid)}/relax-{step}" for uid, _ in relax for step in range(RELAX_STEPS + 1)}
    for source in reuse:
        copy_labels(source, db_path, {uid for uid, _ in single}, max_force, log)
        copy_labels(source, db_path, {uid for uid, _ in dimers}, None, log)
        copy_labels(source, db_path, relaxed_frames, None, log)  # whole relaxations (one transaction each)
    calculator = calculator if calculator is not None else make_teacher(teacher)
    label_structures(dimers, db_path, calculator, teacher, log=log)
    count = label_structures(single, db_path, calculator, teacher, limit=limit, log=log, max_force=max_force)
    if relax:
        count = label_relaxations(relax, db_path, calculator, teacher, max_force=max_force, log=log)
    return count


def main(argv=None) -> None:
    """python -m geodite.train.distill --pool v6 --labels LABELS.db [--reuse OLD.db ...]
    [--teacher sevennet-0] [--threads 1] [--shard i/n]: build the pool, copy reusable labels, label the rest
    (resumable)."""
    import argparse

    import torch

    parser = argparse.ArgumentParser()
    parser.add_argument("--pool", default="v6", choices=sorted(POOLS))
    parser.add_argument("--labels", required=True)
    parser.add_argument("--reuse", action="append", default=[], help="earlier label databases (repeatable)")
    parser.add_argument("--teacher", default="sevennet-0")
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--shard", default="0/1", help="i/n: label only every n-th structure from the i-th "
                        "(parallel labelling into separate databases)")
    parser.add_argument("--split", nargs=2, metavar=("TRAIN_DB", "VALID_DB"), default=None,
                        help="instead of labelling: split the --labels databases (comma-separated) by material")
    parser.add_argument("--split-fraction", type=float, default=0.05)
    parser.add_argument("--split-seed", type=int, default=0)
    parser.add_argument("--split-previous", default=None, help="label database of the model fine-tuned from: "
                        "its validation materials (fraction 0.05, seed 0) stay in validation")
    parser.add_argument("--split-after", nargs=2, metavar=("TRAIN_DB", "VALID_DB"), default=None,
                        help="an earlier --split's output: its validation materials stay in validation")
    args = parser.parse_args(argv)
    if args.split:
        split_labels(args.labels.split(","), *args.split, fraction=args.split_fraction, seed=args.split_seed,
                     previous=args.split_previous, previous_split=args.split_after,
                     log=lambda s: print(s, flush=True))
        return
    torch.set_num_threads(args.threads)
    shard, shards = (int(v) for v in args.shard.split("/"))
    pool = POOLS[args.pool](args.data_root, seed=0)[shard::shards]
    print(f"pool {args.pool} (shard {args.shard}): {len(pool)} structures, {sum(len(a) for _, a in pool)} atoms",
          flush=True)
    count = label_pool(pool, args.labels, args.teacher, reuse=args.reuse, limit=args.limit,
                       max_force=None if args.pool == "v1" else MAX_FORCE_V2, log=lambda s: print(s, flush=True))
    print(f"rows {count}", flush=True)


if __name__ == "__main__":
    main()
