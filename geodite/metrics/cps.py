"""Combined performance score (CPS), the Matbench Discovery leaderboard aggregate.

CPS = 0.5·F1 + 0.4·(1 − κ_SRME/2) + 0.1·clamp(1 − RMSD/0.15, 0, 1)

F1 (dimensionless, [0, 1]) from the unique-prototype discovery task, κ_SRME
(dimensionless, [0, 2]) from the 103-material thermal-conductivity task, RMSD
(dimensionless, ≥ 0; StructureMatcher rms normalised by (V/n)^(1/3)) from geometry
optimisation. The score is in [0, 1], higher is better.

As the leaderboard's ``calculate_cps`` (site/src/lib/combined-scores.svelte.ts): every
input must be present, finite and in range, else there is no score (a missing metric is
never counted as 0); the RMSD term is clamped to [0, 1]. Parity:
tests/metrics/test_mbd_parity.py on 2,008 triples. The leaderboard combines the metrics as its
model YAMLs store them, rounded (F1 to 3 decimals, κ_SRME and RMSD to 4):
:func:`leaderboard_cps_or_reason`, reported as ``CPS``; the CPS of the unrounded metrics is
``CPS_unrounded``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

CPS_WEIGHTS: dict[str, float] = {"F1": 0.5, "kappa_SRME": 0.4, "RMSD": 0.1}
RMSD_SCALE = 0.15  # RMSD at which the RMSD term reaches 0


@dataclass(frozen=True)
class CPSResult:
    """A CPS value, or None together with the reason it could not be computed."""

    value: float | None
    reason: str | None = None


def _check(name: str, value: float | None, low: float, high: float) -> str | None:
    """Reason string if ``value`` is missing, NaN or outside [low, high], else None."""
    if value is None:
        return f"{name} is missing"
    try:
        value = float(value)
    except (TypeError, ValueError):
        return f"{name}={value!r} is not a number"
    if math.isnan(value):
        return f"{name} is NaN"
    if math.isinf(value):
        return f"{name} is not finite"
    if not low <= value <= high:
        return f"{name}={value} outside [{low}, {high}]"
    return None


def cps_or_reason(
    f1: float | None, kappa_srme: float | None, rmsd: float | None
) -> tuple[float | None, str | None]:
    """Compute the CPS or explain why it is undefined.

    CPS = 0.5·F1 + 0.4·(1 − κ_SRME/2) + 0.1·clamp(1 − RMSD/0.15, 0, 1).

    Args:
        f1: discovery F1 (unique prototypes), must be in [0, 1].
        kappa_srme: mean κ_SRME, must be in [0, 2].
        rmsd: mean geometry-optimisation RMSD (dimensionless), must be ≥ 0.

    Returns:
        (value, None) on success, (None, reason) if an input is missing, NaN or out of range.
    """
    for reason in (
        _check("F1", f1, 0.0, 1.0),
        _check("kappa_SRME", kappa_srme, 0.0, 2.0),
        _check("RMSD", rmsd, 0.0, math.inf),
    ):
        if reason is not None:
            return None, reason
    rmsd_term = min(1.0, max(0.0, 1.0 - float(rmsd) / RMSD_SCALE))
    value = (
        CPS_WEIGHTS["F1"] * float(f1)
        + CPS_WEIGHTS["kappa_SRME"] * (1.0 - float(kappa_srme) / 2.0)
        + CPS_WEIGHTS["RMSD"] * rmsd_term
    )
    return value, None


LEADERBOARD_DECIMALS: dict[str, int] = {"F1": 3, "kappa_SRME": 4, "RMSD": 4}  # as MBD's model YAMLs store them


def leaderboard_inputs(
    f1: float | None, kappa_srme: float | None, rmsd: float | None
) -> tuple[float | None, float | None, float | None]:
    """The CPS inputs as the leaderboard reads them: rounded (Python ``round``) as MBD writes its model YAMLs,
    F1 to 3 decimals (``write_all_metrics_to_yaml``), κ_SRME (``κ_SRME`` of ``kappa_103``) and RMSD
    (``geo_opt``) to 4. Missing or non-numeric values pass through unchanged."""

    def rounded(value: float | None, decimals: int) -> float | None:
        try:
            return round(float(value), decimals)
        except (TypeError, ValueError):
            return value

    return (rounded(f1, LEADERBOARD_DECIMALS["F1"]), rounded(kappa_srme, LEADERBOARD_DECIMALS["kappa_SRME"]),
            rounded(rmsd, LEADERBOARD_DECIMALS["RMSD"]))  # fmt: skip


def leaderboard_cps_or_reason(
    f1: float | None, kappa_srme: float | None, rmsd: float | None
) -> tuple[float | None, str | None]:
    """The leaderboard's CPS: :func:`cps_or_reason` of :func:`leaderboard_inputs` (the rounded metrics).
    Differs from the CPS of unrounded inputs by up to ≈ 3e-4."""
    return cps_or_reason(*leaderboard_inputs(f1, kappa_srme, rmsd))


def combined_performance_score(
    f1: float | None, kappa_srme: float | None, rmsd: float | None
) -> float | None:
    """CPS = 0.5·F1 + 0.4·(1 − κ_SRME/2) + 0.1·clamp(1 − RMSD/0.15, 0, 1), or None.

    None when any input is missing/NaN or out of range (F1 ∈ [0,1], κ_SRME ∈ [0,2],
    RMSD ≥ 0); use :func:`cps_or_reason` or :func:`cps_result` to get the reason.
    """
    return cps_or_reason(f1, kappa_srme, rmsd)[0]


def cps_result(f1: float | None, kappa_srme: float | None, rmsd: float | None) -> CPSResult:
    """:func:`cps_or_reason` packed into a :class:`CPSResult`."""
    return CPSResult(*cps_or_reason(f1, kappa_srme, rmsd))
