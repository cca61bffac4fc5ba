"""The distillation structure pool, built from named parts.

A *part* is a function ``part(root, rng) -> {group: [(uid, Atoms), ...]}`` that draws one kind of structure
from the shared real data under ``root`` (``../shared/data``) with the random generator ``rng``. A *round*
is a list of parts that share one generator, ``numpy.random.default_rng(offset + seed)``, drawn from in order
and then interleaved (shuffled within each group, round-robin across groups: a labelling stopped early still
covers every kind). A pool is the concatenation of its rounds, so adding a round never changes the
structures (hence the labels) of the earlier ones.

The named pools (:data:`POOLS`) are the lineage of the shipped models (configs/history/README.md):

* ``v1``: WBM relaxed structures (as relaxed, rattled/strained, compressed, small supercells), WBM initial
  structures lightly rattled, MP elemental references (rattled, strained, compressed, expanded), the 10
  MPtrj frames rattled, dimers at 0.6–1.4 × 2 r_cov;
* ``v2``: v1 with only the 0.9/1.1 dimers, plus mild copies of WBM/MP structures (MPtrj-like frames);
* ``v5``: v2 without dimers, plus the dimer grid 0.6–2.2 × 2 r_cov, G2 molecules, molecular salts and
  packings relaxed by the teacher (:data:`RELAX_SUFFIX`);
* ``v6``: v5 plus fresh draws of its kinds;
* ``v7``: v6 plus the isolated-atom limit (single atoms, dimers at 3.5 Å) — the data that pins e0.

``mptrj-random-1k.xyz`` is the held-out test set and is never read here.

Over 400 lines on purpose: every part a named pool draws from, in the order it draws, is the record of the
shipped models' data (:func:`pool_digest` pins it bit for bit); restructuring it is the model-v7 issue's.
"""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
from ase import Atoms
from ase.data import atomic_numbers, covalent_radii

from geodite.train.compliance import periodic_atoms

#: the 89 elements present in MPtrj (H–Bi without noble-gas gaps filled by Kr/Xe…, plus Ac–Pu)
MPTRJ_ELEMENTS = (
    "H He Li Be B C N O F Ne Na Mg Al Si P S Cl Ar K Ca Sc Ti V Cr Mn Fe Co Ni Cu Zn Ga Ge As Se Br Kr Rb Sr "
    "Y Zr Nb Mo Tc Ru Rh Pd Ag Cd In Sn Sb Te I Xe Cs Ba La Ce Pr Nd Pm Sm Eu Gd Tb Dy Ho Er Tm Yb Lu Hf Ta W "
    "Re Os Ir Pt Au Hg Tl Pb Bi Ac Th Pa U Np Pu"
).split()

DIMER_BOX = 12.0  # Å: wider than twice any teacher cutoff used here, so no atom sees its images
MAX_ATOMS = 64
#: uid suffix of pool structures that are relaxed by the teacher (frames along the way are the labels)
RELAX_SUFFIX = "/packed"
#: dimer separations of the v1 pool, in units of 2 r_cov
DIMER_FACTORS_V1 = (0.6, 0.75, 0.9, 1.1, 1.4)
#: dimer separations of the v5 pool, in units of 2 r_cov: the v1 ones and a finer, longer grid
DIMER_FACTORS_V5 = (0.6, 0.75, 0.9, 1.0, 1.1, 1.25, 1.4, 1.7, 2.2)
#: dimer separations (Å) of the v7 isolated-atom-limit part: the tail towards 2·e0 (4.0/4.5 Å are checks)
DIMER_TAIL_DISTANCES = (3.5,)

Entry = tuple[str, Atoms]
Groups = dict[str, list[Entry]]
Part = Callable[[Path, np.random.Generator], Groups]


def default_data_root() -> Path:
    """The real-data folder ``../shared/data`` beside the repository (pass ``--data-root`` elsewhere)."""
    return Path(__file__).resolve().parents[2].parent / "shared" / "data"


# ------------------------------------------------------------------------------------------ geometry


def rattle_strain(atoms: Atoms, rng: np.random.Generator, sigma: float, strain: float) -> Atoms:
    """A copy with a random symmetric strain (components U(−strain, strain)) and Gaussian displacements
    (σ ``sigma`` Å)."""
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
    """Repeat along the shortest (repeated) cell vector until at least ``min_atoms``."""
    reps = [1, 1, 1]
    lengths = atoms.cell.lengths()
    while len(atoms) * np.prod(reps) < min_atoms:
        k = int(np.argmin([lengths[i] * reps[i] for i in range(3)]))
        reps[k] += 1
    return atoms.repeat(reps)


def _supercell_to(atoms: Atoms, min_atoms: int) -> Atoms:
    """:func:`_small_supercell` of at least ``min_atoms``, or ``atoms`` itself if that exceeds MAX_ATOMS."""
    out = _small_supercell(atoms, min_atoms)
    return out if len(out) <= MAX_ATOMS else atoms


def min_distance_ok(atoms: Atoms, min_factor: float = 0.5) -> bool:
    """No pair closer than ``min_factor`` × the sum of covalent radii (rattling can create overlaps)."""
    from ase.neighborlist import neighbor_list

    i, j, d = neighbor_list("ijd", atoms, 3.0)
    if len(d) == 0:
        return True
    limit = min_factor * (covalent_radii[atoms.numbers[i]] + covalent_radii[atoms.numbers[j]])
    return bool((d > np.minimum(limit, 0.9)).all())


def boxed(numbers: list[int], distance: float = 0.0) -> Atoms:
    """One atom, or two at ``distance`` Å along x, near the centre of a periodic :data:`DIMER_BOX` box (every
    coordinate shifted by (box − distance)/2)."""
    positions = [[0.0, 0.0, 0.0], [distance, 0.0, 0.0]][:len(numbers)]
    atoms = Atoms(numbers, positions=positions, cell=np.eye(3) * DIMER_BOX, pbc=True)
    atoms.positions += DIMER_BOX / 2 - distance / 2
    return atoms


# -------------------------------------------------------------------------------------- data sources


class PoolDataError(FileNotFoundError):
    """A data file a pool is drawn from is missing: a pool built without it would silently be another pool
    (fewer structures, and later parts of its round drawn from another random state)."""


def _required(path: Path) -> Path:
    """``path`` if it exists, else :class:`PoolDataError` naming it."""
    if not path.exists():
        raise PoolDataError(f"pool data file {path} not found (pass the shared real-data folder as --data-root)")
    return path


def _json_gz(path: Path):
    """The parsed contents of a gzipped JSON file (:class:`PoolDataError` if it does not exist)."""
    with gzip.open(_required(path), "rt") as handle:
        return json.load(handle)


def wbm_relaxed(root: Path) -> Iterator[Entry]:
    """(material id, Atoms) of the DFT-relaxed WBM structures in ``root/wbm``, in file order."""
    for row in _json_gz(root / "wbm" / "wbm-random-pbe54-equilibrium-2025.1.json.gz"):
        yield row["material_id"], periodic_atoms(row["structure"])


def wbm_initial(root: Path) -> Iterator[Entry]:
    """(WBM id, periodic Atoms) of the WBM initial structures in ``root/wbm/wbm-initial-1k.db``, in db order."""
    path = _required(root / "wbm" / "wbm-initial-1k.db")
    from ase.db import connect

    for row in connect(str(path)).select():
        atoms = row.toatoms()
        yield row.get("wbm_id", row.id), Atoms(atoms.numbers, positions=atoms.positions, cell=atoms.cell.array,
                                               pbc=True)


def elemental_references(root: Path) -> Iterator[Entry]:
    """(symbol, Atoms) of MP's elemental ground states in ``root/mp/MP-PBE-Element-Refs.json.gz`` (≤ MAX_ATOMS)."""
    refs = _json_gz(root / "mp" / "MP-PBE-Element-Refs.json.gz")
    for symbol, entry in sorted(refs.items()):
        structures = entry["structure"] if isinstance(entry["structure"], list) else [entry["structure"]]
        atoms = periodic_atoms(structures[0])
        if len(atoms) <= MAX_ATOMS:
            yield symbol, atoms


def _add(groups: Groups, group: str, uid: str, atoms: Atoms) -> None:
    """Append (uid, atoms) to ``groups[group]`` if it is small enough and has no overlapping atoms."""
    if 0 < len(atoms) <= MAX_ATOMS and min_distance_ok(atoms):
        groups.setdefault(group, []).append((uid, atoms))


# ------------------------------------------------------------------------------------------- parts


def wbm_strong_copies(root: Path, rng: np.random.Generator) -> Groups:
    """Per WBM relaxed structure: as relaxed; rattled (σ U(0.02, 0.15) Å) and strained (≤ 5 %); with
    probability 0.35 scaled by U(0.86, 1.06) and rattled (σ 0.03 Å); a rattled 8-atom supercell of cells
    under 6 atoms."""
    groups: Groups = {}
    for mid, atoms in wbm_relaxed(root):
        _add(groups, "wbm-relaxed", f"{mid}/relaxed", atoms)
        _add(groups, "wbm-perturbed", f"{mid}/rattle-strain",
             rattle_strain(atoms, rng, rng.uniform(0.02, 0.15), rng.uniform(0.0, 0.05)))
        if rng.random() < 0.35:
            _add(groups, "wbm-compressed", f"{mid}/scale",
                 rattle_strain(_scale(atoms, rng.uniform(0.86, 1.06)), rng, 0.03, 0.0))
        if len(atoms) < 6:
            _add(groups, "wbm-supercell", f"{mid}/supercell", rattle_strain(_small_supercell(atoms), rng, 0.08, 0.02))
    return groups


def wbm_initial_rattles(root: Path, rng: np.random.Generator) -> Groups:
    """Per WBM initial structure: a light rattle (σ 0.03 Å, strain ≤ 1 %)."""
    groups: Groups = {}
    for wid, atoms in wbm_initial(root):
        _add(groups, "wbm-initial", f"{wid}/initial-rattle", rattle_strain(atoms, rng, 0.03, 0.01))
    return groups


def element_strong_copies(root: Path, rng: np.random.Generator) -> Groups:
    """Per MP elemental reference: as given; three rattled/strained (σ U(0.03, 0.15) Å, ≤ 6 %), one compressed
    (× U(0.85, 0.93)) and one expanded (× U(1.04, 1.10)) copy of its ≥ 4-atom supercell."""
    groups: Groups = {}
    for symbol, atoms in elemental_references(root):
        base = _small_supercell(atoms, 4)
        _add(groups, "elements", f"element-{symbol}/relaxed", atoms)
        for k in range(3):
            _add(groups, "elements", f"element-{symbol}/rattle-strain-{k}",
                 rattle_strain(base, rng, rng.uniform(0.03, 0.15), rng.uniform(0.0, 0.06)))
        _add(groups, "elements", f"element-{symbol}/compressed",
             rattle_strain(_scale(base, rng.uniform(0.85, 0.93)), rng, 0.03, 0.0))
        _add(groups, "elements", f"element-{symbol}/expanded",
             rattle_strain(_scale(base, rng.uniform(1.04, 1.10)), rng, 0.03, 0.0))
    return groups


def mptrj10_rattles(root: Path, rng: np.random.Generator) -> Groups:
    """The 10 frames of ``mptrj/mptrj-10-systems.db``, each rattled three times (σ 0.02/0.06/0.10 Å)."""
    from ase.db import connect

    groups: Groups = {}
    for row in connect(str(_required(root / "mptrj" / "mptrj-10-systems.db"))).select():
        atoms = row.toatoms()
        atoms = Atoms(atoms.numbers, positions=atoms.positions, cell=atoms.cell.array, pbc=True)
        for k in range(3):
            _add(groups, "mptrj10", f"mptrj10-{row.id}/rattle-{k}", rattle_strain(atoms, rng, 0.02 + 0.04 * k, 0.02))
    return groups


def dimers(root: Path, rng: np.random.Generator, factors: tuple[float, ...] = DIMER_FACTORS_V5) -> Groups:
    """Homonuclear dimers of the 89 MPtrj elements at ``factors`` × 2 r_cov (at least 0.5 Å), uids
    ``dimer-XX/<factor>``; no random draws, no overlap filter (they teach the short range)."""
    entries = []
    for symbol in MPTRJ_ELEMENTS:
        z = atomic_numbers[symbol]
        for factor in factors:
            entries.append((f"dimer-{symbol}{symbol}/{factor:.2f}", boxed([z, z], max(factor * 2 * covalent_radii[z], 0.5))))
    return {"dimers": entries}


def isolated_limit(root: Path, rng: np.random.Generator,
                   distances: tuple[float, ...] = DIMER_TAIL_DISTANCES) -> Groups:
    """The isolated-atom limit of the 89 MPtrj elements: one atom in a box (``atom-X/isolated``: the teacher's
    isolated-atom energy, the e0 a student needs) and homonuclear dimers at ``distances`` Å
    (``dimer-XX/<d>A``: the approach to 2·e0)."""
    atoms_, tail = [], []
    for symbol in MPTRJ_ELEMENTS:
        z = atomic_numbers[symbol]
        atoms_.append((f"atom-{symbol}/isolated", boxed([z])))
        tail.extend((f"dimer-{symbol}{symbol}/{d:.2f}A", boxed([z, z], d)) for d in distances)
    return {"isolated-atoms": atoms_, "dimer-tail": tail}


def mild_copies(root: Path, rng: np.random.Generator, prefix: str, wbm_copies, initial_copies, element_copies,
                initial_as_given: bool = False) -> Groups:
    """MPtrj-like near-equilibrium frames: mild copies (rattle σ U(0.02, 0.1) Å, symmetric strain ≤ 3 %),
    numbered by ``*_copies``, of each WBM relaxed structure (supercell ≥ 16 atoms), WBM initial structure
    (≥ 12 atoms; with ``initial_as_given`` also the structure itself) and MP elemental reference (≥ 16 atoms),
    in groups named ``prefix-…``."""
    groups: Groups = {}

    def mild(atoms: Atoms) -> Atoms:
        return rattle_strain(atoms, rng, rng.uniform(0.02, 0.1), rng.uniform(0.0, 0.03))

    for mid, atoms in wbm_relaxed(root):
        big = _supercell_to(atoms, 16)
        for k in wbm_copies:
            _add(groups, f"{prefix}-wbm-mild", f"{mid}/mild-{k}", mild(big))
    for wid, atoms in wbm_initial(root):
        if initial_as_given:
            _add(groups, f"{prefix}-initial", f"{wid}/initial", atoms)
        big = _supercell_to(atoms, 12)
        for k in initial_copies:
            _add(groups, f"{prefix}-initial-mild", f"{wid}/initial-mild-{k}", mild(big))
    for symbol, atoms in elemental_references(root):
        big = _supercell_to(atoms, 16)
        for k in element_copies:
            _add(groups, f"{prefix}-elements", f"element-{symbol}/mild-{k}", mild(big))
    return groups


def g2_rattles(root: Path, rng: np.random.Generator, group: str, copies: tuple[tuple[int, float], ...],
               as_given: bool = False, checked: bool = False) -> Groups:
    """ASE's G2 molecules in a 12 Å box: rattled copies ``(k, σ Å)`` as ``<name>/rattle-k`` (and, with
    ``as_given``, the molecule itself); with ``checked``, copies with overlapping atoms are dropped."""
    from geodite.train.molecular import g2_molecules

    groups: Groups = {group: []}
    for name, atoms in g2_molecules():
        if as_given:
            groups[group].append((f"{name}/as-given", atoms))
        for k, sigma in copies:
            uid, copy = f"{name}/rattle-{k}", rattle_strain(atoms, rng, sigma, 0.0)
            if checked:
                _add(groups, group, uid, copy)
            else:
                groups[group].append((uid, copy))
    return groups


def salts(root: Path, rng: np.random.Generator, group: str, count: int, first_index: int = 0) -> Groups:
    """``count`` random salts of molecular/monatomic anions (:func:`geodite.train.molecular.molecular_salts`),
    relaxed by the teacher at labelling time."""
    from geodite.train.molecular import molecular_salts

    return {group: molecular_salts(list(MPTRJ_ELEMENTS), count, rng, first_index=first_index)}


def packings(root: Path, rng: np.random.Generator, group: str, count: int, first_index: int = 0) -> Groups:
    """``count`` random packings of G2 molecules (:func:`geodite.train.molecular.molecular_packings`), relaxed
    by the teacher at labelling time."""
    from geodite.train.molecular import molecular_packings

    return {group: molecular_packings(count, rng, first_index=first_index)}


# ------------------------------------------------------------------------------------------- rounds


@dataclass(frozen=True)
class Round:
    """Parts drawn from one generator ``default_rng(offset + seed)`` (``offset`` alone when not
    ``follows_seed``), then interleaved; ``keep`` filters the round's uids (draws of dropped structures still
    happen, so the kept ones stay the same)."""

    name: str
    offset: int
    parts: tuple[Part, ...]
    follows_seed: bool = True
    keep: Callable[[str], bool] | None = None

    def build(self, root: Path, seed: int) -> list[Entry]:
        rng = np.random.default_rng(self.offset + (seed if self.follows_seed else 0))
        groups: Groups = {}
        for part in self.parts:
            for group, entries in part(root, rng).items():
                groups.setdefault(group, []).extend(entries)
        entries = interleave(groups, rng)
        return entries if self.keep is None else [(uid, a) for uid, a in entries if self.keep(uid)]


def interleave(groups: Groups, rng: np.random.Generator) -> list[Entry]:
    """Shuffle within each group (in sorted group order), then round-robin in proportion to group size."""
    order = []
    shuffled = {}
    for name in sorted(groups):
        items = groups[name]
        shuffled[name] = [items[i] for i in rng.permutation(len(items))]
        order.extend((k / len(items), name, k) for k in range(len(items)))
    return [shuffled[name][k] for _, name, k in sorted(order)]


def _not_dimer(uid: str) -> bool:
    return not uid.startswith("dimer-")


def _dimer_kept_in_v2(uid: str) -> bool:
    return _not_dimer(uid) or uid.endswith(("/0.90", "/1.10"))


_BASE_PARTS = (wbm_strong_copies, wbm_initial_rattles, element_strong_copies, mptrj10_rattles,
               partial(dimers, factors=DIMER_FACTORS_V1))
#: rounds of the lineage; the base round (the v1 pool) was always drawn with seed 0
BASE = Round("base", 0, _BASE_PARTS)
BASE_V2 = Round("base", 0, _BASE_PARTS, follows_seed=False, keep=_dimer_kept_in_v2)
BASE_V5 = Round("base", 0, _BASE_PARTS, follows_seed=False, keep=_not_dimer)
MILD = Round("mild", 1000, (partial(mild_copies, prefix="v2", wbm_copies=range(2), initial_copies=range(2),
                                    element_copies=range(4), initial_as_given=True),))
MOLECULAR = Round("molecular", 5000, (
    dimers,
    partial(g2_rattles, group="g2", copies=((0, 0.04), (1, 0.08)), as_given=True),
    partial(salts, group="salts", count=300),
    partial(packings, group="molpacks", count=80),
))
MORE = Round("more", 6000, (
    partial(mild_copies, prefix="v6", wbm_copies=(2, 3), initial_copies=(2, 3), element_copies=range(4, 8)),
    partial(g2_rattles, group="v6-g2", copies=((2, 0.06), (3, 0.12)), checked=True),
    partial(salts, group="v6-salts", count=400, first_index=1000),
    partial(packings, group="v6-molpacks", count=120, first_index=1000),
))
LIMITS = Round("limits", 7000, (isolated_limit,))

# ------------------------------------------------------------------------------------------------ v8

#: uid suffix of the v8 starts: the teacher relaxes each (frames along the path, the end point and
#: perturbations of it are the labels; :func:`geodite.train.distill.label_trajectories`)
START_SUFFIX = "/start"
#: MP elemental references left out of v8: their structure matches a benchmark input (Dy: a
#: mptrj-random-1k frame; Xe: a WBM initial structure; pymatgen StructureMatcher, tests/train/test_pool_v8.py)
V8_EXCLUDED_ELEMENT_REFS = ("Dy", "Xe")
#: generated starts of v8 per kind (:data:`geodite.train.chemistry.KINDS`), in draw order
V8_COUNTS = (("oxide", 1700), ("polyanion", 350), ("pyxoxide", 150), ("fluoride", 250), ("chalcogenide", 330),
             ("nitride", 150), ("halide", 200), ("hpc", 70), ("pyxother", 100), ("intermetallic", 380))
#: heteronuclear pair separations (× the covalent-radius sum) and partners: short range and tail without
#: homonuclear dimer curves
PAIR_FACTORS = (0.8, 1.0, 1.3, 1.8, 2.6)
PAIR_PARTNERS = ("H", "C", "N", "O", "F", "S", "Cl")


def generated_starts(root: Path, rng: np.random.Generator, counts=V8_COUNTS) -> dict:
    """Generated MP-like starts (:mod:`geodite.train.chemistry`), ``counts`` per kind, as
    ``v8<kind>-<index>/start`` → :class:`~geodite.train.chemistry.Start`."""
    from geodite.train.chemistry import draw_starts

    return {kind: [(f"v8{kind}-{k:05d}{START_SUFFIX}", start) for k, start in enumerate(draw_starts(kind, count, rng))]
            for kind, count in counts}


def element_starts(root: Path, rng: np.random.Generator, copies: int = 2) -> dict:
    """Per MP elemental reference (but :data:`V8_EXCLUDED_ELEMENT_REFS`): ``copies`` starts rattled
    (σ U(0.02, 0.1) Å), strained (≤ 4 %) and scaled by U(0.94, 1.06), and per MPtrj-10 frame two rattled
    (σ 0.05 Å, ≤ 3 %) starts."""
    from ase.db import connect

    from geodite.train.chemistry import ready

    entries = []
    for symbol, atoms in elemental_references(root):
        base = _supercell_to(atoms, 4)
        for k in range(copies):
            start = rattle_strain(_scale(base, rng.uniform(0.94, 1.06)), rng, rng.uniform(0.02, 0.1),
                                  rng.uniform(0.0, 0.04))
            if symbol not in V8_EXCLUDED_ELEMENT_REFS:
                entries.append((f"v8element-{symbol}-{k}{START_SUFFIX}", ready(start)))
    mptrj = []
    for row in connect(str(_required(root / "mptrj" / "mptrj-10-systems.db"))).select():
        atoms = row.toatoms()
        atoms = Atoms(atoms.numbers, positions=atoms.positions, cell=atoms.cell.array, pbc=True)
        for k in range(2):
            mptrj.append((f"v8mptrj10-{row.id}-{k}{START_SUFFIX}", ready(rattle_strain(atoms, rng, 0.05, 0.03))))
    return {"elements": entries, "mptrj10": mptrj}


def hetero_pairs(root: Path, rng: np.random.Generator) -> dict:
    """Per MPtrj element, one partner of :data:`PAIR_PARTNERS` (another than itself, and no benchmark input's
    formula) at :data:`PAIR_FACTORS` × the covalent-radius sum, in a :data:`DIMER_BOX` box
    (``pair-XY/<d>A``, single points)."""
    from geodite.train.chemistry import ready, reduced_formula
    from geodite.train.compliance import excluded_formulas

    excluded = excluded_formulas()
    entries = []
    for symbol in MPTRJ_ELEMENTS:
        z = atomic_numbers[symbol]
        partner = str(rng.choice([p for p in PAIR_PARTNERS if p != symbol
                                  and reduced_formula([z, atomic_numbers[p]]) not in excluded]))
        za, zb = atomic_numbers[symbol], atomic_numbers[partner]
        for factor in PAIR_FACTORS:
            d = factor * (covalent_radii[za] + covalent_radii[zb])
            entries.append((f"pair-{symbol}{partner}/{d:.2f}A", ready(boxed([za, zb], d))))
    return {"pairs": entries}


def isolated_atoms(root: Path, rng: np.random.Generator) -> dict:
    """The isolated atoms of :func:`isolated_limit` (no dimers) as starts-made."""
    from geodite.train.chemistry import ready

    return {"isolated-atoms": [(uid, ready(atoms)) for uid, atoms in isolated_limit(root, rng)["isolated-atoms"]]}


@dataclass(frozen=True)
class GeneratedRound:
    """A round of :class:`~geodite.train.chemistry.Start` parts: drawn from ``default_rng(offset + seed)`` and
    interleaved as :class:`Round` does, then made (``realise``) — or, unrealised, the (uid, Start) plan whose
    formulas every made structure has (the draws do not depend on making)."""

    name: str
    offset: int
    parts: tuple[Part, ...]

    def build(self, root: Path, seed: int, realise: bool = True) -> list:
        rng = np.random.default_rng(self.offset + seed)
        groups: dict = {}
        for part in self.parts:
            for group, entries in part(root, rng).items():
                groups.setdefault(group, []).extend(entries)
        entries = interleave(groups, rng)
        if not realise:
            return entries
        out = []
        for uid, start in entries:
            atoms = start.make()
            if atoms is not None and 0 < len(atoms) <= MAX_ATOMS and (len(atoms) < 2 or uid.startswith("pair-")
                                                                     or min_distance_ok(atoms)):
                out.append((uid, atoms))
        return out


V8_GENERATED = GeneratedRound("v8", 8000, (generated_starts, element_starts, hetero_pairs, isolated_atoms))


#: the named pools: rounds concatenated in order
POOLS: dict[str, tuple[Round, ...]] = {
    "v1": (BASE,),
    "v2": (BASE_V2, MILD),
    "v5": (BASE_V5, MILD, MOLECULAR),
    "v6": (BASE_V5, MILD, MOLECULAR, MORE),
    "v7": (BASE_V5, MILD, MOLECULAR, MORE, LIMITS),
    "v8": (V8_GENERATED,),
}


def build_pool(name: str, data_root: str | Path | None = None, seed: int = 0) -> list[Entry]:
    """The pool ``name`` (:data:`POOLS`) as (uid, Atoms), deterministic for ``seed``."""
    if name not in POOLS:
        raise ValueError(f"unknown pool {name!r}; one of {', '.join(POOLS)}")
    root = Path(data_root) if data_root else default_data_root()
    return [entry for round_ in POOLS[name] for entry in round_.build(root, seed)]


def pool_starts(name: str, data_root: str | Path | None = None, seed: int = 0) -> list:
    """(uid, :class:`~geodite.train.chemistry.Start`) of every structure the pool ``name`` may hold, without
    making the generated geometries (:class:`GeneratedRound`; a superset of :func:`build_pool`'s uids)."""
    from geodite.train.chemistry import ready

    if name not in POOLS:
        raise ValueError(f"unknown pool {name!r}; one of {', '.join(POOLS)}")
    root = Path(data_root) if data_root else default_data_root()
    out = []
    for round_ in POOLS[name]:
        if isinstance(round_, GeneratedRound):
            out.extend(round_.build(root, seed, realise=False))
        else:
            out.extend((uid, ready(atoms)) for uid, atoms in round_.build(root, seed))
    return out


def pool_digest(pool: list[Entry]) -> str:
    """sha256 of the uids, atomic numbers, positions and cells (float64 bytes) of a pool, in order."""
    import hashlib

    digest = hashlib.sha256()
    for uid, atoms in pool:
        digest.update(uid.encode())
        for array in (atoms.numbers.astype(np.int64), atoms.positions.astype(np.float64),
                      atoms.cell.array.astype(np.float64)):
            digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()
