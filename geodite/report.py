"""Every benchmark in one go, and one results report (tables + figures + provenance → Markdown / HTML).

* :func:`run_all` runs discovery, kappa, diatomics, MD and speed for one model with the same library
  functions the single commands use (each task object → :func:`geodite.tasks.runner.run_task`; speed →
  :func:`geodite.tasks.speed.run_speed`), resuming what is already stored, going on with the next task
  when one fails, and records the run's provenance in ``results/<model>/provenance.json``.
* :func:`write_report` reads ``results/<task>/<model>/metrics.json`` and the figures next to it and writes
  ``results/<model>/report.md`` (figures linked relatively) and ``report.html`` (self-contained: CSS
  inline, figures embedded as base64). Several models go side by side (one column per model).

The seed paper's published table (docs/benchmarks.md, "Published table") is shown beside our numbers,
every published row marked as published: those numbers are the paper's, not results of this run.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import importlib.util
import json
import math
import os
import platform
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from importlib import metadata, resources
from pathlib import Path
from typing import Any

TASKS = ("discovery", "kappa", "diatomics", "md", "speed")
TASK_TITLES = {
    "discovery": "Discovery (Matbench Discovery stability and geometry)",
    "kappa": "Thermal conductivity (κ_SRME, phono3py)",
    "diatomics": "Diatomics (homonuclear dimer curves)",
    "md": "Molecular dynamics on solid electrolytes (RDF vs AIMD)",
    "speed": "Speed (energy + forces + stress per call)",
}
# Quick mode (a limit given). MD: the shipped model takes 1.5-5 s per step of the 416-atom argyrodites on
# 2 busy CPU cores, so 2 ps (1000 steps) would be 0.5-1.5 h per system; 40 fs with a frame every 5 steps
# gives a (rough) RDF in about a minute. Set a longer time with --md-time (make: MD_TIME=2ps).
QUICK_MD_TIME = "40fs"
QUICK_MD_FRAME_INTERVAL = 5
# kappa: the primitive cell, 2x2x2 supercells and a 9x9x9 q-mesh (about 2 min a material instead of 10+)
QUICK_KAPPA = {"cell": "primitive", "fc2_supercell": [2, 2, 2], "fc3_supercell": [2, 2, 2], "q_mesh": [9, 9, 9]}
QUICK_SPEED_SIZES = (64,)
QUICK_SPEED_REPEATS = 2
PACKAGES = ("geodite", "torch", "ase", "pymatgen", "phono3py", "phonopy", "numpy", "spglib")

# --------------------------------------------------------------------------- the seed paper's table

PUBLISHED_SOURCE = (
    "seed paper (Geodite, arXiv:2601.15492), Matbench Discovery unique-prototype subset "
    "(docs/benchmarks.md, 'Published table')"
)
HEADLINE_COLUMNS = ("Params (M)", "CPS", "Acc", "F1", "DAF", "Prec", "MAE", "R²", "κ_SRME", "RMSD")
PUBLISHED_TABLE: tuple[tuple[str, tuple[float, ...]], ...] = (
    ("eSEN-30M-MP", (30.1, 0.797, 0.946, 0.831, 5.260, 0.804, 0.033, 0.822, 0.340, 0.075)),
    ("Eqnorm MPtrj", (1.31, 0.756, 0.929, 0.786, 4.844, 0.741, 0.040, 0.799, 0.408, 0.084)),
    ("Nequix-MP-L", (0.708, 0.729, 0.914, 0.751, 4.455, 0.681, 0.044, 0.782, 0.446, 0.085)),
    ("NequIP-MP-L", (9.6, 0.733, 0.921, 0.761, 4.704, 0.719, 0.043, 0.791, 0.452, 0.086)),
    ("Allegro-MP-L", (5.00, 0.720, 0.915, 0.751, 4.516, 0.690, 0.044, 0.778, 0.504, 0.082)),
    ("SevenNet-l3i5", (1.17, 0.714, 0.920, 0.760, 4.629, 0.708, 0.044, 0.776, 0.550, 0.085)),
    ("MACE-MP-0", (4.69, 0.644, 0.878, 0.669, 3.777, 0.577, 0.057, 0.697, 0.647, 0.091)),
    ("Geodite-MP", (3.6, 0.728, 0.925, 0.771, 4.771, 0.729, 0.041, 0.806, 0.499, 0.086)),
)
# headline column → key in our discovery metrics.json (full mode: unique-prototype subset)
DISCOVERY_KEYS = {"Acc": "Accuracy", "F1": "F1", "DAF": "DAF", "Prec": "Precision", "MAE": "MAE", "R²": "R2",
                  "RMSD": "RMSD"}


# --------------------------------------------------------------------------- running everything


@dataclass
class AllOptions:
    """What ``geodite bench all`` / ``make all-benchmarks`` runs. ``limit`` switches on quick mode: the
    first N items of discovery, kappa, diatomics and MD, a short MD (``QUICK_MD_TIME``) and small speed
    sizes. ``task_options`` overrides constructor arguments per task (``{"md": {"timestep_fs": 1.0}}``;
    for speed, fields of :class:`geodite.tasks.speed.SpeedOptions`)."""

    model: str = "geodite"
    limit: int | None = None
    tasks: tuple[str, ...] = TASKS
    results_dir: str | Path = "results"
    device: str = "cpu"
    dtype: str = "float32"
    workers: int = 1
    threads: int | None = None
    retry_failed: bool = False
    fresh: bool = False
    progress: bool = True
    plots: bool = True
    md_time: str | None = None  # default: 1ns, or QUICK_MD_TIME in quick mode (then also QUICK_KAPPA settings)
    speed_sizes: tuple[int, ...] | None = None  # default: 64,216,1000, or QUICK_SPEED_SIZES in quick mode
    speed_models: tuple[str, ...] | None = None  # default: the model (quick) or the model and its peers
    task_options: dict[str, dict] = field(default_factory=dict)

    @property
    def quick(self) -> bool:
        return self.limit is not None

    def __post_init__(self) -> None:
        unknown = set(self.tasks) - set(TASKS)
        if unknown:
            raise ValueError(f"unknown task(s) {sorted(unknown)}; choose from {', '.join(TASKS)}")


class TaskNotRun(Exception):
    """A task that cannot run here for a known, benign reason (an optional package is missing)."""


def make_task(name: str, opts: AllOptions):
    """The task object of a runner task, with the single command's defaults (+ quick-mode and overrides)."""
    extra = dict(opts.task_options.get(name, {}))
    if name == "discovery":
        from geodite.tasks.discovery import DiscoveryTask

        return DiscoveryTask(**({"mode": "auto"} | extra))
    if name == "kappa":
        if importlib.util.find_spec("phono3py") is None:
            raise TaskNotRun("phono3py is not installed: pip install 'geodite[phonons]'")
        try:
            from geodite.tasks.kappa import KappaTask
        except ImportError as error:
            raise TaskNotRun(f"the kappa task is not available in this installation ({error})") from None
        kwargs = {"mode": "auto", "compare_with": KappaTask.published_key_for(opts.model)}
        return KappaTask(**(kwargs | (QUICK_KAPPA if opts.quick else {}) | extra))
    if name == "diatomics":
        from geodite.tasks.diatomics import DiatomicsTask

        return DiatomicsTask(**({"protocol": "mbd"} | extra))
    if name == "md":
        from geodite.tasks.md import MDTask, parse_time_fs

        kwargs = {"time_fs": parse_time_fs(opts.md_time or (QUICK_MD_TIME if opts.quick else "1ns"))}
        if opts.quick:
            kwargs["frame_interval"] = QUICK_MD_FRAME_INTERVAL
        return MDTask(**(kwargs | extra))
    raise ValueError(f"{name!r} is not a runner task")


def speed_options(opts: AllOptions):
    """SpeedOptions for the model: alone and small in quick mode, else beside the default peers."""
    from geodite.tasks.speed import DEFAULT_MODELS, DEFAULT_SIZES, SpeedOptions
    from geodite.tasks.runner import threads_per_worker

    if opts.speed_models:
        models = tuple(opts.speed_models)
    elif opts.quick:
        models = (opts.model,)
    else:
        models = DEFAULT_MODELS if opts.model in DEFAULT_MODELS else (DEFAULT_MODELS[0], opts.model, *DEFAULT_MODELS[2:])
    sizes = tuple(opts.speed_sizes or (QUICK_SPEED_SIZES if opts.quick else DEFAULT_SIZES))
    kwargs = {"models": models, "sizes": sizes, "threads": opts.threads or threads_per_worker(1),
              "device": opts.device, "dtype": opts.dtype}
    if opts.quick:
        kwargs["repeats"] = QUICK_SPEED_REPEATS
    return SpeedOptions(**(kwargs | opts.task_options.get("speed", {})))


def speed_dir(results_dir: str | Path, label: str) -> Path:
    """Where ``run_all`` writes the speed results of a model (the layout results/<task>/<model>/)."""
    return Path(results_dir) / "speed" / label


def run_all(opts: AllOptions, log: Callable[[str], None] | None = None) -> dict:
    """Run every task in ``opts.tasks`` for ``opts.model``; one task failing does not stop the others.

    Returns ``{"model", "quick", "limit", "tasks": {name: summary | {"status": "failed"|"not run", ...}},
    "cps", "wall_s", "provenance"}``; each successful task's summary is what its own ``--json`` prints,
    with ``"status": "ok"``.
    """
    from geodite.registry import model_label
    from geodite.tasks.runner import RunOptions, run_task

    log = log or (lambda message: None)
    label = model_label(opts.model)
    start = time.perf_counter()
    started_at = _now()
    results: dict[str, dict] = {}
    for name in opts.tasks:
        t0 = time.perf_counter()
        log(f"[bold]== {name}[/bold] ({opts.model}{', quick mode: --limit ' + str(opts.limit) if opts.quick else ''})")
        try:
            if name == "speed":
                from geodite.tasks.speed import run_speed

                summary = run_speed(speed_options(opts), speed_dir(opts.results_dir, label), log=log)
            else:
                task = make_task(name, opts)
                run_opts = RunOptions(
                    model=opts.model, workers=opts.workers, threads=opts.threads, device=opts.device,
                    dtype=opts.dtype, results_dir=opts.results_dir, limit=opts.limit,
                    retry_failed=opts.retry_failed, fresh=opts.fresh, progress=opts.progress, plots=opts.plots,
                )
                summary = run_task(task, run_opts, log=log)
            results[name] = {"status": "ok", **summary}
        except TaskNotRun as reason:
            results[name] = {"status": "not run", "reason": str(reason)}
            log(f"[yellow]{name} not run:[/yellow] {reason}")
        except Exception as error:  # noqa: BLE001 - one task failing must not stop the others
            results[name] = {"status": "failed", "error": f"{type(error).__name__}: {error}",
                             "traceback": traceback.format_exc(limit=6),
                             "wall_s": round(time.perf_counter() - t0, 3)}
            log(f"[red]{name} failed:[/red] {type(error).__name__}: {error}")
    from geodite.cli.bench import cps_summary

    provenance = run_provenance(opts, results, started_at, time.perf_counter() - start)
    out = Path(opts.results_dir) / label
    out.mkdir(parents=True, exist_ok=True)
    (out / "provenance.json").write_text(json.dumps(_jsonable(provenance), indent=1) + "\n")
    return {
        "model": opts.model,
        "quick": opts.quick,
        "limit": opts.limit,
        "tasks": {k: {kk: vv for kk, vv in v.items() if kk != "traceback"} for k, v in results.items()},
        "cps": cps_summary(label, opts.results_dir),
        "wall_s": round(time.perf_counter() - start, 3),
        "provenance": str(out / "provenance.json"),
    }


# --------------------------------------------------------------------------- provenance


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _jsonable(value: Any) -> Any:
    from geodite.tasks.store import jsonable

    return jsonable(value)


def package_versions(names: Sequence[str] = PACKAGES) -> dict[str, str | None]:
    """Installed versions (None when absent), plus Python's."""
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def hardware() -> dict:
    """CPU model, cores (all / usable), memory, GPU (via torch, if any) and the OS."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as handle:
            cpu = next(line.split(":", 1)[1].strip() for line in handle if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    memory_gb = None
    try:
        with open("/proc/meminfo") as handle:
            kib = next(int(line.split()[1]) for line in handle if line.startswith("MemTotal"))
        memory_gb = round(kib / 2**20, 1)
    except (OSError, StopIteration, ValueError):
        pass
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    gpu = None
    try:
        import torch

        if torch.cuda.is_available():
            gpu = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
    except Exception:  # noqa: BLE001 - provenance must not fail on a broken CUDA set-up
        gpu = None
    return {"cpu": cpu, "cores": os.cpu_count(), "usable_cores": usable, "memory_gb": memory_gb, "gpu": gpu,
            "os": platform.platform()}


def model_provenance(model: str) -> dict:
    """Checkpoint path, sha256 and parameter count of a Geodite model; the description of a peer."""
    from geodite.registry import get_spec

    out: dict[str, Any] = {"model": model, "checkpoint": None, "sha256": None, "params_M": None}
    try:
        spec = get_spec(model)
        out["description"] = spec.description
    except KeyError as error:
        return out | {"note": str(error)}
    path = None
    if spec.checkpoint == "geodite-mp":  # never download for a report: use the cached file if there is one
        from geodite.checkpoints import cache_dir

        candidate = cache_dir() / "Geodite-MP.ckpt"
        path = candidate if candidate.exists() else None
    elif spec.checkpoint is not None:
        from geodite.checkpoints import CheckpointError, resolve_model_path

        try:
            path = resolve_model_path(spec.checkpoint)
        except CheckpointError as error:
            out["note"] = str(error)
    if path is None:
        out.setdefault("note", "weights come with the model's own package (no checkpoint file of ours)")
        return out
    from geodite.checkpoints import file_sha256

    out |= {"checkpoint": str(path), "sha256": file_sha256(path)}
    try:
        from geodite.checkpoints import load_checkpoint

        out["params_M"] = round(sum(p.numel() for p in load_checkpoint(path).parameters()) / 1e6, 4)
    except Exception:  # noqa: BLE001 - the count is a nicety
        pass
    return out


def data_files() -> list[dict]:
    """sha256 and size of the data shipped in the package (geodite/data/files/**)."""
    from geodite.checkpoints import file_sha256

    root = Path(str(resources.files("geodite") / "data" / "files"))
    rows = []
    for path in sorted(p for p in root.rglob("*") if p.is_file() and p.name != "README.md" and "__pycache__" not in p.parts):
        rows.append({"file": str(path.relative_to(root)), "bytes": path.stat().st_size, "sha256": file_sha256(path)})
    return rows


def run_provenance(opts: AllOptions, results: dict, started_at: str, wall_s: float) -> dict:
    return {
        "started_at": started_at,
        "finished_at": _now(),
        "wall_s": round(wall_s, 3),
        "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(opts).items()},
        "versions": package_versions(),
        "hardware": hardware(),
        "model": model_provenance(opts.model),
        "tasks": {name: {"status": r["status"], "wall_s": r.get("wall_s"), "error": r.get("error"),
                         "reason": r.get("reason")} for name, r in results.items()},
    }


# --------------------------------------------------------------------------- collecting results


@dataclass
class TaskResult:
    task: str
    model: str
    metrics: dict | None = None
    figures: list[Path] = field(default_factory=list)
    directory: Path | None = None
    reason: str | None = None  # why there is nothing to show


def find_speed_dir(results_dir: str | Path, label: str) -> Path | None:
    """results/speed/<model>/ (``run_all``), else the newest results/speed/*/ whose table has the model."""
    own = speed_dir(results_dir, label)
    if (own / "speed.json").is_file():
        return own
    found = []
    for path in Path(results_dir).glob("speed/*/speed.json"):
        try:
            rows = json.loads(path.read_text()).get("rows", [])
        except (OSError, json.JSONDecodeError):
            continue
        if any(row.get("model") == label for row in rows):
            found.append(path)
    return max(found, key=lambda p: p.stat().st_mtime).parent if found else None


def collect(results_dir: str | Path, task: str, label: str, not_run: dict | None = None) -> TaskResult:
    """The metrics and figures of one task for one model (or why there are none)."""
    from geodite.tasks.results import task_dir

    directory = find_speed_dir(results_dir, label) if task == "speed" else task_dir(results_dir, task, label)
    metrics_path = None
    if directory is not None:
        metrics_path = directory / ("speed.json" if task == "speed" else "metrics.json")
    if metrics_path is None or not metrics_path.is_file():
        reason = (not_run or {}).get(task) or "not run (no results in " + str(
            directory if directory is not None else Path(results_dir) / task / label) + ")"
        return TaskResult(task, label, reason=reason)
    metrics = json.loads(metrics_path.read_text())
    listed = [Path(p).name for p in metrics.get("plots", []) or []]
    figures = [directory / name for name in listed if (directory / name).is_file()]
    figures += sorted(p for p in directory.glob("*.png") if p not in figures)
    return TaskResult(task, label, metrics=metrics, figures=figures, directory=directory)


def _not_run_reasons(results_dir: Path, label: str) -> dict[str, str]:
    """Reasons recorded by ``run_all`` for tasks that did not run or failed."""
    path = results_dir / label / "provenance.json"
    if not path.is_file():
        return {}
    tasks = json.loads(path.read_text()).get("tasks", {})
    return {name: (f"not run: {t['reason']}" if t["status"] == "not run" else f"failed: {t['error']}")
            for name, t in tasks.items() if t.get("status") != "ok"}


# --------------------------------------------------------------------------- the document

# Blocks: ("h", level, text, anchor) ("p", text) ("note", text) ("table", headers, rows, classes-per-row)
# ("fig", path, caption) ("code", text)


def _fmt(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "—"
        return f"{value:.4g}"
    if isinstance(value, dict | list):
        return json.dumps(value)
    return str(value)


SKIP_KEYS = {"task", "model", "results_dir", "plots", "config", "rows"}


def metrics_table(results: list[TaskResult]) -> tuple[list[str], list[list[str]]]:
    """metric × model: the union of scalar metrics, in the order the first model lists them."""
    keys: list[str] = []
    for r in results:
        for key, value in (r.metrics or {}).items():
            if key not in SKIP_KEYS and not isinstance(value, dict | list) and key not in keys:
                keys.append(key)
    headers = ["metric", *[r.model for r in results]]
    rows = [[key, *[_fmt((r.metrics or {}).get(key)) if r.metrics else "not run" for r in results]] for key in keys]
    return headers, rows


def speed_table(result: TaskResult) -> tuple[list[str], list[list[str]]]:
    columns = ("model", "n_atoms", "us_per_atom_step", "us_per_atom_step_min", "atom_steps_per_s", "peak_mem_mb",
               "geodite-published_speedup", "error")
    names = {"us_per_atom_step": "μs/atom-step (median)", "us_per_atom_step_min": "μs/atom-step (min)",
             "atom_steps_per_s": "atom-steps/s", "peak_mem_mb": "peak MB", "n_atoms": "atoms",
             "geodite-published_speedup": "× Geodite (published size)"}
    rows = (result.metrics or {}).get("rows", [])
    present = [c for c in columns if any(c in row for row in rows)]
    return [names.get(c, c) for c in present], [[_fmt(row.get(c)) for c in present] for row in rows]


def headline_rows(labels: Sequence[str], results_dir: Path, params: dict[str, float | None]) -> list[tuple[list[str], str]]:
    """Our rows of the published table's columns (with the subset they were measured on)."""
    from geodite.cli.bench import cps_summary
    from geodite.tasks.results import read_metrics

    rows = []
    for label in labels:
        disc = read_metrics(results_dir, "discovery", label) or {}
        kappa = read_metrics(results_dir, "kappa", label) or {}
        cps = cps_summary(label, results_dir)
        values = {"Params (M)": params.get(label), "CPS": cps["CPS"], "κ_SRME": cps["kappa_SRME"]}
        values |= {col: disc.get(key) for col, key in DISCOVERY_KEYS.items()}
        subset = []
        if disc:
            subset.append(f"discovery: {disc.get('subset') or disc.get('config', {}).get('mode', '?')}, "
                          f"{disc.get('n_items')} items")
        if kappa:
            subset.append(f"kappa: {kappa.get('subset', '?')}")
        rows.append(([label, "ours (this run)", *[_fmt(values.get(c)) for c in HEADLINE_COLUMNS],
                      "; ".join(subset) or "no discovery/kappa results"], "ours"))
    return rows


def build_document(models: Sequence[str], results_dir: str | Path = "results", title: str | None = None) -> list[tuple]:
    from geodite.cli.bench import cps_summary
    from geodite.registry import model_label

    results_dir = Path(results_dir)
    labels = [model_label(m) for m in models]
    doc: list[tuple] = [("h", 1, title or f"Geodite benchmark report — {', '.join(labels)}", "top")]
    provenance = {label: _read_provenance(results_dir, label) for label in labels}
    model_info = {label: (provenance[label] or {}).get("model") or model_provenance(model)
                  for model, label in zip(models, labels, strict=True)}
    doc.append(("p", f"Generated {_now()} from `{results_dir}`. Every table below is ours (this suite, this "
                     "run) unless it says **published**. Quick-mode runs (`--limit`) use the first items only "
                     "and are not comparable with the published full-benchmark numbers."))

    # headline: ours beside the published table
    doc.append(("h", 2, "Headline numbers: ours beside the published table", "headline"))
    doc.append(("note", "Rows marked **published (seed paper) — not ours** are copied from the seed paper's table "
                        f"({PUBLISHED_SOURCE}); they were not computed here. Our rows say on which subset they were "
                        "measured: the offline discovery subset (perturbed DFT structures, no hull distances) has "
                        "no F1/DAF/precision/accuracy, and its MAE is a formation-energy MAE."))
    params = {label: info.get("params_M") for label, info in model_info.items()}
    rows = headline_rows(labels, results_dir, params)
    rows += [([f"{name} [published]", "published (seed paper) — not ours", _fmt(values[0]),
               *[f"{v:.3f}" for v in values[1:]], "unique prototypes"],
              "published") for name, values in PUBLISHED_TABLE]
    doc.append(("table", ["model", "source", *HEADLINE_COLUMNS, "subset"], [r for r, _ in rows], [c for _, c in rows]))

    # CPS
    doc.append(("h", 2, "CPS (combined performance score)", "cps"))
    doc.append(("p", "CPS = 0.5·F1 + 0.4·(1 − κ_SRME/2) + 0.1·clamp(1 − RMSD/0.15, 0, 1); null when an input is "
                     "missing (reason given). Same function as `geodite bench cps`."))
    cps_rows = []
    for label in labels:
        c = cps_summary(label, results_dir)
        cps_rows.append([label, _fmt(c["CPS"]), _fmt(c["F1"]), _fmt(c["kappa_SRME"]), _fmt(c["RMSD"]), c["reason"] or ""])
    doc.append(("table", ["model", "CPS", "F1", "κ_SRME", "RMSD", "reason when null"], cps_rows, None))

    # tasks
    for task in TASKS:
        doc.append(("h", 2, TASK_TITLES[task], task))
        results = [collect(results_dir, task, label, _not_run_reasons(results_dir, label)) for label in labels]
        for r in results:
            if r.metrics is None:
                doc.append(("note", f"**{r.model}**: {task} {r.reason if r.reason.startswith('not run') else 'not run — ' + r.reason}"))
        ran = [r for r in results if r.metrics is not None]
        if not ran:
            continue
        for r in ran:
            doc.append(("p", f"`{r.model}`: results in `{r.directory}`, wall time {_fmt(r.metrics.get('wall_s'))} s."))
        if task == "speed":
            for r in ran:
                doc.append(("p", f"Machine of the timing ({r.model}): {r.metrics.get('machine', '?')}; "
                                 f"{r.metrics.get('threads')} threads, {r.metrics.get('dtype')}, "
                                 f"structure {r.metrics.get('structure')}."))
                headers, body = speed_table(r)
                doc.append(("table", headers, body, None))
        else:
            headers, body = metrics_table(results)
            doc.append(("table", headers, body, None))
            cfg_keys: list[str] = []
            for r in ran:
                cfg_keys += [k for k in (r.metrics.get("config") or {}) if k not in cfg_keys]
            if cfg_keys:
                doc.append(("p", "Protocol (the task's configuration):"))
                doc.append(("table", ["parameter", *[r.model for r in ran]],
                            [[k, *[_fmt((r.metrics.get("config") or {}).get(k)) for r in ran]] for k in cfg_keys], None))
        for r in ran:
            for fig in r.figures:
                doc.append(("fig", fig, f"{task} — {r.model}: {fig.name}"))

    # provenance
    doc.append(("h", 2, "Provenance", "provenance"))
    here = {"versions": package_versions(), "hardware": hardware()}
    for label in labels:
        prov = provenance[label]
        src = prov or here
        doc.append(("h", 3, f"{label}", f"provenance-{label}"))
        if prov:
            doc.append(("p", f"Recorded by `geodite bench all` ({prov.get('started_at')} → {prov.get('finished_at')}, "
                             f"{_fmt(prov.get('wall_s'))} s in all; options: `{json.dumps(prov.get('options', {}))}`)."))
        else:
            doc.append(("p", "No `geodite bench all` record for this model: versions and hardware are those of the "
                             "machine that wrote this report."))
        info = model_info[label]
        doc.append(("table", ["model", "checkpoint", "sha256", "params (M)", "note"],
                    [[label, _fmt(info.get("checkpoint")), _fmt(info.get("sha256")), _fmt(info.get("params_M")),
                      info.get("note") or info.get("description") or ""]], None))
        versions = src.get("versions", {})
        doc.append(("table", ["package", "version"], [[k, v or "not installed"] for k, v in versions.items()], None))
        hw = src.get("hardware", {})
        doc.append(("table", ["hardware", "value"], [[k, _fmt(v) if v is not None else "none"] for k, v in hw.items()], None))
        walls, other_weights = [], []
        for task in TASKS:
            r = collect(results_dir, task, label)
            m = r.metrics or {}
            status = (prov or {}).get("tasks", {}).get(task, {}).get("status") or ("ok" if r.metrics else "not run")
            workers = m.get("workers")
            weights = "—" if task == "speed" else weights_column(m, info.get("sha256"))  # speed: many models
            if weights.endswith("(other weights)") or weights == "not recorded":
                other_weights.append(task)
            walls.append([task, status, _fmt(m.get("wall_s")), _fmt(m.get("n_items")),
                          f"{workers} × {m.get('threads_per_worker')} threads" if workers else _fmt(m.get("threads")),
                          weights])
        doc.append(("table", ["task", "status", "wall time (s)", "items", "workers × threads", "weights"], walls,
                    None))
        if other_weights:
            doc.append(("p", f"**Mixed weights:** {', '.join(other_weights)} ran with other weights than the "
                             f"checkpoint above, or did not record theirs (results older than the record): rerun "
                             f"with `--fresh` before comparing."))
    doc.append(("h", 3, "Data files shipped in the package (geodite/data/files)", "data"))
    doc.append(("table", ["file", "bytes", "sha256"], [[d["file"], str(d["bytes"]), d["sha256"]] for d in data_files()], None))
    doc.append(("p", "Full-mode data (Matbench Discovery files, phononDB structures) are verified against the md5 of "
                     "`geodite/data/downloads.py` when fetched; each task's `config` above records its mode and the "
                     "md5 of the data it read."))
    return doc


def weights_column(metrics: dict, checkpoint_sha256: str | None) -> str:
    """Which weights a task's results came from (its ``config.weights_sha256``) next to the model's
    checkpoint now: "this checkpoint", "<sha prefix>… (other weights)", "not recorded" or "—"."""
    recorded = (metrics.get("config") or {}).get("weights_sha256")
    if not metrics or checkpoint_sha256 is None:
        return "—"
    if recorded is None:
        return "not recorded"
    return "this checkpoint" if recorded == checkpoint_sha256 else f"{recorded[:12]}… (other weights)"


def _read_provenance(results_dir: Path, label: str) -> dict | None:
    path = results_dir / label / "provenance.json"
    try:
        return json.loads(path.read_text()) if path.is_file() else None
    except (OSError, json.JSONDecodeError):
        return None


# --------------------------------------------------------------------------- rendering


def render_markdown(doc: list[tuple], out_dir: Path) -> str:
    import pandas as pd

    from geodite.tasks.results import table_markdown

    lines: list[str] = []
    for block in doc:
        kind = block[0]
        if kind == "h":
            lines += [f"{'#' * block[1]} {block[2]}", ""]
        elif kind == "p":
            lines += [block[1], ""]
        elif kind == "note":
            lines += [f"> {block[1]}", ""]
        elif kind == "table":
            headers, rows = block[1], block[2]
            lines.append(table_markdown(pd.DataFrame(rows, columns=headers)))
        elif kind == "fig":
            rel = os.path.relpath(block[1], out_dir)
            lines += [f"![{block[2]}]({Path(rel).as_posix()})", ""]
    return "\n".join(lines)


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;
color:#1a1a1a;line-height:1.45}
table{border-collapse:collapse;margin:0.6em 0 1.2em;font-size:0.88em}
th,td{border:1px solid #ccc;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#f0f0f0}
tr.ours td{background:#eef6ee;font-weight:600}
tr.published td{background:#fafafa;color:#555;font-style:italic}
.note{background:#fff8e1;border-left:4px solid #f0b400;padding:0.5em 0.8em;margin:0.8em 0}
figure{display:inline-block;margin:0.5em;vertical-align:top}
figure img{max-width:560px;border:1px solid #ddd}
figcaption{font-size:0.8em;color:#555}
code{background:#f4f4f4;padding:0 3px}
td{overflow-wrap:break-word;max-width:520px}
"""


def _inline(text: str) -> str:
    """Escape, then the two bits of Markdown the document uses: **bold** and `code`."""
    import re

    out = html.escape(str(text))
    out = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", out)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", out)


def render_html(doc: list[tuple], title: str, embed: bool = True, out_dir: Path | None = None) -> str:
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>"]
    section_open = False
    for block in doc:
        kind = block[0]
        if kind == "h":
            if block[1] <= 2:
                if section_open:
                    parts.append("</section>")
                parts.append(f'<section id="{html.escape(block[3])}">')
                section_open = True
            parts.append(f'<h{block[1]} id="h-{html.escape(block[3])}">{_inline(block[2])}</h{block[1]}>')
        elif kind == "p":
            parts.append(f"<p>{_inline(block[1])}</p>")
        elif kind == "note":
            parts.append(f'<p class="note">{_inline(block[1])}</p>')
        elif kind == "table":
            headers, rows, classes = block[1], block[2], block[3] or [None] * len(block[2])
            parts.append("<table><thead><tr>" + "".join(f"<th>{_inline(h)}</th>" for h in headers) + "</tr></thead><tbody>")
            for row, cls in zip(rows, classes, strict=True):
                attr = f' class="{cls}"' if cls else ""
                parts.append(f"<tr{attr}>" + "".join(f"<td>{_inline(c)}</td>" for c in row) + "</tr>")
            parts.append("</tbody></table>")
        elif kind == "fig":
            path: Path = block[1]
            if embed:
                src = "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")
            else:
                src = html.escape(Path(os.path.relpath(path, out_dir)).as_posix())
            parts.append(f'<figure><img src="{src}" alt="{html.escape(block[2])}" data-file="{html.escape(path.name)}">'
                         f"<figcaption>{html.escape(block[2])}</figcaption></figure>")
    if section_open:
        parts.append("</section>")
    parts.append("</body></html>")
    return "\n".join(parts)


def default_report_dir(models: Sequence[str], results_dir: str | Path = "results") -> Path:
    """results/<model>/ for one model, results/<a>_vs_<b>/ for several."""
    from geodite.registry import model_label

    return Path(results_dir) / "_vs_".join(model_label(m) for m in models)


def write_report(models: Sequence[str] | str, results_dir: str | Path = "results", out_dir: str | Path | None = None,
                 embed: bool = True) -> dict:
    """Write report.md and report.html; returns {"markdown", "html", "models", "tasks": {task: [models with results]}}."""
    from geodite.registry import model_label

    models = [m.strip() for m in models.split(",") if m.strip()] if isinstance(models, str) else list(models)
    if not models:
        raise ValueError("no model given")
    out = Path(out_dir) if out_dir else default_report_dir(models, results_dir)
    out.mkdir(parents=True, exist_ok=True)
    title = f"Geodite benchmark report — {', '.join(model_label(m) for m in models)}"
    doc = build_document(models, results_dir, title)
    md_path, html_path = out / "report.md", out / "report.html"
    md_path.write_text(render_markdown(doc, out))
    html_path.write_text(render_html(doc, title, embed=embed, out_dir=out))
    labels = [model_label(m) for m in models]
    return {
        "markdown": str(md_path),
        "html": str(html_path),
        "models": labels,
        "tasks": {task: [lab for lab in labels if collect(results_dir, task, lab).metrics is not None] for task in TASKS},
        "figures": sum(1 for b in doc if b[0] == "fig"),
    }
