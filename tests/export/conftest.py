"""Fixtures of the export and LAMMPS tests: the small golden model exported once (cached), the LAMMPS binary."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from geodite.checkpoints import load_checkpoint
from geodite.export import cached_export
from tests.conftest import DATA

ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / "build" / "test-cache"
SMALL_CHECKPOINT = DATA / "geodite_small_checkpoint.pt"


@pytest.fixture(scope="session")
def exported_small() -> Path:
    """The small golden model as a float64 package calling the geodite:: kernels (AOTInductor: a minute or more
    to compile, so cached in build/)."""
    return cached_export(load_checkpoint(SMALL_CHECKPOINT), CACHE, "geodite_small", dtype="float64").path


@pytest.fixture(scope="session")
def exported_shipped() -> Path:
    """The shipped model (registry name ``geodite``) as a float64 package of the geodite:: kernels (cached in
    build/; minutes to compile)."""
    from geodite.registry import resolve

    return cached_export(resolve("geodite").load_model(), CACHE, "geodite", dtype="float64").path


@pytest.fixture(scope="session")
def exported_small_plain() -> Path:
    """The same as a plain-autograd package (``--kernels plain``)."""
    return cached_export(load_checkpoint(SMALL_CHECKPOINT), CACHE, "geodite_small", dtype="float64",
                         kernels="plain").path


def missing(reason: str) -> None:
    """Skip for a missing LAMMPS prerequisite, or fail under GEODITE_REQUIRE_LAMMPS=1 (make test-lammps, which
    installs them all: nothing may skip there)."""
    if os.environ.get("GEODITE_REQUIRE_LAMMPS") == "1":
        pytest.fail(f"{reason} (GEODITE_REQUIRE_LAMMPS=1: make test-lammps installs it)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def lmp_geodite() -> Path:
    """The LAMMPS executable with pair_style geodite (make lammps) and mpirun; skipped if absent (``missing``)."""
    path = Path(os.environ.get("GEODITE_LMP", ROOT / "build" / "lammps" / "lmp_geodite"))
    if not path.exists():
        missing(f"no LAMMPS executable at {path}: run make lammps")
    if shutil.which("mpirun") is None:
        missing("no mpirun")
    return path
