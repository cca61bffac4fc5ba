"""Distillation: the structure pool, resumable labelling, the CLI commands."""

from pathlib import Path

import numpy as np
import pytest
import yaml
from ase.calculators.lj import LennardJones

from geodite.train.distill import MPTRJ_ELEMENTS, generate_structures, label_structures
from train_helpers import SHARED, tiny_config


@pytest.fixture(scope="module")
def pool():
    if not (SHARED / "wbm").exists():
        pytest.skip("shared data missing")
    return generate_structures(SHARED, seed=0)


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


def test_cli_distill_train_only_and_train(tmp_path, mptrj10):
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
    config["run"]["out_dir"] = str(tmp_path / "run2")
    path.write_text(yaml.safe_dump(config))
    result = CliRunner().invoke(app, ["distill", "--train-only", "--labels", str(mptrj10), "--config", str(path),
                                      "--export", str(tmp_path / "distilled.pt")])
    assert result.exit_code == 0, result.output
    from geodite.checkpoints import load_model

    assert load_model(str(tmp_path / "distilled.pt")).metadata["teacher"] == "sevennet-0"


def test_teacher_must_predict_uncorrected_energies():
    """CHGNet predicts MP2020-corrected energies: as a teacher it would teach the correction offset."""
    from geodite.train.distill import make_teacher

    with pytest.raises(ValueError, match="mp2020_corrected"):
        make_teacher("chgnet")
