"""Running the benchmark suite: the one task factory, and every task for one model in one go.

* :func:`make_task` builds a runner task by name with its defaults for a model (kappa's ``compare_with`` =
  the model's published key). ``geodite bench discovery|kappa|diatomics|md`` and ``geodite bench all`` both
  build their tasks here, so a default lives in one place; ``--fresh`` is the runner's
  (:func:`geodite.tasks.runner.run_task` also empties the task's ``scratch/`` folder, e.g. the MD
  trajectories), whichever command asked for it.
* :func:`task_defaults` gives a task's constructor defaults (what ``geodite bench <task> --help`` shows).
* :func:`run_options` builds the runner's :class:`~geodite.tasks.runner.RunOptions` from any set of named
  settings (a command's shared options, :class:`AllOptions`); :func:`all_options` builds :class:`AllOptions`
  from RunOptions and ``bench all``'s own settings.
* :func:`run_all` runs discovery, kappa, diatomics, MD and speed for one model (each runner task →
  :func:`geodite.tasks.runner.run_task`; speed → :func:`geodite.tasks.speed.run_speed`), resuming what is
  stored, going on with the next task when one fails, and records the run's provenance in
  ``results/<model>/provenance.json``.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from geodite.calculator import ATOMS_PER_CALL
from geodite.provenance import hardware, model_provenance, package_versions, utc_now
from geodite.registry import model_label
from geodite.tasks.cps import cps_summary
from geodite.tasks.results import task_dir
from geodite.tasks.runner import RunOptions, run_task
from geodite.tasks.store import jsonable
from geodite.threads import threads_per_worker

#: The one task table: every benchmark task, in the order ``bench all`` runs them, with the (module, class) of its
#: runner task, imported on demand so that a command loads only its own task. Speed has no runner task
#: (:func:`geodite.tasks.speed.run_speed` times the models itself).
TASKS: dict[str, tuple[str, str] | None] = {
    "discovery": ("geodite.tasks.discovery", "DiscoveryTask"),
    "kappa": ("geodite.tasks.kappa", "KappaTask"),
    "diatomics": ("geodite.tasks.diatomics", "DiatomicsTask"),
    "md": ("geodite.tasks.md", "MDTask"),
    "speed": None,
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
DEFAULT_MD_TIME = "1ns"  # as in the paper


class TaskNotRun(Exception):
    """A task that cannot run here for a known, benign reason (an optional package is missing)."""


def runner_tasks() -> list[str]:
    """The names of the tasks the runner runs (:data:`TASKS` with a class: all but speed)."""
    return [name for name, where in TASKS.items() if where is not None]


def task_class(name: str) -> type:
    """The class of the runner task ``name``; ``ValueError`` for a name that is not a runner task (speed has
    no runner task: see :func:`speed_options`)."""
    if TASKS.get(name) is None:
        raise ValueError(f"{name!r} is not a runner task")
    module, cls = TASKS[name]
    return getattr(importlib.import_module(module), cls)


def task_defaults(name: str) -> dict[str, Any]:
    """The constructor defaults of the runner task ``name`` (fields with a plain default value), e.g.
    ``task_defaults("discovery")["fmax"]`` = 0.05 eV/Å: the one place a task's default lives."""
    return {f.name: f.default for f in fields(task_class(name)) if f.default is not MISSING}


def make_task(name: str, model: str, **settings: Any):
    """The runner task ``name`` for ``model``: its constructor defaults, the defaults that depend on the
    model, then ``settings`` (constructor arguments) over them.

    Raises :class:`TaskNotRun` for kappa without phono3py, ``ValueError`` for a name that is not a runner
    task (speed has no runner task: see :func:`speed_options`) or a bad setting.
    """
    if name == "kappa":
        if importlib.util.find_spec("phono3py") is None:
            raise TaskNotRun("phono3py is not installed: pip install 'geodite[phonons]'")
        try:
            kappa_task = task_class("kappa")
        except ImportError as error:
            raise TaskNotRun(f"the kappa task is not available in this installation ({error})") from None
        compare_with = settings.pop("compare_with", None) or kappa_task.published_key_for(model)
        return kappa_task(compare_with=compare_with, **settings)
    return task_class(name)(**settings)


def known_fields(cls: type, settings: Mapping[str, Any]) -> dict[str, Any]:
    """The entries of ``settings`` that are fields of the dataclass ``cls`` (the others are left out)."""
    names = {f.name for f in fields(cls)}
    return {key: value for key, value in settings.items() if key in names}


def run_options(settings: Mapping[str, Any]) -> RunOptions:
    """The runner's options out of named settings: every key that is a :class:`RunOptions` field is taken
    (others are ignored, missing ones keep their default); a ``slurm_config`` path becomes a string."""
    values = known_fields(RunOptions, settings)
    if values.get("slurm_config") is not None:
        values["slurm_config"] = str(values["slurm_config"])
    return RunOptions(**values)


# --------------------------------------------------------------------------- running everything


@dataclass
class AllOptions:
    """What ``geodite bench all`` / ``make all-benchmarks`` runs. ``limit`` switches on quick mode: the
    first N items of discovery, kappa, diatomics and MD, a short MD (``QUICK_MD_TIME``) and small speed
    sizes. ``task_options`` overrides constructor arguments per task (``{"md": {"timestep_fs": 1.0}}``;
    for speed, fields of :class:`geodite.tasks.speed.SpeedOptions`)."""

    model: str = "geodite"
    limit: int | None = None
    tasks: tuple[str, ...] = tuple(TASKS)
    results_dir: str | Path = "results"
    device: str = "cpu"
    dtype: str = "float32"
    atoms_per_call: int = ATOMS_PER_CALL  # Geodite: the most atoms one model call takes (RunOptions.atoms_per_call)
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


def all_options(run: RunOptions, **settings: Any) -> AllOptions:
    """``bench all``'s options: the runner options it shares with the single-task commands (``run``; those
    AllOptions has no field for, such as the Dask scheduler, are left out) and its own ``settings``."""
    return AllOptions(**known_fields(AllOptions, asdict(run)), **settings)


def task_settings(name: str, opts: AllOptions) -> dict[str, Any]:
    """The settings ``bench all`` gives :func:`make_task`: quick mode's, then ``opts.task_options[name]``."""
    from geodite.tasks.md import parse_time_fs

    settings: dict[str, Any] = {}
    if name == "kappa" and opts.quick:
        settings |= QUICK_KAPPA
    if name == "md":
        settings["time_fs"] = parse_time_fs(opts.md_time or (QUICK_MD_TIME if opts.quick else DEFAULT_MD_TIME))
        if opts.quick:
            settings["frame_interval"] = QUICK_MD_FRAME_INTERVAL
    return settings | opts.task_options.get(name, {})


def speed_options(opts: AllOptions):
    """SpeedOptions for the model: alone and small in quick mode, else beside the default peers."""
    from geodite.tasks.speed import DEFAULT_MODELS, DEFAULT_SIZES, SpeedOptions

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


def run_benchmark(name: str, opts: AllOptions, log: Callable[[str], None]) -> dict:
    """One task of ``bench all``: its summary (what its own ``--json`` prints)."""
    if name == "speed":
        from geodite.tasks.speed import run_speed

        return run_speed(speed_options(opts), task_dir(opts.results_dir, "speed", model_label(opts.model)), log=log)
    task = make_task(name, opts.model, **task_settings(name, opts))
    return run_task(task, run_options(asdict(opts)), log=log)


def run_all(opts: AllOptions, log: Callable[[str], None] | None = None) -> dict:
    """Run every task in ``opts.tasks`` for ``opts.model``; one task failing does not stop the others.

    Returns ``{"model", "quick", "limit", "tasks": {name: summary | {"status": "failed"|"not run", ...}},
    "cps", "wall_s", "provenance"}``; each successful task's summary is what its own ``--json`` prints,
    with ``"status": "ok"``.
    """
    log = log or (lambda message: None)
    label = model_label(opts.model)
    start = time.perf_counter()
    started_at = utc_now()
    results: dict[str, dict] = {}
    for name in opts.tasks:
        t0 = time.perf_counter()
        log(f"[bold]== {name}[/bold] ({opts.model}{', quick mode: --limit ' + str(opts.limit) if opts.quick else ''})")
        try:
            results[name] = {"status": "ok", **run_benchmark(name, opts, log)}
        except TaskNotRun as reason:
            results[name] = {"status": "not run", "reason": str(reason)}
            log(f"[yellow]{name} not run:[/yellow] {reason}")
        except Exception as error:  # noqa: BLE001 - one task failing must not stop the others
            results[name] = {"status": "failed", "error": f"{type(error).__name__}: {error}",
                             "traceback": traceback.format_exc(limit=6),
                             "wall_s": round(time.perf_counter() - t0, 3)}
            log(f"[red]{name} failed:[/red] {type(error).__name__}: {error}")
    provenance = run_provenance(opts, results, started_at, time.perf_counter() - start)
    out = Path(opts.results_dir) / label
    out.mkdir(parents=True, exist_ok=True)
    (out / "provenance.json").write_text(json.dumps(jsonable(provenance), indent=1) + "\n")
    return {
        "model": opts.model,
        "quick": opts.quick,
        "limit": opts.limit,
        "tasks": {k: {kk: vv for kk, vv in v.items() if kk != "traceback"} for k, v in results.items()},
        "cps": cps_summary(label, opts.results_dir),
        "wall_s": round(time.perf_counter() - start, 3),
        "provenance": str(out / "provenance.json"),
    }


def run_provenance(opts: AllOptions, results: dict, started_at: str, wall_s: float) -> dict:
    """What ``results/<model>/provenance.json`` records: options, versions, hardware, model, task statuses."""
    return {
        "started_at": started_at,
        "finished_at": utc_now(),
        "wall_s": round(wall_s, 3),
        "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(opts).items()},
        "versions": package_versions(),
        "hardware": hardware(),
        "model": model_provenance(opts.model),
        "tasks": {name: {"status": r["status"], "wall_s": r.get("wall_s"), "error": r.get("error"),
                         "reason": r.get("reason")} for name, r in results.items()},
    }
