"""Molecular structures for the distillation pool: gas-phase molecules, molecular ions in salts and hydrates,
and packings of neutral molecules.

MP (and so MPtrj) holds many crystals built of molecular units — carbonates, nitrates, sulfates, phosphates,
oxalates, ammonium salts, hydrates — whose short covalent bonds (C–O, N–O, N–H, O–H, S–O, P–O) the WBM and
elemental structures of the earlier pools barely contain. These builders make such local environments from
nothing but geometry: ideal shapes (linear, bent, trigonal, tetrahedral, octahedral) with bond lengths from
ASE's covalent radii, packed at random in a cubic cell. They are *starting points*: the pool relaxes them
a few steps with the teacher (:func:`geodite.train.distill.label_relaxations`), as an MP relaxation
trajectory would, and labels the frames along the way. No energy or structure here is a reference value.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import gcd

import numpy as np
from ase import Atoms
from ase.collections import g2
from ase.data import atomic_numbers, covalent_radii, vdw_radii
from pymatgen.core import Element

#: bond length = this × (sum of covalent radii): close to the real C–O, N–O, B–O, Si–O, P–O bonds (within
#: ~0.1 Å; the teacher relaxation corrects the rest)
BOND_FACTOR = 0.93


def _directions(shape: str) -> np.ndarray:
    """Unit vectors from a central atom to its ligands for an ideal ``shape``."""
    if shape == "linear":
        return np.array([[1.0, 0.0, 0.0]])
    if shape == "bent":  # ~117° (nitrite), ~104° (water) both relax quickly from here
        half = np.radians(58.0)
        return np.array([[np.cos(half), np.sin(half), 0.0], [np.cos(half), -np.sin(half), 0.0]])
    if shape == "trigonal":
        angles = np.radians([0.0, 120.0, 240.0])
        return np.stack([np.cos(angles), np.sin(angles), np.zeros(3)], axis=1)
    if shape == "tetrahedral":
        return np.array([[1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]], dtype=float) / np.sqrt(3.0)
    if shape == "octahedral":
        return np.concatenate([np.eye(3), -np.eye(3)])
    raise ValueError(f"unknown shape {shape!r}")


def _bond(a: str, b: str) -> float:
    """Initial bond length (Å) between elements ``a`` and ``b``."""
    return BOND_FACTOR * (covalent_radii[atomic_numbers[a]] + covalent_radii[atomic_numbers[b]])


def centred_unit(centre: str, ligand: str | None = None, shape: str | None = None) -> Atoms:
    """A molecular unit: ``centre`` with ligands on the ideal ``shape`` (or a single atom), centred at 0."""
    if ligand is None:
        return Atoms(centre, positions=[[0.0, 0.0, 0.0]])
    directions = _directions(shape)
    positions = np.concatenate([[[0.0, 0.0, 0.0]], _bond(centre, ligand) * directions])
    return Atoms(centre + ligand * len(directions), positions=positions)


def oxalate() -> Atoms:
    """C₂O₄: a C–C bond with two O on each carbon at 120°, planar."""
    cc, co = _bond("C", "C"), _bond("C", "O")
    carbons = np.array([[-cc / 2, 0.0, 0.0], [cc / 2, 0.0, 0.0]])
    oxygens = []
    for sign, carbon in zip((-1.0, 1.0), carbons):
        for angle in (60.0, -60.0):
            a = np.radians(angle)
            oxygens.append(carbon + co * np.array([sign * np.cos(a), np.sin(a), 0.0]))
    return Atoms("C2O4", positions=np.concatenate([carbons, oxygens]))


@dataclass(frozen=True)
class Ion:
    """A (molecular) ion or neutral unit: name, builder arguments, formal charge."""

    name: str
    charge: int
    centre: str
    ligand: str | None = None
    shape: str | None = None

    def atoms(self) -> Atoms:
        return oxalate() if self.name == "C2O4" else centred_unit(self.centre, self.ligand, self.shape)


#: anions: monatomic, and the molecular oxo-/fluoro-anions common in MP
ANIONS = (
    Ion("F", -1, "F"), Ion("Cl", -1, "Cl"), Ion("Br", -1, "Br"), Ion("I", -1, "I"), Ion("O", -2, "O"),
    Ion("S", -2, "S"), Ion("OH", -1, "O", "H", "linear"), Ion("CN", -1, "C", "N", "linear"),
    Ion("NO2", -1, "N", "O", "bent"), Ion("NO3", -1, "N", "O", "trigonal"),
    Ion("CO3", -2, "C", "O", "trigonal"), Ion("BO3", -3, "B", "O", "trigonal"),
    Ion("SO4", -2, "S", "O", "tetrahedral"), Ion("SeO4", -2, "Se", "O", "tetrahedral"),
    Ion("PO4", -3, "P", "O", "tetrahedral"), Ion("AsO4", -3, "As", "O", "tetrahedral"),
    Ion("VO4", -3, "V", "O", "tetrahedral"), Ion("SiO4", -4, "Si", "O", "tetrahedral"),
    Ion("ClO4", -1, "Cl", "O", "tetrahedral"), Ion("CrO4", -2, "Cr", "O", "tetrahedral"),
    Ion("MoO4", -2, "Mo", "O", "tetrahedral"), Ion("WO4", -2, "W", "O", "tetrahedral"),
    Ion("BF4", -1, "B", "F", "tetrahedral"), Ion("PF6", -1, "P", "F", "octahedral"),
    Ion("SiF6", -2, "Si", "F", "octahedral"), Ion("C2O4", -2, "C"),
)
AMMONIUM = Ion("NH4", 1, "N", "H", "tetrahedral")
WATER = Ion("H2O", 0, "O", "H", "bent")

#: elements never drawn as a cation
_NON_CATIONS = {"H", "He", "B", "C", "N", "O", "F", "Ne", "P", "S", "Cl", "Ar", "Se", "Br", "Kr", "I", "Xe"}


def cation_charges(elements: list[str]) -> dict[str, list[int]]:
    """Positive common oxidation states (1–4) of each element that can act as a cation (pymatgen)."""
    charges = {}
    for symbol in elements:
        if symbol in _NON_CATIONS:
            continue
        states = [s for s in Element(symbol).common_oxidation_states if 1 <= s <= 4]
        if states:
            charges[symbol] = states
    return charges


def _random_rotation(rng: np.random.Generator) -> np.ndarray:
    q = rng.normal(size=4)
    w, x, y, z = q / np.linalg.norm(q)
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                     [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                     [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])


def _min_separation(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Smallest allowed distance (Å) between atoms of different units, by atomic numbers."""
    ra, rb = covalent_radii[a][:, None], covalent_radii[b][None, :]
    hydrogen = (a[:, None] == 1) | (b[None, :] == 1)
    return np.maximum(np.where(hydrogen, 1.6, 2.2), 0.9 * (ra + rb))


def pack_units(units: list[Atoms], rng: np.random.Generator, volume_factor: float = 0.8,
               attempts: int = 200) -> Atoms | None:
    """Place ``units`` (each centred at 0) at random positions and orientations in a cubic periodic cell of
    volume ``volume_factor`` × Σ (4/3)π r_vdW³, keeping atoms of different units apart (:func:`_min_separation`,
    minimum image). The cell grows 8 % after each 25 failed placements. None if it never fits."""
    numbers = np.concatenate([u.numbers for u in units])
    radii = np.nan_to_num(vdw_radii[numbers], nan=2.0)
    length = (volume_factor * np.sum(4.0 / 3.0 * np.pi * radii**3)) ** (1.0 / 3.0)
    for attempt in range(attempts):
        if attempt and attempt % 25 == 0:
            length *= 1.08
        placed_pos: list[np.ndarray] = []
        placed_num: list[np.ndarray] = []
        for unit in units:
            for _ in range(60):
                pos = unit.positions @ _random_rotation(rng).T + rng.uniform(0, length, size=3)
                if placed_pos:
                    others, other_num = np.concatenate(placed_pos), np.concatenate(placed_num)
                    delta = pos[:, None, :] - others[None, :, :]
                    delta -= length * np.round(delta / length)
                    if (np.linalg.norm(delta, axis=-1) < _min_separation(unit.numbers, other_num)).any():
                        continue
                placed_pos.append(pos)
                placed_num.append(unit.numbers)
                break
            else:
                break
        else:
            atoms = Atoms(numbers=np.concatenate(placed_num), positions=np.concatenate(placed_pos),
                          cell=np.eye(3) * length, pbc=True)
            atoms.wrap()
            return atoms
    return None


def salt_units(cation: str, cation_charge: int, anion: Ion, rng: np.random.Generator,
               max_atoms: int = 40) -> list[Atoms] | None:
    """Units of a charge-neutral salt of ``cation`` (charge ``cation_charge``; "NH4" for ammonium) and
    ``anion``, one or two formula units, sometimes hydrated (1–3 H₂O per formula unit). None if too big."""
    n_cat, n_an = -anion.charge, cation_charge
    common = gcd(n_cat, n_an)
    n_cat, n_an = n_cat // common, n_an // common
    cation_unit = AMMONIUM.atoms() if cation == "NH4" else Atoms(cation, positions=[[0.0, 0.0, 0.0]])
    formula = [cation_unit] * n_cat + [anion.atoms()] * n_an
    if rng.random() < 0.3:
        formula += [WATER.atoms()] * int(rng.integers(1, 4))
    per_fu = sum(len(u) for u in formula)
    if per_fu > max_atoms:
        return None
    copies = 2 if 2 * per_fu <= max_atoms and (per_fu < 10 or rng.random() < 0.5) else 1
    return [u.copy() for _ in range(copies) for u in formula]


def molecular_salts(elements: list[str], count: int, rng: np.random.Generator,
                    max_atoms: int = 40, first_index: int = 0) -> list[tuple[str, Atoms]]:
    """``count`` random packed salts (uid, atoms): a cation drawn from ``elements`` (or ammonium, 1 in 8)
    with an anion of :data:`ANIONS` (molecular ones 3 in 4). Uids are numbered from ``first_index``."""
    charges = cation_charges(elements)
    cations = sorted(charges)
    molecular = [a for a in ANIONS if a.ligand is not None or a.name == "C2O4"]
    simple = [a for a in ANIONS if a not in molecular]
    out: list[tuple[str, Atoms]] = []
    tries = 0
    while len(out) < count and tries < 20 * count:
        tries += 1
        if rng.random() < 0.125:
            cation, charge = "NH4", 1
        else:
            cation = cations[int(rng.integers(len(cations)))]
            charge = int(rng.choice(charges[cation]))
        pool = molecular if rng.random() < 0.75 else simple
        anion = pool[int(rng.integers(len(pool)))]
        units = salt_units(cation, charge, anion, rng, max_atoms)
        if units is None:
            continue
        atoms = pack_units(units, rng, volume_factor=float(rng.uniform(0.55, 0.9)))
        if atoms is None:
            continue
        out.append((f"salt-{first_index + len(out):04d}-{cation}{charge}-{anion.name}/packed", atoms))
    return out


def g2_molecules(min_atoms: int = 2, box: float = 12.0) -> list[tuple[str, Atoms]]:
    """ASE's G2 molecules (≥ ``min_atoms`` atoms) centred in a periodic cubic ``box`` (Å), wide enough
    that no atom sees another molecule within a 5 Å cutoff."""
    out = []
    for name in g2.names:
        molecule = g2[name]
        if len(molecule) < min_atoms:
            continue
        atoms = Atoms(molecule.numbers, positions=molecule.positions, cell=np.eye(3) * box, pbc=True)
        atoms.positions += box / 2 - atoms.positions.mean(axis=0)
        out.append((f"g2-{name}", atoms))
    return out


def molecular_packings(count: int, rng: np.random.Generator, max_atoms: int = 40,
                       first_index: int = 0) -> list[tuple[str, Atoms]]:
    """``count`` random packings (uid, atoms) of 2–8 copies of one closed-shell-sized G2 molecule (≥ 3
    atoms): molecular crystals' intermolecular contacts. Uids are numbered from ``first_index``."""
    names = [n for n in g2.names if 3 <= len(g2[n]) <= max_atoms // 2]
    out = []
    while len(out) < count:
        name = names[int(rng.integers(len(names)))]
        molecule = g2[name]
        unit = Atoms(molecule.numbers, positions=molecule.positions - molecule.positions.mean(axis=0))
        copies = int(rng.integers(2, max(3, min(8, max_atoms // len(unit)) + 1)))
        atoms = pack_units([unit.copy() for _ in range(copies)], rng, volume_factor=float(rng.uniform(0.7, 1.0)))
        if atoms is not None:
            out.append((f"molpack-{first_index + len(out):04d}-{name}/packed", atoms))
    return out
