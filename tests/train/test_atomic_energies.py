"""Per-atom energies as an auxiliary target (issue #27, Matin et al., Digital Discovery 2025): the frame store keeps
them (format v2; v1 stores stay readable), the readers and the batch carry them, the loss has an optional term on
them that is off by default, and the trainer learns them when it is on."""

import dataclasses
import json

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator
from ase.db import connect

from geodite.data.dataset import READABLE_FORMATS, STORE_FORMAT, Frame, FrameStore, GraphCollate, write_store
from geodite.data.mptrj import iter_source, write_row
from geodite.model import Geodite, GeoditeConfig
from geodite.train.config import LossSection, TrainConfig
from geodite.train.optim import Normalisation, TrainingLoss, loss_counts, normalised_atomic_energies
from geodite.train.trainer import Trainer
from train_helpers import tiny_config


def _frame(numbers, energy, atomic=None, shift=0.0) -> Frame:
    n = len(numbers)
    positions = np.array([[0.0, 0.0, 0.0], [0.0, 0.0, 0.74], [1.5, 0.0, 0.0], [0.0, 1.5, 0.0]])[:n] + shift
    return Frame(numbers=np.array(numbers), positions=positions, cell=np.zeros((3, 3)), pbc=np.zeros(3, bool),
                 energy=energy, forces=np.zeros((n, 3)), material_id=f"m{n}",
                 atomic_energies=None if atomic is None else np.array(atomic, dtype=np.float64))


def test_store_round_trip_with_and_without_per_atom_energies(tmp_path):
    frames = [_frame([1, 1], -6.5, [-3.0, -3.5]), _frame([8, 1, 1], -14.0), _frame([6, 1, 1, 1], -20.0,
                                                                                     [-8.0, -4.0, np.nan, -4.0])]
    store = write_store(frames, tmp_path / "s")
    assert store.meta["format"] == STORE_FORMAT == "geodite-framestore-v2"
    assert store.meta["units"]["atomic_energies"] == "eV"
    assert store[0].atomic_energies.tolist() == [-3.0, -3.5]
    assert np.isnan(store[1].atomic_energies).all() and store[1].atomic_energies.shape == (3,)
    assert store.has_atomic_energies().tolist() == [True, False, False]  # a frame with one unknown atom: unknown
    assert store.has_atomic_energies([2, 0]).tolist() == [False, True]
    # the labelled frame goes back to ASE under ASE's name for per-atom energies; the others without it
    assert store[0].to_atoms().calc.results["energies"].tolist() == [-3.0, -3.5]
    assert "energies" not in store[1].to_atoms().calc.results
    batch = GraphCollate(cutoff=3.0)([store[0], store[1], store[2]])
    assert batch.has_atomic_energies.tolist() == [True, False, False]
    assert batch.atomic_energies.dtype == torch.float64
    assert batch.atomic_energies[:5].tolist() == [-3.0, -3.5, 0.0, 0.0, 0.0]  # unknown → 0, masked by the flag
    assert torch.isfinite(batch.atomic_energies).all()


def _as_v1_store(path):
    """A store in the layout written before format v2: the same files without atomic_energies.bin."""
    (path / "atomic_energies.bin").unlink()
    meta = json.loads((path / "meta.json").read_text())
    meta["format"] = "geodite-framestore-v1"
    del meta["units"]["atomic_energies"]
    (path / "meta.json").write_text(json.dumps(meta))


def test_a_v1_store_stays_readable_without_per_atom_energies(tmp_path):
    write_store([_frame([1, 1], -6.5, [-3.0, -3.5]), _frame([8, 1, 1], -14.0)], tmp_path / "s")
    _as_v1_store(tmp_path / "s")
    store = FrameStore(tmp_path / "s")
    assert READABLE_FORMATS[0] == store.meta["format"]
    assert store[0].energy == -6.5 and store[0].atomic_energies is None
    assert store.has_atomic_energies().tolist() == [False, False]
    batch = GraphCollate(cutoff=3.0)([store[0], store[1]])
    assert not batch.has_atomic_energies.any() and batch.atomic_energies.shape == (5,)
    meta = json.loads((tmp_path / "s" / "meta.json").read_text())
    (tmp_path / "s" / "meta.json").write_text(json.dumps(meta | {"format": "geodite-framestore-v0"}))
    with pytest.raises(ValueError, match="known format"):
        FrameStore(tmp_path / "s")


def _labelled_atoms() -> list[Atoms]:
    atoms = [Atoms("H2", positions=[[0, 0, 0], [0, 0, 0.74]]), Atoms("OH2", positions=[[0, 0, 0], [0, 0.8, 0.6],
                                                                                         [0, -0.8, 0.6]])]
    atomic = [np.array([-3.0, -3.5]), np.array([-9.0, -2.5, -2.5])]
    for a, e in zip(atoms, atomic):
        a.calc = SinglePointCalculator(a, energy=float(e.sum()), forces=np.zeros((len(a), 3)), energies=e)
    return atoms


def test_label_database_and_extxyz_readers_carry_per_atom_energies(tmp_path):
    import ase.io

    atoms = _labelled_atoms()
    with connect(str(tmp_path / "labels.db")) as db:
        for a in atoms:
            write_row(db, a, uid=f"x-{len(a)}/start")
    ase.io.write(tmp_path / "labels.extxyz", atoms)
    for source in ("labels.db", "labels.extxyz"):
        frames = list(iter_source(tmp_path / source))
        assert [f.atomic_energies.tolist() for f in frames] == [[-3.0, -3.5], [-9.0, -2.5, -2.5]], source
        assert [f.energy for f in frames] == [-6.5, -14.0]


def test_the_train_valid_split_keeps_per_atom_energies(tmp_path):
    from geodite.train.distill import split_labels

    with connect(str(tmp_path / "labels-0.db")) as db:
        for k in range(10):
            for a in _labelled_atoms():
                write_row(db, a, uid=f"m{k}-{len(a)}/start", group="m", teacher="t")
    n_train, n_valid = split_labels([tmp_path / "labels-0.db"], tmp_path / "train.db", tmp_path / "valid.db",
                                    fraction=0.2, seed=0, log=lambda s: None)
    assert n_train == 16 and n_valid == 4
    for name in ("train.db", "valid.db"):
        frames = list(iter_source(tmp_path / name))
        assert all(f.atomic_energies is not None and f.atomic_energies.sum() == pytest.approx(f.energy)
                   for f in frames), name


def _tiny_batch():
    """Frame 0 (H2) with per-atom labels, frame 1 (OH2) without."""
    h2, water = _labelled_atoms()
    frames = [_frame([1, 1], -6.5, [-3.0, -3.5]), _frame([8, 1, 1], -14.0)]
    frames[1].positions = water.positions
    return GraphCollate(cutoff=3.0, dtype=torch.float64)(frames)


def _loss(atomic_weight: float, function: str = "mse") -> TrainingLoss:
    e0 = torch.zeros(100, dtype=torch.float64)
    e0[1], e0[8] = -1.0, -4.0
    norm = Normalisation(energy_mean=0.3, energy_std=2.0, force_std=1.0)
    return TrainingLoss([1.0, 1.0, 0.0], function, 0.01, e0, norm, torch.float64, 1, atomic_weight)


def _output(batch, atomic):
    atomic = torch.tensor(atomic, dtype=torch.float64)
    energy = torch.zeros(batch.graph.num_graphs, dtype=torch.float64).index_add_(0, batch.graph.batch, atomic)
    return {"energy": energy, "forces": torch.zeros_like(batch.forces), "atomic_energies": atomic}


def test_per_atom_energy_term_known_answer():
    batch = _tiny_batch()
    counts = loss_counts(batch)
    assert counts.tolist() == [2, 15, 0, 2]  # only H2's two atoms have per-atom labels
    predicted = [-3.2, -3.1, -8.0, -3.0, -3.0]  # H2: errors −0.2, +0.4 eV; OH2 (unlabelled): anything
    on, parts = _loss(atomic_weight=3.0)(batch, _output(batch, predicted), counts)
    # mse of normalised per-atom energies: ½((−0.2)/2)² + ½(0.4/2)² over 2 labelled atoms
    expected = (0.5 * 0.1 ** 2 + 0.5 * 0.2 ** 2) / 2
    assert parts["atomic"] == pytest.approx(expected, rel=1e-12)
    off, parts_off = _loss(atomic_weight=0.0)(batch, _output(batch, predicted), counts)
    assert parts_off["atomic"] == 0.0
    assert float(on - off) == pytest.approx(3.0 * expected, rel=1e-12)
    # Huber with δ 0.01 (the published loss): δ(|x| − δ/2) per atom
    _, huber = _loss(atomic_weight=1.0, function="huber")(batch, _output(batch, predicted), counts)
    assert huber["atomic"] == pytest.approx(0.01 * ((0.1 - 0.005) + (0.2 - 0.005)) / 2, rel=1e-12)


def test_normalised_per_atom_energies_average_to_the_energy_target():
    batch = _tiny_batch()
    loss = _loss(atomic_weight=1.0)
    atomic = torch.tensor([-3.0, -3.5, -9.0, -2.5, -2.5], dtype=torch.float64)
    per_atom = normalised_atomic_energies(atomic, batch.graph.z, loss.e0, loss.norm)
    assert per_atom[:2].tolist() == pytest.approx([(-3.0 + 1.0 - 0.3) / 2.0, (-3.5 + 1.0 - 0.3) / 2.0])
    means = torch.zeros(2, dtype=torch.float64).index_add_(0, batch.graph.batch, per_atom) / batch.graph.num_atoms
    assert means.tolist() == pytest.approx(loss._targets_per_atom(batch, batch.energy).tolist(), rel=1e-12)


def test_default_config_gives_the_loss_without_the_term():
    assert LossSection().atomic_energy_weight == 0.0 and TrainConfig.from_dict({}).loss.atomic_energy_weight == 0.0
    batch = _tiny_batch()
    unlabelled = GraphCollate(cutoff=3.0, dtype=torch.float64)(
        [_frame([1, 1], -6.5), _frame([8, 1, 1], -14.0)])
    unlabelled.graph = batch.graph
    predicted = [-3.2, -3.1, -8.0, -3.0, -3.0]
    default = _loss(LossSection().atomic_energy_weight, function="huber")
    value, parts = default(batch, _output(batch, predicted), loss_counts(batch))
    plain, _ = default(unlabelled, _output(unlabelled, predicted), loss_counts(unlabelled))
    assert float(value) == float(plain)  # bit for bit: the labels change nothing when the weight is 0
    assert float(value) == pytest.approx(parts["energy"] + parts["forces"], rel=1e-15)


def test_student_atomic_energies_sum_to_its_energy_and_train():
    torch.manual_seed(0)
    model = Geodite(GeoditeConfig(num_channels=8, num_layers=1, num_heads=2, cutoff=3.0, num_rbf=4,
                                  attn_dropout=0.0)).double()
    model.e0[1], model.e0[8] = -1.1, -4.3  # an e0 and shift as a run sets them: in the atomic energies too
    model.energy_shift.fill_(0.25)
    batch = _tiny_batch()
    model.train()
    out = model(batch.graph, compute_stress=False)
    sums = torch.zeros(2, dtype=torch.float64).index_add_(0, batch.graph.batch, out["atomic_energies"])
    assert torch.allclose(sums, out["energy"], rtol=0, atol=1e-12)
    assert out["atomic_energies"].requires_grad  # a loss on them reaches the weights
    model.eval()
    assert not model(batch.graph, compute_stress=False)["atomic_energies"].requires_grad


def _labelled_db(path, mptrj10) -> None:
    """The 10 MPtrj frames as a label database with made-up per-atom energies (MPtrj e0 plus the frame's energy
    per atom above them, ± 0.3 eV by element parity) that sum to the frame's energy."""
    e0 = Geodite(GeoditeConfig(num_channels=8, num_layers=1, num_heads=2)).e0.numpy()
    with connect(str(path)) as db:
        for row in connect(str(mptrj10)).select():
            atoms = row.toatoms()
            spread = np.where(atoms.numbers % 2 == 0, 0.3, -0.3)
            spread -= spread.mean()
            atomic = e0[atoms.numbers] + (row.energy - e0[atoms.numbers].sum()) / len(atoms) + spread
            atoms.calc.results["energies"] = atomic
            write_row(db, atoms, material_id=f"mp-{row.id}")


def _atomic_terms(tmp_path, name: str, weight: float, steps: int = 8) -> list[float]:
    """The per-atom energy term (unweighted) of one fixed batch of the labelled set at each of ``steps`` optimiser
    steps of a tiny model trained on that batch with per-atom energy weight ``weight``."""
    config = tiny_config(tmp_path / name, [tmp_path / "labels.db"], loss=dict(atomic_energy_weight=weight),
                         optim=dict(warmup_steps=0, lr=1e-2), run=dict(epochs=1))
    trainer = Trainer(TrainConfig.from_dict(config))
    measure = dataclasses.replace(trainer.loss, atomic_weight=1.0)
    batch = next(iter(trainer._loader(trainer.store, [trainer.train_idx[:4]])))
    assert batch.has_atomic_energies.all()
    terms = []
    for _ in range(steps):
        out = trainer.model(batch.graph, compute_stress=True)
        loss, _ = trainer.loss(batch, out, loss_counts(batch))
        terms.append(measure(batch, out, loss_counts(batch))[1]["atomic"])
        trainer.optimizer.zero_grad()
        loss.backward()
        trainer.optimizer.step()
    return terms


def test_training_with_the_term_learns_the_per_atom_energies(tmp_path, mptrj10):
    _labelled_db(tmp_path / "labels.db", mptrj10)
    on, off = _atomic_terms(tmp_path, "on", 5.0), _atomic_terms(tmp_path, "off", 0.0)
    assert on[0] == off[0]  # the same start
    assert all(b < a for a, b in zip(on, on[1:])), on  # falls at every step
    assert on[0] - on[-1] > 1.5 * (off[0] - off[-1]), (on, off)  # faster than by the energy term alone
    config = tiny_config(tmp_path / "run", [tmp_path / "labels.db"], loss=dict(atomic_energy_weight=5.0),
                         run=dict(epochs=1))
    metrics = Trainer(TrainConfig.from_dict(config)).train()  # the whole loop runs with the term on
    assert np.isfinite(metrics["valid_loss"])


def test_the_term_needs_per_atom_labels(tmp_path, mptrj10):
    config = tiny_config(tmp_path, [mptrj10], loss=dict(atomic_energy_weight=1.0))
    with pytest.raises(ValueError, match="atomic_energy_weight: none of the"):
        Trainer(TrainConfig.from_dict(config))


def test_default_weight_trains_identically_with_or_without_per_atom_labels(tmp_path, mptrj10):
    _labelled_db(tmp_path / "labels.db", mptrj10)
    runs = {}
    for name, source in (("labelled", tmp_path / "labels.db"), ("plain", mptrj10)):
        config = tiny_config(tmp_path / name, [source], run=dict(epochs=1))
        trainer = Trainer(TrainConfig.from_dict(config))
        trainer.train()
        runs[name] = trainer.model.state_dict()
    for key, value in runs["plain"].items():
        assert torch.equal(value, runs["labelled"][key]), key
