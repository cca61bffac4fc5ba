"""One results report (tables + figures + provenance → Markdown / HTML); it collects and renders, it runs
nothing (running every task is :func:`geodite.tasks.suite.run_all`).

* :func:`collect` finds one task's metrics and figures for one model; :func:`build_document` turns them
  into a list of blocks (headings, paragraphs, notes, tables, figures), one builder per section;
  :mod:`geodite.render` writes those blocks as Markdown and HTML.
* :func:`write_report` reads ``results/<task>/<model>/metrics.json`` and the figures next to it and writes
  ``results/<model>/report.md`` (figures linked relatively) and ``report.html`` (self-contained: CSS
  inline, figures embedded as base64). Several models go side by side (one column per model).

The seed paper's published table (docs/benchmarks.md, "Published table") is shown beside our numbers,
every published row marked as published: those numbers are the paper's, not results of this run.

About 400 lines because it holds one small builder per report section (discovery, κ, diatomics, MD, speed,
CPS, provenance); each reads only its own task's metrics, so splitting them apart would scatter the report's
one layout over several modules.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from geodite.provenance import data_files, hardware, model_provenance, package_versions, utc_now
from geodite.registry import model_label
from geodite.render import Block, render_html, render_markdown
from geodite.tasks.cps import cps_summary
from geodite.tasks.results import read_metrics, task_dir
from geodite.tasks.store import ResultStore
from geodite.tasks.suite import TASKS

TASK_TITLES = {
    "discovery": "Discovery (Matbench Discovery stability and geometry)",
    "kappa": "Thermal conductivity (κ_SRME, phono3py)",
    "diatomics": "Diatomics (homonuclear dimer curves)",
    "md": "Molecular dynamics on solid electrolytes (RDF vs AIMD)",
    "speed": "Speed (energy + forces + stress per call)",
}

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
# Matbench Discovery's "compliant" cohort: open source and open data (OSOD) models trained only on
# MP-anchored data sets (compliant: true in MBD's data/datasets.yml). Every published peer above is OSOD and
# trained on MPtrj alone (MBD model YAMLs at commit 2c7f9fc; Geodite-MP, absent there, per the seed paper).
PUBLISHED_COMPLIANT = "yes (OSOD, MPtrj only)"
OUR_COMPLIANCE = {
    "geodite-mp": "yes (MPtrj only, seed paper)",
    "sevennet-0": "yes (OSOD, MPtrj only)",
    "sevennet-l3i5": "yes (OSOD, MPtrj only)",
    "chgnet": "yes (OSOD, MPtrj only)",
    "mace-mp-0": "yes (OSOD, MPtrj only)",
    "emt": "not an ML model",
}


def compliance_of(label: str) -> str:
    """The compliant column of one of our rows: the shipped model's from the pool its checkpoint names
    (:func:`geodite.train.compliance.pool_compliance`), a peer's from :data:`OUR_COMPLIANCE`."""
    if label == "geodite":
        from geodite.checkpoints import load_weights_only, shipped_model_path
        from geodite.train.compliance import pool_compliance

        return pool_compliance((load_weights_only(shipped_model_path()).get("metadata") or {}).get("pool"))
    return OUR_COMPLIANCE.get(label, "unknown: training data not recorded")


# headline column → key in our discovery metrics.json (full mode: unique-prototype subset)
DISCOVERY_KEYS = {"Acc": "Accuracy", "F1": "F1", "DAF": "DAF", "Prec": "Precision", "MAE": "MAE", "R²": "R2",
                  "RMSD": "RMSD"}


# --------------------------------------------------------------------------- collecting results


@dataclass
class TaskResult:
    task: str
    model: str
    metrics: dict | None = None
    figures: list[Path] = field(default_factory=list)
    directory: Path | None = None
    reason: str | None = None  # why there is nothing to show
    stored: int = 0  # items in the task's store (a run that did not finish has these but no metrics)


def find_speed_dir(results_dir: str | Path, label: str) -> Path | None:
    """results/speed/<model>/ (``run_all``), else the newest results/speed/*/ whose table has the model."""
    own = task_dir(results_dir, "speed", label)
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
    directory = find_speed_dir(results_dir, label) if task == "speed" else task_dir(results_dir, task, label)
    metrics_path = None
    if directory is not None:
        metrics_path = directory / ("speed.json" if task == "speed" else "metrics.json")
    stored = stored_items(directory) if task != "speed" and directory is not None else 0
    if metrics_path is None or not metrics_path.is_file():
        reason = (not_run or {}).get(task) or "not run (no results in " + str(
            directory if directory is not None else Path(results_dir) / task / label) + ")"
        if stored:
            reason = f"partial: {stored} items stored, the run did not finish (run it again to resume)"
        return TaskResult(task, label, reason=reason, stored=stored)
    metrics = json.loads(metrics_path.read_text())
    listed = [Path(p).name for p in metrics.get("plots", []) or []]
    figures = [directory / name for name in listed if (directory / name).is_file()]
    figures += sorted(p for p in directory.glob("*.png") if p not in figures)
    return TaskResult(task, label, metrics=metrics, figures=figures, directory=directory, stored=stored)


def stored_items(directory: Path) -> int:
    """Items in the store of ``results/<task>/<model>/`` (0 without one, or where it cannot be read)."""
    try:
        return len(ResultStore(directory / "store").read_rows())
    except (OSError, ValueError, KeyError, TypeError):  # a damaged store: the runner reports it when rerun
        return 0


def status_label(result: TaskResult) -> str:
    """"ok", "partial: K of N ok (F failed)" when items failed, "partial: S items stored, the metrics cover N"
    when rows were stored after the metrics were written (a run that did not finish), the partial/not-run
    reason of a task without metrics, or "not run"."""
    if result.metrics is None:
        return result.reason if result.reason and result.reason.startswith("partial") else "not run"
    n, failed = result.metrics.get("n_items"), result.metrics.get("n_failed") or 0
    if n is not None and result.stored > n:
        return (f"partial: {result.stored} items stored, the metrics cover {n} (the last run did not finish: "
                "run it again to summarise them all)")
    return f"partial: {n - failed} of {n} ok ({failed} failed)" if n and failed else "ok"


class NothingToReport(ValueError):
    """No results (nor a run in progress) for a model in the results folder."""


def _not_run_reasons(results_dir: Path, label: str) -> dict[str, str]:
    """Reasons recorded by ``run_all`` for tasks that did not run or failed."""
    path = results_dir / label / "provenance.json"
    if not path.is_file():
        return {}
    tasks = json.loads(path.read_text()).get("tasks", {})
    return {name: (f"not run: {t['reason']}" if t["status"] == "not run" else f"failed: {t['error']}")
            for name, t in tasks.items() if t.get("status") != "ok"}


# --------------------------------------------------------------------------- the document

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
        rows.append(([label, "ours (this run)", compliance_of(label),
                      *[_fmt(values.get(c)) for c in HEADLINE_COLUMNS],
                      "; ".join(subset) or "no discovery/kappa results"], "ours"))
    return rows


def build_document(models: Sequence[str], results_dir: str | Path = "results", title: str | None = None) -> list[Block]:
    """The report as blocks: title, headline table, CPS, one section per task, provenance, data files."""
    results_dir = Path(results_dir)
    labels = [model_label(m) for m in models]
    provenance = {label: _read_provenance(results_dir, label) for label in labels}
    model_info = {label: (provenance[label] or {}).get("model") or model_provenance(model)
                  for model, label in zip(models, labels, strict=True)}
    doc: list[Block] = [("h", 1, title or f"Geodite benchmark report — {', '.join(labels)}", "top")]
    doc.append(("p", f"Generated {utc_now()} from `{results_dir}`. Every table below is ours (this suite, this "
                     "run) unless it says **published**. Quick-mode runs (`--limit`) use the first items only "
                     "and are not comparable with the published full-benchmark numbers."))
    doc += headline_section(labels, results_dir, model_info)
    doc += cps_section(labels, results_dir)
    for task in TASKS:
        doc += task_section(task, labels, results_dir)
    doc += eval_section(labels, results_dir)
    doc.append(("h", 2, "Provenance", "provenance"))
    for label in labels:
        doc += provenance_section(label, results_dir, provenance[label], model_info[label])
    doc += data_section()
    return doc


def headline_section(labels: Sequence[str], results_dir: Path, model_info: dict[str, dict]) -> list[Block]:
    """Our headline numbers beside the seed paper's published table (published rows marked as such)."""
    doc: list[Block] = [("h", 2, "Headline numbers: ours beside the published table", "headline")]
    doc.append(("note", "Rows marked **published (seed paper) — not ours** are copied from the seed paper's table "
                        f"({PUBLISHED_SOURCE}); they were not computed here. Our rows say on which subset they were "
                        "measured: the offline discovery subset (perturbed DFT structures, no hull distances) has "
                        "no F1/DAF/precision/accuracy/MAE/R² (its formation-energy errors are `e_form_*_1k` in the "
                        "discovery section). DAF: its prevalence equals MBD's only on the whole WBM test set."))
    params = {label: info.get("params_M") for label, info in model_info.items()}
    rows = headline_rows(labels, results_dir, params)
    rows += [([f"{name} [published]", "published (seed paper) — not ours", PUBLISHED_COMPLIANT, _fmt(values[0]),
               *[f"{v:.3f}" for v in values[1:]], "unique prototypes"],
              "published") for name, values in PUBLISHED_TABLE]
    doc.append(("note", "**compliant**: Matbench Discovery's compliant cohort — open source, open data, trained only "
                        "on MP-anchored data sets (MPtrj, MP 2022, ...), so never on the WBM test structures. Compare "
                        "a compliant model with compliant peers only."))
    doc.append(("table", ["model", "source", "compliant", *HEADLINE_COLUMNS, "subset"], [r for r, _ in rows],
                [c for _, c in rows]))
    return doc


def cps_section(labels: Sequence[str], results_dir: Path) -> list[Block]:
    """CPS per model with its inputs, or the reason it is null."""
    doc: list[Block] = [("h", 2, "CPS (combined performance score)", "cps")]
    doc.append(("p", "CPS = 0.5·F1 + 0.4·(1 − κ_SRME/2) + 0.1·clamp(1 − RMSD/0.15, 0, 1) of the inputs rounded as "
                     "the leaderboard reads them (F1 to 3 decimals, κ_SRME and RMSD to 4); `CPS (unrounded)` of the "
                     "inputs as measured. Null when an input is missing (reason given). Same function as "
                     "`geodite bench cps`."))
    cps_rows = []
    for label in labels:
        c = cps_summary(label, results_dir)
        cps_rows.append([label, _fmt(c["CPS"]), _fmt(c["CPS_unrounded"]), _fmt(c["F1"]), _fmt(c["kappa_SRME"]),
                         _fmt(c["RMSD"]), c["reason"] or ""])
    doc.append(("table", ["model", "CPS", "CPS (unrounded)", "F1", "κ_SRME", "RMSD", "reason when null"], cps_rows,
                None))
    return doc


def task_section(task: str, labels: Sequence[str], results_dir: Path) -> list[Block]:
    """One task: status notes, metrics (or the speed table), the protocol and the figures, models side by side."""
    doc: list[Block] = [("h", 2, TASK_TITLES[task], task)]
    results = [collect(results_dir, task, label, _not_run_reasons(results_dir, label)) for label in labels]
    for r in results:
        if r.metrics is None:
            reason = r.reason if r.reason.startswith(("not run", "partial")) else "not run — " + r.reason
            doc.append(("note", f"**{r.model}**: {task} {reason}"))
        elif status_label(r) != "ok":
            covered = "" if "the metrics cover" in status_label(r) else "; the metrics cover the items that ran"
            doc.append(("note", f"**{r.model}**: {task} {status_label(r)}{covered}"))
    ran = [r for r in results if r.metrics is not None]
    if not ran:
        return doc
    for r in ran:
        last = "" if task == "speed" else (f" ({_fmt(r.metrics.get('n_computed'))} items computed, "
                                           f"{_fmt(r.metrics.get('n_skipped'))} reused from the store)")
        doc.append(("p", f"`{r.model}`: results in `{r.directory}`; the last run took "
                         f"{_fmt(r.metrics.get('wall_s'))} s{last}."))
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
    return doc


def eval_section(labels: Sequence[str], results_dir: Path) -> list[Block]:
    """Errors against DFT references (``geodite eval``), one row per model and data file: energy, forces beside
    zero forces, the relaxed frames' forces, the elements worse than zero forces; each run's parity figure.
    Nothing when no model was evaluated."""
    found = [(label, path) for label in labels
             for path in sorted(Path(results_dir, "eval", label).glob("*.summary.json"))]
    if not found:
        return []
    from geodite.evaluate import MIN_ELEMENT_ATOMS, RELAXED_MAX_FORCE

    doc: list[Block] = [("h", 2, "Errors vs DFT (geodite eval)", "eval")]
    doc.append(("p", "Energies per atom, force and stress components against a data file's references; zero "
                     "forces = the force MAE of predicting no force at all; relaxed frames = those whose largest "
                     f"reference force is below {RELAXED_MAX_FORCE} eV/Å. Per-element tables and periodic-table "
                     "pages lie beside each summary."))
    rows, figures = [], []
    for label, path in found:
        s = json.loads(path.read_text())

        def milli(key: str) -> str:
            return "—" if s.get(key) is None else f"{1000 * s[key]:.1f}"

        rows.append([label, Path(s.get("data", path.name)).name, _fmt(s.get("n_structures")),
                     milli("energy_per_atom_mae"), milli("forces_mae"), milli("zero_forces_mae"),
                     f"{milli('relaxed_forces_mae')} / {milli('relaxed_zero_forces_mae')} ({_fmt(s.get('n_relaxed'))})",
                     " ".join(s.get("elements_worse_than_zero") or []) or "none"])
        parity = path.with_name(path.name.replace(".summary.json", ".parity.png"))
        if parity.exists():
            figures.append(("fig", parity, f"eval — {label}: {parity.name}"))
    doc.append(("table", ["model", "data", "frames", "E MAE (meV/atom)", "F MAE (meV/Å)", "zero F (meV/Å)",
                          "relaxed F / zero (meV/Å) (frames)", f"elements (≥ {MIN_ELEMENT_ATOMS} atoms) worse than zero forces"],
                rows, None))
    return doc + figures


def provenance_section(label: str, results_dir: Path, prov: dict | None, info: dict) -> list[Block]:
    """One model's provenance: the ``bench all`` record (or this machine's), checkpoint, versions, hardware,
    and per task its status, wall time, workers and which weights its results came from."""
    src = prov or {"versions": package_versions(), "hardware": hardware()}
    doc: list[Block] = [("h", 3, f"{label}", f"provenance-{label}")]
    if prov:
        doc.append(("p", f"Recorded by `geodite bench all` ({prov.get('started_at')} → {prov.get('finished_at')}, "
                         f"{_fmt(prov.get('wall_s'))} s in all; options: `{json.dumps(prov.get('options', {}))}`)."))
    else:
        doc.append(("p", "No `geodite bench all` record for this model: versions and hardware are those of the "
                         "machine that wrote this report."))
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
        recorded = (prov or {}).get("tasks", {}).get(task, {}).get("status")
        status = status_label(r) if r.metrics or r.stored or not recorded else recorded
        workers = m.get("workers")
        weights = "—" if task == "speed" else weights_column(m, info.get("sha256"))  # speed: many models
        if weights.endswith("(other weights)") or weights == "not recorded":
            other_weights.append(task)
        walls.append([task, status, _fmt(m.get("wall_s")), _fmt(m.get("n_items")),
                      f"{workers} × {m.get('threads_per_worker')} threads" if workers else _fmt(m.get("threads")),
                      weights])
    doc.append(("table", ["task", "status", "wall time (s)", "items", "workers × threads", "weights"], walls, None))
    if other_weights:
        doc.append(("p", f"**Mixed weights:** {', '.join(other_weights)} ran with other weights than the "
                         f"checkpoint above, or did not record theirs (results older than the record): rerun "
                         f"with `--fresh` before comparing."))
    return doc


def data_section() -> list[Block]:
    """The data files shipped in the package, with checksums."""
    return [
        ("h", 3, "Data files shipped in the package (geodite/data/files)", "data"),
        ("table", ["file", "bytes", "sha256"], [[d["file"], str(d["bytes"]), d["sha256"]] for d in data_files()], None),
        ("p", "Full-mode data (Matbench Discovery files, phononDB structures) are verified against the md5 of "
              "`geodite/data/downloads.py` when fetched; each task's `config` above records its mode and the "
              "md5 of the data it read."),
    ]


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


def default_report_dir(models: Sequence[str], results_dir: str | Path = "results") -> Path:
    """results/<model>/ for one model, results/<a>_vs_<b>/ for several."""
    return Path(results_dir) / "_vs_".join(model_label(m) for m in models)


def write_report(models: Sequence[str] | str, results_dir: str | Path = "results", out_dir: str | Path | None = None,
                 embed: bool = True) -> dict:
    """Write report.md and report.html; returns {"markdown", "html", "models", "tasks": {task: [models with results]}}."""
    models = [m.strip() for m in models.split(",") if m.strip()] if isinstance(models, str) else list(models)
    if not models:
        raise ValueError("no model given")
    if not Path(results_dir).is_dir():
        raise NothingToReport(f"nothing to report: no results folder {results_dir}")
    statuses = {task: {model_label(m): status_label(collect(results_dir, task, model_label(m))) for m in models}
                for task in TASKS}
    empty = [m for m in models if all(statuses[task][model_label(m)] == "not run" for task in TASKS)
             and _read_provenance(Path(results_dir), model_label(m)) is None]  # bench all's record counts
    if empty:
        raise NothingToReport(f"nothing to report for {', '.join(empty)}: no task has results in {results_dir} "
                              f"(run `geodite bench ... --model {empty[0]}` first, or check the name)")
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
        "status": statuses,
        "figures": sum(1 for b in doc if b[0] == "fig"),
    }
