"""Frame store, readers (MPtrj JSON layout, ASE db, extxyz), stress units, split by material."""

import numpy as np
import pytest
import torch
from ase.db import connect
from ase.stress import voigt_6_to_full_3x3_stress

from geodite.data.dataset import FrameDataset, FrameStore, GraphCollate, split_by_material, write_store
from geodite.data.mptrj import (EV_A3_PER_KBAR, convert_to_store, ev_a3_to_kbar, iter_mptrj_json, iter_source,
                                kbar_to_ev_a3, material_of_frame_id, open_store)

from train_helpers import MPTRJ_FORMAT_JSON


def test_stress_conversion_sign_and_units():
    # 1 eV/Å³ = 160.21766208 GPa = 1602.1766208 kBar; VASP/MPtrj (compressive positive) → ASE (tensile positive)
    assert EV_A3_PER_KBAR == pytest.approx(1 / 1602.1766208)
    assert kbar_to_ev_a3(np.eye(3) * 1602.1766208) == pytest.approx(-np.eye(3))
    x = np.random.default_rng(0).normal(size=(3, 3))
    assert ev_a3_to_kbar(kbar_to_ev_a3(x)) == pytest.approx(x)
    assert material_of_frame_id("mp-1080834-0-1") == "mp-1080834"


def test_mptrj_json_reader_matches_the_real_frames(mptrj10):
    frames = list(iter_mptrj_json(MPTRJ_FORMAT_JSON))
    rows = list(connect(str(mptrj10)).select())
    assert len(frames) == len(rows) == 10
    for frame, row in zip(frames, rows):
        assert frame.energy == pytest.approx(row.energy)  # uncorrected_total_energy
        assert frame.corrected_energy == pytest.approx(row.energy - 0.1 * row.natoms)
        assert frame.forces == pytest.approx(row.forces)
        assert frame.stress == pytest.approx(voigt_6_to_full_3x3_stress(row.stress), abs=1e-12)
        assert np.allclose(frame.positions, row.positions, atol=1e-6)
        assert (frame.numbers == row.numbers).all()
    assert frames[0].material_id == frames[1].material_id == "mp-fixture-0"


def test_store_roundtrip_and_lazy_dataset(tmp_path, mptrj10):
    store = convert_to_store([MPTRJ_FORMAT_JSON, mptrj10], tmp_path / "store")
    assert len(store) == 20 and store.meta["num_atoms"] == 2 * sum(r.natoms for r in connect(str(mptrj10)).select())
    a, b = store[0], store[10]
    assert a.energy == pytest.approx(b.energy) and np.allclose(a.forces, b.forces, atol=1e-5)
    assert np.allclose(a.stress, b.stress) and np.allclose(a.positions, b.positions, atol=1e-6)
    assert isinstance(store.arrays["positions"], np.memmap)
    # reopening reuses the converted store; pickling (DataLoader workers) drops the maps
    import pickle

    again = pickle.loads(pickle.dumps(FrameStore(tmp_path / "store")))
    assert again[3].energy == store[3].energy
    batch = GraphCollate(cutoff=4.0)([store[i] for i in range(3)])
    assert batch.graph.num_graphs == 3 and batch.forces.shape == (batch.graph.z.shape[0], 3)
    assert bool(batch.has_stress.all())
    loader = torch.utils.data.DataLoader(FrameDataset(store), batch_size=4, collate_fn=GraphCollate(4.0),
                                         num_workers=1)
    assert sum(b.graph.num_graphs for b in loader) == 20


def test_open_store_reuses_conversion(tmp_path, mptrj10):
    s1 = open_store([str(mptrj10)], tmp_path / "s")
    mtime = (tmp_path / "s" / "meta.json").stat().st_mtime_ns
    s2 = open_store([str(mptrj10)], tmp_path / "s")
    assert len(s1) == len(s2) == 10 and (tmp_path / "s" / "meta.json").stat().st_mtime_ns == mtime
    assert len(open_store([str(tmp_path / "s")], tmp_path / "unused")) == 10


def test_split_by_material_never_straddles(tmp_path):
    from geodite.data.dataset import Frame

    rng = np.random.default_rng(1)
    frames = [Frame(numbers=np.array([1, 1]), positions=rng.normal(size=(2, 3)) * 3, cell=np.zeros((3, 3)),
                    pbc=np.zeros(3, bool), energy=-1.0, material_id=f"mp-{k % 7}") for k in range(40)]
    store = write_store(frames, tmp_path / "s")
    train, valid = split_by_material(store, 0.3, seed=0)
    assert len(train) + len(valid) == 40 and len(valid) > 0
    mats = store.material_of()
    assert not set(mats[train]) & set(mats[valid])


def test_extxyz_reader(tmp_path, mptrj10):
    import ase.io

    atoms = [row.toatoms() for row in connect(str(mptrj10)).select()][:3]
    for k, a in enumerate(atoms):
        a.info["mptrj_traj_id"] = f"mp-{k}"
    ase.io.write(tmp_path / "x.extxyz", atoms)
    frames = list(iter_source(tmp_path / "x.extxyz"))
    assert [f.material_id for f in frames] == ["mp-0", "mp-1", "mp-2"]
    assert frames[1].energy == pytest.approx(atoms[1].get_potential_energy())
    assert frames[1].stress == pytest.approx(atoms[1].get_stress(voigt=False))


def test_offline_download_error(tmp_path, monkeypatch):
    from geodite.data import mptrj

    monkeypatch.setattr(mptrj, "MPTRJ_JSON_URL", "http://127.0.0.1:9/MPtrj.json")
    with pytest.raises(RuntimeError, match="--data-dir"):
        mptrj.download_mptrj(mptrj.MPTRJ_JSON_URL, tmp_path / "MPtrj.json")
