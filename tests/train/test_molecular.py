"""Molecular pool builders (molecules, molecular ions, salts, packings) and teacher-relaxation labelling."""

import numpy as np
import pytest
from ase.calculators.lj import LennardJones
from ase.data import atomic_numbers

from geodite.train import molecular
from geodite.train.distill import label_relaxations
from geodite.train.pools import MPTRJ_ELEMENTS, RELAX_SUFFIX


def test_ideal_ion_geometries():
    sulfate = molecular.centred_unit("S", "O", "tetrahedral")
    bonds = np.linalg.norm(sulfate.positions[1:] - sulfate.positions[0], axis=1)
    assert np.allclose(bonds, bonds[0]) and 1.4 < bonds[0] < 1.7
    u = (sulfate.positions[1:] - sulfate.positions[0]) / bonds[:, None]
    angles = np.degrees(np.arccos(np.clip(u @ u.T, -1, 1)))[np.triu_indices(4, 1)]
    assert np.allclose(angles, 109.47, atol=0.01)
    nitrate = molecular.centred_unit("N", "O", "trigonal")
    assert np.allclose(nitrate.positions[:, 2], 0.0) and nitrate.get_chemical_formula() == "NO3"
    assert molecular.oxalate().get_chemical_formula() == "C2O4"
    assert len(molecular.centred_unit("P", "F", "octahedral")) == 7


def test_salts_are_neutral_separated_and_deterministic():
    salts = molecular.molecular_salts(list(MPTRJ_ELEMENTS), 12, np.random.default_rng(0), max_atoms=40)
    again = molecular.molecular_salts(list(MPTRJ_ELEMENTS), 12, np.random.default_rng(0), max_atoms=40)
    assert [u for u, _ in salts] == [u for u, _ in again]
    anions = {a.name: a for a in molecular.ANIONS}
    checked = 0
    for uid, atoms in salts:
        assert uid.endswith(RELAX_SUFFIX) and 0 < len(atoms) <= 40 and atoms.pbc.all()
        # atoms of different units keep apart: nothing closer than 0.85 Å (an O–H bond is ~0.9 Å)
        assert atoms.get_all_distances(mic=True)[np.triu_indices(len(atoms), 1)].min() > 0.85
        cation_label, anion_name = uid.split("/")[0].split("-")[2:4]  # 'salt-0003-Sm3-ClO4/packed'
        anion, symbols = anions[anion_name], atoms.get_chemical_symbols()
        cation, charge = cation_label[:-1], int(cation_label[-1])
        if cation == "NH4" or anion.centre in (cation, "O", "H") or anion_name == "C2O4":
            continue  # the anion count is not readable from the composition alone
        assert symbols.count(cation) * charge == symbols.count(anion.centre) * -anion.charge, uid
        checked += 1
    assert checked >= 4


def test_g2_molecules_do_not_see_their_images():
    for uid, atoms in molecular.g2_molecules():
        extent = np.ptp(atoms.positions, axis=0).max()
        assert atoms.cell.lengths().min() - extent > 5.0, uid


def test_packings_hold_copies_of_one_molecule():
    packs = molecular.molecular_packings(4, np.random.default_rng(1))
    from ase.collections import g2

    for uid, atoms in packs:
        name = uid.split("/")[0].split("-", 2)[2]
        assert len(atoms) % len(g2[name]) == 0 and len(atoms) // len(g2[name]) >= 2


def test_label_relaxations_writes_trajectory_frames_and_resumes(tmp_path):
    rng = np.random.default_rng(3)
    structures = molecular.molecular_packings(2, rng, max_atoms=12)
    db = tmp_path / "relax.db"
    lj = LennardJones(sigma=2.5, epsilon=0.01, rc=5.0)
    count = label_relaxations(structures, db, lj, "lj", steps=6, keep=(0, 3, 6), max_force=None,
                              log=lambda s: None)
    from ase.db import connect

    uids = [row.uid for row in connect(str(db)).select()]
    assert count == len(uids) >= 4
    materials = {u.split("/")[0] for u in uids}
    assert materials == {u.split("/")[0] for u, _ in structures}
    assert all(u.split("/")[1].startswith("relax-") for u in uids)
    assert {u.split("/")[1] for u in uids} >= {"relax-0", "relax-3"}
    first = next(connect(str(db)).select(uid=uids[0]))
    assert first.forces.shape == (first.natoms, 3) and first.stress.shape == (6,)

    class Counting(LennardJones):
        calls = 0

        def calculate(self, *args, **kwargs):
            Counting.calls += 1
            super().calculate(*args, **kwargs)

    assert label_relaxations(structures, db, Counting(sigma=2.5, epsilon=0.01, rc=5.0), "lj", steps=6,
                             keep=(0, 3, 6), log=lambda s: None) == count
    assert Counting.calls == 0  # every structure already has its frames

    from geodite.train.distill import label_pool

    reused = tmp_path / "reused.db"
    assert label_pool(structures, reused, "lj", calculator=Counting(sigma=2.5, epsilon=0.01, rc=5.0),
                      reuse=[db], log=lambda s: None) == count
    assert Counting.calls == 0  # whole relaxations are copied from the earlier labels, not redone

    # labels are matched by uid, and uids do not carry the pool seed: another seed must not mix with them
    from geodite.train.distill import pool_seed_of

    assert pool_seed_of(reused) == 0 and pool_seed_of(db) == 0  # db predates the record: seed 0
    with pytest.raises(ValueError, match="pool seed 0, not 1"):
        label_pool(structures, tmp_path / "seed1.db", "lj", calculator=lj, reuse=[db], seed=1,
                   log=lambda s: None)
    with pytest.raises(ValueError, match="pool seed 0, not 1"):
        label_pool(structures, reused, "lj", calculator=lj, seed=1, log=lambda s: None)


def test_cation_charges_are_positive_and_skip_anions():
    charges = molecular.cation_charges(list(MPTRJ_ELEMENTS))
    assert "O" not in charges and "Cl" not in charges and charges["Na"] == [1]
    assert all(1 <= c <= 4 for states in charges.values() for c in states)
    assert atomic_numbers["Fe"] and set(charges["Fe"]) >= {2, 3}


@pytest.mark.slow
def test_pool_v5_adds_molecules_salts_and_the_dimer_grid():
    from train_helpers import SHARED

    from geodite.train.pools import DIMER_FACTORS_V5, build_pool

    if not (SHARED / "wbm").exists():
        pytest.skip("shared data missing")
    pool = build_pool("v5", SHARED, seed=0)
    uids = [u for u, _ in pool]
    assert len(set(uids)) == len(uids)
    dimers = [u for u in uids if u.startswith("dimer-")]
    assert len(dimers) == len(MPTRJ_ELEMENTS) * len(DIMER_FACTORS_V5)
    assert sum(u.startswith("g2-") for u in uids) > 400
    relaxed = [u for u in uids if u.endswith(RELAX_SUFFIX)]
    assert sum(u.startswith("salt-") for u in relaxed) == 300 and sum(u.startswith("molpack-") for u in relaxed) == 80
    assert any(u.startswith("wbm-") for u in uids) and not any("mptrj-random" in u for u in uids)


@pytest.mark.slow
def test_pool_v6_extends_v5_with_fresh_draws_under_new_uids():
    from train_helpers import SHARED

    from geodite.train.pools import RELAX_SUFFIX, build_pool

    if not (SHARED / "wbm").exists():
        pytest.skip("shared data missing")
    v5 = build_pool("v5", SHARED, seed=0)
    v6 = build_pool("v6", SHARED, seed=0)
    assert [u for u, _ in v6[:len(v5)]] == [u for u, _ in v5]  # v5's labels are reused as they are
    added = [u for u, _ in v6[len(v5):]]
    assert len(set(added)) == len(added) and not set(added) & {u for u, _ in v5}
    relaxed = [u for u in added if u.endswith(RELAX_SUFFIX)]
    assert sum(u.startswith("salt-1") for u in relaxed) == 400
    assert sum(u.startswith("molpack-1") for u in relaxed) == 120
    assert sum(u.endswith(("/mild-2", "/mild-3")) for u in added) > 1500


def test_split_labels_keeps_the_previous_split_and_holds_out_new_materials(tmp_path):
    from ase import Atoms
    from ase.calculators.singlepoint import SinglePointCalculator
    from ase.db import connect

    from geodite.data.dataset import valid_materials
    from geodite.train.distill import split_labels

    def write(path, uids):
        with connect(str(path)) as db:
            for uid in uids:
                atoms = Atoms("H2", positions=[[0, 0, 0], [0.74, 0, 0]], cell=np.eye(3) * 8, pbc=True)
                atoms.calc = SinglePointCalculator(atoms, energy=-1.0, forces=np.zeros((2, 3)),
                                                   stress=np.zeros(6))
                db.write(atoms, uid=uid)

    old = [f"old-{m}/frame-{k}" for m in range(40) for k in range(2)]
    new = [f"new-{m}/frame-{k}" for m in range(20) for k in range(3)]
    write(tmp_path / "old.db", old)
    write(tmp_path / "new.db", new + old[:4])  # a uid in both sources is written once
    n_train, n_valid = split_labels([tmp_path / "old.db", tmp_path / "new.db"], tmp_path / "t.db",
                                    tmp_path / "v.db", fraction=0.1, seed=1, previous=tmp_path / "old.db",
                                    log=lambda s: None)
    assert n_train + n_valid == len(old) + len(new)
    valid = {row.uid.split("/")[0] for row in connect(str(tmp_path / "v.db")).select()}
    train = {row.uid.split("/")[0] for row in connect(str(tmp_path / "t.db")).select()}
    assert not valid & train
    old_materials = [f"old-{m}" for m in range(40)]
    expected_old = {m for m, v in zip(old_materials, valid_materials(40, 0.05, 0)) if v}
    assert {m for m in valid if m.startswith("old-")} == expected_old and len(expected_old) == 2
    assert len({m for m in valid if m.startswith("new-")}) == 2

    # a later round keeps this split: its validation materials stay, and 10 % of the newer ones join them
    newer = [f"newer-{m}/frame-0" for m in range(30)]
    write(tmp_path / "newer.db", newer)
    split_labels([tmp_path / "t.db", tmp_path / "v.db", tmp_path / "newer.db"], tmp_path / "t2.db",
                 tmp_path / "v2.db", fraction=0.1, seed=2,
                 previous_split=(tmp_path / "t.db", tmp_path / "v.db"),
                 log=lambda s: None)
    valid2 = {row.uid.split("/")[0] for row in connect(str(tmp_path / "v2.db")).select()}
    train2 = {row.uid.split("/")[0] for row in connect(str(tmp_path / "t2.db")).select()}
    assert valid <= valid2 and train <= train2 and not valid2 & train2
    assert len(valid2 - valid) == 3 and all(m.startswith("newer-") for m in valid2 - valid)

    # the split written as a list of validation materials is made again from the labels alone (as `--stage
    # split` does with `distill.valid_materials`), whatever the fraction and seed say
    from geodite.train.distill import read_valid_materials, write_valid_materials

    listed = tmp_path / "valid-materials.txt"
    assert write_valid_materials(tmp_path / "v2.db", listed, header="a test split") == len(valid2)
    assert listed.read_text().startswith("# a test split\n")
    assert set(read_valid_materials(listed)) == valid2
    split_labels([tmp_path / "old.db", tmp_path / "new.db", tmp_path / "newer.db"], tmp_path / "t3.db",
                 tmp_path / "v3.db", fraction=0.5, seed=9, valid_list=read_valid_materials(listed),
                 log=lambda s: None)
    for name, expected in (("t3.db", "t2.db"), ("v3.db", "v2.db")):
        again = sorted(row.uid for row in connect(str(tmp_path / name)).select())
        assert again == sorted(row.uid for row in connect(str(tmp_path / expected)).select()), name
