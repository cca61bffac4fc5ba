"""Fixtures of the export and LAMMPS tests: the small golden model exported once (cached), the LAMMPS binary."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import pytest
import torch

from geodite.checkpoints import load_checkpoint
from geodite.export import export_model
from tests.conftest import DATA

ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / "build" / "test-cache"
SMALL_CHECKPOINT = DATA / "geodite_small_checkpoint.pt"


def source_key(*paths: Path) -> str:
    """A hash of the files that decide an export's content, and of the torch version that compiles it."""
    digest = hashlib.sha256(torch.__version__.encode())
    for path in paths:
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


@pytest.fixture(scope="session")
def exported_small() -> Path:
    """The small golden model as a float64 package (AOTInductor: minutes to compile, so cached in build/)."""
    sources = [SMALL_CHECKPOINT, ROOT / "geodite" / "export.py", *sorted((ROOT / "geodite" / "model").glob("*.py"))]
    path = CACHE / f"geodite_small-float64-{source_key(*sources)}.pt2"
    if not path.exists():
        export_model(load_checkpoint(SMALL_CHECKPOINT), path.with_suffix(".tmp.pt2"), dtype="float64")
        path.with_suffix(".tmp.pt2").rename(path)
    return path


@pytest.fixture(scope="session")
def lmp_geodite() -> Path:
    """The LAMMPS executable with pair_style geodite (make lammps); skipped if absent, unless
    GEODITE_REQUIRE_LAMMPS=1 (make test-lammps), where its absence fails."""
    path = Path(os.environ.get("GEODITE_LMP", ROOT / "build" / "lammps" / "lmp_geodite"))
    if not path.exists():
        if os.environ.get("GEODITE_REQUIRE_LAMMPS") == "1":
            pytest.fail(f"no LAMMPS executable at {path}: run make lammps")
        pytest.skip(f"no LAMMPS executable at {path} (make lammps)")
    if shutil.which("mpirun") is None:
        pytest.skip("no mpirun")
    return path
