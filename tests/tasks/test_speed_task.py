"""`geodite bench speed`: interleaved timings, memory in child processes, table, plot and JSON rows."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from geodite.cli.main import app
from geodite.tasks.speed import ALLOCATORS, crystal
from tests.conftest import DATA


def test_crystals_have_requested_size_and_density():
    si = crystal("si", 216)
    assert len(si) == 216 and abs(si.get_volume() / len(si) - 5.43**3 / 8) < 1e-6
    oxide = crystal("oxide", 1000)
    assert len(oxide) == 5 * 6**3 and set(oxide.get_chemical_symbols()) == {"Sr", "Ti", "O"}


def test_speed_command_json_rows(tmp_path):
    models = f"emt,{DATA / 'geodite_small_checkpoint.pt'},no-such-model"
    result = CliRunner().invoke(app, ["bench", "speed", "--models", models, "--sizes", "8,27", "--structure", "si",
                                      "--repeats", "2", "--threads", "1", "--results-dir", str(tmp_path), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[0])
    assert summary["allocator"] == "retain"
    rows = {(r["model"], r["n_atoms"]): r for r in summary["rows"]}
    geodite = rows[(str(DATA / "geodite_small_checkpoint.pt"), 8)]
    assert geodite["us_per_atom_step"] > 0 and geodite["atom_steps_per_s"] > 0 and geodite["peak_mem_mb"] >= 0
    assert rows[("no-such-model", 8)]["error"]
    assert (tmp_path / "speed" / "si-cpu" / "speed-scaling.png").exists()


RELOAD_FAULTS = """
import ctypes, ctypes.util, resource, sys
from geodite.tasks.speed import retain_freed_memory
if sys.argv[1] == "retain":
    assert retain_freed_memory()
libc = ctypes.CDLL(ctypes.util.find_library("c"))
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
SIZE = 64 << 20

def written_block():
    block = libc.malloc(SIZE)
    ctypes.memset(block, 1, SIZE)
    return block

libc.free(written_block())
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
libc.free(written_block())  # the same size again
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def test_retained_memory_is_reused_without_page_faults():
    """A freed 64 MB block, allocated again: with glibc's defaults (beyond the mmap threshold) its pages are faulted
    in again; after retain_freed_memory (what `bench speed` does by default) they are reused."""
    faults = {mode: int(subprocess.run([sys.executable, "-c", RELOAD_FAULTS, mode], capture_output=True, text=True,
                                       check=True).stdout) for mode in ALLOCATORS}
    if faults["system"] < 1000:
        pytest.skip(f"this system's allocator faulted only {faults['system']} pages for 64 MB (huge pages?)")
    assert faults["retain"] < faults["system"] / 20, faults
