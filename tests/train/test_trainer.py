"""Trainer: loss pieces, exact resume after SIGKILL, DDP (2 gloo processes) = single process, fine-tuning."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from geodite.train.config import FINETUNE_DEFAULTS, TrainConfig
from geodite.train.optim import EMA, ZClip, warmup_linear_decay
from geodite.train.trainer import Trainer, epoch_batches, train
from train_helpers import tiny_config

REPO = Path(__file__).resolve().parents[2]


def test_zclip_clips_spikes_and_tracks_statistics():
    p = torch.nn.Parameter(torch.zeros(4))
    clip = ZClip(alpha=0.97, z_threshold=2.5, warmup_steps=5)
    rng = np.random.default_rng(0)
    for _ in range(30):
        p.grad = torch.full((4,), 0.5 + 0.01 * rng.normal())
        clip([p])
    mean, std, clipped = clip.mean, clip.var ** 0.5, clip.num_clipped
    p.grad = torch.full((4,), 50.0)
    norm = clip([p])
    assert norm == pytest.approx(100.0)
    assert float(p.grad.norm()) == pytest.approx(mean + 2.5 * std, rel=1e-4)
    assert clip.num_clipped == clipped + 1
    state = clip.state_dict()
    other = ZClip()
    other.load_state_dict(state)
    assert other.mean == clip.mean and other.var == clip.var


def test_ema_and_schedule():
    lin = torch.nn.Linear(2, 1)
    ema = EMA(lin, decay=0.5, warmup=False)
    with torch.no_grad():
        lin.weight.add_(2.0)
    ema.update(lin)
    assert torch.allclose(ema.shadow["weight"], lin.weight - 1.0)
    opt = torch.optim.SGD(lin.parameters(), lr=1.0)
    sched = warmup_linear_decay(opt, 0.1, 10, 110)
    lrs = []
    for _ in range(111):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == pytest.approx(0.1) and lrs[10] == pytest.approx(1.0) and lrs[60] == pytest.approx(0.5)
    assert lrs[110] == pytest.approx(0.0)


def test_epoch_order_is_deterministic():
    a = epoch_batches(10, 3, epoch=1, seed=0)
    assert [list(x) for x in a] == [list(x) for x in epoch_batches(10, 3, epoch=1, seed=0)]
    assert len(a) == 3 and all(len(x) == 3 for x in a)


def test_training_reduces_loss_and_exports(tmp_path, mptrj10):
    config = tiny_config(tmp_path, [mptrj10], run=dict(epochs=3), optim=dict(warmup_steps=0, lr=3e-3))
    metrics = train(config)
    assert np.isfinite(metrics["valid_loss"]) and (tmp_path / "metrics.csv").exists()
    rows = (tmp_path / "metrics.csv").read_text().strip().splitlines()
    assert len(rows) == 4 and rows[0].startswith("epoch,step")
    # the same EMA weights are also measured on training frames, so under- and over-fitting can be told apart
    assert "train_force_mae_mev_a" in rows[0].split(",")
    assert np.isfinite(metrics["train_force_mae_mev_a"]) and metrics["train_force_mae_mev_a"] > 0
    from geodite.checkpoints import load_model

    model = load_model(str(tmp_path / "model.pt"))
    assert model.config.num_channels == 8 and model.metadata["trained_steps"] > 0


RUNNER = """
import sys, json
from geodite.train.trainer import train
train(json.loads(sys.argv[1]))
"""


def _launch(config):
    import json

    return subprocess.Popen([sys.executable, "-c", RUNNER, json.dumps(config)], cwd=REPO,
                            env={**os.environ, "OMP_NUM_THREADS": "1"},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def test_sigkill_and_resume_gives_identical_weights(tmp_path, mptrj10):
    def config(out):
        return tiny_config(out, [mptrj10], data=dict(batch_size=1, valid_fraction=0.2),
                           run=dict(epochs=4, checkpoint_every=3))

    ref = _launch(config(tmp_path / "ref"))
    assert ref.wait(timeout=600) == 0, ref.stderr.read().decode()[-2000:]

    out = tmp_path / "killed"
    proc = _launch(config(out))
    state = out / "checkpoint.pt"
    while not state.exists() and proc.poll() is None:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "run ended before the first checkpoint could be interrupted"
    killed_at = torch.load(state, weights_only=True)["step"]
    final_ref = torch.load(tmp_path / "ref" / "checkpoint.pt", weights_only=True)
    assert killed_at < final_ref["step"]

    resumed = _launch(config(out))
    assert resumed.wait(timeout=600) == 0, resumed.stderr.read().decode()[-2000:]
    final = torch.load(state, weights_only=True)
    assert final["step"] == final_ref["step"]
    for key in ("model",):
        for name, value in final_ref[key].items():
            assert torch.equal(value, final[key][name]), name
    for name, value in final_ref["ema"]["shadow"].items():
        assert torch.equal(value, final["ema"]["shadow"][name]), name
    assert final["history"][-1]["valid_loss"] == final_ref["history"][-1]["valid_loss"]
    # the interrupted epoch's train_loss covers its batches from before the kill too
    assert [row["train_loss"] for row in final["history"]] == [row["train_loss"] for row in final_ref["history"]]


def _ddp_worker(rank, world, port, config, out):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    trainer = Trainer(TrainConfig.from_dict(config))
    trainer.train()
    torch.save({k: v.clone() for k, v in trainer.model.state_dict().items()}, Path(out) / f"rank{rank}.pt")
    torch.distributed.destroy_process_group()


def test_ddp_two_gloo_processes_match_single_process(tmp_path, mptrj10):
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    common = dict(model=dict(attn_dropout=0.0), run=dict(epochs=2, dtype="float64"),
                  optim=dict(warmup_steps=1, zclip_warmup=2))
    ddp_config = tiny_config(tmp_path / "ddp", [mptrj10], data=dict(batch_size=2, valid_fraction=0.2), **{
        k: v for k, v in common.items() if k != "data"})
    mp.spawn(_ddp_worker, args=(2, port, ddp_config, str(tmp_path)), nprocs=2, join=True)
    r0 = torch.load(tmp_path / "rank0.pt")
    r1 = torch.load(tmp_path / "rank1.pt")
    for name in r0:
        assert torch.equal(r0[name], r1[name]), name

    single = tiny_config(tmp_path / "single", [mptrj10], data=dict(batch_size=4, valid_fraction=0.2), **common)
    trainer = Trainer(TrainConfig.from_dict(single))
    trainer.train()
    assert trainer.step > 1
    for name, value in trainer.model.state_dict().items():
        assert torch.allclose(value, r0[name], atol=1e-9, rtol=1e-7), name


def test_finetune_from_checkpoint_with_plateau(tmp_path, mptrj10):
    from geodite.checkpoints import save_checkpoint
    from geodite.model import Geodite, GeoditeConfig

    base = Geodite(GeoditeConfig(num_channels=8, num_layers=1, num_heads=2, cutoff=4.0, num_rbf=4,
                                 energy_scale=0.5, energy_shift=-0.1))
    save_checkpoint(base, tmp_path / "base.pt")
    config = tiny_config(tmp_path / "ft", [mptrj10], model=dict(init_from=str(tmp_path / "base.pt")),
                         run=dict(epochs=2))
    for section, values in FINETUNE_DEFAULTS.items():
        config[section] = {**config[section], **values}
    trainer = Trainer(TrainConfig.from_dict(config))
    assert isinstance(trainer.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(3e-5)
    assert trainer.norm.energy_std == pytest.approx(0.5) and trainer.config.loss.weights == [1.0, 5.0, 1.0]
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    trainer.train()
    changed = [k for k, v in trainer.model.state_dict().items() if not torch.equal(v, before[k])]
    assert changed and float(trainer.model.energy_scale) == pytest.approx(0.5)
