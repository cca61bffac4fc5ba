"""Disjointness of a training pool from the benchmarks' test inputs.

The inputs (:func:`benchmark_inputs`): the 1,000 WBM relaxed structures and the 1,000 WBM initial
structures (``bench discovery``), the 103 phononDB κ materials the offline κ task builds from formula and
prototype (``bench kappa``), the argyrodite AIMD systems (``bench md``) and the 1,000 frames of
``mptrj-random-1k.xyz`` (``geodite eval``'s held-out test set).

The rule (:func:`violations`), stronger than "same composition and a StructureMatcher match":

* a pool structure of two or more elements may not share its reduced formula with any input at all,
  whatever its structure;
* a single-element structure may share the element (elemental references are not a test set) but not the
  structure: no pymatgen ``StructureMatcher`` match (default tolerances, ``scale=False``: same structure at a
  comparable density) with an input of that element.

Reading the test inputs here is for checking only: nothing in a pool is drawn from them. The one thing the
generated pools take from them is negative: :data:`FORMULA_LIST` (``tools/benchmark_formulas.py`` writes it
from :func:`benchmark_inputs`) names the reduced formulas a generated structure must not have.
"""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from ase import Atoms

#: package data: the multi-element reduced formulas of every benchmark input, one a line, sorted
FORMULA_LIST = "benchmark-formulas.txt"

#: the pools proven disjoint from every benchmark input by the rule below (tests/train/test_pool_v8.py), with
#: what a model distilled on one is, in Matbench Discovery's terms
DISJOINT_POOLS = {
    "v8": "yes: distilled from SevenNet-0 (MPtrj only) on generated crystals, heteronuclear pairs and isolated "
          "atoms, none sharing a formula or structure with a benchmark input (no homonuclear dimers)",
}


def pool_compliance(pool: str | None) -> str:
    """Whether a model distilled on ``pool`` (its checkpoint's ``metadata["pool"]``) is compliant, with the
    reason: only the :data:`DISJOINT_POOLS` are (v1–v7 hold WBM structures, the discovery test set)."""
    if pool in DISJOINT_POOLS:
        return DISJOINT_POOLS[pool]
    return f"no: distilled on pool {pool or '(not recorded)'}, not proven disjoint from the benchmark inputs " \
           f"(v1–v7 hold WBM structures, the discovery test set)"


def formula_list_path() -> Path:
    """The package-data copy of :data:`FORMULA_LIST`."""
    from importlib import resources

    return Path(str(resources.files("geodite") / "data" / "files" / FORMULA_LIST))


def excluded_formulas(path: str | Path | None = None) -> frozenset[str]:
    """The reduced formulas a generated pool structure must not have (:data:`FORMULA_LIST`)."""
    return _read_formula_list(str(path or formula_list_path()))


@lru_cache(maxsize=2)
def _read_formula_list(path: str) -> frozenset[str]:
    return frozenset(line.strip() for line in Path(path).read_text().splitlines() if line.strip())


def multi_element_formulas(inputs: "BenchmarkInputs") -> list[str]:
    """The sorted reduced formulas of ``inputs`` with two or more elements (the content of
    :data:`FORMULA_LIST`)."""
    from pymatgen.core import Composition

    return sorted(f for f in inputs.formulas if len(Composition(f).elements) > 1)


@dataclass
class BenchmarkInputs:
    """Reduced formula → the inputs that have it (``"<source>:<id>"``), and the single-element inputs."""

    formulas: dict[str, set[str]] = field(default_factory=dict)
    elementals: list[tuple[str, Atoms]] = field(default_factory=list)

    def add(self, source: str, formula: str, atoms_of=None) -> None:
        """Record an input of ``formula`` (``atoms_of()`` → its Atoms, called only for single elements)."""
        from pymatgen.core import Composition

        composition = Composition(formula)
        self.formulas.setdefault(composition.reduced_formula, set()).add(source)
        if len(composition.elements) == 1 and atoms_of is not None:
            self.elementals.append((source, atoms_of()))


def xdatcar_formula(path: Path) -> str:
    """The formula of a (gzipped) VASP XDATCAR from its header (species and counts lines)."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt") as handle:
        lines = [next(handle) for _ in range(7)]
    return "".join(f"{s}{n}" for s, n in zip(lines[5].split(), lines[6].split()))


def _periodic(atoms: Atoms) -> Atoms:
    return Atoms(atoms.numbers, positions=atoms.positions, cell=atoms.cell.array, pbc=True)


def periodic_atoms(structure_dict: dict) -> Atoms:
    """A pymatgen structure (``Structure.as_dict()``) as fully periodic ase.Atoms (numbers, positions Å, cell)."""
    from pymatgen.core import Structure
    from pymatgen.io.ase import AseAtomsAdaptor

    return _periodic(AseAtomsAdaptor.get_atoms(Structure.from_dict(structure_dict)))


def benchmark_inputs(root: Path) -> BenchmarkInputs:
    """Every shipped benchmark input: WBM relaxed and initial (``root/wbm``), the offline κ materials,
    the argyrodite MD systems (package data) and ``root/mptrj/mptrj-random-1k.xyz``."""
    from ase.db import connect
    from ase.io import read

    from geodite.data.kappa import load_materials
    from geodite.data.md_reference import load_reference_set

    inputs = BenchmarkInputs()
    with gzip.open(root / "wbm" / "wbm-random-pbe54-equilibrium-2025.1.json.gz", "rt") as handle:
        for row in json.load(handle):
            inputs.add(f"wbm:{row['material_id']}", row["formula"],
                       lambda row=row: periodic_atoms(row["structure"]))
    for row in connect(str(root / "wbm" / "wbm-initial-1k.db")).select():
        inputs.add(f"wbm-initial:{row.get('wbm_id', row.id)}", row.formula, lambda row=row: _periodic(row.toatoms()))
    for material in load_materials():
        inputs.add(f"kappa:{material['material_id']}", material["formula"])
    _, systems = load_reference_set()
    for system in systems:
        inputs.add(f"md:{system.name}", xdatcar_formula(system.folder / system.trajectory))
    for k, atoms in enumerate(read(root / "mptrj" / "mptrj-random-1k.xyz", index=":")):
        inputs.add(f"mptrj-random-1k:{k}", atoms.get_chemical_formula(), lambda atoms=atoms: _periodic(atoms))
    return inputs


def violations(pool: list[tuple[str, str]], elementals: list[tuple[str, Atoms]],
               inputs: BenchmarkInputs) -> list[str]:
    """Breaches of the rule: ``pool`` is (uid, formula) of every structure, ``elementals`` the
    (uid, Atoms) of its single-element structures. Each breach: ``"<uid> <formula>: <inputs>"``."""
    from pymatgen.analysis.structure_matcher import StructureMatcher
    from pymatgen.core import Composition
    from pymatgen.io.ase import AseAtomsAdaptor

    out = []
    for uid, formula in pool:
        composition = Composition(formula)
        formula = composition.reduced_formula
        if len(composition.elements) > 1 and formula in inputs.formulas:
            out.append(f"{uid} {formula}: {', '.join(sorted(inputs.formulas[formula])[:3])}")
    matcher = StructureMatcher(scale=False)
    by_element: dict[str, list] = {}
    for source, atoms in inputs.elementals:
        by_element.setdefault(atoms.get_chemical_symbols()[0], []).append(
            (source, AseAtomsAdaptor.get_structure(atoms)))
    for uid, atoms in elementals:
        for source, structure in by_element.get(atoms.get_chemical_symbols()[0], []):
            if matcher.fit(AseAtomsAdaptor.get_structure(_periodic(atoms)), structure):
                out.append(f"{uid} {atoms.get_chemical_formula()}: matches {source}")
    return out
