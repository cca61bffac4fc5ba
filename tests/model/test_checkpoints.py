"""Loading weights never runs code; our format round-trips; the upstream key map is complete."""

from __future__ import annotations

import pickle
import urllib.error
import urllib.request

import pytest
import torch

from geodite import checkpoints
from geodite.checkpoints import (
    CheckpointError,
    load_weights_only,
    load_checkpoint,
    safe_unpickle,
    save_checkpoint,
    upstream_key_map,
)
from geodite.model import Geodite, GeoditeConfig
from tests.conftest import DATA


class Exploit:
    def __reduce__(self):
        import os

        return (os.system, ("echo pwned > exploited.txt",))


def test_restricted_unpickler_refuses_code(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    payload = pickle.dumps({"e0": Exploit()})
    with pytest.raises(CheckpointError, match="refused"):
        safe_unpickle(payload)
    as_tensor = torch.tensor(list(payload), dtype=torch.uint8)
    with pytest.raises(CheckpointError):
        safe_unpickle(as_tensor)
    assert not (tmp_path / "exploited.txt").exists()


def test_restricted_unpickler_reads_upstream_constants():
    state_dict = load_weights_only(DATA / "geodite_small_state_dict.pt")
    constants = safe_unpickle(state_dict["SnapshotDecoder.constants"])
    assert constants["MPtrj_"]["e_scale"] == pytest.approx(0.6859245200012877)
    assert safe_unpickle(state_dict["SnapshotDecoder.context"]) == {"MPtrj_"}


def test_malicious_checkpoint_file_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    path.write_bytes(pickle.dumps({"state_dict": Exploit()}))
    with pytest.raises(CheckpointError, match="refused to load .*evil.pt") as refusal:
        load_checkpoint(path)
    assert "\n" not in str(refusal.value)


def test_key_map_covers_every_upstream_tensor():
    state_dict = load_weights_only(DATA / "geodite_small_state_dict.pt")
    mapped = set(upstream_key_map(num_layers=2).values())
    aliases_and_derived = {
        k for k in state_dict if ".dense_layers." in k or "gamma_w.1." in k or k.endswith("balance_degree_weight")
    }
    unmapped = set(state_dict) - mapped - aliases_and_derived - {"SnapshotDecoder.constants", "SnapshotDecoder.context"}
    assert unmapped == set()


def test_own_format_round_trip(tmp_path):
    model = Geodite(GeoditeConfig(num_channels=8, num_layers=2, num_heads=2, num_rbf=4, cutoff=4.0))
    path = save_checkpoint(model, tmp_path / "m.pt", metadata={"note": "test"})
    loaded = load_checkpoint(path)
    assert loaded.config == model.config and loaded.metadata == {"note": "test"}
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value)


def test_geodite_mp_download_fails_clearly_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("GEODITE_CACHE_DIR", str(tmp_path))

    def offline(*args, **kwargs):
        raise urllib.error.URLError("Temporary failure in name resolution")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with pytest.raises(CheckpointError, match="--model PATH"):
        checkpoints.resolve_model_path("geodite-mp")
    assert not list(tmp_path.iterdir())  # no half-written file left behind


def test_lightning_style_checkpoint_with_prefixes(tmp_path, small_config):
    state_dict = load_weights_only(DATA / "geodite_small_state_dict.pt")
    lightning = {
        "state_dict": {f"model.{k}": v for k, v in state_dict.items()},
        "hyper_parameters": {"encoder": {"args": {"num_heads": small_config["encoder"]["num_heads"]}}},
    }
    path = tmp_path / "Geodite-small.ckpt"
    torch.save(lightning, path)
    model = load_checkpoint(path)
    assert model.config.num_heads == 2 and model.config.cutoff == pytest.approx(5.0)


def test_unknown_model_name():
    with pytest.raises(CheckpointError, match="no model named"):
        checkpoints.resolve_model_path("not-a-model")


def _tiny_payload(tmp_path) -> dict:
    model = Geodite(GeoditeConfig(num_channels=8, num_layers=1, num_heads=2, num_rbf=4, cutoff=4.0))
    return torch.load(save_checkpoint(model, tmp_path / "tiny.pt"), weights_only=True)


def _damaged(payload: dict, damage: str) -> dict:
    if damage == "absurd size":  # 100,000 channels × 50 layers: tens of TB if it were allocated
        payload["config"] |= {"num_channels": 100_000, "num_layers": 50}
    elif damage == "no config":
        del payload["config"]
    elif damage == "config of another type":
        payload["config"]["num_channels"] = "many"
    elif damage == "unknown config key":
        payload["config"]["colour"] = "blue"
    elif damage == "a tensor missing":
        payload["state_dict"].pop("e0")
    elif damage == "no state dict":
        payload["state_dict"] = [1, 2]
    return payload


@pytest.mark.parametrize("damage", ["absurd size", "no config", "config of another type", "unknown config key",
                                    "a tensor missing", "no state dict"])
def test_a_malformed_checkpoint_is_one_line_and_allocates_nothing(tmp_path, damage, monkeypatch):
    path = tmp_path / "damaged.pt"
    torch.save(_damaged(_tiny_payload(tmp_path), damage), path)
    built = []
    monkeypatch.setattr(Geodite, "double", lambda self: built.append(self) or self)  # the real allocation
    with pytest.raises(CheckpointError) as refused:
        load_checkpoint(path)
    assert str(path) in str(refused.value) and "\n" not in str(refused.value)
    assert built == []
    if damage == "absurd size":
        assert "do not fit its configuration" in str(refused.value) and "GB in float64" in str(refused.value)


def test_a_model_larger_than_the_memory_available_is_refused(tmp_path, monkeypatch):
    path = tmp_path / "tiny.pt"
    torch.save(_tiny_payload(tmp_path), path)
    monkeypatch.setattr(checkpoints, "available_memory_bytes", lambda: 1000)
    with pytest.raises(CheckpointError, match="more than the 1e-06 GB available"):
        load_checkpoint(path)
