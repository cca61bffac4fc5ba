"""Importing geodite first turns on PyTorch's huge-page allocation of large CPU tensors (geodite/__init__.py)."""

from __future__ import annotations

import os
import subprocess
import sys

PROBE = """
import geodite, torch
tensors = [torch.empty(n << 20, dtype=torch.uint8) for n in (3, 8, 17)]
print(os.environ.get("THP_MEM_ALLOC_ENABLE"), all(t.data_ptr() % 4096 == 0 for t in tensors))
"""


def _probe(env: dict[str, str]) -> list[str]:
    result = subprocess.run([sys.executable, "-c", "import os\n" + PROBE], env=env, capture_output=True, text=True,
                            check=True)
    return result.stdout.split()


def test_large_cpu_tensors_are_allocated_for_huge_pages():
    """c10's THP allocation (THP_MEM_ALLOC_ENABLE, read once at torch's first allocation) gives every tensor of
    2 MB and more whole pages, advised MADV_HUGEPAGE; otherwise glibc's large blocks start 64 bytes into a page."""
    env = {key: value for key, value in os.environ.items() if key != "THP_MEM_ALLOC_ENABLE"}
    assert _probe(env) == ["1", "True"]


def test_the_users_setting_wins():
    env = {**os.environ, "THP_MEM_ALLOC_ENABLE": "0"}
    assert _probe(env) == ["0", "False"]
