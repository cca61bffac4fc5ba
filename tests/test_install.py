"""The set-up installs with the pinned installer, not whichever pip the Python bundles.

A fresh venv brings its Python's pip (23.x here), which refuses the hashed lock once the registry has moved on;
`make install` therefore bootstraps `requirements/pip.txt` (pip pinned and hash-checked) before the lock. CI builds
the venv from a fresh clone exactly so; this test checks that the venv the suite runs in got the pinned pip and that
the lock installs nothing the pinned pip would refuse.
"""

from __future__ import annotations

import re
from importlib.metadata import version
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _pinned(requirements: Path, name: str) -> str:
    match = re.search(rf"^{name}==(\S+)", requirements.read_text(), flags=re.M)
    assert match, f"{requirements} pins no {name}"
    return match.group(1)


def test_the_venv_runs_the_pinned_hash_checked_pip() -> None:
    pins = ROOT / "requirements" / "pip.txt"
    assert "--hash=sha256:" in pins.read_text()
    assert version("pip") == _pinned(pins, "pip")


def test_the_venv_is_built_with_the_pinned_pip_before_the_lock() -> None:
    """The Makefile's venv rule installs requirements/pip.txt right after creating the venv, and the lock venv too."""
    makefile = (ROOT / "Makefile").read_text()
    venv_rule = makefile.split("$(PYTHON) -m venv $(VENV)\n", 1)[1].splitlines()[0]
    assert "--require-hashes -r $(PIP_LOCK)" in venv_rule
    lock_rule = makefile.split("$(PYTHON) -m venv $(LOCK_VENV)\n", 1)[1].splitlines()[0]
    assert "--require-hashes -r $(PIP_LOCK)" in lock_rule
    assert "PIP_LOCK := requirements/pip.txt" in makefile
