"""Fixtures for the task tests: a 5-material WBM file (2 EMT-compatible, 3 not)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from geodite.threads import limit_blas_threads

DATA = Path(__file__).resolve().parents[1] / "data"
WBM60 = DATA / "wbm-random-60.json.gz"


@pytest.fixture(scope="session")
def wbm60() -> list[dict]:
    with gzip.open(WBM60, "rt") as fh:
        return json.load(fh)


@pytest.fixture(scope="session")
def wbm5_path(wbm60, tmp_path_factory) -> Path:
    """AlPd3 and AlAg2 (EMT relaxes them), CrRh, FeNi, LiGa (EMT has no Cr, Fe, Li: failed rows)."""
    path = tmp_path_factory.mktemp("wbm") / "wbm5.json.gz"
    with gzip.open(path, "wt") as fh:
        json.dump(wbm60[:5], fh)
    return path


@pytest.fixture(scope="session", autouse=True)
def _one_blas_thread():
    """numpy/scipy on 3×3 matrices: OpenBLAS threads only contend on the shared 2 cores."""
    with limit_blas_threads(1):
        yield
