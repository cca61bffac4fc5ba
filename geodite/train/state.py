"""The files of a training run that let it resume exactly: checkpoint.pt (the whole training state) and
best_ema.pt (the EMA weights of the best validation), both tensors and plain containers only, read with
``torch.load(weights_only=True)``, so that loading one never runs code."""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from geodite.checkpoints import CheckpointError, load_weights_only

STATE_FILE = "checkpoint.pt"
BEST_FILE = "best_ema.pt"
#: format of checkpoint.pt: tensors and plain containers only (read with torch.load(weights_only=True))
STATE_FORMAT = "geodite-train-state-v2"


class ResumeError(ValueError):
    """A training state file that is refused: unreadable, of another format, or holding more than tensors and
    plain data (nothing of it is executed)."""


def read_training_state(path: Path) -> dict:
    """checkpoint.pt or best_ema.pt of a run, read with torch.load(weights_only=True), else ResumeError."""
    try:
        state = load_weights_only(path)
    except CheckpointError as error:
        raise ResumeError(f"{error}: move it away to start afresh") from None
    if path.name == STATE_FILE and (not isinstance(state, dict) or state.get("format") != STATE_FORMAT):
        found = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise ResumeError(f"{path}: format {found!r}, not {STATE_FORMAT!r}: move it away to start afresh")
    return state


def save_atomically(payload: dict[str, Any], path: Path) -> None:
    """torch.save ``payload`` to ``path`` through a temporary file, so that a kill never leaves half a file."""
    tmp = path.with_suffix(".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def rng_state() -> dict:
    """The torch, numpy, python (and CUDA) generator states as tensors and plain containers."""
    numpy_state = np.random.get_state(legacy=False)  # MT19937: key [624] uint32, pos, cached Gaussian
    state = {"torch": torch.get_rng_state(),
             "numpy": {"key": torch.from_numpy(numpy_state["state"]["key"].astype(np.int64)),
                       "pos": int(numpy_state["state"]["pos"]), "has_gauss": int(numpy_state["has_gauss"]),
                       "gauss": float(numpy_state["gauss"])},
             "python": random.getstate()}  # (version, tuple of ints, gauss or None)
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore the generators from :func:`rng_state`'s dictionary."""
    torch.set_rng_state(state["torch"])
    numpy_state = state["numpy"]
    np.random.set_state({"bit_generator": "MT19937",
                         "state": {"key": numpy_state["key"].numpy().astype(np.uint32), "pos": numpy_state["pos"]},
                         "has_gauss": numpy_state["has_gauss"], "gauss": numpy_state["gauss"]})
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
