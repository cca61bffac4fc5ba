"""The v8 pool: generated Materials-Project-like starts, disjoint from every shipped benchmark input.

The disjointness rule (geodite.train.compliance): no multi-element pool structure shares a reduced formula
with a benchmark input; no single-element one matches (StructureMatcher) a benchmark input of its element.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk
from pymatgen.core import Composition

from geodite.train import chemistry
from geodite.train.compliance import (
    DISJOINT_POOLS,
    BenchmarkInputs,
    benchmark_inputs,
    excluded_formulas,
    multi_element_formulas,
    pool_compliance,
    violations,
    xdatcar_formula,
)
from geodite.train.pool_stats import mix_stats
from geodite.train.pools import POOLS, START_SUFFIX, default_data_root, pool_starts

ROOT = default_data_root()
needs_data = pytest.mark.skipif(not (ROOT / "wbm").exists() or not (ROOT / "mptrj").exists(),
                                reason=f"the shared real data ({ROOT}) is missing")


@pytest.fixture(scope="module")
def inputs() -> BenchmarkInputs:
    return benchmark_inputs(ROOT)


@pytest.fixture(scope="module")
def v8_plan():
    return pool_starts("v8", ROOT, seed=0)


def _single_element(plan) -> list[tuple[str, Atoms]]:
    return [(uid, start.make()) for uid, start in plan if len(Composition(start.formula).elements) == 1]


# ------------------------------------------------------------------------------------------ disjointness


@needs_data
@pytest.mark.parametrize("pool", sorted(DISJOINT_POOLS))
def test_every_pool_called_disjoint_is_disjoint_from_every_benchmark_input(inputs, pool):
    sources = {s.split(":")[0] for ss in inputs.formulas.values() for s in ss}
    assert sources == {"wbm", "wbm-initial", "kappa", "md", "mptrj-random-1k"}
    assert {"Li6PS5Cl", "Li6PS5I", "MgO"} <= set(inputs.formulas)  # argyrodites, a κ rocksalt
    plan = pool_starts(pool, ROOT, seed=0)
    assert violations([(uid, s.formula) for uid, s in plan], _single_element(plan), inputs) == []


def test_the_shipped_model_was_distilled_on_a_disjoint_pool():
    """The embedded default names its pool in its checkpoint; only a pool the test above proves disjoint
    counts, so the report's compliant column (geodite.report.compliance_of) says yes only then."""
    from geodite.checkpoints import load_weights_only, shipped_model_path
    from geodite.report import compliance_of

    pool = load_weights_only(shipped_model_path())["metadata"]["pool"]
    assert pool in DISJOINT_POOLS
    assert compliance_of("geodite").startswith("yes")


def test_pool_compliance_says_no_for_pools_not_proven_disjoint():
    assert pool_compliance("v8").startswith("yes")
    assert pool_compliance("v7").startswith("no: distilled on pool v7")
    assert pool_compliance(None).startswith("no: distilled on pool (not recorded)")


@needs_data
def test_the_rule_fails_on_the_v7_pool(inputs):
    """v7's first round (the WBM relaxed/initial copies and MP elements of v1) breaks the rule on ~2,000
    WBM formulas; the whole v7 pool is checked by the slow test below."""
    base = POOLS["v7"][0].build(ROOT, 0)
    found = violations([(uid, a.get_chemical_formula()) for uid, a in base if len(set(a.numbers)) > 1], [], inputs)
    assert len(found) > 1500
    assert any("wbm:" in v for v in found) and any("wbm-initial:" in v for v in found)


@pytest.mark.slow
@needs_data
def test_the_whole_v7_pool_breaks_the_rule(inputs):
    from geodite.train.pools import build_pool

    pool = build_pool("v7", ROOT, 0)
    multi = [(uid, a.get_chemical_formula()) for uid, a in pool if len(set(a.numbers)) > 1]
    single = [(uid, a) for uid, a in pool if len(set(a.numbers)) == 1 and len(a) > 2]
    assert len(violations(multi, single, inputs)) > 1500


@needs_data
def test_committed_formula_list_is_the_benchmark_inputs(inputs):
    """tools/benchmark_formulas.py wrote it; a new benchmark input must be added to it (and a new pool round
    drawn: the v8 draws depend on the list)."""
    assert sorted(excluded_formulas()) == multi_element_formulas(inputs)


def test_violations_reports_shared_formulas_and_matching_elements():
    inputs = BenchmarkInputs()
    inputs.add("wbm:x", "Li2Fe2O4")
    copper = bulk("Cu", "fcc", a=3.6)
    inputs.add("mptrj-random-1k:7", "Cu", lambda: copper)
    pool = [("a/start", "LiFeO2"), ("b/start", "LiFeO3"), ("c/start", "Cu")]
    elementals = [("c/start", copper.repeat(2)), ("d/start", bulk("Cu", "bcc", a=2.87))]
    found = violations(pool, elementals, inputs)
    assert len(found) == 2
    assert found[0].startswith("a/start LiFeO2: wbm:x")
    assert found[1].startswith("c/start") and "matches mptrj-random-1k:7" in found[1]


def test_xdatcar_formula_reads_the_header(tmp_path):
    path = tmp_path / "XDATCAR"
    path.write_text("x\n1.0\n10 0 0\n0 10 0\n0 0 10\nLi P S Cl\n24 4 20 4\nDirect configuration= 1\n")
    assert Composition(xdatcar_formula(path)).reduced_formula == "Li6PS5Cl"


# ------------------------------------------------------------------------------------------ the pool


@needs_data
def test_v8_plan_is_pinned(v8_plan):
    """The uids and formulas of v8 (seed 0) are fixed: labels are matched by uid across sessions."""
    from geodite.train.pools import pool_digest

    digest = hashlib.sha256("".join(f"{u}={s.formula};" for u, s in v8_plan).encode()).hexdigest()
    assert len(v8_plan) == 4394
    assert digest == "d209fe7e6bff3598aebb19f66c1047d87f6047fb4a4bbc5dc50dc9d76999e1b2"
    # geometries made by numpy alone (pyxtal's and the packings' depend on those libraries' versions)
    made = [(u, s.make()) for u, s in v8_plan if not u.startswith(("v8pyx", "v8polyanion"))][:300]
    assert pool_digest(made) == V8_MADE_DIGEST


V8_MADE_DIGEST = "62597a8b3e52934b7342bf33933e6078e76c34225d7dedb2f2a9c01dd5d16ec2"


@needs_data
def test_made_structures_have_their_planned_formula(v8_plan):
    """Every kind, including the pyxtal crystals and packed salts made only when the pool is built."""
    seen: dict[str, int] = {}
    for uid, start in v8_plan:
        kind = uid.split("-")[0]
        if seen.get(kind, 0) >= 3:
            continue
        atoms = start.make()
        if atoms is None:
            continue
        seen[kind] = seen.get(kind, 0) + 1
        assert Composition(atoms.get_chemical_formula()).reduced_formula == start.formula, uid
        assert len(atoms) <= chemistry.MAX_START_ATOMS
        again = start.make()  # the same geometry at every call (pyxtal and the packings included)
        assert np.array_equal(again.positions, atoms.positions) and np.array_equal(again.cell, atoms.cell)
    assert {"v8oxide", "v8polyanion", "v8pyxoxide", "v8pyxother", "v8intermetallic", "v8element", "pair",
            "atom"} <= set(seen)


@needs_data
def test_v8_mix_is_mptrj_like(v8_plan):
    starts = [(s.formula, 1) for uid, s in v8_plan if uid.endswith(START_SUFFIX)]
    stats = mix_stats(starts)
    assert stats["with_O"] >= 0.5
    assert stats["four_plus"] >= 0.4
    assert 0.18 <= stats["u_oxide_fluoride"] <= 0.35
    assert mix_stats([(s.formula, 1) for _, s in v8_plan])["elements"] >= 85
    assert not any(uid.startswith("dimer-") for uid, _ in v8_plan)  # no homonuclear dimer curves


# ------------------------------------------------------------------------------------------ chemistry


def _oxidation_sum(atoms: Atoms, assignment: dict[str, int], anion: str) -> int:
    symbols = atoms.get_chemical_symbols()
    return sum(chemistry.ANION_CHARGE[anion] if s == anion else assignment[s] for s in symbols)


@pytest.mark.parametrize("prototype", chemistry.PROTOTYPES, ids=lambda p: p.name)
def test_prototypes_are_charge_balanced_and_not_overlapping(prototype):
    from geodite.train.pools import min_distance_ok

    rng = np.random.default_rng(3)
    assignment = chemistry.charge_assignments(prototype, "O", rng)
    assert assignment is not None
    cell = prototype.build(2.0)
    tags = cell.get_tags()
    roles = len(prototype.cation_counts)
    charges = [assignment[t][1] if t < roles else -2 for t in tags]
    assert sum(charges) == 0
    # every cation's nearest anion at the scale bond length (2 Å) within 25 %
    atoms = Atoms(["Mg" if t < roles else "O" for t in tags], positions=cell.positions, cell=cell.cell, pbc=True)
    assert min_distance_ok(atoms)
    d = atoms.get_all_distances(mic=True)
    cation = np.flatnonzero(tags == prototype.scale_role)
    anion = np.flatnonzero(tags >= roles)
    assert np.allclose(d[np.ix_(cation, anion)].min(axis=1), 2.0, rtol=0.25)


def test_substituted_crystals_stay_charge_balanced():
    rng = np.random.default_rng(11)
    perovskite = next(p for p in chemistry.PROTOTYPES if p.name == "perovskite")
    for _ in range(20):
        atoms = chemistry.ionic_crystal(perovskite, "O", rng, substitutions=2)
        if atoms is None:
            continue
        composition = Composition(atoms.get_chemical_formula())
        guesses = composition.oxi_state_guesses(max_sites=-1)
        assert guesses, composition  # pymatgen finds a neutral assignment
