"""Saving and loading Geodite weights: our own format, the upstream layout, Geodite-MP, the shipped model.

Loading never runs code: every file goes through ``torch.load(weights_only=True)``, and the pickled
payloads that the upstream keeps inside uint8 tensors (normalisation constants, e0 table) are decoded by
the same restricted unpickler, which admits only plain containers, numbers, strings and tensors.
"""

from __future__ import annotations

import io
import math
import os
from importlib import resources
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import Tensor

from geodite.data.downloads import DownloadError, cache_dir, download_file
from geodite.model import Geodite, GeoditeConfig

CHECKPOINT_FORMAT = "geodite-checkpoint-v1"

#: the published Geodite-MP Lightning checkpoint (upstream README)
GEODITE_MP_URL = "https://huggingface.co/ibm-research/materials.geodite/resolve/main/Geodite-MP.ckpt"
#: the model shipped inside the package (distilled; see geodite/weights/MODEL_CARD.md)
SHIPPED_MODEL_FILE = "geodite-distilled.pt"
#: the upstream constants key selected by its default fidelity "MPtrj"
UPSTREAM_FIDELITY = "MPtrj_"
#: prefixes that wrappers (Lightning modules, torch.compile) put in front of upstream keys
_WRAPPER_PREFIXES = ("model.", "_orig_mod.", "module.")


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be found, downloaded or understood."""


def safe_unpickle(payload: bytes | Tensor) -> Any:
    """Decode a pickled payload (raw bytes or a uint8 tensor) admitting only plain data and tensors.

    Raises ``CheckpointError`` for anything that would import or call code.
    """
    if isinstance(payload, Tensor):
        payload = payload.cpu().numpy().tobytes()
    try:
        return torch.load(io.BytesIO(payload), weights_only=True, map_location="cpu")
    except Exception as error:  # torch raises UnpicklingError (or RuntimeError for legacy streams)
        raise CheckpointError(f"refused to decode a pickled payload ({_unpickling_reason(error)})") from None


def _unpickling_reason(error: Exception) -> str:
    """One line out of torch's multi-line refusal (e.g. "Trying to load unsupported GLOBAL posix.system ...")."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    boilerplate = ("Weights only load failed", "Please file an issue", "Check the documentation")
    reasons = [line for line in lines if not line.startswith(boilerplate)] or lines or [type(error).__name__]
    return reasons[0]


def load_weights_only(path: str | Path) -> Any:
    """A file written by torch.save, read with ``torch.load(weights_only=True)`` onto the CPU: tensors and
    plain containers only, so a crafted file cannot run code. CheckpointError (one line) for anything else."""
    try:
        return torch.load(path, weights_only=True, map_location="cpu")
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint not found: {path}") from None
    except Exception as error:
        raise CheckpointError(f"refused to load {path}: not a readable file of tensors and plain data "
                              f"({_unpickling_reason(error)})") from None


# --------------------------------------------------------------------------------------------- upstream


def upstream_key_map(num_layers: int) -> dict[str, str]:
    """Our parameter names -> the upstream implementation's names (IBM/materials, package ``geodite``)."""
    keys = {
        "radial.basis.freqs": "encoder.radial_basis.freqs",
        "radial.basis.prefactor": "encoder.radial_basis.prefactor",
        "radial.distance_weighting.covalent_radii": "encoder.distance_weighting_fn.covalent_radii",
        "radial.distance_weighting.p_raw": "encoder.distance_weighting_fn.p",
        "radial.distance_weighting.q_raw": "encoder.distance_weighting_fn.q",
        "node_embedding.self_embedding.weight": "encoder.A_na.weight",
        "node_embedding.neighbour_embedding.weight": "encoder.node_init.A_nbr.weight",
        "node_embedding.radial_to_channels.weight": "encoder.node_init.W_ndp.layers.0.weight",
        "node_embedding.density.weight.weight": "encoder.node_init.density_fn.weight",
        "node_embedding.mlp_in.weight": "encoder.node_init.W_nrd_nru.layers.0.weight",
        "node_embedding.mlp_out.weight": "encoder.node_init.W_nrd_nru.layers.1.weight",
        "edge_embedding.radial_to_channels.weight": "encoder.edge_init.W_erp.weight",
        "zbl.a_factor": "SnapshotDecoder.repulsion_term.a_factor",
        "zbl.z_power": "SnapshotDecoder.repulsion_term.Z_power",
        "zbl.screen_coefs": "SnapshotDecoder.repulsion_term.screen_coefs",
        "zbl.screen_exps": "SnapshotDecoder.repulsion_term.screen_exps",
        "zbl.covalent_radii": "SnapshotDecoder.repulsion_term.covalent_radii",
    }
    per_layer = {
        "query.weight": "W_q.weight",
        "key.weight": "W_k.weight",
        "edge_attention.weight": "W_re.weight",
        "edge_filter.weight": "W_rs.weight",
        "value_mlp.linear_in.weight": "gamma_v.0.weight",
        "value_mlp.linear_out.weight": "gamma_v.1.weight",
        "filter_mlp.linear_in.weight": "gamma_s.0.weight",
        "filter_mlp.linear_out.weight": "gamma_s.1.weight",
        "density.weight.weight": "density_fn.weight",
        "norm.scales.0": "tensor_layernorm.affine_weights.0",
        "norm.scales.1": "tensor_layernorm.affine_weights.1",
        "norm.scales.2": "tensor_layernorm.affine_weights.2",
    }
    edge_update = {
        "edge_update.query.weight": "W_vq.weight",
        "edge_update.keys.0.weight": "W_vk.0.weight",
        "edge_update.keys.1.weight": "W_vk.1.weight",
        "edge_update.norm.weight": "gamma_w.0.weight",
        "edge_update.norm.bias": "gamma_w.0.bias",
        "edge_update.out.weight": "W_edp.weight",
        "edge_update.gate.linear_in.weight": "gamma_t.layers.0.weight",
        "edge_update.gate.linear_out.weight": "gamma_t.layers.1.weight",
    }
    for layer in range(num_layers):
        names = dict(per_layer) | (edge_update if layer < num_layers - 1 else {})
        for ours, theirs in names.items():
            keys[f"interactions.{layer}.{ours}"] = f"encoder.interaction_list.{layer}.{theirs}"
        keys[f"couplings.{layer}.mix.weight"] = f"encoder.ec_list.{layer}.W_vu.weight"
        keys[f"couplings.{layer}.mlp.linear_in.weight"] = f"encoder.ec_list.{layer}.gamma_m.0.weight"
        keys[f"couplings.{layer}.mlp.linear_out.weight"] = f"encoder.ec_list.{layer}.gamma_m.1.weight"
        keys[f"readouts.{layer}.weight"] = f"SnapshotDecoder.readout.linears.{layer}.weight"
    return keys


def _strip_wrapper_prefixes(state_dict: Mapping[str, Any]) -> dict[str, Any]:
    stripped = {}
    for key, value in state_dict.items():
        changed = True
        while changed:
            changed = False
            for prefix in _WRAPPER_PREFIXES:
                if key.startswith(prefix):
                    key, changed = key[len(prefix):], True
        stripped[key] = value
    return stripped


def is_upstream_state_dict(state_dict: Mapping[str, Any]) -> bool:
    return "encoder.A_na.weight" in _strip_wrapper_prefixes(state_dict)


def upstream_config(state_dict: Mapping[str, Tensor], num_heads: int | None = None) -> GeoditeConfig:
    """Read a model's size from upstream tensor shapes. Heads cannot be seen in shapes: pass ``num_heads``
    (from the checkpoint's hyper-parameters), else F/24 as at the published size (192 channels, 8 heads)."""
    sd = _strip_wrapper_prefixes(state_dict)
    max_z, channels = sd["encoder.A_na.weight"].shape
    if num_heads is None and channels % 24:
        raise CheckpointError(f"cannot infer the number of attention heads for {channels} channels: pass num_heads")
    num_layers = len({k.split(".")[2] for k in sd if k.startswith("encoder.ec_list.")})
    freqs = sd["encoder.radial_basis.freqs"]
    edge_update_keys = "encoder.interaction_list.0.W_vq.weight"
    return GeoditeConfig(
        num_channels=int(channels),
        num_layers=num_layers,
        num_heads=int(num_heads or channels // 24),
        cutoff=float(math.pi / float(freqs[0])),
        num_rbf=int(freqs.shape[0]),
        max_z=int(max_z),
        edge_vec_dim=int(sd[edge_update_keys].shape[0]) if edge_update_keys in sd else None,
        edge_mlp_dim=int(sd["encoder.interaction_list.0.gamma_t.layers.0.weight"].shape[0])
        if num_layers > 1
        else None,
    )


def model_from_upstream(
    state_dict: Mapping[str, Any], num_heads: int | None = None, fidelity: str = UPSTREAM_FIDELITY
) -> Geodite:
    """Build a Geodite from an upstream state dict (names as in IBM/materials), e.g. Geodite-MP's."""
    sd = _strip_wrapper_prefixes(state_dict)
    config = upstream_config(sd, num_heads)
    constants_all = safe_unpickle(sd["SnapshotDecoder.constants"])
    if fidelity not in constants_all:
        raise CheckpointError(f"fidelity {fidelity!r} not in the checkpoint's constants: {sorted(constants_all)}")
    constants = constants_all[fidelity]
    config = GeoditeConfig.from_dict(
        config.to_dict()
        | {"energy_scale": float(constants["e_scale"]), "energy_shift": float(constants["e_shift"])}
    )
    model = Geodite(config).double()
    ours = {}
    for our_key, their_key in upstream_key_map(config.num_layers).items():
        if their_key not in sd:
            raise CheckpointError(f"upstream state dict lacks {their_key!r}")
        ours[our_key] = sd[their_key]
    e0 = torch.as_tensor(constants["e0"], dtype=torch.float64).flatten()
    ours["e0"] = torch.zeros(119, dtype=torch.float64).index_copy_(0, torch.arange(len(e0)), e0)
    ours["energy_scale"] = torch.tensor(float(constants["e_scale"]), dtype=torch.float64)
    ours["energy_shift"] = torch.tensor(float(constants["e_shift"]), dtype=torch.float64)
    model.load_state_dict(ours, strict=True)
    return model


# --------------------------------------------------------------------------------------------- our format


def save_checkpoint(model: Geodite, path: str | Path, metadata: Mapping[str, Any] | None = None) -> Path:
    """Write config + weights (+ plain-data metadata) in a format ``load_checkpoint`` reads safely."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": CHECKPOINT_FORMAT,
        "config": model.config.to_dict(),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "metadata": dict(metadata or {}),
    }
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)
    return path


def _model_from_payload(path: Path, payload: Mapping[str, Any]) -> Geodite:
    """The float64 Geodite of one of our checkpoints. Every defect is a one-line CheckpointError, found before
    the model is allocated: a configuration that is not one, weights that do not fit it (the shapes are
    compared on the meta device, so a config asking for 100,000 channels × 50 layers allocates nothing), a
    model larger than the memory available."""
    if not isinstance(payload.get("config"), Mapping):
        raise CheckpointError(f"{path}: the checkpoint holds no model configuration")
    try:
        config = GeoditeConfig.from_dict(dict(payload["config"]))
        with torch.device("meta"):
            skeleton = Geodite(config)
    except (TypeError, ValueError, RuntimeError) as error:
        raise CheckpointError(f"{path}: not a usable model configuration ({error})") from None
    state = payload.get("state_dict")
    if not isinstance(state, Mapping) or not all(isinstance(v, Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: the checkpoint holds no state dict of tensors")
    expected = {key: tuple(value.shape) for key, value in skeleton.state_dict().items()}
    found = {key: tuple(value.shape) for key, value in state.items()}
    n_parameters = sum(math.prod(shape) for shape in expected.values())
    if expected != found:
        missing, extra = sorted(set(expected) - set(found)), sorted(set(found) - set(expected))
        wrong = [f"{k} {found[k]} instead of {expected[k]}" for k in expected if k in found and found[k] != expected[k]]
        problems = ([f"{len(missing)} missing (e.g. {missing[0]})"] if missing else []) + (
            [f"{len(extra)} unexpected (e.g. {extra[0]})"] if extra else []) + (
            [f"{len(wrong)} of other shape (e.g. {wrong[0]})"] if wrong else [])
        raise CheckpointError(
            f"{path}: the weights do not fit its configuration ({config.num_channels} channels, {config.num_layers} "
            f"layers: {n_parameters:,} parameters, {8 * n_parameters / 1e9:.3g} GB in float64): {'; '.join(problems)}")
    check_fits_in_memory(n_parameters, path)
    model = Geodite(config).double()
    model.load_state_dict(state)
    model.metadata = dict(payload.get("metadata") or {})
    return model


def available_memory_bytes() -> int | None:
    """Memory the system can give a process now (Linux MemAvailable, bytes); None where unknown."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def check_fits_in_memory(n_parameters: int, path: str | Path) -> None:
    """CheckpointError when ``n_parameters`` float64 weights (twice: the model and a working copy) would not fit
    in the memory available."""
    needed, available = 16 * n_parameters, available_memory_bytes()
    if available is not None and needed > available:
        raise CheckpointError(f"{path}: a model of {n_parameters:,} parameters needs about {needed / 1e9:.3g} GB, "
                              f"more than the {available / 1e9:.3g} GB available here")


def load_checkpoint(path: str | Path, num_heads: int | None = None) -> Geodite:
    """Load our checkpoints, upstream state dicts and upstream Lightning checkpoints (float64 model)."""
    path = Path(path)
    payload = load_weights_only(path)
    if isinstance(payload, Mapping) and payload.get("format") == CHECKPOINT_FORMAT:
        return _model_from_payload(path, payload)
    if isinstance(payload, Mapping):
        state_dict = payload.get("state_dict", payload)
        if isinstance(state_dict, Mapping) and is_upstream_state_dict(state_dict):
            hyper = payload.get("hyper_parameters") or {}
            heads = num_heads or (hyper.get("encoder", {}).get("args", {}).get("num_heads") if hyper else None)
            model = model_from_upstream(state_dict, num_heads=heads)
            model.metadata = {"source": str(path), "layout": "upstream"}
            return model
    raise CheckpointError(f"{path} is neither a Geodite checkpoint nor an upstream Geodite state dict")


def shipped_model_path() -> Path:
    return Path(str(resources.files("geodite") / "weights" / SHIPPED_MODEL_FILE))


def resolve_model_path(name: str) -> Path:
    """'geodite' -> the shipped checkpoint; 'geodite-mp' -> the published checkpoint (cached download);
    anything else is a path."""
    if name == "geodite":
        path = shipped_model_path()
        if not path.exists():
            raise CheckpointError(f"the shipped Geodite checkpoint is missing from the package ({path})")
        return path
    if name == "geodite-mp":
        path = cache_dir() / "Geodite-MP.ckpt"
        if path.exists():
            return path
        try:
            return download_file(GEODITE_MP_URL, path, manual="Download the file elsewhere and pass its path "
                                 f"(--model PATH), or place it at {path}.")
        except DownloadError as error:
            raise CheckpointError(str(error)) from error
    path = Path(name).expanduser()
    if not path.exists():
        raise CheckpointError(f"no model named {name!r} and no checkpoint at that path")
    return path


def load_model(name_or_path: str | Path = "geodite") -> Geodite:
    """The one function every entry point uses to turn a model name or path into a Geodite (float64, eval)."""
    model = load_checkpoint(resolve_model_path(str(name_or_path)))
    return model.eval()
