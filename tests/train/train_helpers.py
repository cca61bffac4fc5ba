"""Shared helpers of the training tests: tiny models, the real 10-frame MPtrj set, one CPU thread."""

from pathlib import Path

HERE = Path(__file__).parent
SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"  # ../shared beside the checkout
MPTRJ_10_DB = HERE.parent / "data" / "mptrj-10-systems.db"  # the copy in the repo (tests/data/README.md)
MPTRJ_FORMAT_JSON = HERE / "data" / "mptrj-format-10.json.gz"


def tiny_config(out_dir, train, **overrides) -> dict:
    config = {
        "model": dict(num_channels=8, num_layers=1, num_heads=2, cutoff=4.0, num_rbf=4, attn_dropout=0.0),
        "data": dict(train=[str(t) for t in train], valid_fraction=0.2, batch_size=2, num_workers=0,
                     store_dir=str(Path(out_dir) / "store")),
        "loss": dict(weights=[1.0, 1.0, 1.0]),
        "optim": dict(lr=1e-3, lr_start=1e-4, warmup_steps=2, zclip_warmup=3),
        "run": dict(out_dir=str(out_dir), epochs=2, checkpoint_every=2, log_every=0, num_threads=1),
    }
    for section, values in overrides.items():
        config[section] = {**config[section], **values}
    return config

