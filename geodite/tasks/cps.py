"""The combined performance score of a model from its stored discovery and kappa results.

Reads ``results/discovery/<model>/metrics.json`` (F1, RMSD in Å) and ``results/kappa/<model>/metrics.json``
(κ_SRME, dimensionless) and combines them as the leaderboard does, from the rounded metrics
(:func:`geodite.metrics.cps.leaderboard_cps_or_reason`, ``CPS``); ``CPS_unrounded`` from the metrics as
measured (:func:`geodite.metrics.cps.cps_or_reason`). Used by
``geodite bench cps``, ``geodite bench all`` and the report.
"""

from __future__ import annotations

from pathlib import Path

from geodite.metrics.cps import cps_or_reason, leaderboard_cps_or_reason
from geodite.tasks.results import read_metrics, task_dir

KAPPA_KEYS = ("kappa_SRME", "κ_SRME", "SRME")  # the names κ_SRME has had in kappa's metrics.json


def cps_summary(model: str, results_dir: Path | str = "results") -> dict:
    """{model, CPS (the leaderboard's, from rounded inputs, or None), CPS_unrounded, reason, F1, kappa_SRME, RMSD}
    from results/<task>/<model>/metrics.json."""
    disc = read_metrics(results_dir, "discovery", model) or {}
    kappa = read_metrics(results_dir, "kappa", model) or {}
    f1, rmsd = disc.get("F1"), disc.get("RMSD")
    srme = next((kappa[k] for k in KAPPA_KEYS if kappa.get(k) is not None), None)
    reasons = []
    if not disc:
        reasons.append(f"no discovery results in {task_dir(results_dir, 'discovery', model)}")
    elif f1 is None:
        reasons.append("discovery results have no F1 (the offline subset has no hull distances; run --mode full)")
    if not kappa:
        reasons.append(f"no kappa results in {task_dir(results_dir, 'kappa', model)}")
    value, reason = leaderboard_cps_or_reason(f1, srme, rmsd)
    if value is None and not reasons:
        reasons.append(reason)
    return {
        "model": model,
        "CPS": value,
        "CPS_unrounded": cps_or_reason(f1, srme, rmsd)[0],
        "reason": "; ".join(reasons) if value is None else None,
        "F1": f1,
        "kappa_SRME": srme,
        "RMSD": rmsd,
    }
