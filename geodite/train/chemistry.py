"""Generated Materials-Project-like crystals for the v8 distillation pool (no benchmark structure is read).

MPtrj is the relaxation trajectories of Materials Project's crystals: mostly oxides (O in 54 % of its frames),
many with four or more elements (43 %), a quarter transition-metal oxides and fluorides, and sulfides,
nitrides, halides, polyanion salts, intermetallics and elements besides. This module makes *starting
structures* of that chemistry from nothing but the field's tables and prototypes:

* charge-balanced compositions from pymatgen's oxidation states (:data:`CATION_STATES`; ``smact`` measures
  the result, :func:`smact_valid`), placed on ionic prototypes (rocksalt, zincblende, wurtzite, CsCl,
  fluorite/antifluorite, rutile, CdI₂-layered, perovskite, α-NaFeO₂-layered, spinel, corundum, olivine) whose
  lattice comes from Shannon ionic radii (pymatgen; covalent radii where a radius is missing);
* isovalent substitution on a cation site of a supercell (partner drawn with pymatgen's substitution
  probabilities, Hautier et al. 2011) for the four- and five-element compounds;
* ordered intermetallics on fcc/bcc/hcp supercells, and salts of molecular polyanions with two cations
  (phosphates, sulfates, silicates, borates, carbonates … packed by :func:`geodite.train.molecular.pack_units`);
* ``pyxtal`` random symmetric crystals of ``smact``-valid compositions in common MP space groups.

Every structure is a start: the teacher relaxes it (FIRE + FrechetCellFilter) at labelling time and the
frames along the path, the end point and small perturbations of the end point are the labels
(:func:`geodite.train.distill.label_trajectories`). Deterministic for a generator state.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Callable

import numpy as np
from ase import Atoms
from ase.data import atomic_numbers, covalent_radii

#: at most this many atoms in a starting cell (CPU labelling)
MAX_START_ATOMS = 64

ALKALI = ("Li", "Na", "K", "Rb", "Cs")
ALKALINE_EARTH = ("Be", "Mg", "Ca", "Sr", "Ba")
TRANSITION_METALS = (
    tuple("Sc Ti V Cr Mn Fe Co Ni Cu Zn Y Zr Nb Mo Tc Ru Rh Pd Ag Cd Hf Ta W Re Os Ir Pt Au Hg".split()))
LANTHANIDES = tuple("La Ce Pr Nd Pm Sm Eu Gd Tb Dy Ho Er Tm Yb Lu".split())
ACTINIDES = ("Ac", "Th", "Pa", "U", "Np", "Pu")
POST_TRANSITION = ("B", "Al", "Ga", "In", "Tl", "Si", "Ge", "Sn", "Pb", "As", "Sb", "Bi", "Se", "Te")
#: elements that take a cation site
CATIONS = ALKALI + ALKALINE_EARTH + TRANSITION_METALS + LANTHANIDES + ACTINIDES + POST_TRANSITION
#: large cations (perovskite A site, olivine/salt counter-ions)
LARGE_CATIONS = ALKALI + ("Ca", "Sr", "Ba", "Pb", "Bi", "Tl") + LANTHANIDES + ACTINIDES
#: anions and their charge
ANION_CHARGE = {"O": -2, "F": -1, "S": -2, "Se": -2, "Te": -2, "N": -3, "Cl": -1, "Br": -1, "I": -1, "H": -1,
                "P": -3, "C": -4}
#: metals of the intermetallics
METALS = ALKALI + ALKALINE_EARTH + TRANSITION_METALS + LANTHANIDES + ACTINIDES + (
    "Al", "Ga", "In", "Tl", "Ge", "Sn", "Pb", "Sb", "Bi", "Si")


@lru_cache(maxsize=1)
def cation_states() -> dict[str, tuple[int, ...]]:
    """Positive oxidation states (1–7) of each cation element: pymatgen's common ∪ ICSD states (common ones
    only where the ICSD list is empty)."""
    from pymatgen.core import Element

    out = {}
    for symbol in CATIONS:
        element = Element(symbol)
        states = set(element.common_oxidation_states) | set(element.icsd_oxidation_states)
        states = tuple(sorted(s for s in states if 1 <= s <= 7))
        if states:
            out[symbol] = states
    return out


@lru_cache(maxsize=None)
def ionic_radius(symbol: str, charge: int) -> float:
    """Shannon ionic radius (Å, pymatgen's average over coordinations) of ``symbol`` with ``charge``;
    0.8 × the covalent radius where pymatgen has none."""
    import warnings

    from pymatgen.core import Species

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            radius = Species(symbol, charge).ionic_radius
        except Exception:  # pymatgen raises for unknown (element, charge) pairs
            radius = None
    return float(radius) if radius else 0.8 * float(covalent_radii[atomic_numbers[symbol]])


def bond_length(cation: str, charge: int, anion: str) -> float:
    """Starting cation–anion distance (Å): sum of the ionic radii, at least 0.85 × the covalent sum."""
    ionic = ionic_radius(cation, charge) + ionic_radius(anion, ANION_CHARGE[anion])
    covalent = covalent_radii[atomic_numbers[cation]] + covalent_radii[atomic_numbers[anion]]
    return float(max(ionic, 0.85 * covalent))


@dataclass(frozen=True)
class Start:
    """A starting structure: its reduced formula (pymatgen), known before the geometry is made, and ``make()``
    → the Atoms (None if the geometry cannot be made), the same at every call. ``make`` draws from its own
    generator (seeded when the start is drawn), so planning a pool (formulas only) and building it consume
    the pool's generator alike."""

    formula: str
    make: Callable[[], Atoms | None]


def reduced_formula(numbers) -> str:
    """pymatgen's reduced formula of a list of atomic numbers."""
    import warnings
    from collections import Counter

    from pymatgen.core import Composition, Element

    composition = Composition({Element.from_Z(int(z)): n for z, n in Counter(np.asarray(numbers).tolist()).items()})
    with warnings.catch_warnings():  # noble gases have no Pauling electronegativity (sorted as NaN)
        warnings.filterwarnings("ignore", "No Pauling electronegativity")
        return composition.reduced_formula


def ready(atoms: Atoms | None) -> Start | None:
    """A :class:`Start` of Atoms made already."""
    return None if atoms is None else Start(reduced_formula(atoms.numbers), lambda: atoms)


# ----------------------------------------------------------------------------------------- prototypes


@dataclass(frozen=True)
class Prototype:
    """An ionic prototype: cation sites (``cation_counts`` per formula unit, one per cation role), anion count
    per formula unit, and ``build(d)`` → Atoms of the conventional (or primitive) cell for a cation–anion
    distance ``d`` Å of the ``scale_role`` cation, with ``tags`` = role index (anions: len(cation_counts))."""

    name: str
    cation_counts: tuple[int, ...]
    anion_count: int
    build_unit: Callable[[float], Atoms]
    scale_role: int = 0
    large_roles: tuple[int, ...] = ()

    def build(self, d: float) -> Atoms:
        """The cell for cation–anion distance ``d`` Å (the d = 1 Å cell, made once, scaled)."""
        atoms = _unit_cell(self)
        atoms.set_cell(atoms.cell.array * d, scale_atoms=True)
        return atoms


@lru_cache(maxsize=None)
def _unit_cells(prototype: "Prototype") -> Atoms:
    return prototype.build_unit(1.0)


def _unit_cell(prototype: "Prototype") -> Atoms:
    return _unit_cells(prototype).copy()


def _crystal(symbols: list[str], basis: list[tuple[float, float, float]], spacegroup: int,
             cellpar: list[float], setting: int = 1, primitive: bool = False) -> Atoms:
    """ASE's :func:`ase.spacegroup.crystal` with site tags = index into ``symbols`` (placeholders)."""
    from ase.spacegroup import crystal

    atoms = crystal(symbols, basis=basis, spacegroup=spacegroup, cellpar=cellpar, setting=setting,
                    primitive_cell=primitive)
    atoms.set_tags(atoms.get_array("spacegroup_kinds"))
    del atoms.arrays["spacegroup_kinds"]
    return atoms


# placeholder species: roles are read from tags, the symbols are replaced later
_P = ["H", "He", "Li", "Be"]


def _rocksalt(d: float) -> Atoms:
    return _crystal(_P[:2], [(0, 0, 0), (0.5, 0.5, 0.5)], 225, [2 * d] * 3 + [90] * 3, primitive=True)


def _zincblende(d: float) -> Atoms:
    a = 4 * d / np.sqrt(3)
    return _crystal(_P[:2], [(0, 0, 0), (0.25, 0.25, 0.25)], 216, [a] * 3 + [90] * 3, primitive=True)


def _wurtzite(d: float) -> Atoms:
    a = d * np.sqrt(8 / 3)
    return _crystal(_P[:2], [(1 / 3, 2 / 3, 0), (1 / 3, 2 / 3, 3 / 8)], 186, [a, a, a * np.sqrt(8 / 3), 90, 90, 120])


def _cscl(d: float) -> Atoms:
    a = 2 * d / np.sqrt(3)
    return _crystal(_P[:2], [(0, 0, 0), (0.5, 0.5, 0.5)], 221, [a] * 3 + [90] * 3)


def _fluorite(d: float) -> Atoms:  # cation 4a, anion 8c: AX2
    a = 4 * d / np.sqrt(3)
    return _crystal(_P[:2], [(0, 0, 0), (0.25, 0.25, 0.25)], 225, [a] * 3 + [90] * 3, primitive=True)


def _antifluorite(d: float) -> Atoms:  # cation 8c, anion 4a: A2X
    a = 4 * d / np.sqrt(3)
    return _crystal(_P[:2], [(0.25, 0.25, 0.25), (0, 0, 0)], 225, [a] * 3 + [90] * 3, primitive=True)


def _rutile(d: float) -> Atoms:
    a = d / 0.43  # TiO2: a 4.59 Å, Ti–O 1.96 Å
    return _crystal(_P[:2], [(0, 0, 0), (0.305, 0.305, 0)], 136, [a, a, 0.644 * a, 90, 90, 90])


def _cdi2(d: float) -> Atoms:  # CdI2 / 1T layered AX2
    a = d * np.sqrt(2)
    return _crystal(_P[:2], [(0, 0, 0), (1 / 3, 2 / 3, 0.25)], 164, [a, a, 1.6 * a, 90, 90, 120])


def _perovskite(d: float) -> Atoms:  # A 1b, B 1a, X 3d
    a = 2 * d
    return _crystal(_P[:3], [(0.5, 0.5, 0.5), (0, 0, 0), (0.5, 0, 0)], 221, [a] * 3 + [90] * 3)


def _layered(d: float) -> Atoms:  # α-NaFeO2 (LiCoO2): A 3a, B 3b, X 6c, R-3m, rhombohedral primitive
    a = d * np.sqrt(2)
    return _crystal(_P[:3], [(0, 0, 0), (0, 0, 0.5), (0, 0, 0.25)], 166, [a, a, 4.99 * a, 90, 90, 120],
                    primitive=True)


def _spinel(d: float) -> Atoms:  # AB2X4, Fd-3m origin 2: A 8a, B 16d, X 32e (u 0.26), primitive (14 atoms)
    a = d / 0.245  # MgAl2O4: a 8.08 Å, Al–O 1.93 Å
    return _crystal(_P[:3], [(0.125, 0.125, 0.125), (0.5, 0.5, 0.5), (0.26, 0.26, 0.26)], 227,
                    [a] * 3 + [90] * 3, setting=2, primitive=True)


def _corundum(d: float) -> Atoms:  # A2X3, R-3c hexagonal axes: A 12c z 0.352, X 18e x 0.306; primitive
    a = d / 0.5  # Al2O3: a 4.76 Å, Al–O ~1.91 Å
    return _crystal(_P[:2], [(0, 0, 0.352), (0.306, 0, 0.25)], 167, [a, a, 2.73 * a, 90, 90, 120],
                    primitive=True)


def _olivine(d: float) -> Atoms:  # A B2... forsterite Mg2SiO4 in Pnma: M1 4a, M2 4c, T 4c, O 4c, 4c, 8d
    s = d / 2.1  # Mg–O 2.1 Å in forsterite (a 10.2, b 5.98, c 4.76)
    return _crystal(_P[:3] + ["Be", "Be", "Be"],
                    [(0, 0, 0), (0.277, 0.25, 0.991), (0.094, 0.25, 0.426),
                     (0.092, 0.25, 0.766), (0.447, 0.25, 0.221), (0.163, 0.033, 0.278)], 62,
                    [10.2 * s, 5.98 * s, 4.76 * s, 90, 90, 90])


def _olivine_tags(atoms: Atoms) -> Atoms:
    tags = atoms.get_tags()
    atoms.set_tags(np.minimum(tags, 3))
    return atoms


PROTOTYPES = (
    Prototype("rocksalt", (1,), 1, _rocksalt),
    Prototype("zincblende", (1,), 1, _zincblende),
    Prototype("wurtzite", (1,), 1, _wurtzite),
    Prototype("cscl", (1,), 1, _cscl),
    Prototype("fluorite", (1,), 2, _fluorite),
    Prototype("antifluorite", (2,), 1, _antifluorite),
    Prototype("rutile", (1,), 2, _rutile),
    Prototype("cdi2", (1,), 2, _cdi2),
    Prototype("perovskite", (1, 1), 3, _perovskite, scale_role=1, large_roles=(0,)),
    Prototype("layered", (1, 1), 2, _layered, scale_role=1),
    Prototype("spinel", (1, 2), 4, _spinel, scale_role=1),
    Prototype("corundum", (2,), 3, _corundum),
    Prototype("olivine", (1, 1, 1), 4, lambda d: _olivine_tags(_olivine(d)), scale_role=0, large_roles=(1,)),
)


#: cations weighted up in the draws: the elements MP computes with a Hubbard U (+U oxides/fluorides are ~24 %
#: of MPtrj's frames)
U_ELEMENTS = ("Co", "Cr", "Fe", "Mn", "Mo", "Ni", "V", "W")
U_WEIGHT = 2.0
#: anions that take only metal cations (no Se/Te/As/Sb cation with them)
_METAL_ONLY_ANIONS = {"N", "H", "P", "C", "S", "Se", "Te"}
_METALLOID_CATIONS = {"Se", "Te", "As", "Sb"}


def pick_cation(names: list[str], rng: np.random.Generator) -> str:
    """One of ``names``, the :data:`U_ELEMENTS` :data:`U_WEIGHT` times as likely as the others."""
    weights = np.array([U_WEIGHT if n in U_ELEMENTS else 1.0 for n in names])
    return names[int(rng.choice(len(names), p=weights / weights.sum()))]


def charge_assignments(prototype: Prototype, anion: str, rng: np.random.Generator,
                       tries: int = 40) -> tuple[tuple[str, int], ...] | None:
    """Elements with oxidation states, one per cation role of ``prototype``, that balance ``anion_count`` ×
    the charge of ``anion`` (distinct elements; large cations on ``large_roles``; metals only with
    N, H, P, C and the chalcogenides). None if none found in ``tries``."""
    states = cation_states()
    target = -prototype.anion_count * ANION_CHARGE[anion]
    excluded = _METALLOID_CATIONS if anion in _METAL_ONLY_ANIONS else set()
    roles = len(prototype.cation_counts)
    for _ in range(tries):
        chosen: list[tuple[str, int]] = []
        for role in range(roles):
            names = [e for e in (LARGE_CATIONS if role in prototype.large_roles else CATIONS)
                     if e in states and e not in excluded and e not in {c for c, _ in chosen}]
            if role == roles - 1:  # the last role's charge is fixed by the balance
                rest = target - sum(n * q for n, (_, q) in zip(prototype.cation_counts, chosen))
                charge, remainder = divmod(rest, prototype.cation_counts[role])
                if remainder or charge < 1:
                    break
                names = [e for e in names if charge in states[e]]
                if not names:
                    break
                chosen.append((pick_cation(names, rng), int(charge)))
            else:
                element = pick_cation(names, rng)
                chosen.append((element, int(rng.choice(states[element]))))
        else:
            return tuple(chosen)
    return None


@lru_cache(maxsize=1)
def _substitution_table():
    import warnings

    from pymatgen.analysis.structure_prediction.substitution_probability import SubstitutionProbability

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return SubstitutionProbability()


@lru_cache(maxsize=None)
def substitution_weights(element: str, charge: int) -> tuple[tuple[str, ...], np.ndarray]:
    """The other cations with oxidation state ``charge`` and their weights: pymatgen's substitution
    probability towards ``element``\\ :sup:`charge+`, plus 0.2 × the mean (rare partners stay possible)."""
    from pymatgen.core import Species

    table = _substitution_table()
    candidates = tuple(sorted(e for e, s in cation_states().items() if charge in s and e != element))
    weights = np.array([table.prob(Species(e, charge), Species(element, charge)) for e in candidates])
    weights = np.where(np.isfinite(weights) & (weights > 0), weights, 0.0)
    if len(candidates):
        weights = weights + 0.2 * (weights.sum() or 1.0) / len(candidates)
    return candidates, weights


def isovalent_partner(element: str, charge: int, exclude: set[str], rng: np.random.Generator) -> str | None:
    """Another cation with oxidation state ``charge``, not in ``exclude``, drawn with
    :func:`substitution_weights`."""
    candidates, weights = substitution_weights(element, charge)
    keep = np.array([e not in exclude for e in candidates], dtype=bool)
    if not keep.any():
        return None
    names = [e for e, k in zip(candidates, keep) if k]
    return names[int(rng.choice(len(names), p=weights[keep] / weights[keep].sum()))]


def supercell_to(atoms: Atoms, min_atoms: int, max_atoms: int = MAX_START_ATOMS) -> Atoms:
    """Repeat along the shortest cell vector until at least ``min_atoms`` (never beyond ``max_atoms``)."""
    reps = [1, 1, 1]
    lengths = atoms.cell.lengths()
    while len(atoms) * np.prod(reps) < min_atoms:
        k = int(np.argmin([lengths[i] * reps[i] for i in range(3)]))
        reps[k] += 1
        if len(atoms) * np.prod(reps) > max_atoms:
            reps[k] -= 1
            break
    return atoms.repeat(reps)


def substitute(atoms: Atoms, site_mask: np.ndarray, partner: str, rng: np.random.Generator) -> Atoms:
    """A copy with a random half (at least one, not all) of the ``site_mask`` sites taken by ``partner``."""
    sites = np.flatnonzero(site_mask)
    count = int(np.clip(round(len(sites) * rng.uniform(0.25, 0.75)), 1, len(sites) - 1))
    out = atoms.copy()
    numbers = out.numbers.copy()
    numbers[rng.choice(sites, count, replace=False)] = atomic_numbers[partner]
    out.numbers = numbers
    return out


def ionic_crystal(prototype: Prototype, anion: str, rng: np.random.Generator,
                  substitutions: int = 0) -> Atoms | None:
    """A charge-balanced ``prototype`` with ``anion``, lattice from the ionic radii, optionally with
    ``substitutions`` isovalent cation substitutions on a supercell (each adds one element)."""
    assignment = charge_assignments(prototype, anion, rng)
    if assignment is None:
        return None
    scale_element, scale_charge = assignment[prototype.scale_role]
    atoms = prototype.build(bond_length(scale_element, scale_charge, anion) * rng.uniform(0.97, 1.05))
    tags = atoms.get_tags()
    roles = len(prototype.cation_counts)
    numbers = np.array([atomic_numbers[anion] if t >= roles else atomic_numbers[assignment[t][0]] for t in tags])
    atoms = Atoms(numbers, positions=atoms.positions, cell=atoms.cell.array, pbc=True)
    tags = np.where(tags >= roles, roles, tags)
    used = {e for e, _ in assignment} | {anion}
    if substitutions:
        atoms = supercell_to(atoms, 8 * substitutions)
        tags = np.tile(tags, len(atoms) // len(tags))
        for _ in range(substitutions):
            role = int(rng.integers(roles))
            element, charge = assignment[role]
            mask = (tags == role) & (atoms.numbers == atomic_numbers[element])
            if mask.sum() < 2:
                continue
            partner = isovalent_partner(element, charge, used, rng)
            if partner is None:
                continue
            atoms = substitute(atoms, mask, partner, rng)
            used.add(partner)
    return atoms if len(atoms) <= MAX_START_ATOMS else None


# ------------------------------------------------------------------------------------ intermetallics


def intermetallic(rng: np.random.Generator, n_elements: int) -> Atoms:
    """An ordered (random-decoration) alloy of ``n_elements`` metals on an fcc, bcc or hcp supercell of 8–32
    sites; lattice from the mean covalent radius (nearest neighbours at 2.1 × that)."""
    from ase.build import bulk

    metals = list(rng.choice(METALS, n_elements, replace=False))
    radius = float(np.mean([covalent_radii[atomic_numbers[m]] for m in metals]))
    d = 2.1 * radius * rng.uniform(0.95, 1.03) * 0.75
    lattice = ("fcc", "bcc", "hcp")[int(rng.integers(3))]
    if lattice == "fcc":
        base = bulk("Cu", "fcc", a=d * np.sqrt(2), cubic=True)
    elif lattice == "bcc":
        base = bulk("Fe", "bcc", a=2 * d / np.sqrt(3), cubic=True)
    else:
        base = bulk("Mg", "hcp", a=d, c=d * 1.633)
    atoms = supercell_to(base, int(rng.choice([8, 12, 16, 24, 32])))
    while True:  # every metal at least once
        numbers = np.array([atomic_numbers[m] for m in rng.choice(metals, len(atoms))])
        if len(set(numbers)) == n_elements:
            break
    return Atoms(numbers, positions=atoms.positions, cell=atoms.cell.array, pbc=True)


# ----------------------------------------------------------------------------------- polyanion salts


#: molecular anions of the mixed salts (names of :data:`geodite.train.molecular.ANIONS`)
POLYANIONS = ("PO4", "SO4", "SiO4", "BO3", "CO3", "NO3", "AsO4", "VO4", "SeO4", "MoO4", "WO4", "CrO4", "ClO4",
              "BF4", "PF6", "SiF6", "OH", "C2O4")


def polyanion_salt(rng: np.random.Generator, max_atoms: int = 48) -> Start | None:
    """Two cations (an alkali or alkaline earth and a transition metal, lanthanide or p-block cation, each
    with one of its oxidation states, the latter ≤ 4) with a molecular anion, charge-balanced, to be packed
    at random (:func:`geodite.train.molecular.pack_units`) in a cell of U(0.6, 0.9) × the van-der-Waals
    volume. None if it exceeds ``max_atoms``."""
    from math import gcd

    from geodite.train.molecular import ANIONS, pack_units

    states = cation_states()
    name = POLYANIONS[int(rng.integers(len(POLYANIONS)))]
    anion = next(a for a in ANIONS if a.name == name)
    first = [e for e in ALKALI + ALKALINE_EARTH if e in states]
    second = [e for e in TRANSITION_METALS + LANTHANIDES + POST_TRANSITION if e in states and e != anion.centre]
    a = first[int(rng.integers(len(first)))]
    b = pick_cation(second, rng)
    qa = int(rng.choice(states[a]))
    qb = int(rng.choice([q for q in states[b] if q <= 4] or [min(states[b])]))
    na, nb = 1, int(rng.integers(1, 3))
    positive = na * qa + nb * qb
    common = gcd(positive, -anion.charge)
    nx, scale = positive // common, -anion.charge // common
    na, nb = na * scale, nb * scale
    units = [Atoms(a, positions=[[0, 0, 0]])] * na + [Atoms(b, positions=[[0, 0, 0]])] * nb + [anion.atoms()] * nx
    if sum(len(u) for u in units) > max_atoms:
        return None
    volume_factor = float(rng.uniform(0.6, 0.9))
    seed = int(rng.integers(2**63))
    numbers = np.concatenate([u.numbers for u in units])
    return Start(reduced_formula(numbers),
                 lambda: pack_units([u.copy() for u in units], np.random.default_rng(seed), volume_factor))


# --------------------------------------------------------------------------------------- pyxtal crystals


#: common MP space groups tried for the random symmetric crystals
PYXTAL_SPACE_GROUPS = (2, 12, 14, 15, 62, 63, 139, 148, 166, 194, 225, 221, 227, 191, 129, 71)


def random_symmetric(rng: np.random.Generator, anion: str, n_cations: int) -> Start | None:
    """A ``pyxtal`` random crystal of a charge-balanced, ``smact``-valid composition (``n_cations`` cations,
    1–2 of each per formula unit, with ``anion``) in one of :data:`PYXTAL_SPACE_GROUPS` compatible with
    Z = 1, 2 or 4 formula units (≤ :data:`MAX_START_ATOMS`); None if the composition fails the screen
    (``make()`` gives None if pyxtal cannot place it)."""
    states = cation_states()
    excluded = _METALLOID_CATIONS if anion in _METAL_ONLY_ANIONS else set()
    names = [e for e in CATIONS if e in states and e not in excluded]
    elements: list[str] = []
    while len(elements) < n_cations:
        element = pick_cation([e for e in names if e not in elements], rng)
        elements.append(element)
    charges = [int(rng.choice(states[e])) for e in elements]
    counts = [int(rng.integers(1, 3)) for _ in elements]
    positive = sum(c * q for c, q in zip(counts, charges))
    anion_q = -ANION_CHARGE[anion]
    if positive % anion_q:
        counts = [c * anion_q for c in counts]
        positive *= anion_q
    counts = counts + [positive // anion_q]
    species = elements + [anion]
    if sum(counts) > MAX_START_ATOMS or not smact_valid(species, counts):
        return None
    seed = int(rng.integers(2**63))
    numbers = np.repeat([atomic_numbers[e] for e in species], counts)
    return Start(reduced_formula(numbers), lambda: _pyxtal_crystal(species, counts, np.random.default_rng(seed)))


def _pyxtal_crystal(species: list[str], counts: list[int], rng: np.random.Generator, tries: int = 3) -> Atoms | None:
    """pyxtal's random crystal of ``species``×``counts``×Z in a compatible group of
    :data:`PYXTAL_SPACE_GROUPS` (``tries`` groups drawn), or None."""
    import warnings

    from pyxtal import pyxtal
    from pyxtal.symmetry import Group

    for _ in range(tries):
        group = int(rng.choice(PYXTAL_SPACE_GROUPS))
        seed = int(rng.integers(2**31))
        for z in (1, 2, 4):
            numbers = [c * z for c in counts]
            if sum(numbers) > MAX_START_ATOMS or not Group(group).check_compatible(numbers)[0]:
                continue
            crystal = pyxtal()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                try:
                    crystal.from_random(3, group, species, numbers, random_state=seed)
                except Exception:  # pyxtal could not place the sites: try another Z or group
                    continue
            if crystal.valid:
                atoms = crystal.to_ase()
                return Atoms(atoms.numbers, positions=atoms.positions, cell=atoms.cell.array, pbc=True)
    return None


def smact_valid(species: list[str], counts: list[int]) -> bool:
    """``smact``'s charge-neutrality and electronegativity screen of a composition."""
    from pymatgen.core import Composition
    from smact.screening import smact_validity

    return bool(smact_validity(Composition(dict(zip(species, counts))).reduced_formula))


# ----------------------------------------------------------------------------------------------- the mix


#: prototypes by name, and the draw weights of each for the ionic kinds (ternary and richer ones favoured)
PROTOTYPE_WEIGHTS = {"rocksalt": 1.0, "zincblende": 0.5, "wurtzite": 0.5, "cscl": 0.3, "fluorite": 0.7,
                     "antifluorite": 0.5, "rutile": 0.8, "cdi2": 0.8, "perovskite": 2.0, "layered": 2.0,
                     "spinel": 1.5, "corundum": 1.0, "olivine": 1.5}
_BY_NAME = {p.name: p for p in PROTOTYPES}
#: isovalent substitutions per ionic structure, and their probabilities
SUBSTITUTIONS = ((0, 1, 2), (0.3, 0.45, 0.25))


@dataclass(frozen=True)
class Kind:
    """One kind of generated start: ``anions`` drawn uniformly for ionic kinds."""

    name: str
    draw: Callable[[np.random.Generator], Start | None]


def _ionic(anions: tuple[str, ...]) -> Callable[[np.random.Generator], Start | None]:
    names = sorted(PROTOTYPE_WEIGHTS)
    weights = np.array([PROTOTYPE_WEIGHTS[n] for n in names])

    def draw(rng: np.random.Generator) -> Start | None:
        prototype = _BY_NAME[names[int(rng.choice(len(names), p=weights / weights.sum()))]]
        anion = anions[int(rng.integers(len(anions)))]
        substitutions = int(rng.choice(SUBSTITUTIONS[0], p=SUBSTITUTIONS[1]))
        return ready(ionic_crystal(prototype, anion, rng, substitutions))

    return draw


def _pyxtal(anions: tuple[str, ...]) -> Callable[[np.random.Generator], Start | None]:
    def draw(rng: np.random.Generator) -> Start | None:
        anion = anions[int(rng.integers(len(anions)))]
        return random_symmetric(rng, anion, int(rng.integers(1, 4)))

    return draw


def _intermetallic(rng: np.random.Generator) -> Start | None:
    return ready(intermetallic(rng, int(rng.choice([2, 3, 4], p=[0.4, 0.4, 0.2]))))


KINDS = {
    "oxide": Kind("oxide", _ionic(("O",))),
    "fluoride": Kind("fluoride", _ionic(("F",))),
    "chalcogenide": Kind("chalcogenide", _ionic(("S", "S", "Se", "Te"))),
    "nitride": Kind("nitride", _ionic(("N",))),
    "halide": Kind("halide", _ionic(("Cl", "Br", "I"))),
    "hpc": Kind("hpc", _ionic(("H", "P", "C"))),
    "polyanion": Kind("polyanion", polyanion_salt),
    "pyxoxide": Kind("pyxoxide", _pyxtal(("O",))),
    "pyxother": Kind("pyxother", _pyxtal(("F", "S", "N", "Cl"))),
    "intermetallic": Kind("intermetallic", _intermetallic),
}


def draw_starts(kind: str, count: int, rng: np.random.Generator, max_tries: int = 20) -> list[Start]:
    """``count`` starts of ``kind`` (:data:`KINDS`), redrawing (at most ``max_tries`` × count times) those
    that cannot be made and those with a benchmark input's formula
    (:func:`geodite.train.compliance.excluded_formulas`)."""
    from geodite.train.compliance import excluded_formulas

    excluded = excluded_formulas()
    out: list[Start] = []
    tries = 0
    while len(out) < count and tries < max_tries * count:
        tries += 1
        start = KINDS[kind].draw(rng)
        if start is not None and start.formula not in excluded:
            out.append(start)
    return out
