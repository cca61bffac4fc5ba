"""MPtrj-way labelling of the v8 starts: relaxation frames, end-point perturbations, per-atom energies;
resumable, exportable to compressed shards and resumable from them."""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.db import connect

from geodite.train.distill import (
    END_PERTURBATIONS,
    export_labels,
    label_pool,
    label_trajectories,
    read_label_rows,
)


def _starts() -> list[tuple[str, Atoms]]:
    rng = np.random.default_rng(0)
    out = []
    for k, (a, b) in enumerate((("Cu", "Al"), ("Ni", "Ag"))):
        atoms = bulk(a, "fcc", a=3.9, cubic=True)
        atoms.symbols[[1, 2]] = b
        atoms.positions += rng.normal(0, 0.1, atoms.positions.shape)
        out.append((f"v8intermetallic-{k:05d}/start", atoms))
    return out


class CountingEMT(EMT):
    """EMT that counts its evaluations (a teacher that raised instead would be caught by the labeller and
    listed as a failed start, and a test of "never called" could not fail)."""

    calls = 0

    def calculate(self, *args, **kwargs):
        type(self).calls += 1
        super().calculate(*args, **kwargs)


def test_trajectory_frames_end_perturbations_and_per_atom_energies(tmp_path):
    db_path = tmp_path / "labels.db"
    rows = label_trajectories(_starts(), db_path, EMT(), "emt", steps=12, keep=(0, 2, 5))
    uids = [row.uid for row in connect(str(db_path)).select()]
    assert rows == len(uids)
    first = [u.split("/")[1] for u in uids if u.startswith("v8intermetallic-00000/")]
    relax = [int(f.split("-")[1]) for f in first if f.startswith("relax-")]
    assert relax[:3] == [0, 2, 5] and relax[-1] > 5  # the kept steps, then the last (converged or step 12)
    assert [f for f in first if f.startswith("end-")] == [f"end-{k}" for k in range(len(END_PERTURBATIONS))]
    frames = {uid: atoms for uid, _, _, atoms in read_label_rows(db_path)}
    for uid, atoms in frames.items():
        energies = atoms.calc.results["energies"]
        assert np.isclose(energies.sum(), atoms.get_potential_energy())
    # the end point is relaxed further than the start, and its perturbations lie around it
    start = frames["v8intermetallic-00000/relax-0"]
    end = frames[f"v8intermetallic-00000/relax-{relax[-1]}"]
    assert np.abs(end.get_forces()).max() < np.abs(start.get_forces()).max()
    rattled = frames["v8intermetallic-00000/end-2"]  # σ 0.06 Å
    assert 0.02 < np.abs(rattled.positions - end.positions).std() < 0.12


def test_relabelling_resumes_and_exported_shards_restore_everything(tmp_path):
    db_path = tmp_path / "labels.db"
    starts = _starts()
    label_trajectories(starts[:1], db_path, EMT(), "emt", steps=8, keep=(0, 4))
    first = {uid: a.positions.copy() for uid, _, _, a in read_label_rows(db_path)}

    # the first material is done: a rerun on both only labels the second (skipping the first entirely)
    with_both = label_trajectories(starts, db_path, EMT(), "emt", steps=8, keep=(0, 4))
    assert with_both > len(first)
    files = export_labels([db_path], tmp_path / "export", pool="v8", seed=0, frames_per_file=5, log=lambda s: None)
    assert len(files) > 1 and all(f.name.endswith(".extxyz.xz") for f in files)
    exported = {uid: atoms for f in files for uid, _, _, atoms in read_label_rows(f)}
    original = {uid: atoms for uid, _, _, atoms in read_label_rows(db_path)}
    assert exported.keys() == original.keys()
    for uid, atoms in original.items():
        again = exported[uid]
        assert np.allclose(again.positions, atoms.positions) and np.allclose(again.get_forces(), atoms.get_forces())
        assert np.allclose(again.calc.results["energies"], atoms.calc.results["energies"])
        assert np.isclose(again.get_potential_energy(), atoms.get_potential_energy())
        assert np.allclose(again.get_stress(), atoms.get_stress())
    # a fresh database resumes from the shards alone: no teacher call for labelled materials
    resumed = tmp_path / "resumed.db"

    class Counts(CountingEMT):
        calls = 0

    count = label_pool(starts, resumed, "emt", calculator=Counts(), reuse=files, seed=0)
    assert count == len(original) and Counts.calls == 0
    assert {uid for uid, *_ in read_label_rows(resumed)} == set(original)


def test_a_material_without_frames_is_listed_and_not_relabelled(tmp_path):
    """A start the teacher fails on, or whose every frame is dropped, is relaxed once: a later run skips it
    (the v8 labeller re-ran ~23 such starts, ~40 s each, on every restart)."""
    from geodite.train.distill import read_unlabelled, unlabelled_path

    starts = _starts()
    bad = starts[0][0].split("/")[0]

    class FailsOnAl(EMT):  # a teacher that fails on the first start (Cu with Al)
        def calculate(self, atoms=None, *args, **kwargs):
            if "Al" in atoms.get_chemical_symbols():
                raise RuntimeError("cannot evaluate\nthis structure")
            super().calculate(atoms, *args, **kwargs)

    db_path = tmp_path / "labels.db"
    log: list[str] = []
    label_trajectories(starts, db_path, FailsOnAl(), "emt", steps=4, keep=(0,), log=log.append)
    assert read_unlabelled(db_path) == {bad: "RuntimeError: cannot evaluate this structure"}
    assert any(line.startswith(f"skip {bad}") for line in log)
    labelled = {uid.split("/")[0] for uid, *_ in read_label_rows(db_path)}
    assert labelled == {starts[1][0].split("/")[0]}

    class Counts(CountingEMT):
        calls = 0

    log.clear()
    label_trajectories(starts, db_path, Counts(), "emt", steps=4, keep=(0,), log=log.append)
    assert log == [f"not relabelling 1 materials that gave no frame before ({unlabelled_path(db_path)})"]
    assert Counts.calls == 0
    # the export carries the list, and a fresh database resuming from the shards does not try it again
    files = export_labels([db_path], tmp_path / "export", pool="v8", seed=0, log=lambda s: None)
    assert read_unlabelled(files[0]) == read_unlabelled(db_path)
    fresh = tmp_path / "fresh.db"
    label_pool(starts, fresh, "emt", calculator=Counts(), reuse=files, seed=0, log=lambda s: None)
    assert Counts.calls == 0 and read_unlabelled(fresh) == read_unlabelled(db_path)
    # every frame above max_force: listed too; deleting the list retries
    unlabelled_path(db_path).unlink()
    other = tmp_path / "other.db"
    label_trajectories(starts[:1], other, EMT(), "emt", steps=4, keep=(0,), max_force=1e-6)
    assert list(read_unlabelled(other)) == [bad]
    assert not other.exists() or connect(str(other)).count() == 0
    label_trajectories(starts, db_path, EMT(), "emt", steps=4, keep=(0,))
    assert {uid.split("/")[0] for uid, *_ in read_label_rows(db_path)} == {s.split("/")[0] for s, _ in starts}


def test_perturbations_do_not_depend_on_order_or_shard(tmp_path):
    starts = _starts()
    a, b = tmp_path / "a.db", tmp_path / "b.db"
    label_trajectories(starts, a, EMT(), "emt", steps=4, keep=(0,))
    label_trajectories(starts[::-1][:1], b, EMT(), "emt", steps=4, keep=(0,))
    in_a = {uid: x.positions for uid, _, _, x in read_label_rows(a)}
    for uid, _, _, x in read_label_rows(b):
        assert np.allclose(in_a[uid], x.positions)


def test_cli_export_stage_writes_shards_a_relabelling_resumes_from(tmp_path):
    import typer
    import yaml
    from typer.testing import CliRunner

    from geodite.cli.train import distill_command
    from geodite.train.distill import PoolSeedError, check_pool_seed

    labels = tmp_path / "labels"
    labels.mkdir()
    check_pool_seed(labels / "labels-0.db", [], 3)
    label_trajectories(_starts(), labels / "labels-0.db", EMT(), "emt", steps=4, keep=(0,))
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"distill": {"labels_dir": str(labels), "pool": "v8", "seed": 3}}))
    app = typer.Typer()
    app.command("distill")(distill_command)
    app.command("other")(lambda: None)  # two commands: typer then dispatches on the name
    out = tmp_path / "shards"
    result = CliRunner().invoke(app, ["distill", str(config), "--stage", "export", "--labels-out", str(out)])
    assert result.exit_code == 0, result.output
    files = sorted(out.glob("labels-*.extxyz.xz"))
    frames = [atoms for f in files for *_, atoms in read_label_rows(f)]
    assert len(frames) == connect(str(labels / "labels-0.db")).count()
    assert {a.info["pool"] for a in frames} == {"v8"} and {a.info["pool_seed"] for a in frames} == {3}
    # shards of seed 3 are refused as a source for a seed-0 labelling (their uids name other structures)
    with pytest.raises(PoolSeedError):
        check_pool_seed(tmp_path / "new.db", files, 0)


def test_export_reports_the_frames_it_wrote_while_a_labeller_adds_more(tmp_path, monkeypatch):
    """The export logged the databases' row count after writing, so a labeller running beside it inflated the
    figure (32,354 reported, 32,140 written in session 9)."""
    import ase.io
    from ase.db import connect

    db_path = tmp_path / "labels.db"
    label_trajectories(_starts()[:1], db_path, EMT(), "emt", steps=4, keep=(0,))
    labelled = connect(str(db_path)).count()
    write = ase.io.write

    def write_while_labelling(*args, **kwargs):  # another process appends a row meanwhile
        row = next(connect(str(db_path)).select(limit=1))
        connect(str(db_path)).write(row.toatoms(), uid="late/relax-0", group="late", teacher="emt")
        return write(*args, **kwargs)

    monkeypatch.setattr(ase.io, "write", write_while_labelling)
    log: list[str] = []
    files = export_labels([db_path], tmp_path / "export", pool="v8", seed=0, log=log.append)
    written = sum(1 for f in files for _ in read_label_rows(f))
    assert written == labelled and log[-1].startswith(f"exported {labelled} frames")
