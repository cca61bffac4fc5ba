"""Thread settings: torch's intra-op threads for the model, one BLAS thread for numpy/scipy.

Used by the runner's executors (:mod:`geodite.tasks.executors`) and by relaxations (:mod:`geodite.relax`):
ASE optimisers and pymatgen work on 3×3 matrices, where BLAS threads only add contention (on 2 busy
cores an EMT cell relaxation took 8.3 s with 2 OpenBLAS threads and 0.24 s with 1).
"""

from __future__ import annotations

import contextlib
import os

import torch

THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def threads_per_worker(workers: int, cores: int | None = None) -> int:
    """Threads for each of ``workers`` processes sharing ``cores`` (default: the cores this process may
    use)."""
    if cores is None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, (cores or 1) // max(1, workers))


def thread_env(n: int) -> dict[str, str]:
    """Thread settings for a worker (the variables of :data:`THREAD_ENV`): ``n`` OpenMP/MKL threads for the
    model (torch), one OpenBLAS thread for numpy/scipy."""
    return {"OMP_NUM_THREADS": str(n), "MKL_NUM_THREADS": str(n), "OPENBLAS_NUM_THREADS": "1"}


def limit_blas_threads(n: int = 1):
    """Context manager limiting numpy/scipy BLAS threads (no-op without threadpoolctl)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(limits=n, user_api="blas")


def set_threads(n: int) -> None:
    """Per-process thread settings of a worker (see :func:`thread_env`)."""
    os.environ.update(thread_env(n))
    limit_blas_threads(1)  # stays in effect (not used as a context manager)
    torch.set_num_threads(n)


def set_torch_threads(n: int) -> int:
    """Set torch's intra-op threads, returning the previous value."""
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    return old
