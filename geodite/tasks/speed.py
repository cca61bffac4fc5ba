"""Inference speed, side by side: energy + forces + stress per call, μs per atom-step (benchmarks: issue 8).

Models are timed in ONE process, interleaved (every repetition visits every size and model in turn) so
that a machine whose speed drifts affects all of them alike; the minimum and median over repetitions are
reported. Peak memory is measured separately, one child process per (model, size), as the peak resident
set during one call above the resident set before it (CPU; Linux /proc) or the CUDA allocator's peak (GPU).

The timing process keeps the memory it frees (``allocator="retain"``, the default; :func:`retain_freed_memory`):
with glibc's defaults, a tensor beyond the (adaptive) mmap threshold is returned to the kernel when freed and
faulted in page by page on the next call, and whether that happens to a model depends on which models and sizes
ran before it in the same process: MACE-MP-0 medium at 1,000 atoms ran at 107–155 atom-steps/s in runs that
alternated it with Geodite, 212–213 with freed memory kept (docs/speed.md). ``allocator="system"`` times with
glibc's defaults. Peak memory is always measured with the defaults (the child processes do not retain).

Timed models: any name :func:`geodite.registry.resolve` takes: the trained models (the shipped ``geodite``,
``sevennet-0``, ``chgnet``, …, a checkpoint or package path) and the registry's untrained architectures at
their published sizes, which time the same as trained ones: ``geodite-published`` (F = 192, 4 layers, 8 heads,
6 Å; ``geodite-published-python`` with fused.py's Python kernels instead of the C++ ones), the same exported by
AOTInductor (``geodite-published-aoti`` with the compiled edge-chunked kernels, ``geodite-published-aoti-plain``
as a plain-autograd graph; compiled once and cached) and ``mace-mp-0-medium`` (128x0e+128x1o, L = 1,
2 interactions, correlation 3, 6 Å; 4.69 M parameters, built in-process from mace-torch).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from statistics import median

import numpy as np
import pandas as pd
from ase import Atoms
from ase.build import bulk
from ase.calculators.calculator import all_changes

from geodite.registry import resolve

DEFAULT_MODELS = ("geodite-published", "geodite", "sevennet-0", "chgnet", "mace-mp-0-medium")
DEFAULT_SIZES = (64, 216, 1000)
MAX_ATOMS = 10_000  # the largest structure a speed run builds (`--sizes`, `--speed-sizes` refuse more)
STRUCTURES = ("si", "oxide")
ALLOCATORS = ("retain", "system")
# glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4


def crystal(kind: str, n_atoms: int) -> Atoms:
    """A periodic crystal at realistic density with about ``n_atoms`` atoms (a cubic repeat), rattled 0.01 Å.

    ``si``: diamond Si (a = 5.43 Å, 8 atoms per cube); ``oxide``: cubic perovskite SrTiO3 (a = 3.905 Å, 5 atoms).
    """
    if kind == "si":
        unit = bulk("Si", "diamond", a=5.43, cubic=True)
    elif kind == "oxide":
        unit = Atoms("SrTiO3", scaled_positions=[[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5],
                                                 [0, 0.5, 0.5]], cell=[3.905] * 3, pbc=True)
    else:
        raise ValueError(f"unknown structure {kind!r}: choose from {STRUCTURES}")
    repeat = max(1, round((n_atoms / len(unit)) ** (1 / 3)))
    atoms = unit.repeat(repeat)
    atoms.rattle(0.01, seed=0)
    return atoms


def one_call(calculator, atoms: Atoms, device: str) -> float:
    """Seconds for one energy + forces + stress evaluation from scratch (neighbour list included)."""
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()
    start = time.perf_counter()
    calculator.calculate(atoms, ["energy", "forces", "stress"], all_changes)
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()
    return time.perf_counter() - start


@dataclass
class SpeedOptions:
    models: tuple[str, ...] = DEFAULT_MODELS
    sizes: tuple[int, ...] = DEFAULT_SIZES
    structure: str = "si"
    repeats: int = 5
    warmup: int = 1
    threads: int = 2
    device: str = "cpu"
    dtype: str = "float32"
    memory: bool = True
    allocator: str = "retain"


def retain_freed_memory() -> bool:
    """Make this process keep the memory it frees for its next allocations (glibc: every block from the heap, never
    mmap; the heap top trimmed only beyond 2 GiB), so that a call's large tensors reuse the pages of the previous
    call's instead of being faulted in again. Process-wide and permanent; the resident set then stays near its
    peak. False where the C library is not glibc (nothing changed)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"))
    except OSError:
        return False
    if not hasattr(libc, "gnu_get_libc_version"):  # mallopt's parameters below are glibc's
        return False
    mallopt = libc.mallopt
    return bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))


def time_models(options: SpeedOptions, log=print) -> pd.DataFrame:
    """Interleaved timings: one row per (model, size) with min/median seconds per call; failures recorded."""
    import torch

    if options.allocator not in ALLOCATORS:
        raise ValueError(f"allocator must be one of {ALLOCATORS}, not {options.allocator!r}")
    if options.allocator == "retain" and not retain_freed_memory():
        log("[speed] cannot make this C library keep freed memory (not glibc): timing with its defaults")
    torch.set_num_threads(options.threads)
    calculators, errors = {}, {}
    for name in options.models:
        try:
            calculators[name] = resolve(name).load(device=options.device, dtype=options.dtype)
            if getattr(calculators[name], "setup_note", None):
                log(f"[speed] {name}: {calculators[name].setup_note}")
        except Exception as error:  # noqa: BLE001 - a peer that cannot be built is reported, not fatal
            errors[name] = f"{type(error).__name__}: {error}"
            log(f"[speed] {name}: cannot be built ({errors[name]})")
    structures = {n: crystal(options.structure, n) for n in options.sizes}
    times: dict[tuple[str, int], list[float]] = {(m, n): [] for m in calculators for n in options.sizes}
    for (name, n), _ in times.items():  # warm-up: first calls build caches, JIT, allocator pools
        for _ in range(options.warmup):
            try:
                one_call(calculators[name], structures[n], options.device)
            except Exception as error:  # noqa: BLE001
                errors[(name, n)] = f"{type(error).__name__}: {error}"
    for repeat in range(options.repeats):
        for n in options.sizes:
            for name in calculators:
                if (name, n) in errors:
                    continue
                times[(name, n)].append(one_call(calculators[name], structures[n], options.device))
        log(f"[speed] repetition {repeat + 1}/{options.repeats} done")
    rows = []
    for name in options.models:
        for n in options.sizes:
            samples = times.get((name, n), [])
            error = errors.get((name, n)) or errors.get(name)
            atoms = len(structures[n])
            row = {"model": name, "structure": options.structure, "n_atoms": atoms, "error": error}
            if samples and not error:
                row |= {
                    "s_per_call_min": min(samples),
                    "s_per_call_median": median(samples),
                    "us_per_atom_step": 1e6 * median(samples) / atoms,
                    "us_per_atom_step_min": 1e6 * min(samples) / atoms,
                    "atom_steps_per_s": atoms / median(samples),
                    "repeats": len(samples),
                }
            rows.append(row)
    return pd.DataFrame(rows)


def peak_memory_mb(name: str, n_atoms: int, options: SpeedOptions) -> float | None:
    """Peak memory (MB) of one call, measured in a fresh child process."""
    args = [sys.executable, "-m", "geodite.tasks.speed", name, str(n_atoms), options.structure, options.device,
            options.dtype, str(options.threads)]
    result = subprocess.run(args, capture_output=True, text=True, timeout=3600)
    try:
        return float(result.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return None


def _measure_memory_in_child(name: str, n_atoms: int, structure: str, device: str, dtype: str, threads: int):
    import torch

    torch.set_num_threads(threads)
    calculator = resolve(name).load(device=device, dtype=dtype)
    atoms = crystal(structure, n_atoms)
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
        one_call(calculator, atoms, device)
        print(torch.cuda.max_memory_allocated() / 2**20)
        return
    baseline = _status_kib("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak resident set (VmHWM) to the current one
    one_call(calculator, atoms, device)
    print((_status_kib("VmHWM") - baseline) / 1024)


def _status_kib(field: str) -> int:
    """A memory field of /proc/self/status in KiB (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def add_ratios(table: pd.DataFrame, reference: str = "geodite-published") -> pd.DataFrame:
    """speedup_of_reference = (reference's atom-steps/s) / (this model's), per size: > 1 means Geodite is faster."""
    ref = table[table["model"] == reference].set_index("n_atoms")["atom_steps_per_s"] if "atom_steps_per_s" in table else None
    if ref is None or ref.empty:
        return table
    table = table.copy()
    table[f"{reference}_speedup"] = table.apply(
        lambda row: ref.get(row["n_atoms"], np.nan) / row["atom_steps_per_s"]
        if pd.notna(row.get("atom_steps_per_s")) else np.nan, axis=1)
    return table


def run_speed(options: SpeedOptions, out_dir: Path, log=print) -> dict:
    """Time, measure memory, write the table + plot; returns the --json summary {"rows": [...]}."""
    from geodite.tasks.results import write_metrics, write_rows
    from geodite.tasks.store import jsonable

    start = time.perf_counter()
    with contextlib.redirect_stdout(sys.stderr):  # peers print while loading; stdout is for --json
        table = time_models(options, log)
    if options.memory:
        table["peak_mem_mb"] = [
            peak_memory_mb(row.model, row.n_atoms, options) if pd.isna(row.error) else None
            for row in table.itertuples()
        ]
    table = add_ratios(table)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_rows(table, out_dir)
    plot_scaling(table, out_dir / "speed-scaling.png", options)
    keys = ("model", "n_atoms", "us_per_atom_step", "us_per_atom_step_min", "atom_steps_per_s", "peak_mem_mb",
            "geodite-published_speedup", "error")
    rows = [{k: row.get(k) for k in keys if k in row} for row in table.to_dict("records")]
    summary = {"task": "speed", "model": ",".join(options.models), "device": options.device,
               "dtype": options.dtype, "threads": options.threads, "structure": options.structure,
               "allocator": options.allocator,
               "repeats": options.repeats, "machine": machine_description(options.device),
               "wall_s": round(time.perf_counter() - start, 1), "rows": jsonable(rows), "results_dir": str(out_dir)}
    write_metrics({k: v for k, v in summary.items() if k != "rows"}, out_dir, title="speed")
    (out_dir / "speed.json").write_text(json.dumps(jsonable(summary), indent=1))
    return summary


def machine_description(device: str) -> str:
    """One line for the table: CPU model, cores, torch version (and the GPU on CUDA)."""
    import torch

    from geodite.provenance import hardware

    machine = hardware()
    text = f"{machine['cpu']}, {machine['cores']} cores, torch {torch.__version__}"
    return text + (f", {machine['gpu']}" if device.startswith("cuda") and machine["gpu"] else "")


def plot_scaling(table: pd.DataFrame, path: Path, options: SpeedOptions) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    timed = table.dropna(subset=["us_per_atom_step"]) if "us_per_atom_step" in table else table.iloc[:0]
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for name, rows in timed.groupby("model", sort=False):
        ax.plot(rows["n_atoms"], rows["us_per_atom_step"], "o-", label=name)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("atoms")
    ax.set_ylabel("μs per atom-step (E+F+S, median)")
    ax.set_title(f"{options.structure}, {options.device} {options.dtype}, {options.threads} threads", fontsize=9)
    if len(timed):
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":  # child process of peak_memory_mb
    _measure_memory_in_child(sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5], int(sys.argv[6]))
