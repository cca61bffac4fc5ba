"""Distillation: the structure pool, resumable labelling, the CLI commands."""

from pathlib import Path

import numpy as np
import pytest
import yaml
from ase.calculators.lj import LennardJones

from geodite.train.distill import label_structures
from geodite.train.pools import MPTRJ_ELEMENTS, build_pool
from train_helpers import SHARED, tiny_config


@pytest.fixture(scope="module")
def pool():
    if not (SHARED / "wbm").exists():
        pytest.skip("shared data missing")
    return build_pool("v1", SHARED, seed=0)


def test_pool_is_deterministic_spans_elements_and_skips_test_set(pool):
    assert len(MPTRJ_ELEMENTS) == 89
    uids = [u for u, _ in pool]
    assert len(set(uids)) == len(uids) > 3000
    elements = set()
    for _, atoms in pool:
        elements.update(atoms.get_chemical_symbols())
    assert set(MPTRJ_ELEMENTS) <= elements
    kinds = {u.split("/")[1].split("-")[0] if "/" in u else u for u in uids}
    assert {"relaxed", "rattle", "scale", "supercell", "initial"} <= {k.split("-")[0] for k in kinds}
    assert any(u.startswith("dimer-") for u in uids) and not any("mptrj-random" in u for u in uids)
    # interleaved: the first 100 contain several sources
    assert len({u.split("-")[0] for u in uids[:100]}) >= 4


def test_labelling_is_resumable(tmp_path, pool):
    small = [(u, a) for u, a in pool if len(a) <= 4][:6]
    db = tmp_path / "labels.db"
    calc = LennardJones(sigma=2.0, epsilon=0.01, rc=4.0)
    assert label_structures(small[:3], db, calc, "lj", log=lambda s: None) == 3
    calls = []

    class Counting(LennardJones):
        def calculate(self, *args, **kwargs):
            calls.append(1)
            super().calculate(*args, **kwargs)

    assert label_structures(small, db, Counting(sigma=2.0, epsilon=0.01, rc=4.0), "lj", log=lambda s: None) == 6
    assert len(calls) == 3  # only the three new structures were evaluated
    from geodite.data.mptrj import iter_source

    frames = list(iter_source(db))
    assert len(frames) == 6 and all(f.stress.shape == (3, 3) and np.isfinite(f.energy) for f in frames)


def test_cli_train_and_distill_split_then_train(tmp_path, mptrj10):
    """`geodite train CONFIG` and `geodite distill CONFIG --stage split|train` (labels already there): the
    distill section says where the labels are, the split refuses to run twice, bad flags exit 2."""
    from typer.testing import CliRunner
    import typer

    from geodite.cli.train import distill_command, train_command

    app = typer.Typer()
    app.command("train")(train_command)
    app.command("distill")(distill_command)
    config = tiny_config(tmp_path / "run", [mptrj10], run=dict(epochs=1))
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config))
    result = CliRunner().invoke(app, ["train", str(path)])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "run" / "model.pt").exists()

    from ase.db import connect

    labels = tmp_path / "labels"
    labels.mkdir()
    with connect(str(labels / "labels-0.db")) as db:
        for row in connect(str(mptrj10)).select():
            db.write(row.toatoms(), uid=f"mptrj-{row.id}/frame")
    config["run"]["out_dir"] = str(tmp_path / "run2")
    del config["data"]["train"], config["data"]["valid_fraction"]
    config["distill"] = {"labels_dir": str(labels), "valid_fraction": 0.2, "split_seed": 1}
    path.write_text(yaml.safe_dump(config))
    result = CliRunner().invoke(app, ["distill", str(path), "--stage", "split"])
    assert result.exit_code == 0, result.output
    assert (labels / "train.db").exists() and (labels / "valid.db").exists()
    rows = connect(str(labels / "train.db")).count()
    again = CliRunner().invoke(app, ["distill", str(path), "--stage", "split"])
    assert again.exit_code == 2 and connect(str(labels / "train.db")).count() == rows  # no duplicates appended
    result = CliRunner().invoke(app, ["distill", str(path), "--stage", "train", "--export",
                                      str(tmp_path / "distilled.pt")])
    assert result.exit_code == 0, result.output
    from geodite.checkpoints import load_model

    assert load_model(str(tmp_path / "distilled.pt")).metadata["teacher"] == "sevennet-0"
    for flags in (["--shard", "2/2"], ["--stage", "relabel"], ["--shard", "0/2"]):
        result = CliRunner().invoke(app, ["distill", str(path), *flags])
        assert result.exit_code == 2, (flags, result.output)


def test_teacher_must_predict_uncorrected_energies():
    """CHGNet predicts MP2020-corrected energies: as a teacher it would teach the correction offset."""
    from geodite.train.distill import make_teacher

    with pytest.raises(ValueError, match="mp2020_corrected"):
        make_teacher("chgnet")


def test_isolated_limit_part_and_the_split_keeps_single_atoms_in_training(tmp_path):
    """The v7 part: one atom and a 3.5 Å dimer per MPtrj element, no image within the teacher's cutoff; single
    atoms are the e0 reference and never go to validation."""
    from ase import Atoms
    from ase.calculators.singlepoint import SinglePointCalculator
    from ase.db import connect

    from geodite.train.distill import split_labels
    from geodite.train.pools import DIMER_BOX, isolated_limit

    groups = isolated_limit(tmp_path, np.random.default_rng(0))
    atoms, tail = groups["isolated-atoms"], groups["dimer-tail"]
    assert len(atoms) == len(tail) == len(MPTRJ_ELEMENTS)
    assert {len(a) for _, a in atoms} == {1} and all(u.endswith("/isolated") for u, _ in atoms)
    assert all(abs(a.get_distance(0, 1) - 3.5) < 1e-12 and u.endswith("/3.50A") for u, a in tail)
    assert DIMER_BOX - 3.5 > 6.0  # the periodic image is farther than any teacher cutoff used here (≤ 6 Å)

    with connect(str(tmp_path / "labels.db")) as db:
        for uid, structure in atoms[:10] + tail[:10]:
            labelled = Atoms(structure.numbers, positions=structure.positions, cell=structure.cell, pbc=True)
            labelled.calc = SinglePointCalculator(labelled, energy=-1.0, forces=np.zeros((len(structure), 3)),
                                                  stress=np.zeros(6))
            db.write(labelled, uid=uid)
    split_labels([tmp_path / "labels.db"], tmp_path / "t.db", tmp_path / "v.db", fraction=0.5, seed=0,
                 log=lambda s: None)
    valid = [row.uid for row in connect(str(tmp_path / "v.db")).select()]
    assert len(valid) == 5 and all(u.startswith("dimer-") for u in valid)


def test_split_stage_follows_a_committed_list_of_validation_materials(tmp_path):
    """`distill.valid_materials` (a committed list) decides `--stage split`, not the fraction: the split of
    labels grown over several sessions is made again from their export."""
    from ase import Atoms
    from ase.calculators.singlepoint import SinglePointCalculator
    from ase.db import connect

    from geodite.train.distill import read_distill_config, split_shards

    labels = tmp_path / "labels"
    labels.mkdir()
    with connect(str(labels / "labels-0.db")) as db:
        for m in range(6):
            for k in range(2):
                atoms = Atoms("H2", positions=[[0, 0, 0], [0.7 + 0.01 * k, 0, 0]], cell=np.eye(3) * 8, pbc=True)
                atoms.calc = SinglePointCalculator(atoms, energy=-1.0, forces=np.zeros((2, 3)), stress=np.zeros(6))
                db.write(atoms, uid=f"v8oxide-{m:05d}/relax-{k}")
    listed = tmp_path / "valid.txt"
    listed.write_text("# held out\nv8oxide-00001\n\nv8oxide-00004  # and this one\n")
    section, _ = read_distill_config({"distill": {"labels_dir": str(labels), "valid_fraction": 0.9,
                                                  "valid_materials": str(listed)}})
    assert split_shards(section, log=lambda s: None) == (8, 4)
    valid = {row.uid.split("/")[0] for row in connect(str(labels / "valid.db")).select()}
    assert valid == {"v8oxide-00001", "v8oxide-00004"}


@pytest.mark.slow
def test_pool_v7_is_v6_plus_the_isolated_atom_limit():
    from geodite.train.pools import build_pool

    if not (SHARED / "wbm").exists():
        pytest.skip("shared data missing")
    v6, v7 = build_pool("v6", SHARED), build_pool("v7", SHARED)
    assert [u for u, _ in v7[:len(v6)]] == [u for u, _ in v6]
    added = {u.split("/")[0] for u, _ in v7[len(v6):]}
    assert len(v7) - len(v6) == 2 * len(MPTRJ_ELEMENTS) and {f"atom-{s}" for s in MPTRJ_ELEMENTS} <= added


def test_a_pool_without_its_data_files_is_refused_naming_the_file(tmp_path):
    """A missing data root once built a silently smaller pool (no WBM/MP copies, and the molecular draws of later
    parts of the same round from another random state): now the build stops, and `geodite distill` says so in
    one line with exit code 2."""
    from typer.testing import CliRunner

    from geodite.cli.main import app
    from geodite.train.pools import PoolDataError

    with pytest.raises(PoolDataError, match="wbm-random-pbe54-equilibrium"):
        build_pool("v7", tmp_path)
    config = tmp_path / "distill.yaml"
    config.write_text(yaml.safe_dump({"distill": {"pool": "v7", "labels_dir": str(tmp_path / "labels")}}))
    result = CliRunner().invoke(app, ["distill", str(config), "--stage", "label", "--data-root", str(tmp_path)])
    assert result.exit_code == 2
    assert "not found" in result.output and "Traceback" not in result.output
